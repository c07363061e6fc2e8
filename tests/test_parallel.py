from __future__ import annotations

import asyncio

import pytest

from tools.conversation import parallel_ai_calls


async def test_results_come_back_in_call_order_with_failures_as_values() -> None:
    async def slow(value: str, delay: float) -> str:
        await asyncio.sleep(delay)
        return value

    async def broken() -> str:
        raise ValueError("bad call")

    results = await parallel_ai_calls(
        lambda: slow("a", 0.05), broken, lambda: slow("c", 0.01), timeout=2
    )
    assert [r.value for r in results] == ["a", None, "c"]
    assert [r.ok for r in results] == [True, False, True]
    assert isinstance(results[1].error, ValueError)


async def test_the_deadline_returns_partial_results_and_cancels_the_rest() -> None:
    cancelled: list[str] = []

    async def call(name: str, delay: float) -> str:
        try:
            await asyncio.sleep(delay)
        except asyncio.CancelledError:
            cancelled.append(name)
            raise
        return name

    results = await parallel_ai_calls(
        lambda: call("fast", 0.01), lambda: call("slow", 10), timeout=0.2
    )
    assert results[0].value == "fast"
    assert results[1].timed_out and not results[1].ok
    assert cancelled == ["slow"]  # cancelled and awaited before the function returned


async def test_the_limit_bounds_how_many_run_at_once() -> None:
    running = peak = 0

    async def call() -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.02)
        running -= 1

    await parallel_ai_calls(*([call] * 12), timeout=5, limit=3)
    assert peak == 3


async def test_a_bad_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="limit"):
        await parallel_ai_calls(timeout=1, limit=0)
