"""Calldata of Integrity's CairoVerifier itself and of our IntegrityGuard, which drives it.

Integrity's FactRegistry takes a ``VerifierConfiguration`` (four short strings) and looks
up the verifier of its (layout, hasher family) preset; the verifier itself takes
``VerifierSettings``: ``memory_verification`` (a felt: strict 0, relaxed 1, cairo1 2),
``hasher_bit_length`` (enum: Lsb160 0, Lsb248 1) and ``stone_version`` (enum: Stone5 0,
Stone6 1), three felts in Cairo Serde. Otherwise the calldata is the same: the verifier's
calls are the registry's with the configuration replaced by the settings
(``verify_proof_full``, ``verify_proof_initial``, ``verify_proof_step``,
``verify_proof_final``).

The guard (contracts/src/integrity_guard.cairo) has the verifier's four function names;
each takes one ``Span<felt252>``: the verifier's calldata, which it forwards unchanged to
the pinned verifier. So a guard call is the verifier call with a length prefix. The guard
refuses (``settings not pinned``) settings other than its pin, at the initial call and,
decisively, in the verifier's final report.
"""

from __future__ import annotations

from collections.abc import Callable

from prover.integrity.calldata import (
    VERIFY_FINAL,
    VERIFY_FULL,
    VERIFY_INITIAL,
    VERIFY_STEP,
    Call,
    VerifierConfiguration,
    full_verification_call,
    split_calls_and_schedule,
    verifier_config,
)
from prover.integrity.errors import UnsupportedProof
from prover.integrity.jobs import SplitPlan, state_constant_hash, state_variable_hash
from prover.integrity.model import StarkProof

# CairoVerifier's (and the guard's) function names.
VERIFIER_FULL = "verify_proof_full"
VERIFIER_INITIAL = "verify_proof_initial"
VERIFIER_STEP = "verify_proof_step"
VERIFIER_FINAL = "verify_proof_final"
_VERIFIER_FUNCTION = {
    VERIFY_FULL: VERIFIER_FULL,
    VERIFY_INITIAL: VERIFIER_INITIAL,
    VERIFY_STEP: VERIFIER_STEP,
    VERIFY_FINAL: VERIFIER_FINAL,
}
MEMORY_VERIFICATION = {"strict": 0, "relaxed": 1, "cairo1": 2}
# Integrity's split_settings maps 'blake2s_160_lsb' to Lsb248 as well: its bit length
# cannot be told apart in the verifier's report, so it has no entry here.
HASHER_BIT_LENGTH = {"keccak_160_lsb": 0, "keccak_248_lsb": 1, "blake2s_248_lsb": 1}
STONE_VERSION = {"stone5": 0, "stone6": 1}
_CONFIG_FELTS = 4


def verifier_settings(config: VerifierConfiguration) -> tuple[int, int, int]:
    """``VerifierSettings`` felts of a configuration, as Integrity's ``split_settings``."""
    try:
        return (
            MEMORY_VERIFICATION[config.memory_verification],
            HASHER_BIT_LENGTH[config.hasher],
            STONE_VERSION[config.stone_version],
        )
    except KeyError as exc:
        raise UnsupportedProof(
            f"verifier configuration ({config.layout}, {config.hasher}, "
            f"{config.stone_version}, {config.memory_verification}): {exc.args[0]!r} has no "
            "verifier setting the guard can check (memory: strict/relaxed/cairo1; hasher: "
            f"{', '.join(HASHER_BIT_LENGTH)}; stone: stone5/stone6)"
        ) from None


def verifier_call(registry_call: Call, config: VerifierConfiguration) -> Call:
    """The CairoVerifier call that a FactRegistry call makes (same proof data)."""
    function = _VERIFIER_FUNCTION.get(registry_call.function)
    if function is None:
        raise ValueError(f"{registry_call.function!r} is not a FactRegistry verification call")
    data = registry_call.calldata
    settings = verifier_settings(config)
    if registry_call.function == VERIFY_FULL:
        return Call(function, (*settings, *data[_CONFIG_FELTS:]))
    if registry_call.function == VERIFY_INITIAL:
        return Call(function, (data[0], *settings, *data[1 + _CONFIG_FELTS :]))
    return Call(function, data)


def guard_call(registry_call: Call, config: VerifierConfiguration) -> Call:
    """The IntegrityGuard call for a FactRegistry call: the verifier's calldata as a span."""
    inner = verifier_call(registry_call, config)
    return Call(inner.function, (len(inner.calldata), *inner.calldata))


def guard_full_call(proof: StarkProof, config: VerifierConfiguration | None = None) -> Call:
    """``IntegrityGuard.verify_proof_full``: one transaction."""
    used = config or verifier_config(proof)
    return guard_call(full_verification_call(proof, used), used)


def guard_split_calls(
    proof: StarkProof, job_id: int, config: VerifierConfiguration | None = None
) -> list[Call]:
    """The guard's split calls, in order: initial, one step per inner FRI layer, final."""
    return list(guard_split_plan(proof, job_id, config).calls)


def guard_split_plan(
    proof: StarkProof, job_id: int, config: VerifierConfiguration | None = None
) -> SplitPlan:
    """The guard's split calls with the verifier state each expects (resume after a crash:
    the guard keeps the verifier's job id, so the verifier's storage is read as for the
    registry)."""
    return _plan(proof, job_id, config, guard_call)


def verifier_split_calls(
    proof: StarkProof, job_id: int, config: VerifierConfiguration | None = None
) -> list[Call]:
    """The CairoVerifier's own split calls (what anyone can send to it directly)."""
    return list(_plan(proof, job_id, config, verifier_call).calls)


def _plan(
    proof: StarkProof,
    job_id: int,
    config: VerifierConfiguration | None,
    convert: Callable[[Call, VerifierConfiguration], Call],
) -> SplitPlan:
    used = config or verifier_config(proof)
    registry_calls, schedule = split_calls_and_schedule(proof, job_id, used)
    return SplitPlan(
        job_id=job_id,
        calls=tuple(convert(c, used) for c in registry_calls),
        constant_hash=state_constant_hash(schedule.constant),
        variable_hashes=tuple(state_variable_hash(v) for v in schedule.variables),
    )

