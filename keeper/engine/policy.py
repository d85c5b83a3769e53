"""When a rebalance is due, and which proofs the router would accept. Pure: no I/O.

Everything governance decides (interval, drift threshold, constraints, security bits,
accepted program hashes, verifier pins) arrives here as ``GovernanceParams`` read from the
router; the operator's config only chooses *how* the keeper proves (the prover policy) and
how far ahead it looks at pending governance changes, never *whether* or *what* the router
accepts.

A rebalance of the router's current epoch is due when the router would execute one now
(its schedule, contracts/README.md check 12), in this order of precedence:
1. the router's owner requested it for this epoch (``request``; a keeper's
   ``RebalanceRequested`` is only a signal: the router does not lift its schedule for it),
2. ``rebalance_interval_s`` has passed since the last execution, or the router never
   executed (``interval``),
3. the allocation the model would produce now moves some protocol by at least
   ``drift_threshold_bps`` (``drift``, see ``drift_bps``; the router's ``>=``),
and never while a job for that epoch is already open.

A due rebalance still waits while a pending governance change *binds* it: one that, once
applied, makes the router refuse the job's execution, and whose eta is within
``margin_s`` of now (a job started now might only reach the chain after it), until it is
applied, cancelled or expires (``PendingGovernance``). Binding: any change of
``max_single_bps``, ``min_diversification``, ``fact_registry``, ``risk_engine``; of
``program_hash`` / ``direct_verifier`` (direct proofs) and ``child_program_hash`` /
``bootloaded_verifier`` (bootloaded proofs) for the paths this keeper proves on; a raised
``min_security_bits``; a ``rebalance_interval_s`` or ``drift_threshold_bps`` under which
this rebalance would no longer be due; the removal of this keeper; and RiskEngine's new
model parameters (they change the inputs commitment the job's proof names: the router
would refuse it as stale). Never binding: either contract's ``governance_delay_s``,
RiskEngine's oracle (its next snapshot is seen like any other), other keepers, and changes
to the values already in force.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from keeper.chain.governance import (
    KEEPER_PROPOSAL,
    PROPOSAL_FIELDS,
    RISK_ENGINE_MODEL_PARAMS,
    VERIFICATION_PATHS,
    GovernanceParams,
    PendingChange,
    VerificationPath,
)
from keeper.store.governance import format_proposal_values
from prover.settings import POLICY_PROVERS, PolicyName, ProverKind

BPS = 10_000

Trigger = Literal["request", "interval", "drift"]
# The provers each operator policy may run, in the order it tries them (one list, prover's).
_POLICY_PROVERS: dict[str, tuple[ProverKind, ...]] = {k: v for k, v in POLICY_PROVERS.items()}
# Stone and dev produce direct proofs/facts of the program itself (router.program_hash);
# Atlantic produces bootloaded ones (router.child_program_hash, the Pedersen chain hash).
_DIRECT_PROVERS: frozenset[ProverKind] = frozenset({"stone", "dev"})

# Pending changes of these params bind only the proofs of one path.
_PATH_PARAMS: dict[str, VerificationPath] = {
    "program_hash": "direct",
    "direct_verifier": "direct",
    "child_program_hash": "bootloaded",
    "bootloaded_verifier": "bootloaded",
}
_SCHEDULE_PARAMS = frozenset({"rebalance_interval_s", "drift_threshold_bps"})
_NEVER_BINDING = frozenset({"governance_delay_s"})


@dataclass(frozen=True)
class RouterSnapshot:
    """What the router says now."""

    epoch: int
    allocation: tuple[int, ...]  # bps per protocol; empty before the first execution
    last_execution_ts: int  # block timestamp of the last execution; 0 = never
    governance: GovernanceParams


@dataclass(frozen=True)
class PendingGovernance:
    """The router's pending governance changes, and what makes one bind a new job."""

    changes: tuple[PendingChange, ...]
    margin_s: int  # a change with eta <= now + margin_s may apply before the job executes
    keeper: int  # this keeper's account: a pending removal of it binds
    proof_paths: frozenset[VerificationPath] = frozenset(VERIFICATION_PATHS)
    # RiskEngine's model parameters in force (doc §1 order); () = unknown: every pending
    # change of them binds.
    model_params: tuple[int, ...] = ()


def drift_bps(current: tuple[int, ...], target: tuple[int, ...]) -> int:
    """The largest per-protocol move (bps) from ``current`` to ``target``.

    ``max_i |target_i - current_i|``: the drift threshold bounds how far any single
    protocol's share may wander before the keeper rebalances. When there is nothing to
    compare (no allocation yet, or the protocol count changed) the drift is ``BPS``, the
    maximum (the router's rule too).
    """
    if not current or len(current) != len(target):
        return BPS
    return max(abs(t - c) for c, t in zip(current, target, strict=True))


@dataclass(frozen=True)
class Decision:
    due: bool
    trigger: Trigger | None
    reason: str
    waiting_for: PendingChange | None = None  # the pending change that holds it back


