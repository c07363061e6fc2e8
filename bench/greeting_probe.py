"""A fresh process (as a new job is) asks for a user's greeting: prints how long it took and
which cache layer answered. Run by `make bench`'s greeting_cache figure.

    python -m bench.greeting_probe '{"base_url": ..., "sqlite": ..., "redis": null, "user": ...}'
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from pool import get_pool
from tools.conversation import greeting_for
from tools.memory import Memory
from tools.settings import Settings


async def probe(config: dict[str, str | None]) -> dict[str, object]:
    settings = Settings(
        openai_api_key="sk-bench-not-a-real-key",
        openai_base_url=config["base_url"],
        sqlite_path=str(config["sqlite"]),
        memory_outbox_path=str(config["sqlite"]) + ".outbox",
        redis_url=config.get("redis"),
        health_tick_s=3600,
    )
    pool = get_pool(settings)
    now = time.time()
    memories = [Memory(str(config["user"]), "FACT", "name", "Ada", now, now)]
    try:
        await pool.warm()  # as a job does at its start, before the person is greeted
        started = time.perf_counter()
        greeting = await greeting_for(pool, str(config["user"]), memories, model=settings.llm_model)
        elapsed = time.perf_counter() - started
        cache = pool.cache
        return {
            "ms": round(elapsed * 1000, 2),
            "greeting": greeting,
            "hits_shared": cache.hits_shared,
            "misses": cache.misses,
        }
    finally:
        await pool.aclose()


if __name__ == "__main__":
    print(json.dumps(asyncio.run(probe(json.loads(sys.argv[1])))))
