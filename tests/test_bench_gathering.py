"""bench-turns' rows: nobody speaks before everyone of the row is in, and a person who could
not join does not hold the others back."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bench.turns import Gathering, talk


async def test_nobody_speaks_before_everyone_is_in() -> None:
    gathering = Gathering(2)
    everyone_in = asyncio.create_task(gathering.everyone_in())
    gathering.arrived()
    await asyncio.sleep(0.01)
    assert not everyone_in.done()
    gathering.arrived()
    await asyncio.wait_for(everyone_in, 1)


class UnreachableRoom:
    """A worker whose rooms cannot be joined: the person's connection fails."""

    def person(self, *args: Any, **kwargs: Any) -> Any:
        raise ConnectionError("the room cannot be joined")


async def test_a_person_who_could_not_join_lets_the_others_begin() -> None:
    gathering = Gathering(2)
    with pytest.raises(ConnectionError):
        await talk(UnreachableRoom(), "lost", [], 0.0, gathering)  # type: ignore[arg-type]
    gathering.arrived()  # the one who joined
    await asyncio.wait_for(gathering.everyone_in(), 1)
