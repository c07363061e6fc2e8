"""Run in a fresh process: RSS before and after a pool is created, warmed and used."""

from __future__ import annotations

import asyncio
import json
import sys

import psutil

from pool import get_pool
from tools.memory import memory_spec, memory_store
from tools.settings import Settings


async def main(config: dict[str, str]) -> None:
    process = psutil.Process()
    settings = Settings(
        openai_api_key="sk-bench-not-a-real-key",
        openai_base_url=config["base_url"],
        sqlite_path=config["sqlite"],
        health_tick_s=3600,
    )
    await asyncio.sleep(0)
    before = process.memory_info().rss
    pool = get_pool(settings)
    pool.register(memory_spec(settings))
    await pool.warm()
    client = await pool.openai()
    await client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=8
    )
    await pool.http()
    await (await memory_store(pool, settings)).recall("rss-user")
    after = process.memory_info().rss
    await pool.aclose()
    print(json.dumps({"pool_rss_mb": round((after - before) / 2**20, 2)}))


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
