"""bench-turns' rows: nobody speaks before everyone of the row is in, a person who could not
join does not hold the others back, and the people of a row are not in step."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from bench.turns import CORPUS, Gathering, in_turn, talk


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


def test_each_person_of_a_row_says_the_whole_corpus_from_a_place_of_their_own() -> None:
    orders = [in_turn(list(CORPUS), person) for person in range(8)]
    assert all(Counter(order) == Counter(CORPUS) for order in orders)
    # at any moment of the row, its people are saying different sentences
    for step in range(len(CORPUS)):
        assert len({order[step] for order in orders}) == len(orders)
    assert in_turn(list(CORPUS), 0) == list(CORPUS)  # one person alone: the corpus as written
