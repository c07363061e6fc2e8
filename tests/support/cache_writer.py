"""Another process that fills the shared cache: ``python -m tests.support.cache_writer
SQLITE_PATH REDIS_URL KEY VALUE`` (REDIS_URL may be empty for the SQLite layer)."""

from __future__ import annotations

import asyncio
import sys

from pool import get_pool
from tools.settings import Settings


async def main(sqlite_path: str, redis_url: str, key: str, value: str) -> None:
    pool = get_pool(Settings(sqlite_path=sqlite_path, redis_url=redis_url or None))

    async def compute() -> str:
        return value

    try:
        print(await pool.cache.cached_async_call(key, compute, ttl=60), flush=True)
    finally:
        await pool.aclose()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
