"""keeper.engine.policy: when a rebalance is due (the router's schedule, pending governance
changes), and which proofs the router accepts; GovernanceParams and its pins."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keeper.chain.governance import (
    GOVERNANCE_GRACE_S,
    PROPOSAL_FIELDS,
    PROPOSAL_PARAMS,
    GovernanceParams,
    PendingChange,
    VerifierConfig,
    param_names,
)
from keeper.engine.policy import (
    BPS,
    Decision,
    PendingGovernance,
    RouterSnapshot,
    accepted_provers,
    decide,
    drift_bps,
    halt_reason,
)
from tests.support.governance import BOOTLOADED_PIN, DIRECT_PIN, UNSET, make_governance, pin_values

ROUTER_SOURCE = Path(__file__).parents[2] / "contracts" / "src" / "strategy_router_v2.cairo"
POLICIES = ("stone_then_atlantic", "stone_only", "atlantic_only", "dev")
OURS = 0x1234
OUR_CHAIN = 0xABCD
KEEPER = 0x4EE9E
NOT_TEXT = (1, 2, 3, 4)  # non-zero felts that are no printable short strings

felts = st.integers(min_value=0, max_value=2**251)
bps = st.integers(min_value=0, max_value=BPS)
pins = st.sampled_from([tuple(DIRECT_PIN.felts()), tuple(BOOTLOADED_PIN.felts()), UNSET, NOT_TEXT])


def governance(**overrides: int) -> GovernanceParams:
    return make_governance(
        **{"max_single_bps": 6000, "program_hash": OURS, "child_program_hash": OUR_CHAIN}
        | overrides
    )


@st.composite
def governances(draw: st.DrawFn) -> GovernanceParams:
    return GovernanceParams(
        rebalance_interval_s=draw(st.integers(min_value=1, max_value=2**64 - 1)),
        drift_threshold_bps=draw(bps),
        max_single_bps=draw(st.integers(min_value=1, max_value=BPS)),
        min_diversification=draw(st.integers(min_value=0, max_value=16)),
        min_security_bits=draw(st.integers(min_value=80, max_value=256)),
        fact_registry=draw(felts),
        program_hash=draw(st.sampled_from([0, OURS, 0x999])),
        child_program_hash=draw(st.sampled_from([0, OUR_CHAIN, 0x888])),
        risk_engine=draw(felts),
        **pin_values("direct", draw(pins)),
        **pin_values("bootloaded", draw(pins)),
        governance_delay_s=draw(st.integers(min_value=0, max_value=2_592_000)),
    )


allocations = st.lists(bps, min_size=1, max_size=16).map(tuple)


# --- GovernanceParams ----------------------------------------------------------------


def test_field_order_is_the_contracts_get_governance_params_order() -> None:
    source = ROUTER_SOURCE.read_text(encoding="utf-8")
    struct = re.search(r"pub struct GovernanceParams \{(.*?)\}", source, re.DOTALL)
    assert struct is not None
    names = tuple(re.findall(r"pub (\w+):", struct.group(1)))
    assert names == param_names()
    assert len(names) == 18


def test_proposal_params_are_the_contracts() -> None:
    """The names param_arity accepts, each with the number of values it takes."""
    source = ROUTER_SOURCE.read_text(encoding="utf-8")
    arity = re.search(r"pub fn param_arity\(.*?\n\}", source, re.DOTALL)
    assert arity is not None
    four = re.search(r"if (.*?)\{\s*4", arity.group(0), re.DOTALL)
    assert four is not None
    contract = set(re.findall(r"'(\w+)'", arity.group(0)))
    assert contract == set(PROPOSAL_PARAMS)
    assert set(re.findall(r"'(\w+)'", four.group(1))) == {
        p for p, names in PROPOSAL_FIELDS.items() if len(names) == 4
    }


@given(gov=governances(), index=st.integers(min_value=0, max_value=17), new=felts)
def test_apply_change_changes_exactly_that_param(
    gov: GovernanceParams, index: int, new: int
) -> None:
    param = param_names()[index]
    after = gov.apply_change(param, new)
    assert getattr(after, param) == new
    for other in param_names():
        if other != param:
            assert getattr(after, other) == getattr(gov, other)


@given(gov=governances(), name=st.text(min_size=1, max_size=20))
def test_apply_change_of_unknown_param_names_it(gov: GovernanceParams, name: str) -> None:
    if name in param_names():
        return
    with pytest.raises(ValueError, match=re.escape(repr(name))):
        gov.apply_change(name, 1)


def test_from_values_is_contract_order_and_checks_length() -> None:
    gov = governance()
    values = tuple(gov.as_dict().values())
    assert values[:9] == (3600, 500, 6000, 2, 96, 0xFAC7, OURS, OUR_CHAIN, 0x5EE)
    assert GovernanceParams.from_values(values) == gov
    with pytest.raises(ValueError, match="returned 9 values, expected 18"):
        GovernanceParams.from_values(values[:9])


@pytest.mark.parametrize("bad", [-1, True, "5"])
def test_governance_values_must_be_non_negative_ints(bad: object) -> None:
    with pytest.raises(ValueError, match="drift_threshold_bps"):
        governance().apply_change("drift_threshold_bps", bad)  # type: ignore[arg-type]


def test_pins_read_as_text_and_unset_or_garbage_reads_as_none() -> None:
    gov = governance()
    assert gov.direct_pin == DIRECT_PIN
    assert gov.bootloaded_pin == BOOTLOADED_PIN
    assert gov.pin_felts("direct") == tuple(DIRECT_PIN.felts())
    assert replace(gov, **pin_values("direct", UNSET)).direct_pin is None
    assert replace(gov, **pin_values("bootloaded", NOT_TEXT)).bootloaded_pin is None
    # A pin field applies like any other: it is a felt in the GovernanceParamsUpdated event.
    changed = gov.apply_change("direct_layout", VerifierConfig("x", "y", "z", "w").felts()[0])
    assert changed.direct_pin == VerifierConfig("x", "keccak_160_lsb", "stone6", "strict")


@given(gov=governances(), param=st.sampled_from(sorted(PROPOSAL_FIELDS)), data=st.data())
def test_a_proposal_sets_exactly_its_fields(
    gov: GovernanceParams, param: str, data: st.DataObject
) -> None:
    names = PROPOSAL_FIELDS[param]
    values = tuple(data.draw(st.lists(felts, min_size=len(names), max_size=len(names))))
    after = gov.with_proposal(param, values)
    assert after.proposal_values(param) == values
    assert {n: v for n, v in after.as_dict().items() if n not in names} == {
        n: v for n, v in gov.as_dict().items() if n not in names
    }
    with pytest.raises(ValueError, match="does not change GovernanceParams"):
        gov.with_proposal(param, (*values, 1))


def test_keeper_is_a_proposal_but_no_governance_value() -> None:
    with pytest.raises(ValueError, match="'keeper'"):
        governance().proposal_values("keeper")


# --- drift ---------------------------------------------------------------------------


def _same_length_pair(n: int) -> st.SearchStrategy[tuple[list[int], list[int]]]:
    return st.tuples(st.lists(bps, min_size=n, max_size=n), st.lists(bps, min_size=n, max_size=n))


@given(pair=st.integers(min_value=1, max_value=16).flatmap(_same_length_pair))
def test_drift_is_the_largest_single_move(pair: tuple[list[int], list[int]]) -> None:
    current, target = tuple(pair[0]), tuple(pair[1])
    drift = drift_bps(current, target)
    assert drift == drift_bps(target, current)
    assert all(abs(t - c) <= drift for c, t in zip(current, target, strict=True))
    assert any(abs(t - c) == drift for c, t in zip(current, target, strict=True))
    assert drift_bps(current, current) == 0


@given(current=allocations, target=allocations)
def test_drift_of_different_protocol_counts_is_maximal(
    current: tuple[int, ...], target: tuple[int, ...]
) -> None:
    if len(current) == len(target):
        return
    assert drift_bps(current, target) == BPS


@given(target=allocations)
def test_drift_without_a_current_allocation_is_maximal(target: tuple[int, ...]) -> None:
    assert drift_bps((), target) == BPS


# --- decide: the router's schedule ------------------------------------------------------


def _expected(
    snap: RouterSnapshot,
    now: int,
    requested: bool,
    model: tuple[int, ...] | None,
    open_epochs: frozenset[int],
) -> tuple[bool, str | None]:
    """The router's check 12 (contracts/README.md), written independently."""
    if snap.epoch in open_epochs:
        return False, None
    if requested:
        return True, "request"
    never = snap.last_execution_ts == 0
    if never or now >= snap.last_execution_ts + snap.governance.rebalance_interval_s:
        return True, "interval"
    if model is None:
        return False, None
    if len(model) != len(snap.allocation) or not snap.allocation:
        return True, "drift"
    moves = [abs(a - b) for a, b in zip(model, snap.allocation, strict=True)]
    if max(moves) >= snap.governance.drift_threshold_bps:
        return True, "drift"
    return False, None


