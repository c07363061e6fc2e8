"""A process that queues memory writes and flushes them, for the crash test.

    python -m tests.support.outbox_writer DSN OUTBOX N   queue N writes, then flush
    python -m tests.support.outbox_writer DSN OUTBOX 0   only replay what is queued

Prints ``ACKED i`` once write i is durable and ``DRAINED`` when the outbox is empty.
"""

from __future__ import annotations

import asyncio
import sys
import time

from pool import get_pool
from tools.memory import CATEGORIES, Outbox, Write, memory_store
from tools.settings import Settings


async def main(dsn: str, outbox_path: str, count: int) -> None:
    settings = Settings(memory_backend="postgres", database_url=dsn, breaker_reset_s=0.2)
    pool = get_pool(settings)

    async def store():  # type: ignore[no-untyped-def]
        return await memory_store(pool, settings)

    # small batches, so a kill lands in the middle of the flushing
    outbox = await Outbox(outbox_path, store, batch_size=25).open()
    for i in range(count):
        # over the three categories: a category keeps MAX_PER_CATEGORY, 500
        category = CATEGORIES[i % 3]
        await outbox.put([Write("crash-user", category, f"k{i:04d}", f"value {i}", time.time())])
        print(f"ACKED {i}", flush=True)
    outbox.start()
    while await outbox.pending():
        await asyncio.sleep(0.05)
    print("DRAINED", flush=True)
    await outbox.aclose()
    await pool.aclose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
