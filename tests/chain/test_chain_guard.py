"""The keeper's pure reading of an IntegrityGuard: its pin, the start-up gate's verdict,
and the deploy's timelock decisions (the contract itself: tests/contracts and
tests/integrity)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keeper.chain.codec import encode_short_string
from keeper.chain.deploy import GuardPendingChange, GuardPin, guard_timelock_calls, selector
from keeper.chain.errors import ChainError
from keeper.chain.integrity import guard_problem

PIN = ("small", "keccak_160_lsb", "stone6", "strict")
short_strings = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_", min_size=1, max_size=31)
addresses = st.integers(1, 2**251 - 1)


@given(verifier=addresses, config=st.tuples(short_strings, short_strings, short_strings,
                                            short_strings))
def test_a_pin_reads_back_from_its_felts(verifier: int, config: tuple[str, str, str, str]) -> None:
    pin = GuardPin(verifier, config)
    assert GuardPin.from_felts(list(pin.values())) == pin
    assert pin.values()[1:] == tuple(encode_short_string(t) for t in config)


@pytest.mark.parametrize("felts", [[], [1, 2, 3, 4], [1, 2, 3, 4, 5, 6]])
def test_an_answer_that_is_no_pin_is_refused(felts: list[int]) -> None:
    with pytest.raises(ChainError, match="not an IntegrityGuard"):
        GuardPin.from_felts(felts)


def test_the_gate_accepts_a_guard_pinned_like_the_router() -> None:
    pin = GuardPin(0x55, PIN)
    assert guard_problem(0x1, pin, direct_pin=PIN, expected_verifier=0x55) is None
    assert guard_problem(0x1, pin, direct_pin=PIN, expected_verifier=None) is None  # devnet
    assert guard_problem(0x1, pin, direct_pin=None, expected_verifier=None) is None


@pytest.mark.parametrize(
    ("config", "expected_verifier", "says"),
    [
        (("small", "keccak_160_lsb", "stone5", "strict"), 0x55, "but the router's direct pin"),
        (("recursive", "keccak_160_lsb", "stone6", "strict"), 0x55, "but the router's direct"),
        (PIN, 0x66, "not 0x66, the verifier Integrity's FactRegistry has for (small, "),
    ],
)
def test_the_gate_names_what_differs(
    config: tuple[str, str, str, str], expected_verifier: int, says: str
) -> None:
    problem = guard_problem(
        0x1, GuardPin(0x55, config), direct_pin=PIN, expected_verifier=expected_verifier
    )
    assert problem is not None and says in problem


VALUES = (0x77, *(encode_short_string(t) for t in PIN))
KEY = encode_short_string("verifier")


def _functions(calls: list) -> list[str]:  # type: ignore[type-arg]
    names = {selector(n): n for n in ("propose_change", "apply_change", "cancel_change")}
    return [names[c.selector] for c in calls]


@pytest.mark.parametrize(
    ("pending", "now", "delay", "action", "functions"),
    [
        (None, 1000, 0, "set", ["propose_change", "apply_change"]),
        (None, 1000, 3600, "proposed (due in 3600 s: run again then)", ["propose_change"]),
        (GuardPendingChange(VALUES, 1000, 4600), 2000, 3600, "pending (due in 2600 s)", []),
        (GuardPendingChange(VALUES, 1000, 4600), 4600, 3600, "set", ["apply_change"]),
        # The delay was raised since: the pending change waits the new one.
        (GuardPendingChange(VALUES, 1000, 4600), 4600, 7200, "pending (due in 3600 s)", []),
        # Expired (14 days after it was due): cancelled and proposed again.
        (GuardPendingChange(VALUES, 1000, 4600), 4601 + 14 * 86400, 3600,
         "proposed (due in 3600 s: run again then)", ["cancel_change", "propose_change"]),
        # Another value pending: replaced.
        (GuardPendingChange((1, 2, 3, 4, 5), 1000, 4600), 2000, 0, "set",
         ["cancel_change", "propose_change", "apply_change"]),
    ],
)
def test_the_deploy_moves_the_guard_through_its_timelock(
    pending: GuardPendingChange | None, now: int, delay: int, action: str, functions: list[str]
) -> None:
    got_action, calls = guard_timelock_calls(0xABC, "verifier", VALUES, pending, now=now,
                                             delay=delay)
    assert got_action == action
    assert _functions(calls) == functions
    assert all(c.to_addr == 0xABC and c.calldata[0] == KEY for c in calls)
