"""Who a participant is to the memory: a caller by their number, anyone else by identity,
compared as the store compares keys."""

from __future__ import annotations

from livekit import rtc
from livekit.rtc._proto import participant_pb2

from tools.conversation import SERVED_KINDS, identity_user, memory_user
from tools.dispatch import dispatch_metadata, expected_person

STANDARD = rtc.ParticipantKind.PARTICIPANT_KIND_STANDARD
SIP = rtc.ParticipantKind.PARTICIPANT_KIND_SIP


def participant(identity: str, kind: int = STANDARD, **attributes: str) -> rtc.RemoteParticipant:
    info = participant_pb2.ParticipantInfo(identity=identity, kind=kind, attributes=attributes)
    return rtc.RemoteParticipant(participant_pb2.OwnedParticipant(info=info))


def test_a_caller_is_remembered_by_the_number_they_call_from() -> None:
    # livekit's SIP service names a caller sip_<number> by default, but a dispatch rule may
    # name them anything: the number is who they are
    first = participant("sip_call_1", SIP, **{"sip.phoneNumber": "+15551234567"})
    again = participant("sip_call_2", SIP, **{"sip.phoneNumber": "+15551234567"})
    assert memory_user(first) == memory_user(again) == "tel:+15551234567"


def test_a_caller_without_a_number_is_their_identity() -> None:
    assert memory_user(participant("sip_anonymous", SIP)) == "sip_anonymous"


def test_one_text_in_two_unicode_spellings_is_one_person_but_case_makes_two() -> None:
    composed, decomposed = "Zo\u00eb", "Zoe\u0308"
    assert memory_user(participant(composed)) == memory_user(participant(decomposed))
    assert memory_user(participant("Ada")) != memory_user(participant("ada"))


def test_people_and_callers_are_served_and_nothing_else() -> None:
    assert set(SERVED_KINDS) == {STANDARD, SIP}


def test_the_person_a_dispatch_names_is_the_memory_user_they_are_when_they_join() -> None:
    decomposed = "Jose\u0301"  # as some keyboards type "José"
    named = expected_person(dispatch_metadata(decomposed))
    assert named == decomposed
    assert identity_user(named) == memory_user(participant(decomposed))


def test_a_dispatch_without_the_person_names_nobody() -> None:
    # another issuer's metadata, or none, is not a person to load memories for
    for metadata in ("", "not json", "[]", '{"person": ""}', '{"person": 7}', '{"user": "ada"}'):
        assert expected_person(metadata) is None
