"""The job process itself: what it keeps out of the collector's way once it is ready."""

from __future__ import annotations

import gc


def settle_heap() -> None:
    """What was imported and loaded lives as long as the process: keep the collector off it,
    or one full collection of that heap (over 100 ms here) stalls the event loop mid-turn."""
    gc.collect()
    gc.freeze()
