"""A contract double of PostgREST (Supabase's REST API) for the memory tables.

It is a double, not a database: it checks that supabase-py sends exactly the requests the
Supabase store means to send (paths, filters, ``Prefer`` headers, ``on_conflict``,
``apikey``), answers with PostgREST's response shapes, and keeps rows in memory with the
same newest-write-wins and tombstone rules as the migration's trigger. Anything it does
not expect gets a 400 with the reason, so a drifting client fails the test.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiohttp import web

from tests.support.threaded import LoopThread

TABLES = {
    "memories": ("user_id", "category", "key", "value", "created_at", "updated_at"),
    "memory_tombstones": ("user_id", "category", "key", "deleted_at"),
}
CONFLICT = "user_id,category,key"


@dataclass
class Seen:
    method: str
    table: str
    params: list[tuple[str, str]]
    prefer: set[str]
    body: Any = None


@dataclass
class PostgrestDouble:
    api_key: str
    rows: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    tombstones: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    down: bool = False  # answer 503 to everything, as during an outage
    port: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._thread: LoopThread | None = None
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> PostgrestDouble:
        self._thread = LoopThread("postgrest-double")
        self._thread.run(self._startup())
        return self

    def stop(self) -> None:
        if self._thread is not None and self._runner is not None:
            self._thread.run(self._runner.cleanup())
            self._thread.stop()

    def reset(self) -> None:
        with self._lock:
            self.rows.clear()
            self.tombstones.clear()
            self.seen.clear()
            self.down = False

    async def _startup(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/rest/v1/{table}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None and server.sockets
        self.port = server.sockets[0].getsockname()[1]

    # -- request handling ---------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        table = request.match_info["table"]
        if request.headers.get("apikey") != self.api_key:
            return _error(401, "missing or wrong apikey header")
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return _error(401, "missing or wrong Authorization header")
        if table not in TABLES:
            return _error(404, f"relation public.{table} does not exist")
        prefer = {p.strip() for p in request.headers.get("Prefer", "").split(",") if p.strip()}
        body = await request.json() if request.can_read_body else None
        seen = Seen(request.method, table, list(request.query.items()), prefer, body)
        with self._lock:
            self.seen.append(seen)
            if self.down:
                return _error(503, "service unavailable (injected)")
            try:
                if request.method == "POST":
                    return self._upsert(table, seen)
                if request.method == "GET":
                    return self._select(table, seen)
                if request.method == "DELETE":
                    return self._delete(table, seen)
            except ValueError as exc:
                return _error(400, str(exc))
        return _error(405, f"{request.method} is not part of the contract")

    def _upsert(self, table: str, seen: Seen) -> web.Response:
        params = dict(seen.params)
        columns = params.pop("columns", None)
        if params != {"on_conflict": CONFLICT}:
            raise ValueError(f"upsert must send exactly on_conflict={CONFLICT}, got {params}")
        if columns is not None and set(columns.replace('"', "").split(",")) != set(TABLES[table]):
            raise ValueError(f"columns= must list the table's columns, got {columns}")
        if "resolution=merge-duplicates" not in seen.prefer or "return=minimal" not in seen.prefer:
            raise ValueError(
                f"upsert needs Prefer resolution=merge-duplicates,return=minimal: {seen.prefer}"
            )
        if not isinstance(seen.body, list) or not seen.body:
            raise ValueError("upsert body must be a non-empty JSON array")
        keys = set()
        for row in seen.body:
            if set(row) != set(TABLES[table]):
                raise ValueError(f"row columns {sorted(row)} are not {sorted(TABLES[table])}")
            slot = (row["user_id"], row["category"], row["key"])
            if slot in keys:
                raise ValueError("ON CONFLICT DO UPDATE command cannot affect row a second time")
            keys.add(slot)
        for row in seen.body:
            slot = (row["user_id"], row["category"], row["key"])
            if table == "memory_tombstones":
                old = self.tombstones.get(slot)
                if old is None or _t(row["deleted_at"]) > _t(old["deleted_at"]):
                    self.tombstones[slot] = dict(row)
                continue
            tomb = self.tombstones.get(slot)
            if tomb is not None and _t(tomb["deleted_at"]) > _t(row["updated_at"]):
                continue  # the trigger's tombstone rule
            old = self.rows.get(slot)
            if old is not None:
                if _t(row["updated_at"]) < _t(old["updated_at"]):
                    continue  # the trigger's newest-wins rule
                row = {**row, "created_at": old["created_at"]}
            self.rows[slot] = dict(row)
        return web.Response(status=201)

    def _select(self, table: str, seen: Seen) -> web.Response:
        if table != "memories":
            raise ValueError("only memories is read")
        filters = [(k, v) for k, v in seen.params if k not in ("select", "order", "limit")]
        params = dict(seen.params)
        if params.get("select") not in ("*", "user_id"):
            raise ValueError(f"unexpected select={params.get('select')}")
        if not any(k == "user_id" for k, _ in filters) and params.get("limit") != "1":
            raise ValueError("every memory read must be scoped by user_id")
        rows = [r for r in self.rows.values() if all(_match(r, k, v) for k, v in filters)]
        if "order" in params:
            column, _, direction = params["order"].partition(".")
            rows.sort(key=lambda r: _t(r[column]), reverse=direction == "desc")
        if "limit" in params:
            rows = rows[: int(params["limit"])]
        return web.json_response(rows)

    def _delete(self, table: str, seen: Seen) -> web.Response:
        if "return=minimal" not in seen.prefer:
            raise ValueError("delete needs Prefer return=minimal")
        filters = seen.params
        if not {k for k, _ in filters} >= {"user_id", "category", "key"}:
            raise ValueError("a delete must name user_id, category and key")
        for slot, row in list(self.rows.items()):
            if all(_match(row, k, v) for k, v in filters):
                del self.rows[slot]
        return web.Response(status=204)


def _t(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _in_list(text: str) -> list[str]:
    """Parse PostgREST's ``(a,"b,c","d\\"e")`` list syntax."""
    if not (text.startswith("(") and text.endswith(")")):
        raise ValueError(f"bad in() list {text!r}")
    items, current, quoted, escaped = [], "", False, False
    for char in text[1:-1]:
        if escaped:
            current += char
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            items.append(current)
            current = ""
        else:
            current += char
    items.append(current)
    return items


def _match(row: dict[str, Any], column: str, expression: str) -> bool:
    op, _, value = expression.partition(".")
    if column not in row:
        raise ValueError(f"column {column} does not exist")
    if op == "eq":
        return str(row[column]) == value
    if op == "in":
        return str(row[column]) in _in_list(value)
    if op == "lte":
        return _t(row[column]) <= _t(value)
    raise ValueError(f"operator {op} is not part of the contract")


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"message": message, "code": str(status)}, status=status)
