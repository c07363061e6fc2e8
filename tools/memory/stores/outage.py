"""Which database errors are an outage (retry; the write waits in the outbox) and which
are a refusal of the write itself (set it aside).

The test is the error's code, as PostgreSQL and PostgREST give it, not the driver's
exception class: PostgREST relays PostgreSQL's SQLSTATE, or a ``PGRST`` code of its own.
"""

from __future__ import annotations

# SQLSTATE classes: 08 connection exception, 53 insufficient resources (disk, memory,
# connections), 57P operator intervention (57P01 admin shutdown, 57P02 crash shutdown,
# 57P03 cannot connect now)
_OUTAGE_CLASSES = ("08", "53", "57P")
_OUTAGE_STATES = frozenset(
    {
        "40001",  # serialization failure: the same write succeeds when retried
        "40P01",  # deadlock detected
        "25006",  # read-only transaction: a primary that became a replica after a failover
        "57014",  # statement timeout / query cancelled
    }
)
# PostgREST's own: PGRST000-PGRST003 are its connection and pool failures (HTTP 503/504)
_PGRST_OUTAGES = frozenset({"PGRST000", "PGRST001", "PGRST002", "PGRST003"})
# HTTP statuses a gateway in front of PostgREST answers with when the service is in trouble
_HTTP_OUTAGES = frozenset({"408", "429", "500", "502", "503", "504"})


def is_outage_code(code: object) -> bool:
    """True for a SQLSTATE, PGRST code or HTTP status that says the service is in trouble."""
    if code is None:
        return False
    text = str(code).strip().upper()
    return (
        text in _OUTAGE_STATES
        or text in _PGRST_OUTAGES
        or text in _HTTP_OUTAGES
        or (len(text) == 5 and text.startswith(_OUTAGE_CLASSES))
    )