@given(
    gov=governances(),
    epoch=st.integers(min_value=0, max_value=2**64 - 1),
    current=st.one_of(st.just(()), allocations),
    model=st.one_of(st.none(), allocations),
    last=st.one_of(st.just(0), st.integers(min_value=0, max_value=2**40)),
    now=st.integers(min_value=0, max_value=2**40),
    requested=st.booleans(),
    others=st.frozensets(st.integers(min_value=0, max_value=50), max_size=5),
    open_this=st.booleans(),
)
def test_decide_follows_the_routers_schedule(
    gov: GovernanceParams,
    epoch: int,
    current: tuple[int, ...],
    model: tuple[int, ...] | None,
    last: int,
    now: int,
    requested: bool,
    others: frozenset[int],
    open_this: bool,
) -> None:
    snap = RouterSnapshot(epoch, current, last, gov)
    open_epochs = others | {epoch} if open_this else others - {epoch}
    decision = decide(
        snap, now=now, requested=requested, model_allocation=model, open_job_epochs=open_epochs
    )
    assert (decision.due, decision.trigger) == _expected(snap, now, requested, model, open_epochs)
    assert decision.reason
    assert decision.waiting_for is None
    if open_this:
        assert not decision.due
        assert f"epoch {epoch} is already open" in decision.reason


