"""ReconnectPolicy: the close-code table, backoff, budget, configuration, display."""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from notetaker.errors import ConfigError
from notetaker.policy import Action, Decision, ReconnectPolicy, Rule

# Written from shared/design/voice-protocol.md section 3 (and the supervisor brief's
# decisions: 4004/4012/4016/4017/4021/4022 stop), not from the policy's own table.
DESIGN_TABLE: list[tuple[int | None, Action]] = [
    (4001, Action.NEW_SESSION),  # unknown op: bug -> new session
    (4002, Action.NEW_SESSION),  # undecodable: bug
    (4003, Action.NEW_SESSION),  # not identified: bug
    (4005, Action.NEW_SESSION),  # second Identify: bug
    (4004, Action.STOP),  # bad token: fatal for that token
    (4006, Action.NEW_SESSION),  # session no longer valid
    (4009, Action.NEW_SESSION),  # session timeout
    (4011, Action.NEW_SESSION),  # server not found
    (4012, Action.STOP),  # unknown protocol: would fail again the same way
    (4013, Action.RESUME),  # WebRTC crashed
    (4014, Action.WAIT_FOR_MOVE),  # kicked/moved: only a move's server update continues
    (4015, Action.RESUME),  # voice server crashed
    (4016, Action.STOP),  # unknown encryption mode: would fail again the same way
    (4017, Action.STOP),  # DAVE required
    (4020, Action.NEW_SESSION),  # bad request: bug
    (4021, Action.STOP),  # rate limited
    (4022, Action.STOP),  # call terminated
    (None, Action.RESUME),  # transport dropped
    (1006, Action.RESUME),  # abnormal closure
    (1001, Action.RESUME),  # other codes below 4000 resume
    (3000, Action.RESUME),
    (1000, Action.DONE),  # normal close
    (4000, Action.NEW_SESSION),  # unknown 4xxx codes: new session
    (4999, Action.NEW_SESSION),
]


def fixed(value: float) -> Callable[[], float]:
    return lambda: value


def decide(policy: ReconnectPolicy, code: int | None, **kw: object) -> Decision:
    args: dict[str, object] = {"attempt": 1, "consecutive_failures": 0, "rng": fixed(0.5)}
    args.update(kw)
    return policy.decide(code, **args)  # type: ignore[arg-type]


@pytest.mark.parametrize(("code", "action"), DESIGN_TABLE)
def test_every_code_of_the_design_table(code: int | None, action: Action) -> None:
    decision = decide(ReconnectPolicy(), code)
    assert decision.action is action
    assert decision.code == code
    assert decision.reason
    if action in (Action.STOP, Action.DONE):
        assert decision.delay == 0


def test_stop_reasons_name_the_cause_and_the_fix() -> None:
    policy = ReconnectPolicy()
    dave = decide(policy, 4017).reason
    assert "DAVE" in dave and "2026-03-02" in dave and "transport=engine" in dave
    assert "encryption mode" in decide(policy, 4016).reason
    assert "transport=engine" in decide(policy, 4016).reason
    assert "rate-limited" in decide(policy, 4021).reason
    assert "ended the call" in decide(policy, 4022).reason
    assert "token" in decide(policy, 4004).reason
    move = decide(policy, 4014)
    assert "not moved" in move.reason and move.delay == policy.move_grace


@pytest.mark.parametrize("code", [4004, 4012, 4016, 4017, 4021, 4022, 1000])
def test_final_codes_ignore_budget_and_server_updates(code: int) -> None:
    policy = ReconnectPolicy()
    expected = decide(policy, code).action
    assert expected in (Action.STOP, Action.DONE)
    for failures in (0, policy.max_attempts, policy.max_attempts + 5):
        got = decide(policy, code, consecutive_failures=failures, server_update=True)
        assert got.action is expected
        assert "attempts" not in got.reason


@given(
    base=st.floats(min_value=0.0, max_value=100.0, allow_nan=False),
    extra=st.floats(min_value=0.0, max_value=1000.0, allow_nan=False),
    failures=st.integers(min_value=0, max_value=5000),
    draw=st.floats(min_value=0.0, max_value=1.0, allow_nan=False),
    code=st.sampled_from([None, 1006, 4006, 4015, 4009, 4444]),
)
def test_backoff_is_full_jitter_within_bounds(
    base: float, extra: float, failures: int, draw: float, code: int | None
) -> None:
    max_delay = base + extra
    policy = ReconnectPolicy(base_delay=base, max_delay=max_delay, max_attempts=10**6)
    decision = decide(policy, code, consecutive_failures=failures, rng=fixed(draw))
    # exact arithmetic, independent of how the policy avoids float overflow
    ceiling = float(min(Fraction(max_delay), Fraction(base) * 2**failures))
    assert decision.action in (Action.RESUME, Action.NEW_SESSION)
    assert 0.0 <= decision.delay <= ceiling * (1 + 1e-12)
    assert math.isclose(decision.delay, draw * ceiling, rel_tol=1e-9, abs_tol=1e-12)


def test_backoff_grows_exponentially_then_caps() -> None:
    policy = ReconnectPolicy(base_delay=1.0, max_delay=30.0, max_attempts=100)
    ceilings = [
        decide(policy, 4006, consecutive_failures=n, rng=fixed(1.0)).delay for n in range(8)
    ]
    assert ceilings == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    assert decide(policy, 4006, consecutive_failures=3, rng=fixed(0.0)).delay == 0.0


def test_rng_out_of_range_is_clamped() -> None:
    policy = ReconnectPolicy()
    assert decide(policy, 4006, consecutive_failures=2, rng=fixed(7.0)).delay == 4.0
    assert decide(policy, 4006, consecutive_failures=2, rng=fixed(-1.0)).delay == 0.0


