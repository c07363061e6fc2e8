"""PostgREST (Supabase's REST API) for the memory tables, over real PostgreSQL.

It does what PostgREST does with each request, for the part of its API the Supabase store
uses: the gateway checks the ``apikey``; the ``Authorization`` JWT is verified with the
project's secret and its ``role`` claim becomes the database role for one transaction, with
the claims in ``request.jwt.claims`` (``SET LOCAL ROLE``, ``set_config``); the query runs
there, so the migrations' triggers and row-level security decide, not this file. Errors
come back as PostgREST's bodies and statuses. It also checks the requests' shape
(``on_conflict``, ``Prefer``, ``columns``, reads scoped by user) and answers anything else
with a 400 naming the reason, so a drifting client fails the test.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import asyncpg
import jwt
from aiohttp import web

from .threaded import ThreadedServer

COLUMNS = {
    "memories": {
        "user_id": "text",
        "category": "text",
        "key": "text",
        "value": "text",
        "created_at": "timestamptz",
        "updated_at": "timestamptz",
    },
    "memory_tombstones": {
        "user_id": "text",
        "category": "text",
        "key": "text",
        "deleted_at": "timestamptz",
    },
}
CONFLICT = ("user_id", "category", "key")
ROLES = ("anon", "authenticated", "service_role")

# Supabase's platform roles: the API switches to them; service_role bypasses RLS
PLATFORM_ROLES = """
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'anon') THEN
        CREATE ROLE anon NOLOGIN NOINHERIT;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') THEN
        CREATE ROLE authenticated NOLOGIN NOINHERIT;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'service_role') THEN
        CREATE ROLE service_role NOLOGIN NOINHERIT BYPASSRLS;
    END IF;
END
$$;
GRANT USAGE ON SCHEMA public TO anon, authenticated, service_role;
GRANT SELECT, INSERT, UPDATE, DELETE ON public.memories, public.memory_tombstones
    TO anon, authenticated, service_role;
"""


def platform_key(secret: str, role: str) -> str:
    """An API key as Supabase issues them: a long-lived JWT naming its role."""
    return jwt.encode({"role": role, "iss": "supabase"}, secret, algorithm="HS256")


def _status(sqlstate: str, role: str) -> int:
    """PostgREST's mapping of SQLSTATE to HTTP status."""
    if sqlstate == "42501":
        return 401 if role == "anon" else 403
    exact = {"23503": 409, "23505": 409, "25006": 405, "42883": 404, "42P01": 404, "P0001": 400}
    if sqlstate in exact:
        return exact[sqlstate]
    by_class = {"08": 503, "53": 503, "54": 413, "0L": 403, "0P": 403, "28": 403, "22": 400}
    if sqlstate[:2] in by_class:
        return by_class[sqlstate[:2]]
    if sqlstate[:2] in {"09", "25", "2D", "38", "39", "3B", "40", "55", "57", "58", "F0", "HV"}:
        return 500
    if sqlstate[:2] in {"P0", "XX"}:
        return 500
    return 400


@dataclass
class Seen:
    method: str
    table: str
    params: list[tuple[str, str]]
    prefer: set[str]
    role: str
    body: Any = None


class ContractError(ValueError):
    """The request is not one the Supabase store is meant to send."""


class PostgrestServer(ThreadedServer):
    thread_name = "postgrest"

    def __init__(self, dsn: str, jwt_secret: str) -> None:
        super().__init__()
        self.dsn = dsn
        self.jwt_secret = jwt_secret
        self.seen: list[Seen] = []
        self.down = False  # answer as PostgREST does when it has lost the database
        self.anon_key = platform_key(jwt_secret, "anon")
        self.service_key = platform_key(jwt_secret, "service_role")
        self._pg: asyncpg.Pool | None = None

    def reset(self) -> None:
        with self._lock:
            self.seen.clear()
            self.down = False

    def requests(self) -> list[Seen]:
        with self._lock:
            return list(self.seen)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/rest/v1/{table}", self._handle)
        return app

    async def serve(self) -> None:
        self._pg = await asyncpg.create_pool(self.dsn, min_size=1, max_size=8)
        await self._pg.execute(PLATFORM_ROLES)
        await super().serve()

    async def shutdown(self) -> None:
        await super().shutdown()
        if self._pg is not None:
            await self._pg.close()

    # -- the gateway and the JWT ---------------------------------------------------------

    def _claims(self, request: web.Request) -> dict[str, Any] | web.Response:
        if request.headers.get("apikey") not in (self.anon_key, self.service_key):
            return web.json_response(
                {"message": "Invalid API key", "hint": "Double check your Supabase `anon` key"},
                status=401,
            )
        authorization = request.headers.get("Authorization", "")
        if not authorization:
            return {"role": "anon"}
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return _error(401, "PGRST301", "Expected a Bearer token")
        try:
            claims: dict[str, Any] = jwt.decode(
                token, self.jwt_secret, algorithms=["HS256"], options={"verify_aud": False}
            )
        except jwt.ExpiredSignatureError:
            return _error(401, "PGRST303", "JWT expired")
        except jwt.InvalidTokenError as exc:
            return _error(401, "PGRST301", f"JWSError {exc}")
        if claims.get("role") not in ROLES:
            return _error(401, "PGRST303", f"role {claims.get('role')!r} does not exist")
        return claims

    # -- requests ------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        table = request.match_info["table"]
        claims = self._claims(request)
        if isinstance(claims, web.Response):
            return claims
        role = str(claims["role"])
        if table not in COLUMNS:
            return _error(404, "42P01", f'relation "public.{table}" does not exist')
        prefer = {p.strip() for p in request.headers.get("Prefer", "").split(",") if p.strip()}
        body = await request.json() if request.can_read_body else None
        seen = Seen(request.method, table, list(request.query.items()), prefer, role, body)
        with self._lock:
            self.seen.append(seen)
            down = self.down
        if down:
            return _error(503, "PGRST001", "Database client error. Retrying the connection.")
        try:
            if request.method == "POST":
                sql, args = _upsert(table, seen)
                await self._run(claims, sql, args)
                return web.Response(status=201)
            if request.method == "GET":
                sql, args = _select(table, seen)
                rows = await self._run(claims, sql, args)
                return web.Response(text=rows or "[]", content_type="application/json")
        except ContractError as exc:
            return _error(400, "contract", str(exc))
        except asyncpg.PostgresError as exc:
            code = exc.sqlstate or "XX000"
            body = {
                "code": code,
                "message": str(exc),
                "details": getattr(exc, "detail", None),
                "hint": getattr(exc, "hint", None),
            }
            return web.json_response(body, status=_status(code, role))
        return _error(405, "contract", f"{request.method} is not part of the contract")

    async def _run(self, claims: dict[str, Any], sql: str, args: list[Any]) -> str | None:
        assert self._pg is not None
        async with self._pg.acquire() as conn, conn.transaction():
            await conn.execute(f"SET LOCAL ROLE {claims['role']}")  # one of ROLES
            await conn.execute(
                "SELECT set_config('request.jwt.claims', $1, true)", json.dumps(claims)
            )
            result: str | None = await conn.fetchval(sql, *args)
            return result


