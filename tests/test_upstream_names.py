"""The private livekit names the project overrides still exist with the shape it overrides.

A livekit upgrade that renames one would otherwise leave the override unused and the pool
silently without its meter and connection: this fails instead, naming the change."""

from __future__ import annotations

import inspect

from livekit.agents import AgentServer
from livekit.plugins import openai as openai_plugin

from tools.providers.realtime_stt import PRIVATE_API, RealtimeSTT
from tools.worker import capacity


def test_the_realtime_stt_overrides_names_livekit_still_has() -> None:
    for name in PRIVATE_API:
        upstream = getattr(openai_plugin.STT, name, None)
        assert upstream is not None, f"livekit's openai STT no longer has {name}: adapt RealtimeSTT"
        ours = getattr(RealtimeSTT, name)
        assert ours is not upstream, f"RealtimeSTT does not override {name}"
        assert list(inspect.signature(ours).parameters) == list(
            inspect.signature(upstream).parameters
        ), f"livekit's {name} changed its parameters: {inspect.signature(upstream)}"
        assert inspect.iscoroutinefunction(ours) == inspect.iscoroutinefunction(upstream), name


def test_the_conversation_server_overrides_names_livekit_still_has() -> None:
    method, counter, status, loop, load = capacity.PRIVATE_API
    upstream = getattr(AgentServer, method, None)
    assert upstream is not None, f"livekit's AgentServer no longer has {method}: adapt it"
    assert capacity.ConversationServer._get_effective_load is not upstream
    assert list(inspect.signature(upstream).parameters) == ["self"], inspect.signature(upstream)
    # the rooms said yes to but not yet started, which the override counts
    source = inspect.getsource(AgentServer)
    assert f"self.{counter} += 1" in source, f"livekit's AgentServer no longer keeps {counter}"
    assert f"self.{counter} -= 1" in source, f"livekit's AgentServer no longer keeps {counter}"
    # what sends the worker's status to livekit-server, called when a place frees
    sends = getattr(AgentServer, status, None)
    assert sends is not None and inspect.iscoroutinefunction(sends), f"adapt {status}"
    assert list(inspect.signature(sends).parameters) == ["self"], inspect.signature(sends)
    assert f"self.{loop} = " in source, f"livekit's AgentServer no longer keeps its loop as {loop}"
    assert f"load=self.{load}" in source, f"livekit no longer reports the load it keeps as {load}"


def test_the_pooled_google_plugins_override_factories_livekit_still_has() -> None:
    from livekit.plugins import google as google_plugin

    from tools.providers import google

    for class_name, method in google.PRIVATE_API.items():
        upstream = getattr(getattr(google_plugin, class_name), method, None)
        assert upstream is not None, f"livekit's google.{class_name} no longer has {method}"
        expected = {"_create_client": ["self", "timeout"], "_ensure_client": ["self"]}[method]
        assert list(inspect.signature(upstream).parameters) == expected, method
        assert inspect.iscoroutinefunction(upstream) == (method == "_create_client"), method


def test_the_google_v2_models_refused_at_start_are_the_plugins_own() -> None:
    import typing

    from livekit.plugins.google import models

    from tools.settings import GOOGLE_V2_MODELS

    assert set(GOOGLE_V2_MODELS) == set(typing.get_args(models.SpeechModelsV2))


def test_the_stream_state_the_first_output_streams_use_is_still_livekits() -> None:
    from livekit.agents import llm, tts

    from tools.providers import first_output

    for base in (llm.LLMStream, tts.ChunkedStream):
        source = inspect.getsource(base.__init__)
        for name in first_output.PRIVATE_API:
            if name == "_retry_on_chunk_sent" and base is not llm.LLMStream:
                continue
            assert f"self.{name} =" in source, f"livekit's {base.__name__} no longer sets {name}"
    # and the retry it turns off still reads it
    assert "self._retry_on_chunk_sent" in inspect.getsource(llm.LLMStream._main_task)


def test_the_console_and_the_log_text_the_worker_relies_on_are_still_livekits() -> None:
    from livekit.agents.cli import _legacy
    from livekit.agents.inference.eot import detector

    from tools.worker import console

    for name in console.PRIVATE_API:
        assert hasattr(_legacy.AgentsConsole, name) or name in inspect.getsource(
            _legacy.AgentsConsole.__init__
        ), f"livekit's AgentsConsole no longer has {name}"
    # the warning the console filters out is still worded this way
    assert console.CLOUD_WARNING in inspect.getsource(detector)


def test_the_voice_track_uses_the_audio_output_livekit_still_has() -> None:
    import importlib

    from tools.conversation import voice_track

    module, name = voice_track.PRIVATE_API
    output = getattr(importlib.import_module(module), name, None)
    assert output is not None, f"livekit no longer has {module}.{name}: adapt VoiceTrack"
    parameters = inspect.signature(output.__init__).parameters
    for needed in ("room", "sample_rate", "num_channels", "track_publish_options", "track_name"):
        assert needed in parameters, f"{name} no longer takes {needed}"
    assert inspect.iscoroutinefunction(output.start) and inspect.iscoroutinefunction(output.aclose)
    # it holds frames until someone subscribes: nothing is said into an empty room
    assert "await self._subscribed_fut" in inspect.getsource(output.capture_frame)
