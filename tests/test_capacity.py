"""The worker's capacity as livekit decides on rooms with it (tools/worker/capacity.py).

A burst of rooms in a real room is in tests/test_room_lifecycle.py; here, the state it
passes through too briefly to catch there: places taken by rooms accepted and not yet
running, where livekit refuses the next room without a word of its own."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from tools.worker.capacity import ConversationServer


def test_a_worker_whose_places_are_taken_by_rooms_still_starting_says_it_is_full(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = ConversationServer(capacity=2)
    # livekit's state while two accepted rooms wait for their processes: none runs yet
    server._proc_pool = SimpleNamespace(processes=[])  # type: ignore[assignment]
    server._reserved_slots = 2

    with caplog.at_level(logging.INFO, logger="tools.worker.capacity"):
        assert server._conversation_load() == 0.0  # nothing runs...
        assert server._get_effective_load() >= 1.0  # ...yet livekit refuses the next room
        assert "worker is full: 2 of 2 conversations (2 starting)" in caplog.text

        server._reserved_slots = 1  # one of them failed to start
        server._conversation_load()
        assert "worker takes rooms again: 1 of 2 conversations" in caplog.text