def _snap(**kw: object) -> RouterSnapshot:
    values: dict[str, object] = {
        "epoch": 7,
        "allocation": (5000, 5000),
        "last_execution_ts": 1_000_000,
        "governance": governance(),
    }
    values.update(kw)
    return RouterSnapshot(**values)  # type: ignore[arg-type]


NOW = 1_000_100


def _decide(snap: RouterSnapshot, **kw: object) -> Decision:
    args: dict[str, object] = {
        "now": NOW,
        "requested": False,
        "model_allocation": (5000, 5000),
        "open_job_epochs": frozenset(),
    }
    args.update(kw)
    return decide(snap, **args)  # type: ignore[arg-type]


def test_request_beats_interval_and_drift() -> None:
    d = _decide(_snap(), now=10**9, requested=True, model_allocation=(0, 10000))
    assert (d.due, d.trigger) == (True, "request")
    assert "owner requested" in d.reason


def test_interval_beats_drift() -> None:
    d = _decide(_snap(), now=1_003_600, model_allocation=(0, 10000))
    assert (d.due, d.trigger) == (True, "interval")
    assert "3600 s since the last execution" in d.reason


def test_interval_is_due_exactly_when_it_has_passed() -> None:
    assert not _decide(_snap(), now=1_003_599).due
    assert _decide(_snap(), now=1_003_600).trigger == "interval"


def test_never_executed_router_is_due_by_interval() -> None:
    d = _decide(_snap(last_execution_ts=0, allocation=()), now=100)
    assert (d.due, d.trigger) == (True, "interval")
    assert "never executed" in d.reason


