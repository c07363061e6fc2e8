"""What a room's agent dispatch carries: the person the room is for.

A token issuer that dispatches the agent (the room page, an app's backend) names the person
in the dispatch's metadata, so the job loads their memories and greeting while it connects
instead of after they are in the room. The job still checks that the person who joins is the
one named; a dispatch without it is served as before, whoever joins first.
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
