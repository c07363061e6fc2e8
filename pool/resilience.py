"""Retries and circuit breakers.

One retry layer per call: the pool's OpenAI clients are built with ``max_retries=0``
and the livekit plugins retry through ``APIConnectOptions``; :class:`RetryPolicy` is
for the pool's own calls (memory store, greeting, extraction).
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TypeVar

import aiohttp
import httpx2
import openai
import tenacity

from .errors import CircuitOpenError
from .settings import JitterMode, PoolSettings, RetryStrategy
from .stats import BreakerState

T = TypeVar("T")

RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
# a server asking for a longer pause than this is treated as down, not throttling
RETRY_AFTER_CAP_S = 30.0


class CircuitBreaker:
    """closed → open after ``failure_threshold`` consecutive failures → half-open after
    ``reset_timeout_s`` → one trial call: success closes it, failure reopens it.

    State stays in this process: a shared breaker would need a network call to decide
    whether to make a network call.
    """

    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int = 5,
        reset_timeout_s: float = 300.0,
        failure_rate: float | None = None,
        window: int = 20,
        min_calls: int = 10,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``failure_rate``, when set, also opens the breaker once at least ``min_calls`` of
        the last ``window`` calls were made and that share of them failed."""
        self.name = name
        self.failure_threshold = failure_threshold
        self.reset_timeout_s = reset_timeout_s
        self.failure_rate = failure_rate
        self.min_calls = min_calls
        self._recent: deque[bool] = deque(maxlen=window)
        self._clock = clock
        self._lock = threading.Lock()  # the sync OpenAI client is used from worker threads
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_in_flight = False
        self.times_opened = 0

    @property
    def state(self) -> BreakerState:
        with self._lock:
            return self._state()

    def _state(self) -> BreakerState:
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at >= self.reset_timeout_s:
            return "half-open"
        return "open"

    def before_call(self) -> None:
        """Raise :class:`CircuitOpenError` unless a call may go ahead now."""
        with self._lock:
            state = self._state()
            if state == "closed":
                return
            if state == "half-open" and not self._trial_in_flight:
                self._trial_in_flight = True
                return
            assert self._opened_at is not None
            remaining = self.reset_timeout_s - (self._clock() - self._opened_at)
            raise CircuitOpenError(self.name, max(remaining, 0.0))

    def on_success(self) -> None:
        with self._lock:
            self._recent.append(True)
            self._failures = 0
            self._opened_at = None
            self._trial_in_flight = False

    def on_failure(self) -> None:
        with self._lock:
            self._recent.append(False)
            self._failures += 1
            if self._trial_in_flight or (self._opened_at is None and self._should_open()):
                self._opened_at = self._clock()
                self.times_opened += 1
            self._trial_in_flight = False

    def on_cancel(self) -> None:
        """The caller gave up on the call (an interruption, a deadline): no verdict on the
        resource, but a half-open trial slot is given back."""
        with self._lock:
            self._trial_in_flight = False

    def _should_open(self) -> bool:
        if self._failures >= self.failure_threshold:
            return True
        if self.failure_rate is None or len(self._recent) < self.min_calls:
            return False
        failed = sum(1 for ok in self._recent if not ok)
        return failed / len(self._recent) >= self.failure_rate

    def allow_trial(self) -> None:
        """An open breaker turns half-open at once: something else showed the resource is
        back, and the next call is its trial."""
        with self._lock:
            if self._opened_at is not None and self._state() == "open":
                self._opened_at = self._clock() - self.reset_timeout_s

    def reset(self) -> None:
        with self._lock:
            self._recent.clear()
            self._failures = 0
            self._opened_at = None
            self._trial_in_flight = False


class RetryBudget:
    """A token bucket that lets retries be at most about ``ratio`` of requests.

    Every request deposits ``ratio`` tokens, every retry spends one. During an outage
    the bucket empties and calls fail at their first error instead of multiplying load.
    """

    def __init__(
        self,
        ratio: float = 0.1,
        *,
        max_tokens: float = 10.0,
        on_denied: Callable[[], None] | None = None,
    ) -> None:
        self.ratio = ratio
        self.max_tokens = max_tokens
        self._tokens = max_tokens
        self._lock = threading.Lock()
        self._on_denied = on_denied
        self.denied = 0

    def on_request(self) -> None:
        with self._lock:
            self._tokens = min(self.max_tokens, self._tokens + self.ratio)

    def try_spend(self) -> bool:
        with self._lock:
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return True
            self.denied += 1
        if self._on_denied is not None:
            self._on_denied()
        return False


def is_retryable(exc: BaseException) -> bool:
    """Connection errors, timeouts, 408, 429 and 5xx; never other 4xx or an open breaker."""
    if isinstance(exc, CircuitOpenError):
        return False
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in RETRYABLE_STATUS
    if isinstance(exc, aiohttp.ClientResponseError):
        return exc.status in RETRYABLE_STATUS
    if isinstance(exc, httpx2.HTTPStatusError):
        return exc.response.status_code in RETRYABLE_STATUS
    return isinstance(
        exc,
        openai.APIConnectionError  # includes APITimeoutError
        | httpx2.TransportError
        | aiohttp.ClientConnectionError
        | TimeoutError
        | ConnectionError,
    )


