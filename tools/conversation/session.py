"""One conversation's session: the state its tools reach, the AgentSession built on the
pool's clients, and what the job opened, closed in order when it ends."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from livekit.agents import AgentSession, APIConnectOptions, CloseEvent
from livekit.agents import vad as vad_module
from livekit.agents.voice.agent_session import SessionConnectOptions

from pool import ConnectionPool, cancel_and_wait, get_pool

from ..memory import MemoryService, memory_spec, open_memory_service
from ..providers import build_llm, build_stt, build_tts, provider_specs
from .turn_taking import turn_handling

if TYPE_CHECKING:
    from ..settings import Settings
    from .greeting_audio import GreetingAudio
    from .learning import PostTurnWorker
    from .opening import Opening
    from .phrases import Phrases
    from .resume import ConversationMark
    from .voice_track import VoiceTrack

logger = logging.getLogger(__name__)

# a voice turn cannot wait out livekit's default retries (3, 2 s apart) before the person
# hears anything: one quick retry, then the agent says what is wrong (phrases.py); and a
# long outage must not end the session (livekit closes it after 3 failures in a row)
_QUICK = APIConnectOptions(max_retry=1, retry_interval=0.3, timeout=10.0)
VOICE_CONN_OPTIONS = SessionConnectOptions(
    stt_conn_options=_QUICK, tts_conn_options=_QUICK, max_unrecoverable_errors=1_000_000
)


@dataclass
class SessionData:
    """What the agent's tools reach through ``RunContext.userdata``."""

    pool: ConnectionPool
    settings: Settings
    user_id: str
    memory: MemoryService | None = None
    post_turn: PostTurnWorker | None = None


class GracefulSession(AgentSession[SessionData]):
    """An AgentSession that, when its job ends it (a worker drain, SIGTERM), lets the reply
    being spoken finish for up to ``drain_s`` instead of cutting it off mid-word."""

    def __init__(self, *, drain_s: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.drain_s = drain_s
        self._running = False
        self._closed = asyncio.Event()
        self.on("close", self._on_close)

    def _on_close(self, _: CloseEvent) -> None:
        self._running = False
        self._closed.set()

    async def start(self, *args: Any, **kwargs: Any) -> Any:
        self._closed.clear()
        result = await super().start(*args, **kwargs)
        self._running = True
        return result

    async def aclose(self) -> None:
        if self._running:
            self.shutdown(drain=True)
            try:
                async with asyncio.timeout(self.drain_s):
                    await self._closed.wait()
            except TimeoutError:
                pass
        await super().aclose()


async def build_session(
    pool: ConnectionPool,
    settings: Settings,
    userdata: SessionData,
    vad: vad_module.VAD | None,
) -> GracefulSession:
    """An AgentSession whose STT, LLM and TTS all run on the pool's clients, each a chain of
    providers that fails over in order.

    Without a VAD the session is text only: the OpenAI STT plugin cannot stream without one
    to cut the audio into utterances.
    """
    model = await build_llm(pool, settings)
    if vad is None:
        return GracefulSession(
            drain_s=settings.turn_drain_s,
            llm=model,
            userdata=userdata,
            turn_handling={"turn_detection": "manual", "interruption": {"mode": "vad"}},
            conn_options=VOICE_CONN_OPTIONS,
        )
    return GracefulSession(
        drain_s=settings.turn_drain_s,
        conn_options=VOICE_CONN_OPTIONS,
        stt=await build_stt(pool, settings, vad),
        llm=model,
        tts=await build_tts(pool, settings),
        vad=vad,
        turn_handling=turn_handling(settings),
        userdata=userdata,
    )


class JobResources:
    """What one job opens for its conversation, and closes in order when the job ends.

    The memory store opens at once (the greeting needs the person's memories). The pool is
    warmed once the first words are on their way (:meth:`warm`): its probes would share the
    event loop with the room's connection and delay the greeting (measured: 100-200 ms), and
    the first user turn comes seconds later, on connections open by then."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.pool = get_pool(settings)
        self.pool.register(memory_spec(settings))
        for spec in provider_specs(self.pool, settings).values():
            self.pool.register(spec)
        self._warming: asyncio.Task[object] | None = None
        self._opening = asyncio.create_task(
            open_memory_service(self.pool, settings), name="memory-open"
        )
        self.post_turn: PostTurnWorker | None = None
        self.phrases: Phrases | None = None
        self.greeting_audio: GreetingAudio | None = None
        self.opening: Opening | None = None
        self.mark: ConversationMark | None = None
        self.voice: VoiceTrack | None = None

    def warm(self) -> None:
        """Open and probe every connection the first user turn needs, in the background."""
        if self._warming is None:
            self._warming = asyncio.create_task(self.pool.warm(), name="pool-warm")

    async def memory(self) -> MemoryService:
        return await self._opening

    async def aclose(self) -> None:
        """livekit has closed the session by now (GracefulSession lets its reply in flight
        finish), so nothing uses the clients: learn from the last exchange, flush the writes,
        then close the pool."""
        if self.opening is not None:
            await self.opening.aclose()
        for rendering in (self.phrases, self.greeting_audio):
            if rendering is not None:
                await rendering.aclose()
        if self.mark is not None:
            await self.mark.aclose()
        if self.voice is not None:  # the session that spoke through it has closed
            await self.voice.aclose()
        if self.post_turn is not None:
            await self.post_turn.aclose(deadline_s=3.0)
        opening = self._opening
        if opening.done() and not opening.cancelled() and opening.exception() is None:
            left = await opening.result().aclose(deadline_s=5.0)
            if left:
                logger.warning("%d memory writes will be replayed at the next start", left)
        await cancel_and_wait([opening, self._warming])
        await self.pool.aclose()
