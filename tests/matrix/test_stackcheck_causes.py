"""The stack check reads its one-line causes off the simulator's record."""

from __future__ import annotations

from discordsim.record import Record
from notetaker_harness.stackcheck import SUITE_BY_NAME, cause_of, close_codes, trace_of

BOT = 42


def _conn(rec: Record, conn: str, *, port: int, dave_max: int = 0) -> None:
    rec.add("voice.connect", conn=conn, listener="main", port=port, v=8, path="/?v=8")
    rec.add(
        "voice.identify",
        conn=conn,
        user_id=BOT,
        ssrc=1,
        version=8,
        dave_max=dave_max,
        dave_version=min(dave_max, 1),
    )


def test_4017_is_explained_by_the_identify_without_dave() -> None:
    rec = Record()
    _conn(rec, "v1", port=2087)
    rec.add("voice.close", conn="v1", code=4017, by="server")
    trace = trace_of(rec, 0, BOT)
    cause = cause_of(SUITE_BY_NAME["dave-required-4017"], trace, "closed", "")
    assert cause == "offers no DAVE (max_dave_protocol_version 0) -> 4017"


def test_4006_on_port_443_is_port_stripping() -> None:
    rec = Record()
    _conn(rec, "v1", port=443)
    rec.add("voice.close", conn="v1", code=4006, by="server")
    trace = trace_of(rec, 0, BOT)
    assert "strips the endpoint port" in cause_of(SUITE_BY_NAME["connect"], trace, "closed", "")


def test_the_servers_answer_to_our_own_leave_and_teardown_are_not_refusals() -> None:
    rec = Record()
    rec.add("voice.state", user_id=BOT, channel_id=7, session_id="s1")
    _conn(rec, "v1", port=2087, dave_max=1)
    rec.add("voice.state", user_id=BOT, channel_id=None, session_id="s1")
    rec.add("voice.close", conn="v1", code=4014, by="server")
    teardown = len(rec)
    rec.add("voice.close", conn="v2", code=1000, by="client")
    trace = trace_of(rec, 0, BOT, teardown)
    assert close_codes(trace) == []
    assert next(e.get("after_leave") for e in trace if e["kind"] == "close") is True
    assert all("session_id" not in e and "path" not in e for e in trace)


def test_an_exception_before_select_protocol_is_named() -> None:
    rec = Record()
    _conn(rec, "v1", port=443)
    trace = trace_of(rec, 0, BOT)
    cause = cause_of(
        SUITE_BY_NAME["connect"], trace, "error", "IndexError: list index out of range"
    )
    assert "no encryption mode in common" in cause