def test_drift_threshold_is_inclusive_as_on_the_router() -> None:
    below = _decide(_snap(), model_allocation=(5499, 4501))
    assert not below.due
    assert "drift 499 bps below the threshold 500 bps" in below.reason
    at_threshold = _decide(_snap(), model_allocation=(5500, 4500))
    assert (at_threshold.due, at_threshold.trigger) == (True, "drift")


def test_zero_threshold_counts_every_allocation_as_drift() -> None:
    d = _decide(_snap(governance=governance(drift_threshold_bps=0)))
    assert (d.due, d.trigger) == (True, "drift")


def test_infeasible_model_is_not_due_by_drift_and_says_so() -> None:
    d = _decide(_snap(allocation=()), model_allocation=None)
    assert not d.due
    assert "infeasible" in d.reason


def test_protocol_count_change_is_due_by_drift_even_at_the_maximum_threshold() -> None:
    snap = _snap(governance=governance(drift_threshold_bps=BPS))
    d = _decide(snap, model_allocation=(3000, 3000, 4000))
    assert (d.due, d.trigger) == (True, "drift")


def test_open_job_for_another_epoch_does_not_block() -> None:
    d = _decide(_snap(), requested=True, open_job_epochs=frozenset({6}))
    assert d.due


# --- decide: pending governance changes --------------------------------------------------

MARGIN = 3600


def _pending(
    *changes: PendingChange, paths: tuple[str, ...] = ("direct", "bootloaded")
) -> PendingGovernance:
    return PendingGovernance(changes, MARGIN, KEEPER, frozenset(paths))  # type: ignore[arg-type]


def change(param: str, *values: int, eta: int = NOW + 60, subject: int = 0) -> PendingChange:
    return PendingChange(param, subject, values, eta)


# One change of each param that makes the router refuse a rebalance due by request.
BINDING = [
    change("max_single_bps", 7000),
    change("min_diversification", 3),
    change("min_security_bits", 128),
    change("fact_registry", 0xBEEF),
    change("risk_engine", 0xBEEF),
    change("program_hash", 0x777),
    change("child_program_hash", 0x777),
    change("direct_verifier", *VerifierConfig("recursive", "a", "b", "strict").felts()),
    change("bootloaded_verifier", *UNSET),
    change("keeper", 0, subject=KEEPER),
]
NOT_BINDING = [
    change("governance_delay_s", 172_800),
    change("max_single_bps", 6000),  # the value in force
    change("direct_verifier", *DIRECT_PIN.felts()),
    change("min_security_bits", 80),  # lowered: the proof still has enough bits
    change("keeper", 0, subject=0xA11CE),  # another keeper
    change("keeper", 1, subject=KEEPER),
    change("rebalance_interval_s", 60),  # a request lifts the schedule anyway
    change("drift_threshold_bps", 10000),
]


@pytest.mark.parametrize("pending", BINDING, ids=lambda c: c.param)
def test_a_binding_change_near_its_eta_holds_the_rebalance(pending: PendingChange) -> None:
    d = _decide(_snap(), requested=True, pending=_pending(pending))
    assert (d.due, d.trigger, d.waiting_for) == (False, None, pending)
    assert d.reason.startswith(f"not due: waiting for governance change {pending.param}")
    assert f"at eta {pending.eta} (in 60 s)" in d.reason
    assert "owner requested" in d.reason  # what happens once it is applied or cancelled


@pytest.mark.parametrize("pending", NOT_BINDING, ids=lambda c: f"{c.param}-{c.values}")
def test_a_change_that_cannot_refuse_the_rebalance_does_not_hold_it(
    pending: PendingChange,
) -> None:
    d = _decide(_snap(), requested=True, pending=_pending(pending))
    assert (d.due, d.trigger, d.waiting_for) == (True, "request", None)