def _upsert(table: str, seen: Seen) -> tuple[str, list[Any]]:
    params = dict(seen.params)
    columns = params.pop("columns", None)
    if params != {"on_conflict": ",".join(CONFLICT)}:
        raise ContractError(f"upsert must send exactly on_conflict=user_id,category,key: {params}")
    if "resolution=merge-duplicates" not in seen.prefer or "return=minimal" not in seen.prefer:
        raise ContractError(
            f"upsert needs Prefer resolution=merge-duplicates,return=minimal: {seen.prefer}"
        )
    if not isinstance(seen.body, list) or not seen.body:
        raise ContractError("upsert body must be a non-empty JSON array")
    names = list(COLUMNS[table])
    if columns is not None and set(columns.replace('"', "").split(",")) != set(names):
        raise ContractError(f"columns= must list the table's columns, got {columns}")
    for row in seen.body:
        if set(row) != set(names):
            raise ContractError(f"row columns {sorted(row)} are not {sorted(names)}")
    listed = ", ".join(names)
    updates = ", ".join(f"{c} = excluded.{c}" for c in names if c not in CONFLICT)
    sql = (
        f"INSERT INTO public.{table} ({listed}) "
        f"SELECT {listed} FROM json_populate_recordset(NULL::public.{table}, $1::json) "
        f"ON CONFLICT ({', '.join(CONFLICT)}) DO UPDATE SET {updates} "
        "RETURNING NULL"
    )
    return sql, [json.dumps(seen.body)]


def _select(table: str, seen: Seen) -> tuple[str, list[Any]]:
    if table != "memories":
        raise ContractError("only memories is read")
    params = dict(seen.params)
    if params.get("select") not in ("*", "user_id"):
        raise ContractError(f"unexpected select={params.get('select')}")
    filters = [(k, v) for k, v in seen.params if k not in ("select", "order", "limit")]
    if not any(k == "user_id" for k, _ in filters) and params.get("limit") != "1":
        raise ContractError("every memory read must be scoped by user_id")
    where, args = [], []
    for column, expression in filters:
        kind = COLUMNS[table].get(column)
        if kind is None:
            raise ContractError(f"column {column} does not exist")
        op, _, value = expression.partition(".")
        if op == "eq":
            args.append(value)
            where.append(f"{column} = ${len(args)}::{kind}")
        elif op == "in":
            args.append(_in_list(value))
            where.append(f"{column} = ANY(${len(args)}::{kind}[])")
        else:
            raise ContractError(f"operator {op} is not part of the contract")
    sql = f"SELECT {params['select']} FROM public.{table}"
    if where:
        sql += " WHERE " + " AND ".join(where)
    if "order" in params:
        column, _, direction = params["order"].partition(".")
        if column not in COLUMNS[table] or direction not in ("asc", "desc"):
            raise ContractError(f"bad order={params['order']}")
        sql += f" ORDER BY {column} {direction}"
    if "limit" in params:
        sql += f" LIMIT {int(params['limit'])}"
    return f"SELECT coalesce(json_agg(r), '[]')::text FROM ({sql}) r", args


def _in_list(text: str) -> list[str]:
    """Parse PostgREST's ``(a,"b,c","d\\"e")`` list syntax."""
    if not (text.startswith("(") and text.endswith(")")):
        raise ContractError(f"bad in() list {text!r}")
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


def _error(status: int, code: str, message: str) -> web.Response:
    body = {"code": code, "message": message, "details": None, "hint": None}
    return web.json_response(body, status=status)
