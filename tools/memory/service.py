"""The memory service the agent calls: validated, rate-limited, retried, and never losing
a save."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiolimiter import AsyncLimiter

from pool import CircuitOpenError, ConnectionPool, RetryPolicy

from .model import (
    CATEGORIES,
    MAX_BATCH,
    Category,
    InvalidMemory,
    Memory,
    MemoryServiceError,
    MemoryStore,
    Write,
    check_category,
    check_key,
    check_user,
    delete_write,
    save_write,
    store_error,
    store_retryable,
)

if TYPE_CHECKING:
    from ..settings import Settings
    from .outbox import Outbox

logger = logging.getLogger(__name__)


# -- the service ----------------------------------------------------------------------------

# (user_id, the categories that changed)
ChangeListener = Callable[[str, frozenset[Category]], Awaitable[None]]


@dataclass(frozen=True)
class OpResult:
    ok: bool
    value: Any = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        if self.ok:
            return {"ok": True, "value": self.value}
        return {"ok": False, "error": self.error}


class MemoryService:
    """What the agent calls: validated, rate-limited, retried, and never losing a save.

    A save the user waits on goes straight to the store; if the store is down it is put in
    the durable outbox instead and reported as queued, so no data is lost.
    """

    def __init__(
        self,
        pool: ConnectionPool,
        settings: Settings,
        store_for: Callable[[], Awaitable[MemoryStore]],
        outbox: Outbox | None = None,
    ) -> None:
        self.pool = pool
        self.settings = settings
        self._store_for = store_for
        self.outbox = outbox
        self._limiter = AsyncLimiter(settings.memory_ops_per_second, 1.0)
        self._in_flight = asyncio.Semaphore(settings.memory_max_in_flight)
        # every store operation is idempotent (stamped upserts, deletes, reads): safe to retry
        self._retry = RetryPolicy.from_settings(
            settings, max_retries=2, base_s=0.05, max_delay_s=0.5, deadline_s=2.0
        )
        self._listeners: list[ChangeListener] = []

    async def _is_outage(self, exc: BaseException) -> bool:
        if isinstance(exc, CircuitOpenError):
            return True
        try:
            store = await self.store()
        except Exception:  # cannot even open the store: that is an outage
            return True
        return store.is_outage(exc)

    async def notify_flushed(self, writes: list[Write]) -> None:
        await self._changed(writes)

    async def aclose(self, deadline_s: float = 5.0) -> int:
        """Flush the outbox within the deadline; returns writes left for the next start."""
        if self.outbox is None:
            return 0
        return await self.outbox.aclose(deadline_s)

    def on_change(self, listener: ChangeListener) -> None:
        """Call ``listener(user_id, categories)`` after that user's memories change."""
        self._listeners.append(listener)

    async def store(self) -> MemoryStore:
        return await self._store_for()

    async def _call(self, fn: Callable[[MemoryStore], Awaitable[Any]], cost: int = 1) -> Any:
        async with self._in_flight:
            await self._limiter.acquire(min(cost, self._limiter.max_rate))
            store = await self.store()
            return await self._retry.call(lambda: fn(store), retryable=store_retryable(store))

    async def _changed(self, writes: Sequence[Write]) -> None:
        changed: dict[str, set[Category]] = {}
        for write in writes:
            changed.setdefault(write.user_id, set()).add(write.category)
        for user_id, categories in changed.items():
            for listener in self._listeners:
                try:
                    await listener(user_id, frozenset(categories))
                except Exception as exc:  # a stale cache must not fail a save
                    logger.warning("memory change listener failed: %s", store_error(exc))

    async def save(self, user_id: str, category: object, key: object, value: object) -> str:
        """Save now; if the store is unreachable, queue durably. Returns "saved" or "queued"."""
        write = save_write(user_id, category, key, value)
        return await self._apply_or_queue([write])

    async def forget(self, user_id: str, category: object, key: object) -> str:
        write = delete_write(user_id, category, key)
        return await self._apply_or_queue([write])

    async def _apply_or_queue(self, writes: list[Write]) -> str:
        try:
            await self._call(lambda store: store.apply(writes), cost=len(writes))
        except Exception as exc:
            if self.outbox is None or not await self._is_outage(exc):
                raise
            await self.outbox.put(writes)
            await self.outbox.note_outage(exc)
            return "queued"
        await self._changed(writes)
        return "saved"

    async def save_later(self, writes: Sequence[Write]) -> None:
        """Background writes: durable in the outbox before this returns, flushed in batches."""
        if self.outbox is None:
            raise MemoryServiceError("No outbox is configured for background writes.")
        await self.outbox.put(list(writes))

    async def get(self, user_id: str, category: object, key: object) -> Memory | None:
        pair = (check_category(category), check_key(key))
        found = await self._call(lambda store: store.get_many(check_user(user_id), [pair]))
        return found[0] if found else None

    async def recall(
        self, user_id: str, category: object | None = None, key: object | None = None
    ) -> list[Memory]:
        """By key (with its category), by category, or all of the user's memories."""
        user_id = check_user(user_id)
        if key is not None:
            if category is None:
                # the key in every category: one query, exact however many memories there are
                wanted = check_key(key)
                pairs = [(name, wanted) for name in CATEGORIES]
                exact = await self._call(lambda store: store.get_many(user_id, pairs))
                if exact:
                    return list(exact)
                # "Name" asked as "name": among the newest, as the model spells keys loosely
                folded = wanted.casefold()
                return [m for m in await self.recall(user_id) if m.key.casefold() == folded]
            found = await self.get(user_id, category, key)
            return [found] if found else []
        cat = check_category(category) if category is not None else None
        result: list[Memory] = await self._call(lambda store: store.recall(user_id, cat))
        return result

    async def batch(self, user_id: str, ops: Sequence[object]) -> list[OpResult]:
        """Run save/get/delete items: answers in input order, a bad item fails alone.

        All saves and deletes go in one round trip, all gets in one query.
        """
        user_id = check_user(user_id)
        if len(ops) > MAX_BATCH:
            raise InvalidMemory(f"A batch holds at most {MAX_BATCH} operations, got {len(ops)}.")
        results: list[OpResult | None] = [None] * len(ops)
        writes: list[tuple[int, Write]] = []
        gets: list[tuple[int, tuple[Category, str]]] = []
        for index, op in enumerate(ops):
            try:
                if not isinstance(op, dict):
                    raise InvalidMemory("Each operation must be an object with a 'type'.")
                kind = op.get("type")
                if kind == "save":
                    write = save_write(user_id, op.get("category"), op.get("key"), op.get("value"))
                    writes.append((index, write))
                elif kind == "delete":
                    writes.append((index, delete_write(user_id, op.get("category"), op.get("key"))))
                elif kind == "get":
                    gets.append(
                        (index, (check_category(op.get("category")), check_key(op.get("key"))))
                    )
                else:
                    raise InvalidMemory(
                        f"Unknown operation type {kind!r}: use save, get or delete."
                    )
            except InvalidMemory as exc:
                results[index] = OpResult(False, error=str(exc))

        stored = await self._batch_read(results, gets, user_id)
        await self._batch_write(results, writes)
        # answer each get as if the batch ran item by item: an earlier write in the
        # batch wins over what the store held before it
        for index, pair in gets:
            if results[index] is not None:
                continue
            earlier = [w for i, w in writes if i < index and (w.category, w.key) == pair]
            value = earlier[-1].value if earlier else stored.get(pair)
            results[index] = OpResult(True, value)
        return [r if r is not None else OpResult(False, error="not run") for r in results]

    async def _batch_read(
        self,
        results: list[OpResult | None],
        gets: list[tuple[int, tuple[Category, str]]],
        user_id: str,
    ) -> dict[tuple[Category, str], str]:
        if not gets:
            return {}
        try:
            found: list[Memory] = await self._call(
                lambda store: store.get_many(user_id, [pair for _, pair in gets]), cost=len(gets)
            )
        except Exception as exc:
            for index, _ in gets:
                results[index] = OpResult(False, error=store_error(exc))
            return {}
        return {(m.category, m.key): m.value for m in found}

    async def _batch_write(
        self, results: list[OpResult | None], writes: list[tuple[int, Write]]
    ) -> None:
        if not writes:
            return
        try:
            outcome = await self._apply_or_queue([w for _, w in writes])
        except Exception as exc:
            for index, _ in writes:
                results[index] = OpResult(False, error=store_error(exc))
            return
        for index, _ in writes:
            results[index] = OpResult(True, outcome)


async def batch_memory_operations(
    memory: MemoryService, user_id: str, ops: Sequence[object]
) -> list[dict[str, Any]]:
    """The batch API as plain dicts, one per operation, in input order:
    ``{"ok": True, "value": ...}`` or ``{"ok": False, "error": "..."}``."""
    return [result.as_dict() for result in await memory.batch(user_id, ops)]


async def open_memory_service(pool: ConnectionPool, settings: Settings) -> MemoryService:
    """The memory service of this process: the pool's store plus a started outbox."""
    from .outbox import Outbox
    from .stores import memory_store

    async def store() -> MemoryStore:
        return await memory_store(pool, settings)

    service = MemoryService(pool, settings, store)
    outbox = Outbox(settings.memory_outbox_path, store, on_flushed=service.notify_flushed)
    service.outbox = await outbox.open()
    outbox.start()
    return service