def test_rng_is_called_once_per_decision() -> None:
    calls: list[int] = []

    def rng() -> float:
        calls.append(1)
        return 0.25

    decide(ReconnectPolicy(), 4015, rng=rng)
    assert calls == [1]


@pytest.mark.parametrize("code", [None, 1006, 4006, 4015, 4014, 4444])
def test_budget_exhaustion_stops_with_count_and_last_code(code: int | None) -> None:
    policy = ReconnectPolicy(max_attempts=3)
    assert decide(policy, code, consecutive_failures=2).action is not Action.STOP
    decision = decide(policy, code, attempt=9, consecutive_failures=3)
    assert decision.action is Action.STOP
    assert "3 failed attempts" in decision.reason
    assert (str(code) if code is not None else "none") in decision.reason


def test_resume_escalates_after_resume_limit() -> None:
    policy = ReconnectPolicy(resume_limit=2)
    assert decide(policy, 4015, consecutive_resumes=1).action is Action.RESUME
    escalated = decide(policy, 4015, consecutive_resumes=2)
    assert escalated.action is Action.NEW_SESSION
    assert "2 times" in escalated.reason
    assert decide(ReconnectPolicy(resume_limit=0), 4015).action is Action.NEW_SESSION


def test_no_session_means_no_resume() -> None:
    assert decide(ReconnectPolicy(), 4015, can_resume=False).action is Action.NEW_SESSION


@pytest.mark.parametrize("code", [None, 4015, 4006, 4014, 4444])
def test_fresh_server_update_means_reidentify(code: int | None) -> None:
    decision = decide(ReconnectPolicy(), code, server_update=True)
    assert decision.action is Action.REIDENTIFY
    assert decision.delay == 0.5 * 1.0  # still backed off: rng 0.5 of the base


def test_decide_is_pure() -> None:
    policy = ReconnectPolicy()
    first = decide(policy, 4006, consecutive_failures=2, rng=fixed(0.3))
    again = decide(policy, 4006, consecutive_failures=2, rng=fixed(0.3))
    assert first == again


def test_describe_mentions_every_code_and_the_numbers() -> None:
    policy = ReconnectPolicy(base_delay=2, max_delay=40, max_attempts=7, move_grace=9)
    text = policy.describe()
    assert len(text.splitlines()) > 20
    for code, _ in DESIGN_TABLE:
        if code is not None and code in policy.rules:
            assert str(code) in text
    for code in (4001, 4004, 4006, 4014, 4015, 4017, 4021, 4022):
        line = next(line for line in text.splitlines() if line.strip().startswith(str(code)))
        assert policy.rules[code].action.value in line
    assert "40 s" in text and "2 s" in text and "7 consecutive" in text and "9 s" in text


def test_default_values_match_the_docstring() -> None:
    policy = ReconnectPolicy()
    doc = " ".join((ReconnectPolicy.__doc__ or "").split())
    for name in ("base_delay", "max_delay", "max_attempts", "reset_wait", "move_grace"):
        assert f"``{name}`` = {getattr(policy, name)}" in doc
    assert f"``resume_limit`` = {policy.resume_limit}" in doc
    assert (policy.base_delay, policy.max_delay, policy.max_attempts) == (1.0, 30.0, 6)
    assert (policy.reset_wait, policy.move_grace, policy.resume_limit) == (1.0, 5.0, 2)


def test_overrides_apply_and_keep_the_rest() -> None:
    policy = ReconnectPolicy.from_overrides({"base_delay": 0.5, "max_attempts": 3})
    assert policy.base_delay == 0.5 and policy.max_attempts == 3
    assert policy.max_delay == 30.0 and policy.rules == ReconnectPolicy().rules
    assert ReconnectPolicy.from_overrides(None) == ReconnectPolicy()


def test_overrides_can_change_an_action() -> None:
    policy = ReconnectPolicy.from_overrides(
        {"rules": {"4022": "wait_for_move", 4999: {"action": "stop", "reason": "no."}}}
    )
    assert decide(policy, 4022).action is Action.WAIT_FOR_MOVE
    assert decide(policy, 4999) == Decision(Action.STOP, 0.0, "no.", 4999)
    assert decide(policy, 4017).action is Action.STOP
    assert "4999" in policy.describe()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"base_delay": -1}, "base_delay"),
        ({"reset_wait": -0.1}, "reset_wait"),
        ({"move_grace": float("nan")}, "move_grace"),
        ({"max_delay": 0.5}, "max_delay"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": 2.5}, "max_attempts"),
        ({"resume_limit": -1}, "resume_limit"),
        ({"base_delay": "1"}, "base_delay"),
        ({"base_delay": True}, "base_delay"),
        ({"max_tries": 3}, "max_tries"),
        ({"rules": {"40x": "stop"}}, "40x"),
        ({"rules": {4015: "explode"}}, "explode"),
        ({"rules": {4015: 3}}, "4015"),
        ({"rules": ["stop"]}, "rules"),
    ],
)
def test_invalid_overrides_raise_config_error(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ReconnectPolicy.from_overrides(overrides)


def test_direct_construction_validates_too() -> None:
    with pytest.raises(ConfigError):
        ReconnectPolicy(base_delay=-1.0)
    with pytest.raises(ConfigError):
        ReconnectPolicy(rules={4015: "resume"})  # type: ignore[dict-item]
    assert ReconnectPolicy(rules={4015: Rule(Action.STOP, "x")}).rule_for(4015).reason == "x"


def test_policy_is_frozen_and_hashable() -> None:
    policy = ReconnectPolicy()
    with pytest.raises(AttributeError):
        policy.base_delay = 3.0  # type: ignore[misc]
    assert hash(policy) == hash(ReconnectPolicy())
