"""Hostile text (SQL metacharacters, quotes, unicode, NUL) round-trips or is refused cleanly."""

from __future__ import annotations

from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from tools.memory import MAX_KEY_CHARS, InvalidMemory, MemoryService

SQL_BITS = st.sampled_from(
    [
        "'",
        '"',
        ";",
        "--",
        "/*",
        "*/",
        "%",
        "_",
        "\\",
        "DROP TABLE memories;",
        "' OR '1'='1",
        "\x00",
        ",",
        "(",
        ")",
        "eq.",
        "in.(",
    ]
)
HOSTILE = st.lists(st.one_of(SQL_BITS, st.text(max_size=12)), max_size=8).map("".join)


@hsettings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(key=HOSTILE, value=HOSTILE, user=HOSTILE)
async def test_hostile_text_round_trips_or_is_refused_with_nothing_written(
    memory: MemoryService, key: str, value: str, user: str
) -> None:
    user_id = f"prop-{user}"
    try:
        before = await memory.recall(user_id)
    except InvalidMemory:
        return  # a user id with NUL or over the limit is refused before any query
    try:
        await memory.save(user_id, "FACT", key, value)
    except InvalidMemory:
        assert await memory.recall(user_id) == before
        bad = "\x00" in key + value or not key.strip() or not value.strip()
        assert bad or len(key.strip()) > MAX_KEY_CHARS
        return
    found = await memory.recall(user_id, category="FACT", key=key)
    assert [(m.key, m.value) for m in found] == [(key.strip(), value)]
    await memory.forget(user_id, "FACT", key)
    assert await memory.recall(user_id, category="FACT", key=key) == []
