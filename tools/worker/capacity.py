"""A worker's load as what really limits it: conversations against a stated capacity.

livekit's default load is the machine's CPU over a few seconds. On a small machine it
spikes while job processes start, so a burst of rooms could be refused mid-burst by a
worker with spare capacity, leaving a person alone in a silent room. Here the load is
``active conversations / MAX_CONVERSATIONS``: the worker takes exactly that many, and
says so (a warning and a Prometheus gauge) when it is full and rooms go elsewhere.
"""

from __future__ import annotations

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
PRIVATE_API = ("_get_effective_load", "_reserved_slots")


class ConversationServer(AgentServer):
    """An ``AgentServer`` that takes exactly ``capacity`` conversations at once.

    livekit counts a room it has said yes to, but not yet started, as a share of the load:
    the load per running job, or, with none running, ``load_threshold / num_idle_processes``.
    On an idle worker that is half the capacity per room with two warm processes, so a
    burst of three rooms got two yeses and one room nobody ever joined. A room here
    weighs what it is, one conversation, whether it has started or not.
    """

    def __init__(self, *, capacity: int, **options: Any) -> None:
        super().__init__(load_fnc=self._conversation_load, load_threshold=1.0, **options)
        self.capacity = capacity
        self._full = False
        CAPACITY.set(capacity)

    def _get_effective_load(self) -> float:
        # rooms accepted but not yet running count as conversations
        return (len(self.active_jobs) + self._reserved_slots) / self.capacity

    def _conversation_load(self) -> float:
        running = len(self.active_jobs)
        CONVERSATIONS.set(running)
        # livekit asks for this just before it decides on a room, and decides on the rooms
        # still starting too: a worker whose places are taken by rooms not yet running
        # refuses the next one, and says so like any full worker
        starting = self._reserved_slots
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
        self._full = full
        return running / self.capacity
