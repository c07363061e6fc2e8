"""A durable write-behind queue for memory writes nobody is waiting on.

``put()`` returns only after the writes are committed to a local SQLite file
(``outbox_file.py``), so an acknowledged write survives a crash. A flusher sends them to
the store in batches, retrying with backoff while it is down; what is left at shutdown
stays in the file and is replayed by the next process. Replay is safe because every write
carries its stamp and the store keeps the newest.

A write the store refuses (not an outage) is found by retrying its batch in halves and is
set aside alone, with the reason; ``python agent.py memory replay`` retries those after a
fix. A batch that fails as an outage while the store answers (a locked row, a statement
that times out) is split the same way, so the good writes land; its failing writes are
sent apart from fresh ones from then on, and one that fails on its own ``MAX_FAILURES``
times while other writes were stored beside it is set aside too. When nothing can be stored
(the store is down, or takes no writes at all) no write is blamed: they all wait.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from pool import CircuitOpenError, RetryPolicy, cancel_and_wait

from .model import MemoryStore, Write, store_error
from .outage_log import OutageLog
from .outbox_file import OutboxFile, OutboxReport, QueuedWrite

logger = logging.getLogger(__name__)

# a write that failed this many times on its own, each time while other writes were
# stored, is set aside: it would otherwise be retried forever (a locked row, a statement
# that always times out)
MAX_FAILURES = 5
# failed sends in a row, with nothing stored, after which the store is taken to accept
# no writes at all (a read-only primary, a full disk): an outage, counted against no write
GIVE_UP_AFTER = 3
PING_TIMEOUT_S = 2.0


@dataclass
class _Flush:
    """What one flush did, while it bisects its batch."""

    stored: list[Write] = field(default_factory=list)
    set_aside: int = 0
    failed_alone: list[tuple[QueuedWrite, BaseException]] = field(default_factory=list)
    failed_in_a_row: int = 0
    store_answers: bool | None = None  # pinged once, at the first outage of the flush


class Outbox:
    def __init__(
        self,
        path: str,
        store_for: Callable[[], Awaitable[MemoryStore]],
        *,
        batch_size: int = 500,
        backoff: RetryPolicy | None = None,
        on_flushed: Callable[[list[Write]], Awaitable[None]] | None = None,
        summary_every_s: float = 60.0,
    ) -> None:
        self.path = path
        self._store_for = store_for
        self.batch_size = batch_size
        self._backoff = backoff or RetryPolicy(base_s=0.2, max_delay_s=10.0)
        self._on_flushed = on_flushed
        self._file: OutboxFile | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._flush_lock = asyncio.Lock()
        self.flushed = 0
        self.failed_flushes = 0
        self.rejected = 0
        self.outage = OutageLog(summary_every_s)

    async def open(self) -> Outbox:
        self._file = await OutboxFile.open(self.path)
        return self

    def start(self) -> None:
        """Start the background flusher; it first replays what a previous process left."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="memory-outbox")
            self._wake.set()

    @property
    def file(self) -> OutboxFile:
        if self._file is None:
            raise RuntimeError("The outbox is not open; call open() first.")
        return self._file

    async def put(self, writes: list[Write]) -> None:
        """Durable when this returns."""
        if writes:
            await self.file.put(writes)
            self._wake.set()

    async def pending(self) -> int:
        return await self.file.pending()

    async def totals(self) -> dict[str, int]:
        return await self.file.totals()

    async def report(self) -> OutboxReport:
        return await self.file.report()

    async def flush_once(self) -> int:
        """Send the oldest batch to the store; returns how many of its writes were stored or
        set aside, each deleted from the file as it is. Raises the store's error (or the
        breaker's) when none could be, leaving them for the next try.

        Writes that failed before are sent apart from fresh ones, so one that keeps failing
        never holds back the writes behind it; a batch that fails while the store answers
        is split in halves until the writes that fail stand alone.
        """
        async with self._flush_lock:
            queued = await self.file.oldest(self.batch_size)
            if not queued:
                return 0
            store = await self._store_for()
            flush = _Flush()
            try:
                await self._send(store, queued, flush)
            finally:
                self.outage.replayed(len(flush.stored))
                if flush.stored and self._on_flushed is not None:
                    await self._on_flushed(flush.stored)
        return len(flush.stored) + flush.set_aside

    async def _send(self, store: MemoryStore, queued: list[QueuedWrite], flush: _Flush) -> None:
        """Apply the batch, bisecting a failing part breadth-first: a sibling is tried
        before going deeper, so a stored write shows early that the store takes writes."""
        parts: deque[list[QueuedWrite]] = deque()
        for group in ([q for q in queued if not q.apart], [q for q in queued if q.apart]):
            if group:
                parts.append(group)
        while parts:
            part = parts.popleft()
            try:
                await store.apply([q.write for q in part])
            except Exception as exc:
                if isinstance(exc, CircuitOpenError):
                    raise
                if store.is_outage(exc):
                    flush.failed_in_a_row += 1
                    if not flush.stored and not await self._takes_writes(store, flush):
                        await self.file.keep_apart(
                            [q for p in (part, *parts) for q in p], store_error(exc)
                        )
                        raise
                    if len(part) == 1:
                        flush.failed_alone.append((part[0], exc))
                        continue
                elif len(part) == 1:
                    await self._set_aside(part[0], store_error(exc))
                    flush.set_aside += 1
                    continue
                middle = len(part) // 2
                parts.extend((part[:middle], part[middle:]))
                continue
            flush.failed_in_a_row = 0
            await self.file.delete(part)
            self.flushed += len(part)
            flush.stored.extend(q.write for q in part)
        await self._count_failures(flush)

    async def _takes_writes(self, store: MemoryStore, flush: _Flush) -> bool:
        """Whether to go on bisecting a flush that has stored nothing yet: not when the
        store does not answer, nor when every part tried in a row has failed."""
        if flush.failed_in_a_row >= GIVE_UP_AFTER:
            return False
        if flush.store_answers is None:
            try:
                async with asyncio.timeout(PING_TIMEOUT_S):
                    await store.ping()
            except Exception:
                flush.store_answers = False
            else:
                flush.store_answers = True
        return flush.store_answers

    async def _count_failures(self, flush: _Flush) -> None:
        """A write that failed alone counts a failure only if others were stored beside it;
        otherwise the store was in trouble, not the write."""
        if not flush.failed_alone:
            return
        if not flush.stored:
            last = flush.failed_alone[-1][1]
            await self.file.keep_apart([q for q, _ in flush.failed_alone], store_error(last))
            raise last
        for queued, exc in flush.failed_alone:
            if queued.failures + 1 >= MAX_FAILURES:
                reason = f"failed {MAX_FAILURES} times while other writes were stored"
                await self._set_aside(queued, f"{reason}: {store_error(exc)}")
                flush.set_aside += 1
            else:
                await self.file.count_failure(queued, store_error(exc))

    async def _set_aside(self, queued: QueuedWrite, reason: str) -> None:
        write = queued.write
        logger.error(
            "a queued %s write for user %r is set aside: %s",
            "delete" if write.value is None else "save",
            write.user_id,
            reason,
        )
        await self.file.set_aside(queued, reason)
        self.rejected += 1

    async def replay_set_aside(self) -> int:
        """Queue the set-aside writes again, with their original stamps (newest still wins);
        returns how many. Run after fixing what made the store refuse them."""
        async with self._flush_lock:
            count = await self.file.requeue_set_aside()
        self._wake.set()
        return count

    async def _run(self) -> None:
        failures = 0
        while True:
            await self._wake.wait()
            self._wake.clear()
            while True:
                try:
                    if await self.flush_once() == 0:
                        failures = 0
                        self.outage.ended()
                        await self.totals()
                        break
                    failures = 0
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    failures += 1
                    self.failed_flushes += 1
                    await self.note_outage(exc)
                    await self.totals()
                    await asyncio.sleep(self._backoff.backoff_s(min(failures, 10)))

    async def note_outage(self, exc: BaseException) -> None:
        """The store could not be reached (here or by a caller that queued instead)."""
        waiting, oldest = await self.file.waiting()
        self.outage.failed(store_error(exc)[:200], waiting, oldest)

    async def drain(self, deadline_s: float) -> int:
        """Flush until empty or the deadline; returns how many writes stay for the next start."""
        give_up_at = time.monotonic() + deadline_s
        while time.monotonic() < give_up_at:
            try:
                remaining = give_up_at - time.monotonic()
                async with asyncio.timeout(max(remaining, 0.01)):
                    if await self.flush_once() == 0:
                        break
            except (TimeoutError, Exception) as exc:
                await self.note_outage(exc)
                await asyncio.sleep(min(0.2, max(give_up_at - time.monotonic(), 0)))
        return await self.pending()

    async def aclose(self, deadline_s: float = 5.0) -> int:
        """Stop the flusher, drain with a deadline, close the file. Returns writes left."""
        task, self._task = self._task, None
        await cancel_and_wait([task])
        if self._file is None:
            return 0
        left = await self.drain(deadline_s)
        if left:
            logger.warning("%d memory writes stay in %s for the next start", left, self.path)
        await self.close()
        return left

    async def close(self) -> None:
        """Close the file without flushing (what is in it stays for the next start)."""
        if self._file is not None:
            await self._file.aclose()
            self._file = None
