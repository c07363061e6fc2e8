"""A worker's load as what really limits it: conversations against a stated capacity.

livekit's default load is the machine's CPU over a few seconds. On a small machine it
spikes while job processes start, so a burst of rooms could be refused mid-burst by a
worker with spare capacity, leaving a person alone in a silent room. Here the load is
``active conversations / MAX_CONVERSATIONS``: the worker takes exactly that many, and
says so (a warning and a Prometheus gauge) when it is full and rooms go elsewhere.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from livekit.agents import AgentServer
from prometheus_client import Counter, Gauge

logger = logging.getLogger(__name__)

CONVERSATIONS = Gauge("agent_worker_conversations", "Conversations (jobs) running on this worker.")
CAPACITY = Gauge("agent_worker_capacity", "Conversations this worker takes at most.")
FULL = Counter(
    "agent_worker_full",
    "Times this worker reached its capacity and stopped taking rooms.",
)


def conversation_load(capacity: int) -> Callable[[AgentServer], float]:
    """A ``load_fnc`` for ``AgentServer`` (with ``load_threshold=1.0``)."""
    CAPACITY.set(capacity)
    full = False

    def load(server: AgentServer) -> float:
        nonlocal full
        running = len(server.active_jobs)
        CONVERSATIONS.set(running)
        if running >= capacity and not full:
            FULL.inc()
            logger.warning(
                "worker is full: %d of %d conversations; new rooms go to other workers "
                "(raise MAX_CONVERSATIONS or add a worker)",
                running,
                capacity,
            )
        elif running < capacity and full:
            logger.info("worker takes rooms again: %d of %d conversations", running, capacity)
        full = running >= capacity
        return running / capacity

    return load
