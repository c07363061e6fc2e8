"""Supabase through supabase-py's async client (PostgREST over HTTPS).

The table's trigger (``supabase/migrations/0001_memories.sql``) keeps the newest write, so
a plain ``on_conflict`` upsert is safe to replay.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
from postgrest import APIError
from postgrest.types import ReturnMethod

from pool import Meter
from supabase import AsyncClient, AsyncClientOptions

from ..model import Category, Memory, Write, newest_per_key
from .outage import is_outage_code

TABLE = "memories"
TOMBSTONES = "memory_tombstones"
CONFLICT = "user_id,category,key"


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def _ts(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def _memory(row: Any) -> Memory:
    return Memory(
        row["user_id"],
        row["category"],  # type: ignore[arg-type]
        row["key"],
        row["value"],
        _ts(row["created_at"]),
        _ts(row["updated_at"]),
    )


class SupabaseStore:
    name = "supabase"

    def __init__(self, client: AsyncClient, http: httpx.AsyncClient, meter: Meter) -> None:
        self.client = client
        self.http = http
        self.meter = meter

    @classmethod
    async def open(
        cls, url: str, key: str, meter: Meter, *, timeout_s: float = 5.0
    ) -> SupabaseStore:
        # one HTTP client for the process: a client per request exhausts file descriptors
        http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s, connect=timeout_s),
            limits=httpx.Limits(max_connections=20, keepalive_expiry=60),
        )
        options = AsyncClientOptions(
            httpx_client=http, auto_refresh_token=False, persist_session=False
        )
        client = await AsyncClient.create(url, key, options)
        return cls(client, http, meter)

    async def apply(self, writes: Sequence[Write]) -> None:
        writes = newest_per_key(writes)
        saves = [
            {
                "user_id": w.user_id,
                "category": w.category,
                "key": w.key,
                "value": w.value,
                "created_at": _iso(w.written_at),
                "updated_at": _iso(w.written_at),
            }
            for w in writes
            if w.value is not None
        ]
        deletes = [w for w in writes if w.value is None]
        async with self.meter.guard():
            if deletes:
                stamps = [
                    {
                        "user_id": w.user_id,
                        "category": w.category,
                        "key": w.key,
                        "deleted_at": _iso(w.written_at),
                    }
                    for w in deletes
                ]
                await (
                    self.client.table(TOMBSTONES)
                    .upsert(stamps, on_conflict=CONFLICT, returning=ReturnMethod.minimal)
                    .execute()
                )
                for w in deletes:
                    await (
                        self.client.table(TABLE)
                        .delete(returning=ReturnMethod.minimal)
                        .eq("user_id", w.user_id)
                        .eq("category", w.category)
                        .eq("key", w.key)
                        .lte("updated_at", _iso(w.written_at))
                        .execute()
                    )
            if saves:
                await (
                    self.client.table(TABLE)
                    .upsert(saves, on_conflict=CONFLICT, returning=ReturnMethod.minimal)
                    .execute()
                )

    async def get_many(self, user_id: str, keys: Sequence[tuple[Category, str]]) -> list[Memory]:
        if not keys:
            return []
        wanted = set(keys)
        async with self.meter.guard():
            response = await (
                self.client.table(TABLE)
                .select("*")
                .eq("user_id", user_id)
                .in_("key", sorted({key for _, key in keys}))
                .execute()
            )
        rows = [_memory(row) for row in response.data]
        return [m for m in rows if (m.category, m.key) in wanted]

    async def recall(
        self, user_id: str, category: Category | None = None, limit: int = 200
    ) -> list[Memory]:
        query = self.client.table(TABLE).select("*").eq("user_id", user_id)
        if category is not None:
            query = query.eq("category", category)
        async with self.meter.guard():
            response = await query.order("updated_at", desc=True).limit(limit).execute()
        return [_memory(row) for row in response.data]

    def is_outage(self, exc: BaseException) -> bool:
        if isinstance(exc, httpx.TransportError | TimeoutError | OSError):
            return True
        # PostgREST relays PostgreSQL's SQLSTATE or its own PGRST code; a gateway, a status
        return isinstance(exc, APIError) and is_outage_code(exc.code)

    async def ping(self) -> None:
        await self.client.table(TABLE).select("user_id").limit(1).execute()

    async def aclose(self) -> None:
        await self.http.aclose()