def test_margin_and_expiry_bound_the_wait() -> None:
    snap = _snap()
    at_margin = change("max_single_bps", 7000, eta=NOW + MARGIN)
    beyond = change("max_single_bps", 7000, eta=NOW + MARGIN + 1)
    matured = change("max_single_bps", 7000, eta=NOW - GOVERNANCE_GRACE_S)
    expired = change("max_single_bps", 7000, eta=NOW - GOVERNANCE_GRACE_S - 1)
    assert not _decide(snap, requested=True, pending=_pending(at_margin)).due
    assert _decide(snap, requested=True, pending=_pending(beyond)).due
    held = _decide(snap, requested=True, pending=_pending(matured))
    assert not held.due
    assert f"matured {GOVERNANCE_GRACE_S} s ago and not applied yet" in held.reason
    assert _decide(snap, requested=True, pending=_pending(expired)).due


def test_a_path_the_keeper_does_not_prove_on_does_not_bind() -> None:
    boot = change("child_program_hash", 0x777)
    pin = change("bootloaded_verifier", *UNSET)
    assert _decide(_snap(), requested=True, pending=_pending(boot, pin, paths=("direct",))).due
    direct = change("program_hash", 0x777)
    assert not _decide(_snap(), requested=True, pending=_pending(direct, paths=("direct",))).due
    assert _decide(_snap(), requested=True, pending=_pending(direct, paths=("bootloaded",))).due


def test_schedule_changes_bind_only_when_the_rebalance_would_not_be_due_after_them() -> None:
    by_interval = {"now": 1_003_600}  # exactly the interval since the last execution
    longer = change("rebalance_interval_s", 7200, eta=1_003_600)
    assert not _decide(_snap(), pending=_pending(longer), **by_interval).due
    shorter = change("rebalance_interval_s", 60, eta=1_003_600)
    assert _decide(_snap(), pending=_pending(shorter), **by_interval).due
    by_drift = {"model_allocation": (5600, 4400)}  # drift 600 >= 500
    stricter = change("drift_threshold_bps", 700)
    assert not _decide(_snap(), pending=_pending(stricter), **by_drift).due
    still = change("drift_threshold_bps", 600)
    assert _decide(_snap(), pending=_pending(still), **by_drift).due


MODEL_NOW = (25, 40, 0, 5, 15, 30, 3, 10, 730, 10, 5, 95)


def risk_change(param: str, *values: int, eta: int = NOW + 60) -> PendingChange:
    return PendingChange(param, 0, values, eta, "risk_engine")


def test_a_pending_risk_engine_model_change_holds_the_rebalance() -> None:
    # A job proven on today's inputs names today's commitment: once RiskEngine's new model
    # applies, the router refuses it as stale.
    moved = risk_change("model_params", *MODEL_NOW[:1], 90, *MODEL_NOW[2:])
    pending = replace(_pending(moved), model_params=MODEL_NOW)
    d = _decide(_snap(), requested=True, pending=pending)
    assert (d.due, d.waiting_for) == (False, moved)
    assert d.reason.startswith("not due: waiting for governance change RiskEngine model_params")
    assert "w_vol=90" in d.reason
    unknown = _decide(_snap(), requested=True, pending=_pending(moved))  # params not read
    assert not unknown.due


@pytest.mark.parametrize(
    "pending",
    [
        risk_change("model_params", *MODEL_NOW),  # the model in force
        risk_change("oracle", 0x0AC1E),
        risk_change("governance_delay_s", 0),
        risk_change("max_single_bps", 7000),  # no RiskEngine param: it cannot apply it
    ],
    ids=lambda c: c.param,
)
def test_risk_engine_changes_that_cannot_refuse_the_rebalance_do_not_hold_it(
    pending: PendingChange,
) -> None:
    d = _decide(_snap(), requested=True, pending=replace(_pending(pending), model_params=MODEL_NOW))
    assert (d.due, d.waiting_for) == (True, None)


def test_the_earliest_binding_change_is_named() -> None:
    later = change("min_diversification", 3, eta=NOW + 600)
    sooner = change("max_single_bps", 7000, eta=NOW + 300)
    d = _decide(_snap(), requested=True, pending=_pending(later, sooner))
    assert d.waiting_for == sooner


