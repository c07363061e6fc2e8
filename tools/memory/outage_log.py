"""How an outage of the memory store reads in the log: one line when it starts, a summary
while it lasts, one line when it ends."""

from __future__ import annotations

import logging
import time

logger = logging.getLogger(__name__)


class OutageLog:
    """One line when an outage starts, a summary every ``summary_every_s`` while it lasts,
    one line when it ends: a database down for an hour is three kinds of line, not
    thousands."""

    def __init__(self, summary_every_s: float = 60.0) -> None:
        self.summary_every_s = summary_every_s
        self.since: float | None = None
        self._last_said = 0.0
        self._replayed = 0

    @property
    def active(self) -> bool:
        return self.since is not None

    def failed(self, error: str, waiting: int, oldest_s: float) -> None:
        now = time.monotonic()
        if self.since is None:
            self.since, self._last_said, self._replayed = now, now, 0
            logger.warning(
                "memory store unreachable (%s); writes wait in the outbox and are retried",
                error,
            )
        elif now - self._last_said >= self.summary_every_s:
            self._last_said = now
            logger.warning(
                "memory store still unreachable after %.0f s (%s); %d writes wait, "
                "the oldest for %.0f s",
                now - self.since,
                error,
                waiting,
                oldest_s,
            )

    def replayed(self, count: int) -> None:
        if self.since is not None:
            self._replayed += count

    def ended(self) -> None:
        if self.since is None:
            return
        logger.info(
            "memory store back after %.0f s; %d queued writes replayed",
            time.monotonic() - self.since,
            self._replayed,
        )
        self.since = None
