"""The memory model: what a memory and a write are, how input is validated, and what a
store must do. The service (``service.py``) and the outbox (``outbox.py``) both build on it.

A memory is ``(user_id, category, key, value, created_at, updated_at)``, unique on
``(user_id, category, key)``. Every operation is scoped to one user id.
"""

from __future__ import annotations

import time
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from pool import CircuitOpenError, redact

Category = Literal["FACT", "PREFERENCE", "CONTEXT"]
CATEGORIES: tuple[Category, ...] = ("FACT", "PREFERENCE", "CONTEXT")
MAX_KEY_CHARS = 128
MAX_VALUE_BYTES = 4096
MAX_USER_ID_CHARS = 256
MAX_BATCH = 500
# memories a user keeps per category; the stores' schemas evict the least recently confirmed
MAX_PER_CATEGORY = 500


class MemoryServiceError(Exception):
    """Base class of the memory layer's errors."""


class InvalidMemory(MemoryServiceError, ValueError):
    """The input was refused; nothing was written."""


@dataclass(frozen=True)
class Memory:
    user_id: str
    category: Category
    key: str
    value: str
    created_at: float
    updated_at: float

    def as_dict(self) -> dict[str, Any]:
        return {"category": self.category, "key": self.key, "value": self.value}


@dataclass(frozen=True)
class Write:
    """A save (``value`` set) or a delete (``value`` None), stamped when it was asked for.

    The stamp orders writes: a write never replaces a value stamped later, so a replayed
    old write cannot overwrite a newer one.
    """

    user_id: str
    category: Category
    key: str
    value: str | None
    written_at: float


class MemoryStore(Protocol):
    """A backend. Every method is scoped to ``user_id``; nothing crosses users."""

    name: str

    async def apply(self, writes: Sequence[Write]) -> None:
        """Apply saves and deletes in one round trip, keeping the newest stamp per key."""

    async def get_many(self, user_id: str, keys: Sequence[tuple[Category, str]]) -> list[Memory]:
        """The memories of ``user_id`` with these (category, key) pairs, in one query."""

    async def recall(
        self, user_id: str, category: Category | None = None, limit: int = 200
    ) -> list[Memory]:
        """The user's memories, newest first, optionally of one category."""

    async def ping(self) -> None: ...

    async def aclose(self) -> None: ...

    def is_outage(self, exc: BaseException) -> bool:
        """True when ``exc`` says the store is unreachable or overloaded (worth retrying
        and queueing), False when it refused the request itself."""

    def is_refusal(self, exc: BaseException) -> bool:
        """True when the store answered and refused this request (it is up)."""


# -- validation ---------------------------------------------------------------------------


def _check_encodable(what: str, text: str) -> None:
    """Text every store can hold: UTF-8 has no form for an unpaired surrogate (a broken
    emoji from a JSON escape), so it is refused here, not by the store's driver."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidMemory(
            f"The {what} contains an unpaired surrogate (U+{ord(text[exc.start]):04X}) "
            f"at character {exc.start}: it is not valid Unicode text."
        ) from None


def check_user(user_id: object) -> str:
    if not isinstance(user_id, str) or not user_id.strip():
        raise InvalidMemory("The user id must be a non-empty string.")
    if len(user_id) > MAX_USER_ID_CHARS or "\x00" in user_id:
        raise InvalidMemory(f"The user id must be at most {MAX_USER_ID_CHARS} characters, no NUL.")
    _check_encodable("user id", user_id)
    # one text, one person: é typed as one character or as e and an accent
    return unicodedata.normalize("NFC", user_id)


def check_category(category: object) -> Category:
    if not isinstance(category, str):
        raise InvalidMemory(f"The category must be one of {', '.join(CATEGORIES)}.")
    normalized = category.strip().upper()
    if normalized not in CATEGORIES:
        raise InvalidMemory(
            f"Unknown category {category[:40]!r}: use one of {', '.join(CATEGORIES)}."
        )
    return normalized  # type: ignore[return-value]


def check_key(key: object) -> str:
    if not isinstance(key, str):
        raise InvalidMemory("The key must be text.")
    key = key.strip()
    if not key:
        raise InvalidMemory("The key cannot be empty.")
    if len(key) > MAX_KEY_CHARS:
        raise InvalidMemory(f"The key is {len(key)} characters; the limit is {MAX_KEY_CHARS}.")
    if "\x00" in key:
        raise InvalidMemory("The key cannot contain a NUL character.")
    _check_encodable("key", key)
    return unicodedata.normalize("NFC", key)


def check_value(value: object) -> str:
    if not isinstance(value, str):
        raise InvalidMemory("The value must be text.")
    if not value.strip():
        raise InvalidMemory("The value cannot be empty.")
    _check_encodable("value", value)
    size = len(value.encode("utf-8"))
    if size > MAX_VALUE_BYTES:
        raise InvalidMemory(f"The value is {size} bytes; the limit is {MAX_VALUE_BYTES}.")
    if "\x00" in value:
        raise InvalidMemory("The value cannot contain a NUL character.")
    return value


def save_write(user_id: str, category: object, key: object, value: object) -> Write:
    return Write(
        check_user(user_id),
        check_category(category),
        check_key(key),
        check_value(value),
        time.time(),
    )


def fit_value(text: str) -> str:
    """Text the model made, cut to what a value may hold: at most MAX_VALUE_BYTES of UTF-8
    (at a character boundary), no NUL, no unpaired surrogate."""
    clean = text.replace("\x00", "").encode("utf-8", errors="ignore")
    return clean[:MAX_VALUE_BYTES].decode("utf-8", errors="ignore").strip()


def delete_write(user_id: str, category: object, key: object) -> Write:
    return Write(check_user(user_id), check_category(category), check_key(key), None, time.time())


def newest_per_key(writes: Sequence[Write]) -> list[Write]:
    """One write per (user, category, key): the newest. A multi-row upsert may not touch
    a row twice, and the newest write is the one that must win anyway."""
    latest: dict[tuple[str, str, str], Write] = {}
    for write in writes:
        slot = (write.user_id, write.category, write.key)
        if slot not in latest or write.written_at >= latest[slot].written_at:
            latest[slot] = write
    return list(latest.values())


def store_error(exc: BaseException) -> str:
    """A store's error as a log line, a set-aside reason or ``memory outbox`` may show it:
    its type, code and message, redacted. Never PostgREST's details and hints, which quote
    the failing row ("Failing row contains (ada, FACT, name, …)"): a memory's text."""
    message = getattr(exc, "message", None)
    code = getattr(exc, "code", None) or getattr(exc, "sqlstate", None)
    if not isinstance(message, str) or not message:
        message = str(exc).splitlines()[0] if str(exc) else ""
    name = type(exc).__name__
    if isinstance(code, str) and code:
        name = f"{name} {code}"
    return redact(f"{name}: {message}" if message else name)[:500]


def store_retryable(store: MemoryStore) -> Callable[[BaseException], bool]:
    """Retry an outage, but never an open breaker (it would only fail fast again)."""

    def retryable(exc: BaseException) -> bool:
        return not isinstance(exc, CircuitOpenError) and store.is_outage(exc)

    return retryable