def test_a_pending_change_never_makes_a_rebalance_due() -> None:
    d = _decide(_snap(), pending=_pending(*BINDING, *NOT_BINDING))
    assert (d.due, d.waiting_for) == (False, None)
    assert "below the threshold" in d.reason


def _binds_reference(c: PendingChange, gov: GovernanceParams, requested: bool) -> bool:
    """The module doc's binding rule, for a rebalance due by the owner's request or by a
    drift of 5000 bps (the interval has not passed)."""
    if c.param == "keeper":
        return c.subject == KEEPER and c.values == (0,)
    if c.param in ("governance_delay_s", "rebalance_interval_s"):
        return False
    if tuple(getattr(gov, f) for f in PROPOSAL_FIELDS[c.param]) == c.values:
        return False  # the value in force
    if c.param == "min_security_bits":
        return c.values[0] > gov.min_security_bits
    if c.param == "drift_threshold_bps":
        return not requested and c.values[0] > 5000
    return True


changes = st.one_of(
    st.builds(
        PendingChange,
        st.sampled_from(sorted(p for p, f in PROPOSAL_FIELDS.items() if len(f) == 1)),
        st.just(0),
        st.tuples(st.integers(min_value=0, max_value=200_000)),
        st.integers(min_value=NOW - 2 * GOVERNANCE_GRACE_S, max_value=NOW + 2 * MARGIN),
    ),
    st.builds(
        PendingChange,
        st.sampled_from(["direct_verifier", "bootloaded_verifier"]),
        st.just(0),
        pins,
        st.integers(min_value=NOW - 2 * GOVERNANCE_GRACE_S, max_value=NOW + 2 * MARGIN),
    ),
    st.builds(
        PendingChange,
        st.just("keeper"),
        st.sampled_from([KEEPER, 0xA11CE]),
        st.sampled_from([(0,), (1,)]),
        st.integers(min_value=NOW - 2 * GOVERNANCE_GRACE_S, max_value=NOW + 2 * MARGIN),
    ),
)


@given(pending=st.lists(changes, max_size=4), requested=st.booleans())
def test_decide_waits_exactly_for_a_binding_change_in_its_window(
    pending: list[PendingChange], requested: bool
) -> None:
    """Requested, or due by a maximal drift (a schedule change cannot undo either)."""
    snap = _snap()
    model = (10000, 0)  # drift 5000; a threshold up to 10000 may make it not due
    free = _decide(snap, requested=requested, model_allocation=model)
    assert free.due
    d = _decide(snap, requested=requested, model_allocation=model, pending=_pending(*pending))
    # Applicable before a job started now executes, and not expired.
    in_window = [c for c in pending if c.eta <= NOW + MARGIN and c.eta + GOVERNANCE_GRACE_S >= NOW]
    binding = [c for c in in_window if _binds_reference(c, snap.governance, requested)]
    if binding:
        assert not d.due
        assert d.waiting_for in binding
        assert d.waiting_for == min(binding, key=lambda c: (c.eta, c.param, c.subject))
    else:
        assert (d.due, d.trigger, d.waiting_for) == (True, free.trigger, None)


# --- accepted provers and halting ----------------------------------------------------


@given(gov=governances(), policy=st.sampled_from(POLICIES))
def test_accepted_provers_follow_the_routers_hashes_and_pins(
    gov: GovernanceParams, policy: str
) -> None:
    gate = accepted_provers(gov, program_hash=OURS, child_program_hash=OUR_CHAIN, policy=policy)
    assert gate.direct == (gov.program_hash == OURS and gov.direct_pin is not None)
    assert gate.bootloaded == (
        gov.child_program_hash == OUR_CHAIN and gov.bootloaded_pin is not None
    )
    expected = {
        "stone_then_atlantic": [p for p, ok in (("stone", gate.direct),
                                                ("atlantic", gate.bootloaded)) if ok],
        "stone_only": ["stone"] if gate.direct else [],
        "atlantic_only": ["atlantic"] if gate.bootloaded else [],
        "dev": ["dev"] if gate.direct else [],
    }[policy]
    assert list(gate.provers) == expected
    assert gate.paths == {"bootloaded" if p == "atlantic" else "direct" for p in expected}
    reason = halt_reason(gov, program_hash=OURS, child_program_hash=OUR_CHAIN, policy=policy)
    assert (reason is None) == bool(gate.provers)
    if reason is not None:
        assert "stopping" in reason
        assert gate.effective_policy is None


