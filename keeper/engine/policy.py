"""When a rebalance is due, and which proofs the router would accept. Pure: no I/O.

Everything governance decides (interval, drift threshold, constraints, security bits,
accepted program hashes) arrives here as ``GovernanceParams`` read from the router; the
operator's config only chooses *how* the keeper proves (the prover policy), never *whether*
or *what* the router accepts.

A rebalance of the router's current epoch is due, in this order of precedence, when
1. a ``RebalanceRequested`` event arrived (``request``),
2. ``rebalance_interval_s`` has passed since the last execution, or the router never
   executed (``interval``),
3. the allocation the model would produce now differs from the current one by more than
   ``drift_threshold_bps`` (``drift``, see ``drift_bps``),
and never while a job for that epoch is already open.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from keeper.chain.governance import GovernanceParams

BPS = 10_000

Trigger = Literal["request", "interval", "drift"]
ProverKind = Literal["stone", "atlantic", "dev"]
PolicyName = Literal["stone_then_atlantic", "stone_only", "atlantic_only", "dev"]

# The provers each operator policy may run, in the order it tries them.
_POLICY_PROVERS: dict[str, tuple[ProverKind, ...]] = {
    "stone_then_atlantic": ("stone", "atlantic"),
    "stone_only": ("stone",),
    "atlantic_only": ("atlantic",),
    "dev": ("dev",),
}
# Stone and dev produce direct proofs/facts of the program itself (router.program_hash);
# Atlantic produces bootloaded ones (router.child_program_hash, the Pedersen chain hash).
_DIRECT_PROVERS: frozenset[ProverKind] = frozenset({"stone", "dev"})


@dataclass(frozen=True)
class RouterSnapshot:
    """What the router says now."""

    epoch: int
    allocation: tuple[int, ...]  # bps per protocol; empty before the first execution
    last_execution_ts: int  # block timestamp of the last execution; 0 = never
    governance: GovernanceParams


def drift_bps(current: tuple[int, ...], target: tuple[int, ...]) -> int:
    """The largest per-protocol move (bps) from ``current`` to ``target``.

    ``max_i |target_i - current_i|``: the drift threshold bounds how far any single
    protocol's share may wander before the keeper rebalances. When there is nothing to
    compare (no allocation yet, or the protocol count changed) the drift is ``BPS``, the
    maximum, and ``decide`` treats a drift of ``BPS`` as always due.
    """
    if not current or len(current) != len(target):
        return BPS
    return max(abs(t - c) for c, t in zip(current, target, strict=True))


@dataclass(frozen=True)
class Decision:
    due: bool
    trigger: Trigger | None
    reason: str


def decide(
    snapshot: RouterSnapshot,
    *,
    now: int,
    requested: bool,
    model_allocation: tuple[int, ...] | None,
    open_job_epochs: frozenset[int],
) -> Decision:
    """Is a rebalance of ``snapshot.epoch`` due at ``now`` (unix seconds)?

    ``requested``: a RebalanceRequested for this epoch is pending. ``model_allocation``:
    what the model computes on the current on-chain inputs, None when infeasible.
    ``open_job_epochs``: epochs with a job that is neither confirmed, failed nor superseded.
    """
    epoch = snapshot.epoch
    gov = snapshot.governance
    if epoch in open_job_epochs:
        return Decision(False, None, f"a job for epoch {epoch} is already open")
    if requested:
        return Decision(True, "request", f"rebalance requested on-chain for epoch {epoch}")
    elapsed = now - snapshot.last_execution_ts
    # A router that never executed has no interval to wait for: its first allocation is due.
    if snapshot.last_execution_ts == 0 or elapsed >= gov.rebalance_interval_s:
        since = (
            "the router has never executed"
            if snapshot.last_execution_ts == 0
            else f"{elapsed} s since the last execution"
        )
        return Decision(
            True, "interval", f"{since} (interval {gov.rebalance_interval_s} s)"
        )
    waiting = f"next interval rebalance in {gov.rebalance_interval_s - elapsed} s"
    if model_allocation is None:
        return Decision(
            False,
            None,
            "not due by drift: the model is infeasible on the current inputs and "
            f"governance constraints; {waiting}",
        )
    drift = drift_bps(snapshot.allocation, model_allocation)
    if drift >= BPS or drift > gov.drift_threshold_bps:
        return Decision(
            True,
            "drift",
            f"allocation drift {drift} bps exceeds the threshold "
            f"{gov.drift_threshold_bps} bps",
        )
    return Decision(
        False,
        None,
        f"drift {drift} bps within the threshold {gov.drift_threshold_bps} bps; {waiting}",
    )


# --- which proofs the router accepts ---------------------------------------------------


@dataclass(frozen=True)
class AcceptedProvers:
    """Which of the policy's provers can make a proof the router accepts for our program."""

    policy: str
    direct: bool  # router.program_hash is our program hash (Stone, dev)
    bootloaded: bool  # router.child_program_hash is our Pedersen chain hash (Atlantic)
    provers: tuple[ProverKind, ...]  # the policy's provers that qualify, in policy order

    def accepts(self, prover: ProverKind) -> bool:
        return prover in self.provers

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
    """Match the router's accepted hashes against our program's hashes and the policy.

    ``program_hash``: poseidon hash of our compiled program (direct facts);
    ``child_program_hash``: its Pedersen program hash chain (bootloaded facts).
    A router hash of 0 accepts nothing.
    """
    if policy not in _POLICY_PROVERS:
        raise ValueError(
            f"unknown prover policy {policy!r} (known: {', '.join(_POLICY_PROVERS)})"
        )
    direct = governance.program_hash != 0 and governance.program_hash == program_hash
    bootloaded = (
        governance.child_program_hash != 0 and governance.child_program_hash == child_program_hash
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

    Checked at start and after every change of ``program_hash``/``child_program_hash``:
    submitting proofs the router rejects only burns fees.
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
        mismatches.append(
            f"router accepts program hash {_shown(governance.program_hash)} but this keeper "
            f"runs {hex(program_hash)}"
        )
    if "atlantic" in kinds:
        mismatches.append(
            f"router accepts child program hash {_shown(governance.child_program_hash)} but "
            f"this keeper's program hash chain is {hex(child_program_hash)}"
        )
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


def _shown(value: int) -> str:
    return f"{hex(value)} (none)" if value == 0 else hex(value)
