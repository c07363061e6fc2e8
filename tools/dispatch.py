"""What a room's agent dispatch carries: the person the room is for.

A token issuer that dispatches the agent (the room page, an app's backend) names the person
in the dispatch's metadata, so the job loads their memories and greeting while it connects
instead of after they are in the room. The job still checks that the person who joins is the
one named; a dispatch without it is served as before, whoever joins first.

A *ready room* goes one step further: the issuer dispatches the agent before anyone asks
(:func:`ready_room_metadata`), and when a person does, names them in the room's own metadata
(:func:`dispatch_metadata` again, through the server API, which only the issuer holds) and
gives them that room: the agent is connected, and only their memories and greeting are left
to load while they connect.
"""

from __future__ import annotations

import json


def dispatch_metadata(identity: str) -> str:
    return json.dumps({"person": identity})


def expected_person(metadata: str) -> str | None:
    """The identity a dispatch names, or None: no metadata, or metadata of another shape
    (an issuer's own, which is not this agent's to judge)."""
    try:
        named = json.loads(metadata) if metadata else None
    except ValueError:
        return None
    person = named.get("person") if isinstance(named, dict) else None
    return person if isinstance(person, str) and person else None


def ready_room_metadata() -> str:
    return json.dumps({"ready": True})


def is_ready_room(metadata: str) -> bool:
    """Whether a dispatch is for a ready room, whose person its room's metadata names later."""
    try:
        marked = json.loads(metadata) if metadata else None
    except ValueError:
        return False
    return isinstance(marked, dict) and marked.get("ready") is True
