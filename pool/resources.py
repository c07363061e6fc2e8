"""What the pool knows about a kind of client: how to open, probe and close it."""

from __future__ import annotations

import functools
import os
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import aiohttp
import httpcore2
import httpx2
import openai

from .meter import Meter
from .settings import PoolSettings
from .transport import MeteredAsyncTransport, aiohttp_trace_config

T = TypeVar("T")

# a local OpenAI-compatible server takes any key, but the SDK refuses to start without one
PLACEHOLDER_KEY = "no-key-local-server"


def _never_closed(client: object) -> bool:
    return False


@dataclass(frozen=True)
class ResourceSpec(Generic[T]):
    """A named kind of client. ``open`` runs inside the pool's event loop."""

    name: str
    open: Callable[[Meter], Awaitable[T]]
    close: Callable[[T], Awaitable[None]]
    probe: Callable[[T], Awaitable[object]] | None = None
    is_closed: Callable[[T], bool] = _never_closed
    # the client's own transport meters its requests, the probe included
    meters_itself: bool = False
    # replaces the connections behind the client, which callers keep using; without it
    # healing drops the client and the next acquire() builds a new one
    reset: Callable[[T], Awaitable[None]] | None = None
    # how long its breaker stays open, when not BREAKER_RESET_S: a cache that costs only a
    # recompute while skipped can try again much sooner than a paid provider
    breaker_reset_s: float | None = None
    # shown in stats beside the counters: a provider's kind, priority and connection limit
    info: Mapping[str, object] = field(default_factory=dict)


def openai_timeout(settings: PoolSettings) -> httpx2.Timeout:
    return httpx2.Timeout(settings.openai_read_timeout_s, connect=settings.openai_connect_timeout_s)


def openai_limits(settings: PoolSettings) -> httpx2.Limits:
    return httpx2.Limits(
        max_connections=settings.openai_max_connections,
        max_keepalive_connections=settings.openai_max_connections,
        keepalive_expiry=settings.openai_keepalive_s,
    )


def openai_spec(
    settings: PoolSettings,
    *,
    name: str = "openai",
    base_url: str | None = None,
    api_key: str | None = None,
) -> ResourceSpec[openai.AsyncOpenAI]:
    """An ``AsyncOpenAI`` client whose every request goes through the resource's meter.

    The livekit plugins hold this client for the whole session, so healing resets its
    transport's connections and never closes the client itself.
    """
    # by id: the SDK's clients are not usable as weak keys; an entry leaves when its client
    # is closed, which only the pool does
    transports: dict[int, MeteredAsyncTransport] = {}

    async def open_client(meter: Meter) -> openai.AsyncOpenAI:
        url = base_url or settings.openai_base_url
        transport = MeteredAsyncTransport(
            # where the server speaks it, HTTP/2 lets concurrent calls share one connection
            lambda: httpx2.AsyncHTTPTransport(
                verify=httpx_tls_context(),
                limits=openai_limits(settings),
                http2=settings.http2_for(url),
            ),
            meter,
        )
        client = openai.AsyncOpenAI(
            api_key=api_key or settings.openai_api_key or PLACEHOLDER_KEY,
            base_url=url,
            # one retry layer per call: livekit's APIConnectOptions, or our RetryPolicy
            max_retries=0,
            http_client=httpx2.AsyncClient(
                transport=transport, timeout=openai_timeout(settings), follow_redirects=True
            ),
        )
        transports[id(client)] = transport
        return client

    async def close(client: openai.AsyncOpenAI) -> None:
        transports.pop(id(client), None)
        await client.close()

    async def reset(client: openai.AsyncOpenAI) -> None:
        await transports[id(client)].reset()

    async def probe(client: openai.AsyncOpenAI) -> object:
        # token-free, and opens the connection a first turn will reuse
        return await client.models.list()

    return ResourceSpec(
        name=name,
        open=open_client,
        close=close,
        probe=probe,
        is_closed=lambda c: c.is_closed(),
        meters_itself=True,
        reset=reset,
    )


def trust_store() -> tuple[str | None, str | None]:
    """The trust store as the environment names it now."""
    return os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR")


# One verifying context per trust store and client library, made before a job starts
# (`warm_tls`): building one parses the whole CA bundle, 0.3-0.8 s of a job's event loop on a
# busy 2-core machine, paid by every client the pool opened. An SSLContext is safe to share.
@functools.cache
def tls_context(cafile: str | None, capath: str | None) -> ssl.SSLContext:
    """aiohttp's: its own default is made once, when aiohttp is first imported."""
    return ssl.create_default_context(cafile=cafile, capath=capath)


@functools.cache
def _httpx_tls_context(cafile: str | None, capath: str | None) -> ssl.SSLContext:
    # httpx's own choice of store for that environment (it reads SSL_CERT_FILE/DIR itself)
    return httpcore2.default_ssl_context()


def httpx_tls_context() -> ssl.SSLContext:
    return _httpx_tls_context(*trust_store())


def warm_tls() -> None:
    """Build the TLS contexts the pool's clients use, ahead of the first job."""
    tls_context(*trust_store())
    httpx_tls_context()


def http_spec(settings: PoolSettings) -> ResourceSpec[aiohttp.ClientSession]:
    async def open_session(meter: Meter) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            ssl=tls_context(*trust_store()),
            limit=settings.http_max_connections,
            limit_per_host=settings.http_max_per_host,
            # aiohttp's default keep-alive is 15 s: shorter than the gap between turns
            keepalive_timeout=settings.http_keepalive_s,
            ttl_dns_cache=settings.http_dns_cache_s,
        )
        return aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=settings.call_deadline_s, connect=5.0),
            trace_configs=[aiohttp_trace_config(meter)],
        )

    async def close(session: aiohttp.ClientSession) -> None:
        await session.close()

    return ResourceSpec(name="http", open=open_session, close=close, is_closed=lambda s: s.closed)