def decide(
    snapshot: RouterSnapshot,
    *,
    now: int,
    requested: bool,
    model_allocation: tuple[int, ...] | None,
    open_job_epochs: frozenset[int],
    pending: PendingGovernance | None = None,
) -> Decision:
    """Is a rebalance of ``snapshot.epoch`` due at ``now`` (the chain's unix seconds)?

    ``requested``: the router's owner requested a rebalance of this epoch (a
    ``RebalanceRequested`` with ``by_owner``, or ``is_rebalance_requested()``).
    ``model_allocation``: what the model computes on the current on-chain inputs, None
    when infeasible. ``open_job_epochs``: epochs with a job that is neither confirmed,
    failed nor superseded. ``pending``: the router's pending governance changes.
    """
    epoch = snapshot.epoch
    if epoch in open_job_epochs:
        return Decision(False, None, f"a job for epoch {epoch} is already open")
    due = _schedule(snapshot, now=now, requested=requested, model_allocation=model_allocation)
    if not due.due or pending is None:
        return due
    for change in sorted(pending.changes, key=lambda c: (c.eta, c.param, c.subject)):
        if _in_window(change, now, pending.margin_s) and _binds(
            change, snapshot, pending, now=now, requested=requested, model=model_allocation
        ):
            return Decision(
                False,
                None,
                f"not due: waiting for governance change {_described(change, now)}: a job "
                "started now could reach the chain after it applies and be refused; "
                f"rebalance ({due.trigger}: {due.reason}) once it is applied or cancelled",
                waiting_for=change,
            )
    return due


def _schedule(
    snapshot: RouterSnapshot,
    *,
    now: int,
    requested: bool,
    model_allocation: tuple[int, ...] | None,
) -> Decision:
    """The router's schedule rule (check 12), with the trigger that makes it due."""
    epoch = snapshot.epoch
    gov = snapshot.governance
    if requested:
        return Decision(True, "request", f"the owner requested a rebalance of epoch {epoch}")
    elapsed = now - snapshot.last_execution_ts
    # A router that never executed has no interval to wait for: its first allocation is due.
    if snapshot.last_execution_ts == 0 or elapsed >= gov.rebalance_interval_s:
        since = (
            "the router has never executed"
            if snapshot.last_execution_ts == 0
            else f"{elapsed} s since the last execution"
        )
        return Decision(True, "interval", f"{since} (interval {gov.rebalance_interval_s} s)")
    waiting = f"next interval rebalance in {gov.rebalance_interval_s - elapsed} s"
    if model_allocation is None:
        return Decision(
            False,
            None,
            "not due by drift: the model is infeasible on the current inputs and "
            f"governance constraints; {waiting}",
        )
    drift = drift_bps(snapshot.allocation, model_allocation)
    if drift >= gov.drift_threshold_bps:
        return Decision(
            True,
            "drift",
            f"allocation drift {drift} bps reaches the threshold {gov.drift_threshold_bps} bps",
        )
    return Decision(
        False,
        None,
        f"drift {drift} bps below the threshold {gov.drift_threshold_bps} bps; {waiting}",
    )


def _in_window(change: PendingChange, now: int, margin_s: int) -> bool:
    """May ``change`` apply before a job started now executes? (An expired one never will.)"""
    return change.eta <= now + margin_s and not change.expired_at(now)


def _binds(
    change: PendingChange,
    snapshot: RouterSnapshot,
    pending: PendingGovernance,
    *,
    now: int,
    requested: bool,
    model: tuple[int, ...] | None,
) -> bool:
    """Would the router refuse this rebalance's execution once ``change`` is applied?"""
    if change.contract == "risk_engine":
        # New model parameters change the inputs commitment: 'stale inputs commitment'.
        return change.param == RISK_ENGINE_MODEL_PARAMS and change.values != pending.model_params
    if change.param == KEEPER_PROPOSAL:
        return change.subject == pending.keeper and change.values == (0,)
    if change.param not in PROPOSAL_FIELDS or change.param in _NEVER_BINDING:
        return False
    gov = snapshot.governance
    try:
        after = gov.with_proposal(change.param, change.values)
    except ValueError:
        return False  # not a shape the router accepts: it cannot be applied
    if after == gov:
        return False  # the value in force: applying it changes nothing
    if change.param in _SCHEDULE_PARAMS:
        later = replace(snapshot, governance=after)
        return not _schedule(later, now=now, requested=requested, model_allocation=model).due
    if change.param == "min_security_bits":
        return after.min_security_bits > gov.min_security_bits
    path = _PATH_PARAMS.get(change.param)
    return path is None or path in pending.proof_paths


def _described(change: PendingChange, now: int) -> str:
    subject = f" of {change.subject:#x}" if change.subject else ""
    values = format_proposal_values(change.param, change.values)
    if change.eta > now:
        when = f"in {change.eta - now} s"
    else:
        when = (
            f"matured {now - change.eta} s ago and not applied yet; it expires in "
            f"{change.expires_at - now} s"
        )
    whose = "RiskEngine " if change.contract == "risk_engine" else ""
    return f"{whose}{change.param}{subject} -> {values} at eta {change.eta} ({when})"


