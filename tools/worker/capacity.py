"""A worker's load as what really limits it: conversations against a stated capacity.

livekit's default load is the machine's CPU over a few seconds. On a small machine it
spikes while job processes start, so a burst of rooms could be refused mid-burst by a
worker with spare capacity, leaving a person alone in a silent room. Here the load is
``active conversations / MAX_CONVERSATIONS``, reported to livekit-server as that share of
its target load, and told as soon as it changes: the worker takes exactly that many, and
says so (a warning and a Prometheus gauge) when it is full and rooms go elsewhere.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from livekit.agents import AgentServer
from prometheus_client import Counter, Gauge

logger = logging.getLogger(__name__)

CONVERSATIONS = Gauge("agent_worker_conversations", "Conversations (jobs) running on this worker.")
CAPACITY = Gauge("agent_worker_capacity", "Conversations this worker takes at most.")
FULL = Counter(
    "agent_worker_full",
    "Times this worker reached its capacity and stopped taking rooms.",
)

# livekit names this module relies on; tests/test_upstream_names.py fails when one goes
PRIVATE_API = (
    "_get_effective_load",
    "_reserved_slots",
    "_update_worker_status",
    "_loop",
    "_worker_load",
)


class ConversationServer(AgentServer):
    """An ``AgentServer`` that takes exactly ``capacity`` conversations at once.

    livekit counts a room it has said yes to, but not yet started, as a share of the load:
    the load per running job, or, with none running, ``load_threshold / num_idle_processes``.
    On an idle worker that is half the capacity per room with two warm processes, so a
    burst of three rooms got two yeses and one room nobody ever joined. A room here
    weighs what it is, one conversation, whether it has started or not.
    """

    def __init__(self, *, capacity: int, target_load: float = 0.7, **options: Any) -> None:
        """``target_load``: livekit-server's ``agents.target_load``. It weighs a worker by
        ``target_load - load`` and sends it no room once that is 0, so the load reported is
        the conversations' share of it: a full worker reports ``target_load``. As a share of
        1.0, a worker of 8 places was sent no room past its sixth (0.75)."""
        super().__init__(load_fnc=self._conversation_load, load_threshold=1.0, **options)
        self.capacity = capacity
        self.target_load = target_load
        self._full = False
        self._told = (0, False)  # the conversations and fullness livekit-server last heard
        self._telling: set[asyncio.Task[None]] = set()
        CAPACITY.set(capacity)

    def _get_effective_load(self) -> float:
        running, starting = self._places()
        return (running + starting) / self.capacity

    def _places(self) -> tuple[int, int]:
        """Conversations running (a closing one included) and rooms accepted but not yet
        running: livekit refuses a room on both, so both count."""
        return len(self.active_jobs), self._reserved_slots

    def _conversation_load(self) -> float:
        # livekit asks for this just before it decides on a room: a worker whose places are
        # taken, by rooms still starting too, refuses the next one and says so here
        running, starting = self._places()
        CONVERSATIONS.set(running)
        taken = running + starting
        full = taken >= self.capacity
        if full and not self._full:
            FULL.inc()
            logger.warning(
                "worker is full: %d of %d conversations (%d starting); new rooms go to other "
                "workers (raise MAX_CONVERSATIONS or add a worker)",
                taken,
                self.capacity,
                starting,
            )
        elif self._full and not full:
            logger.info("worker takes rooms again: %d of %d conversations", taken, self.capacity)
        load = self.target_load * min(running, self.capacity) / self.capacity
        if (running, full) != self._told:
            self._tell_server_now(load)
            self._told = (running, full)
        self._full = full
        return load

    def _tell_server_now(self, load: float) -> None:
        """livekit sends the worker's status every 2.5 s, and livekit-server weighs a worker
        by the last it heard: it dispatched no room to a worker it thought full, or loaded
        by conversations that had ended, nor retried one later. A person arriving then sat
        alone in a silent room (2 of 8 people of a row, now and then). Said as soon as the
        conversations change instead. This runs on livekit's executor thread; the status
        goes out on the worker's loop."""
        loop: asyncio.AbstractEventLoop | None = getattr(self, "_loop", None)
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._send_status, load)

    def _send_status(self, load: float) -> None:
        self._worker_load = load  # what livekit sets from this function's answer, after it
        task = asyncio.ensure_future(self._update_worker_status())
        self._telling.add(task)
        task.add_done_callback(self._telling.discard)
