"""Supabase through supabase-py's async client (PostgREST over HTTPS).

The tables' triggers (``supabase/migrations/``) keep the newest write and let a tombstone
delete what it covers, so plain ``on_conflict`` upserts are safe to replay and a delete is
one request.

With ``SUPABASE_JWT_SECRET`` every request carries a short-lived token signed for the one
user it is about (``sub`` = the participant identity, role ``authenticated``), beside the
anon key: row-level security then holds on the agent's own path, and a wrong filter cannot
reach another user's rows. With the service-role key alone (admin work) RLS is bypassed and
every query scopes itself by ``user_id``.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
import jwt
from cachetools import TTLCache
from postgrest import APIError, AsyncRequestBuilder
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


class UserTokens:
    """Short-lived HS256 tokens, one per user, signed as Supabase Auth signs them and reused
    until a minute before they expire."""

    def __init__(self, secret: str, *, ttl_s: int = 600) -> None:
        self._secret = secret
        self.ttl_s = ttl_s
        self._tokens: TTLCache[str, str] = TTLCache(maxsize=4096, ttl=max(ttl_s - 60, 1))

    def __repr__(self) -> str:
        return f"UserTokens(ttl_s={self.ttl_s})"

    def for_user(self, user_id: str) -> str:
        token = self._tokens.get(user_id)
        if token is None:
            now = int(time.time())
            claims = {
                "sub": user_id,
                "role": "authenticated",
                "aud": "authenticated",
                "iat": now,
                "exp": now + self.ttl_s,
            }
            token = jwt.encode(claims, self._secret, algorithm="HS256")
            self._tokens[user_id] = token
        return token


class SupabaseStore:
    name = "supabase"

    def __init__(
        self,
        client: AsyncClient,
        http: httpx.AsyncClient,
        meter: Meter,
        tokens: UserTokens | None = None,
    ) -> None:
        self.client = client
        self.http = http
        self.meter = meter
        self.tokens = tokens

    @classmethod
    async def open(
        cls,
        url: str,
        key: str,
        meter: Meter,
        *,
        jwt_secret: str | None = None,
        timeout_s: float = 5.0,
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
        # the outbox and the pool own retries: postgrest-py's own would sleep 1, 2, 4 s
        # inside a recall that has 150 ms
        client.postgrest.retry_enabled = False
        tokens = UserTokens(jwt_secret) if jwt_secret else None
        return cls(client, http, meter, tokens)

    def _table(self, table: str, user_id: str | None) -> AsyncRequestBuilder:
        """A request on ``table`` sent as ``user_id`` (with per-user tokens), sharing the
        one HTTP client."""
        postgrest = self.client.postgrest
        headers = httpx.Headers(postgrest.headers)
        if self.tokens is not None and user_id is not None:
            headers["Authorization"] = f"Bearer {self.tokens.for_user(user_id)}"
        return AsyncRequestBuilder(
            postgrest.session,
            postgrest.base_url.joinpath(table),
            headers,
            postgrest.basic_auth,
            retry_enabled=False,
        )

    async def apply(self, writes: Sequence[Write]) -> None:
        writes = newest_per_key(writes)
        if self.tokens is None:
            await self._apply(None, writes)
            return
        # each user's writes go with that user's token, so RLS checks every row
        by_user = sorted(writes, key=lambda w: w.user_id)
        for user_id, group in itertools.groupby(by_user, key=lambda w: w.user_id):
            await self._apply(user_id, list(group))

    async def _apply(self, user_id: str | None, writes: Sequence[Write]) -> None:
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
        async with self.meter.guard(self.is_refusal):
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
                # the tombstone's trigger deletes the memory: one request for all deletes
                await (
                    self._table(TOMBSTONES, user_id)
                    .upsert(stamps, on_conflict=CONFLICT, returning=ReturnMethod.minimal)
                    .execute()
                )
            if saves:
                await (
                    self._table(TABLE, user_id)
                    .upsert(saves, on_conflict=CONFLICT, returning=ReturnMethod.minimal)
                    .execute()
                )

    async def get_many(self, user_id: str, keys: Sequence[tuple[Category, str]]) -> list[Memory]:
        if not keys:
            return []
        wanted = set(keys)
        async with self.meter.guard(self.is_refusal):
            response = await (
                self._table(TABLE, user_id)
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
        query = self._table(TABLE, user_id).select("*").eq("user_id", user_id)
        if category is not None:
            query = query.eq("category", category)
        async with self.meter.guard(self.is_refusal):
            response = await query.order("updated_at", desc=True).limit(limit).execute()
        return [_memory(row) for row in response.data]

    def is_outage(self, exc: BaseException) -> bool:
        if isinstance(exc, httpx.TransportError | TimeoutError | OSError):
            return True
        # PostgREST relays PostgreSQL's SQLSTATE or its own PGRST code; a gateway, a status
        return isinstance(exc, APIError) and is_outage_code(exc.code)

    def is_refusal(self, exc: BaseException) -> bool:
        """The store answered and refused this request; it is up."""
        return isinstance(exc, APIError) and not self.is_outage(exc)

    async def ping(self) -> None:
        await self._table(TABLE, None).select("user_id").limit(1).execute()

    async def aclose(self) -> None:
        await self.http.aclose()