# --- which proofs the router accepts ---------------------------------------------------


@dataclass(frozen=True)
class AcceptedProvers:
    """Which of the policy's provers can make a proof the router accepts for our program."""

    policy: str
    direct: bool  # router.program_hash is our program hash and a direct pin is set
    bootloaded: bool  # router.child_program_hash is our Pedersen chain hash, pin set
    provers: tuple[ProverKind, ...]  # the policy's provers that qualify, in policy order

    def accepts(self, prover: ProverKind) -> bool:
        return prover in self.provers

    @property
    def paths(self) -> frozenset[VerificationPath]:
        """The verification paths the qualifying provers' proofs take."""
        return frozenset(
            "direct" if prover in _DIRECT_PROVERS else "bootloaded" for prover in self.provers
        )

    @property
    def effective_policy(self) -> PolicyName | None:
        """The policy narrowed to provers whose proofs would be accepted; None: none."""
        if not self.provers:
            return None
        if self.provers == ("stone", "atlantic"):
            return "stone_then_atlantic"
        only: dict[ProverKind, PolicyName] = {
            "stone": "stone_only",
            "atlantic": "atlantic_only",
            "dev": "dev",
        }
        return only[self.provers[0]]


def accepted_provers(
    governance: GovernanceParams,
    *,
    program_hash: int,
    child_program_hash: int,
    policy: str,
) -> AcceptedProvers:
    """Match the router's accepted hashes and pins against our program's hashes and the
    policy.

    ``program_hash``: poseidon hash of our compiled program (direct facts);
    ``child_program_hash``: its Pedersen program hash chain (bootloaded facts).
    A router hash of 0 accepts nothing, and neither does a path without a verifier pin
    (or with one that is no configuration Integrity registers: not four short strings).
    """
    if policy not in _POLICY_PROVERS:
        raise ValueError(
            f"unknown prover policy {policy!r} (known: {', '.join(_POLICY_PROVERS)})"
        )
    direct = (
        governance.program_hash != 0
        and governance.program_hash == program_hash
        and governance.direct_pin is not None
    )
    bootloaded = (
        governance.child_program_hash != 0
        and governance.child_program_hash == child_program_hash
        and governance.bootloaded_pin is not None
    )
    provers = tuple(
        p for p in _POLICY_PROVERS[policy] if (direct if p in _DIRECT_PROVERS else bootloaded)
    )
    return AcceptedProvers(policy, direct, bootloaded, provers)


def halt_reason(
    governance: GovernanceParams,
    *,
    program_hash: int,
    child_program_hash: int,
    policy: str,
) -> str | None:
    """Why the keeper must stop instead of proving, or None when some proof would pass.

    Checked at start and after every governance change: submitting proofs the router
    rejects only burns fees.
    """
    gate = accepted_provers(
        governance, program_hash=program_hash, child_program_hash=child_program_hash,
        policy=policy,
    )
    if gate.provers:
        return None
    if governance.program_hash == 0 and governance.child_program_hash == 0:
        return (
            "router accepts no program yet (program_hash and child_program_hash are 0); "
            "stopping: no proof would be accepted (ask governance to set program_hash to "
            f"{hex(program_hash)} for Stone proofs or child_program_hash to "
            f"{hex(child_program_hash)} for Atlantic proofs)"
        )
    kinds = _POLICY_PROVERS[policy]
    mismatches = []
    if any(k in _DIRECT_PROVERS for k in kinds):
        if governance.program_hash != program_hash:
            mismatches.append(
                f"router accepts program hash {_shown(governance.program_hash)} but this "
                f"keeper runs {hex(program_hash)}"
            )
        else:
            mismatches.append(_pin_problem(governance, "direct"))
    if "atlantic" in kinds:
        if governance.child_program_hash != child_program_hash:
            mismatches.append(
                f"router accepts child program hash {_shown(governance.child_program_hash)} "
                f"but this keeper's program hash chain is {hex(child_program_hash)}"
            )
        else:
            mismatches.append(_pin_problem(governance, "bootloaded"))
    hint = ""
    if gate.bootloaded:
        hint = (
            "; bootloaded proofs of this program are accepted: set prover.policy to atlantic_only"
        )
    elif gate.direct and "stone" not in kinds and policy != "dev":
        hint = "; direct proofs of this program are accepted: set prover.policy to stone_only"
    return (
        f"{'; '.join(mismatches)}; stopping: no proof prover policy '{policy}' can make "
        "would be accepted (upgrade the keeper to the program governance accepts, or ask "
        f"governance to accept this one){hint}"
    )


def _pin_problem(governance: GovernanceParams, path: VerificationPath) -> str:
    felts = governance.pin_felts(path)
    if not any(felts):
        return (
            f"router pins no verifier configuration for {path} proofs ({path}_verifier is "
            f"all 0: ask governance to propose {path}_verifier)"
        )
    shown = ", ".join(hex(v) for v in felts)
    return f"router's {path}_verifier pin ({shown}) is not four short strings"


def _shown(value: int) -> str:
    return f"{hex(value)} (none)" if value == 0 else hex(value)
