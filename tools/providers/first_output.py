"""Deadlines for the first output of a provider in a failover chain.

livekit's ``FallbackAdapter`` moves to the next provider when one fails, but it measures
a read timeout only: a provider that accepts the request and then stalls leaves the user
in silence. :class:`FirstTokenLLM` fails an attempt that has produced no token by its
deadline, and :class:`FirstAudioTTS` one that has produced no audio, so the adapter moves
on within the same turn. A deadline is for failing over, not for giving up: the last
provider of a chain has none, and the turn waits for it (the person hears an
acknowledgement meanwhile, see ``tools.conversation.acknowledge``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any, Generic, TypeVar

from livekit.agents import APIConnectOptions, APITimeoutError, NotGivenOr, llm, tts
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS, NOT_GIVEN
from prometheus_client import Histogram

from pool import Meter

TIME_TO_FIRST_TOKEN = Histogram(
    "agent_llm_time_to_first_token_seconds",
    "Time from an LLM request to its first token, per provider.",
    ["provider"],
    buckets=(0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0),
)


Inner = TypeVar("Inner", llm.LLM[Any], tts.TTS[Any])


class _Wrapping(Generic[Inner]):
    """Named as the provider it wraps, in livekit's metrics and traces."""

    inner: Inner
    provider_name: str

    @property
    def model(self) -> str:
        return self.inner.model

    @property
    def provider(self) -> str:
        return self.provider_name


class FirstTokenLLM(_Wrapping[llm.LLM[Any]], llm.LLM[Any]):
    """Wraps a provider's LLM: no token within ``deadline_s`` fails the attempt, the
    attempt is never retried once output was sent, and time to first token is recorded."""

    def __init__(
        self,
        inner: llm.LLM[Any],
        *,
        provider: str,
        deadline_s: float | None,
        meter: Meter | None = None,
    ) -> None:
        super().__init__()
        self.inner = inner
        self.provider_name = provider
        self.deadline_s = deadline_s
        self.meter = meter  # told about stalls, which the HTTP layer sees as successes

    def chat(
        self,
        *,
        chat_ctx: llm.ChatContext,
        tools: list[llm.Tool] | None = None,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
        parallel_tool_calls: NotGivenOr[bool] = NOT_GIVEN,
        tool_choice: NotGivenOr[llm.ToolChoice] = NOT_GIVEN,
        extra_kwargs: NotGivenOr[dict[str, Any]] = NOT_GIVEN,
    ) -> llm.LLMStream:
        return _FirstTokenStream(
            self,
            chat_ctx=chat_ctx,
            tools=tools or [],
            conn_options=conn_options,
            options={
                "parallel_tool_calls": parallel_tool_calls,
                "tool_choice": tool_choice,
                "extra_kwargs": extra_kwargs,
            },
        )

    async def aclose(self) -> None:
        await self.inner.aclose()
        await super().aclose()


# what livekit's streams keep for the subclasses that run them, used here as its own plugins
# do; tests/test_upstream_names.py fails when one goes
PRIVATE_API = ("_conn_options", "_event_ch", "_retry_on_chunk_sent")


class _FirstTokenStream(llm.LLMStream):
    def __init__(
        self,
        outer: FirstTokenLLM,
        *,
        chat_ctx: llm.ChatContext,
        tools: list[llm.Tool],
        conn_options: APIConnectOptions,
        options: dict[str, Any],
    ) -> None:
        super().__init__(outer, chat_ctx=chat_ctx, tools=tools, conn_options=conn_options)
        self._outer = outer
        self._options = options
        # once a token reached the user, a retry would make the agent say it twice
        self._retry_on_chunk_sent = False

    async def _run(self) -> None:
        outer = self._outer
        started = time.perf_counter()
        # this stream owns the retries; the provider's own stream makes one attempt
        once = dataclasses.replace(self._conn_options, max_retry=0)
        async with outer.inner.chat(
            chat_ctx=self._chat_ctx, tools=self._tools, conn_options=once, **self._options
        ) as stream:
            chunks = aiter(stream)
            first_token = False
            while True:
                try:
                    if first_token or outer.deadline_s is None:
                        chunk = await anext(chunks)
                    else:
                        remaining = outer.deadline_s - (time.perf_counter() - started)
                        async with asyncio.timeout(max(remaining, 0.0)):
                            chunk = await anext(chunks)
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    assert outer.deadline_s is not None
                    error = APITimeoutError(
                        f"{outer.provider_name} sent no token within {outer.deadline_s:.1f} s"
                    )
                    if outer.meter is not None:
                        outer.meter.stalled(error)
                    raise error from None
                if (
                    not first_token
                    and chunk.delta
                    and (chunk.delta.content or chunk.delta.tool_calls)
                ):
                    first_token = True
                    TIME_TO_FIRST_TOKEN.labels(outer.provider_name).observe(
                        time.perf_counter() - started
                    )
                self._event_ch.send_nowait(chunk)


class FirstAudioTTS(_Wrapping[tts.TTS[Any]], tts.TTS[Any]):
    """Wraps a provider's TTS: no audio within ``deadline_s`` fails the attempt, so the chain
    moves to the next provider within the same sentence instead of leaving the person in
    silence until the read timeout."""

    def __init__(self, inner: tts.TTS[Any], *, provider: str, deadline_s: float, meter: Meter):
        super().__init__(
            capabilities=tts.TTSCapabilities(streaming=False),
            sample_rate=inner.sample_rate,
            num_channels=inner.num_channels,
        )
        self.inner = inner
        self.provider_name = provider
        self.deadline_s = deadline_s
        self.meter = meter  # told about stalls, which the transport sees as successes

    def synthesize(
        self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> tts.ChunkedStream:
        return _FirstAudioStream(self, input_text=text, conn_options=conn_options)

    async def aclose(self) -> None:
        await self.inner.aclose()
        await super().aclose()


class _FirstAudioStream(tts.ChunkedStream):
    def __init__(self, outer: FirstAudioTTS, *, input_text: str, conn_options: APIConnectOptions):
        super().__init__(tts=outer, input_text=input_text, conn_options=conn_options)
        self._outer = outer

    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        outer = self._outer
        # this stream owns the retries; the provider's own stream makes one attempt
        once = dataclasses.replace(self._conn_options, max_retry=0)
        started = time.perf_counter()
        async with outer.inner.synthesize(self.input_text, conn_options=once) as stream:
            frames = aiter(stream)
            heard = False
            while True:
                try:
                    if heard:
                        audio = await anext(frames)
                    else:
                        remaining = outer.deadline_s - (time.perf_counter() - started)
                        async with asyncio.timeout(max(remaining, 0.0)):
                            audio = await anext(frames)
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    error = APITimeoutError(
                        f"{outer.provider_name} sent no audio within {outer.deadline_s:.1f} s"
                    )
                    outer.meter.stalled(error)
                    raise error from None
                if not heard:
                    heard = True
                    output_emitter.initialize(
                        request_id=audio.request_id,
                        sample_rate=audio.frame.sample_rate,
                        num_channels=audio.frame.num_channels,
                        mime_type="audio/pcm",
                    )
                output_emitter.push(audio.frame.data.tobytes())
        if heard:
            output_emitter.flush()
