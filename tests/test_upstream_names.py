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
    method, counter = capacity.PRIVATE_API
    upstream = getattr(AgentServer, method, None)
    assert upstream is not None, f"livekit's AgentServer no longer has {method}: adapt it"
    assert capacity.ConversationServer._get_effective_load is not upstream
    assert list(inspect.signature(upstream).parameters) == ["self"], inspect.signature(upstream)
    # the rooms said yes to but not yet started, which the override counts
    source = inspect.getsource(AgentServer)
    assert f"self.{counter} += 1" in source, f"livekit's AgentServer no longer keeps {counter}"
    assert f"self.{counter} -= 1" in source, f"livekit's AgentServer no longer keeps {counter}"
