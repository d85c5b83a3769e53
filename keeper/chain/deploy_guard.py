"""Our IntegrityGuard (contracts/src/integrity_guard.cairo): the router's fact registry.

Integrity's public FactRegistry labels a verification with the configuration a caller
named at the start of a job, not the one the verifier ran (issue 18): the router cannot
trust its labels. The guard drives Integrity's CairoVerifier itself and records a
verification only from the verifier's own report, under the configuration governance
pinned. So a deployment is:

    Integrity's FactRegistry (public; read once) --get_verifier_address(small, keccak)-->
    CairoVerifier  <--drives--  IntegrityGuard(owner, verifier, pin, delay)  <--  router

The guard's verifier and pin change through its own timelock (the router's delay);
the deploy converges them as it converges the router's values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from keeper.chain.codec import encode_short_string
from keeper.chain.deploy_artifacts import call_view, make_call
from keeper.chain.deploy_run import DeployContext, ensure_contract, ensure_declared
from keeper.chain.integrity import GuardPin, verifier_preset
from keeper.core.errors import UsageError

GUARD = "IntegrityGuard"
# The guard's governance params (its timelock): the verifier with its pin, and the delay.
VERIFIER_PARAM = "verifier"
DELAY_PARAM = "governance_delay_s"
GUARD_GRACE_S = 14 * 24 * 3600


def guard_constructor_calldata(owner: int, pin: GuardPin, delay_s: int) -> list[int]:
    """``constructor(owner, verifier, config: VerifierConfiguration, governance_delay_s)``."""
    return [owner, *pin.values(), delay_s]


async def read_guard_pin(client: Any, guard: int) -> GuardPin:
    return GuardPin.from_felts(await call_view(client, guard, "get_pin"))


async def integrity_verifier(client: Any, registry: int, layout: str, hasher: str) -> int:
    """The CairoVerifier Integrity's FactRegistry registered for (layout, hasher family);
    0 when it has none (Integrity panics with VERIFIER_NOT_FOUND)."""
    from starknet_py.net.client_errors import ClientError

    try:
        (verifier,) = await call_view(
            client, registry, "get_verifier_address", verifier_preset(layout, hasher)
        )
    except ClientError:
        return 0
    return int(verifier)


async def ensure_guard(
    ctx: DeployContext,
    artifact: Any,
    *,
    owner: int,
    pin: GuardPin,
    delay_s: int,
) -> int:
    """The guard: declared, deployed with ``pin`` and ``delay_s``, or an existing one
    converged to them through its timelock (proposed; applied in the same multicall when
    its delay is 0, else by a later run once due)."""
    class_hash = await ensure_declared(ctx, artifact)
    guard = await ensure_contract(
        ctx,
        GUARD,
        class_hash,
        guard_constructor_calldata(owner, pin, delay_s),
        f"constructor(owner {owner:#x}, {pin.shown()}, governance_delay_s {delay_s})",
    )
    if guard in ctx.would_deploy:
        return guard
    current = await read_guard_pin(ctx.client, guard)
    (current_delay,) = await call_view(ctx.client, guard, "get_governance_delay_s")
    changes: list[tuple[str, tuple[int, ...]]] = []
    if current == pin:
        ctx.step(f"{GUARD}.verifier = {pin.shown()}", "unchanged")
    else:
        changes.append((VERIFIER_PARAM, pin.values()))
    if current_delay == delay_s:
        ctx.step(f"{GUARD}.governance_delay_s = {delay_s}", "unchanged")
    else:
        changes.append((DELAY_PARAM, (delay_s,)))
    if not changes:
        return guard
    (guard_owner,) = await call_view(ctx.client, guard, "get_owner")
    sending = guard_owner == ctx.sender.address
    now = int((await ctx.client.get_block(block_number="latest")).timestamp)
    calls: list[Any] = []
    for param, values in changes:  # the delay last: the pin waits the delay in force
        pending = await read_guard_pending(ctx.client, guard, param)
        action, change_calls = guard_timelock_calls(
            guard, param, values, pending, now=now, delay=int(current_delay)
        )
        if not sending:
            action = f"differs (the guard's owner is {guard_owner:#x}, not the deployer)"
        elif ctx.dry_run and change_calls:
            action = f"would be {action}"
        calls += change_calls
        ctx.step(f"{GUARD}.{param} = {_shown(param, values)}", action)
    if sending and calls:
        await ctx.sender.invoke(
            calls, kind="invoke", target=f"{GUARD} ({guard:#x})", summary=f"{len(calls)} calls"
        )
    return guard


@dataclass(frozen=True)
class GuardPendingChange:
    values: tuple[int, ...]
    proposed_at: int
    eta: int

    def due(self, delay_now: int) -> int:
        """When it may be applied: its eta, or later when the delay was raised since."""
        return max(self.eta, self.proposed_at + delay_now)


async def read_guard_pending(client: Any, guard: int, param: str) -> GuardPendingChange | None:
    """``get_pending_change(param)``: Option Serde (0 = Some, 1 = None)."""
    raw = await call_view(client, guard, "get_pending_change", [encode_short_string(param)])
    if raw[0] == 1:
        return None
    n = raw[1]
    return GuardPendingChange(tuple(raw[2 : 2 + n]), raw[2 + n], raw[3 + n])


def guard_timelock_calls(
    guard: int,
    param: str,
    values: tuple[int, ...],
    pending: GuardPendingChange | None,
    *,
    now: int,
    delay: int,
) -> tuple[str, list[Any]]:
    """(action, calls) that move the guard's ``param`` towards ``values``."""
    key = [encode_short_string(param)]
    apply = make_call(guard, "apply_change", key)
    if pending is not None and pending.values == values:
        due = pending.due(delay)
        if due <= now <= due + GUARD_GRACE_S:
            return "set", [apply]
        if now < due:
            return f"pending (due in {due - now} s)", []
    calls = [] if pending is None else [make_call(guard, "cancel_change", key)]
    calls.append(make_call(guard, "propose_change", [*key, len(values), *values]))
    if delay == 0:
        return "set", [*calls, apply]
    return f"proposed (due in {delay} s: run again then)", calls


def _shown(param: str, values: tuple[int, ...]) -> str:
    if param == VERIFIER_PARAM:
        return GuardPin.from_felts(list(values)).shown()
    return str(values[0])


async def require_guard_verifier(client: Any, registry: int, layout: str, hasher: str) -> int:
    """The verifier Integrity's FactRegistry ``registry`` has for (layout, hasher): the
    one the guard must drive on a real network. Refuses when there is none."""
    verifier = await integrity_verifier(client, registry, layout, hasher)
    if not verifier:
        raise UsageError(
            f"Integrity's FactRegistry {registry:#x} has no verifier for ({layout}, {hasher}): "
            "the guard would have nothing to drive. Is it Integrity's FactRegistry of this "
            "chain? (A DevFactRegistry verifies nothing and is for a devnet only.)"
        )
    return verifier


__all__ = [
    "GUARD",
    "GuardPendingChange",
    "GuardPin",
    "ensure_guard",
    "guard_constructor_calldata",
    "guard_timelock_calls",
    "integrity_verifier",
    "read_guard_pending",
    "read_guard_pin",
    "require_guard_verifier",
]