def retry_after_s(exc: BaseException) -> float | None:
    """The pause a 429/503 asked for (``retry-after-ms`` or ``Retry-After``), capped."""
    headers: object = None
    if isinstance(exc, openai.APIStatusError):
        headers = exc.response.headers
    elif isinstance(exc, aiohttp.ClientResponseError):
        headers = exc.headers
    elif isinstance(exc, httpx2.HTTPStatusError):
        headers = exc.response.headers
    if headers is None:
        return None
    get = getattr(headers, "get", None)
    if get is None:
        return None
    seconds: float | None = None
    if (ms := get("retry-after-ms")) is not None:
        try:
            seconds = float(ms) / 1000
        except ValueError:
            seconds = None
    if seconds is None and (value := get("retry-after")) is not None:
        try:
            seconds = float(value)
        except ValueError:
            try:
                seconds = parsedate_to_datetime(value).timestamp() - time.time()
            except (TypeError, ValueError):
                seconds = None
    if seconds is None:
        return None
    return min(max(seconds, 0.0), RETRY_AFTER_CAP_S)


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """How one kind of call is retried. Immutable; each call gets its own retry state."""

    strategy: RetryStrategy = "exponential"
    max_retries: int = 3
    base_s: float = 1.0
    factor: float = 2.0
    max_delay_s: float = 60.0
    jitter: JitterMode = "full"
    attempt_timeout_s: float | None = None
    deadline_s: float | None = None

    @classmethod
    def from_settings(cls, settings: PoolSettings, **overrides: object) -> RetryPolicy:
        values: dict[str, object] = {
            "strategy": settings.retry_strategy,
            "max_retries": settings.retry_max_attempts,
            "base_s": settings.retry_base_s,
            "max_delay_s": settings.retry_max_delay_s,
            "jitter": settings.retry_jitter,
            "deadline_s": settings.call_deadline_s,
        }
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]

    def backoff_s(self, retry_number: int) -> float:
        """The pause before retry ``retry_number`` (1-based), jitter included."""
        if self.strategy == "none":
            return 0.0
        if self.strategy == "exponential":
            delay = self.base_s * self.factor ** (retry_number - 1)
        elif self.strategy == "linear":
            delay = self.base_s * retry_number
        else:
            delay = self.base_s
        delay = min(delay, self.max_delay_s)
        if self.jitter == "full":
            return random.uniform(0.0, delay)
        if self.jitter == "proportional":
            return delay * random.uniform(0.9, 1.1)
        return delay

    def _wait(self, state: tenacity.RetryCallState) -> float:
        delay = self.backoff_s(state.attempt_number)
        exc = state.outcome.exception() if state.outcome else None
        if exc is not None and (asked := retry_after_s(exc)) is not None:
            delay = max(delay, asked)
        return delay

    async def call(
        self,
        fn: Callable[[], Awaitable[T]],
        *,
        budget: RetryBudget | None = None,
        retryable: Callable[[BaseException], bool] = is_retryable,
        on_retry: Callable[[BaseException, float], None] | None = None,
    ) -> T:
        """Run ``fn`` with this policy. ``fn`` must be safe to repeat (idempotent)."""
        if budget is not None:
            budget.on_request()

        def should_retry(state: tenacity.RetryCallState) -> bool:
            exc = state.outcome.exception() if state.outcome else None
            if exc is None or not retryable(exc):
                return False
            return budget is None or budget.try_spend()

        def before_sleep(state: tenacity.RetryCallState) -> None:
            if on_retry is not None and state.outcome and state.next_action:
                on_retry(state.outcome.exception() or Exception(), state.next_action.sleep)

        stop: tenacity.stop.stop_base = tenacity.stop_after_attempt(self.max_retries + 1)
        if self.strategy == "none":
            stop = tenacity.stop_after_attempt(1)
        if self.deadline_s is not None:
            stop = stop | tenacity.stop_before_delay(self.deadline_s)

        # a new AsyncRetrying per call: tenacity's retry state is not safe to share
        retrying = tenacity.AsyncRetrying(
            stop=stop,
            wait=self._wait,
            retry=should_retry,
            before_sleep=before_sleep,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                if self.attempt_timeout_s is None:
                    return await fn()
                async with asyncio.timeout(self.attempt_timeout_s):
                    return await fn()
        raise AssertionError("unreachable: tenacity re-raises the last error")


async def stream_with_retry(
    policy: RetryPolicy,
    open_stream: Callable[[], Awaitable[AsyncIterator[T]]],
    *,
    budget: RetryBudget | None = None,
    retryable: Callable[[BaseException], bool] = is_retryable,
) -> AsyncIterator[T]:
    """Yield a stream's items, retrying only until the first item arrives.

    Once an item has been yielded it may have reached the user (spoken, shown): a failure
    after that is raised, never retried, so nothing is said twice.
    """

    async def first() -> tuple[T, AsyncIterator[T]]:
        stream = await open_stream()
        iterator = aiter(stream)
        return await anext(iterator), iterator

    try:
        item, iterator = await policy.call(first, budget=budget, retryable=retryable)
    except StopAsyncIteration:
        return
    yield item
    async for item in iterator:
        yield item