def test_zero_router_hash_accepts_nothing_even_for_a_zero_program() -> None:
    gov = governance(program_hash=0, child_program_hash=0)
    gate = accepted_provers(gov, program_hash=0, child_program_hash=0, policy="stone_then_atlantic")
    assert gate.provers == ()
    reason = halt_reason(gov, program_hash=OURS, child_program_hash=OUR_CHAIN,
                         policy="stone_then_atlantic")
    assert reason is not None
    assert "accepts no program yet" in reason
    assert hex(OURS) in reason and hex(OUR_CHAIN) in reason


def test_program_hash_change_halts_a_stone_keeper_and_names_both_hashes() -> None:
    gov = governance().apply_change("program_hash", 0x777)
    reason = halt_reason(gov, program_hash=OURS, child_program_hash=OUR_CHAIN, policy="stone_only")
    assert reason is not None
    assert reason.startswith(f"router accepts program hash 0x777 but this keeper runs {hex(OURS)}")
    assert "stopping: no proof" in reason
    assert "set prover.policy to atlantic_only" in reason  # the chain hash still matches


def test_an_unset_pin_halts_and_says_which_proposal_opens_the_path() -> None:
    gov = replace(governance(), **pin_values("direct", UNSET))
    gate = accepted_provers(gov, program_hash=OURS, child_program_hash=OUR_CHAIN, policy="dev")
    assert gate.provers == ()
    reason = halt_reason(gov, program_hash=OURS, child_program_hash=OUR_CHAIN, policy="dev")
    assert reason is not None
    assert "pins no verifier configuration for direct proofs" in reason
    assert "propose direct_verifier" in reason
    garbage = replace(governance(), **pin_values("bootloaded", NOT_TEXT))
    reason = halt_reason(garbage, program_hash=OURS, child_program_hash=OUR_CHAIN,
                         policy="atlantic_only")
    assert reason is not None
    assert "bootloaded_verifier pin (0x1, 0x2, 0x3, 0x4) is not four short strings" in reason


def test_stone_then_atlantic_narrows_to_the_accepted_prover() -> None:
    only_boot = governance(program_hash=0x777)
    gate = accepted_provers(only_boot, program_hash=OURS, child_program_hash=OUR_CHAIN,
                            policy="stone_then_atlantic")
    assert gate.provers == ("atlantic",)
    assert gate.effective_policy == "atlantic_only"
    assert gate.accepts("atlantic") and not gate.accepts("stone")
    only_direct = governance(child_program_hash=0x888)
    gate = accepted_provers(only_direct, program_hash=OURS, child_program_hash=OUR_CHAIN,
                            policy="stone_then_atlantic")
    assert gate.effective_policy == "stone_only"
    both = accepted_provers(governance(), program_hash=OURS, child_program_hash=OUR_CHAIN,
                            policy="stone_then_atlantic")
    assert both.effective_policy == "stone_then_atlantic"


def test_atlantic_keeper_with_wrong_chain_hash_halts() -> None:
    gov = governance(child_program_hash=0x888, program_hash=0x777)
    reason = halt_reason(gov, program_hash=OURS, child_program_hash=OUR_CHAIN,
                         policy="atlantic_only")
    assert reason is not None
    expected = f"child program hash 0x888 but this keeper's program hash chain is {hex(OUR_CHAIN)}"
    assert expected in reason
    assert "program hash 0x777" not in reason  # atlantic_only makes no direct proofs


def test_unknown_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown prover policy 'fast'"):
        accepted_provers(governance(), program_hash=OURS, child_program_hash=OUR_CHAIN,
                         policy="fast")
