"""`make bench-failover`: how long the stores' failovers cost, and what they lose.

- PostgreSQL: a primary and a synchronous streaming replica (Debian's packages, throwaway
  directories). A save every 10 ms through the memory service, with `DATABASE_URL` naming
  both hosts; the primary is killed (SIGKILL) and the replica promoted 1 s later, as an
  orchestrator would once it noticed. Measured: primary lost → the first save stored
  directly on the new primary, → the saves queued meanwhile all replayed, and writes lost.
- Redis: a master, a replica and three sentinels (down-after 1 s). A greeting lookup every
  10 ms through the pool's cache; the master is killed. Measured: master lost → the first
  hit from the shared layer again, and lookups that failed (must be 0).

    python -m bench.failover [--out DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg

from bench.provenance import stamp, stamp_line
from bench.readme import replace_section
from pool import get_pool
from testbed.postgres import PostgresServer
from testbed.redis_sentinel import MASTER_NAME, RedisSentinelCluster
from tools.conversation import greeting_for
from tools.memory import Memory, apply_migration, open_memory_service
from tools.settings import Settings

HERE = Path(__file__).resolve().parent
SAVES = 1000
KILL_AT = 200
PROMOTE_AFTER_S = 1.0  # an orchestrator's detection time, not ours


def base_settings(workdir: Path) -> Settings:
    return Settings(
        openai_api_key="sk-bench-not-a-real-key",
        openai_base_url="http://127.0.0.1:9/v1",  # never reached: no LLM call is made
        sqlite_path=str(workdir / "memory.db"),
        memory_outbox_path=str(workdir / "outbox.db"),
        health_tick_s=3600,
    )


async def postgres_failover(workdir: Path) -> dict[str, Any]:
    primary = PostgresServer(options={"synchronous_commit": "on", "fsync": "on"}).start()
    replica: PostgresServer | None = None
    try:
        conn = await asyncpg.connect(primary.dsn)
        try:
            await apply_migration(conn)
        finally:
            await conn.close()
        replica = PostgresServer.replica_of(primary).start()
        conn = await asyncpg.connect(primary.dsn)
        await conn.execute("ALTER SYSTEM SET synchronous_standby_names = '*'")
        await conn.execute("SELECT pg_reload_conf()")
        await conn.close()
        hosts = f"postgresql://postgres@127.0.0.1:{primary.port},127.0.0.1:{replica.port}/postgres"
        settings = replace(base_settings(workdir), memory_backend="postgres", database_url=hosts)
        pool = get_pool(settings)
        memory = await open_memory_service(pool, settings)
        assert memory.outbox is not None
        lost_at = first_direct = drained = 0.0
        queued = 0
        outbox = memory.outbox

        async def promote_later() -> None:
            await asyncio.sleep(PROMOTE_AFTER_S)
            async with asyncpg.create_pool(replica.dsn, min_size=1, max_size=1) as r:
                await r.fetchval("SELECT pg_promote(true, 30)")

        async def watch_replay() -> None:
            nonlocal drained
            while not queued or await outbox.pending():
                await asyncio.sleep(0.02)
            drained = time.perf_counter()

        watcher: asyncio.Task[None] | None = None
        promotion: asyncio.Task[None] | None = None
        try:
            for i in range(SAVES):
                if i == KILL_AT:
                    primary.kill()
                    lost_at = time.perf_counter()
                    promotion = asyncio.create_task(promote_later())
                    watcher = asyncio.create_task(watch_replay())
                outcome = await memory.save("rita", "FACT", f"k{i:04d}", f"v{i}")
                queued += outcome == "queued"
                if lost_at and not first_direct and outcome == "saved":
                    first_direct = time.perf_counter()
                await asyncio.sleep(0.01)
            assert promotion is not None and watcher is not None
            await promotion
            async with asyncio.timeout(120):
                await watcher
        finally:
            await memory.aclose()
            await pool.aclose()
        async with asyncpg.create_pool(replica.dsn, min_size=1, max_size=1) as r:
            stored = await r.fetchval("SELECT count(*) FROM memories WHERE user_id = 'rita'")
        return {
            "saves": SAVES,
            "promoted_after_s": PROMOTE_AFTER_S,
            "queued_during_failover": queued,
            "to_first_direct_write_s": round(first_direct - lost_at, 2) if first_direct else None,
            "to_queued_replayed_s": round(drained - lost_at, 2),
            "writes_lost": SAVES - int(stored),
        }
    finally:
        if replica is not None:
            replica.remove()
        primary.remove()


async def redis_failover(workdir: Path) -> dict[str, Any]:
    from testbed.openai_server import OpenAIServer

    cluster = RedisSentinelCluster()
    server = OpenAIServer()  # the greeting's source, while the cache is away
    try:
        cluster.start()
        server.start()
        settings = replace(
            base_settings(workdir),
            openai_base_url=server.base_url,
            redis_sentinels=cluster.sentinels,
            redis_sentinel_master=MASTER_NAME,
            cache_max_entries=1,  # lookups reach the shared layer
        )
        pool = get_pool(settings)
        now = time.time()
        users = [f"user-{i}" for i in range(20)]
        memories = {u: [Memory(u, "FACT", "name", u.title(), now, now)] for u in users}
        lost_at = served_at = 0.0
        failed = hits_at_loss = lookups = 0
        try:
            deadline = time.perf_counter() + 60
            while time.perf_counter() < deadline and (not served_at or lookups < 1000):
                if lookups == 300:
                    cluster.kill_master()
                    lost_at = time.perf_counter()
                    hits_at_loss = pool.cache.hits_shared
                user = users[lookups % len(users)]
                try:
                    await greeting_for(pool, user, memories[user], model=settings.llm_model)
                except Exception:
                    failed += 1
                lookups += 1
                if lost_at and not served_at and pool.cache.hits_shared > hits_at_loss:
                    served_at = time.perf_counter()
                await asyncio.sleep(0.01)
        finally:
            await pool.aclose()
        return {
            "lookups": lookups,
            "lookups_failed": failed,
            "to_first_shared_hit_s": round(served_at - lost_at, 2) if served_at else None,
            "sentinel_down_after_s": 1.0,
            "cache_breaker_reset_s": 5.0,
        }
    finally:
        server.stop()
        cluster.stop()


async def main_async() -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="bench-failover-"))
    (workdir / "pg").mkdir()
    (workdir / "redis").mkdir()
    return {
        **stamp(),
        "postgres": await postgres_failover(workdir / "pg"),
        "redis": await redis_failover(workdir / "redis"),
    }


def table(r: dict[str, Any]) -> str:
    pg, rd = r["postgres"], r["redis"]
    return "\n".join(
        [
            f"{stamp_line(r)}",
            "",
            "| failover | measured |",
            "|---|---|",
            f"| PostgreSQL primary lost → first save stored on the new primary (promoted "
            f"after {pg['promoted_after_s']:g} s) | {pg['to_first_direct_write_s']} s |",
            f"| PostgreSQL primary lost → the {pg['queued_during_failover']} saves queued "
            f"meanwhile replayed | {pg['to_queued_replayed_s']} s |",
            f"| PostgreSQL writes lost of {pg['saves']} acknowledged | {pg['writes_lost']} |",
            f"| Redis master lost → first shared cache hit | {rd['to_first_shared_hit_s']} s |",
            f"| Redis lookups that failed of {rd['lookups']} | {rd['lookups_failed']} |",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.failover", description=__doc__)
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args()
    results = asyncio.run(main_async())
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "failover.json").write_text(json.dumps(results, indent=2) + "\n")
    text = table(results)
    print(text)
    if args.out.resolve() == HERE:
        replace_section("failover", text)


if __name__ == "__main__":
    main()
