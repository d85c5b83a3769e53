"""Integrity's split verification jobs: how ``job_id`` works on-chain, and pure helpers to
resume a job after a crash (the I/O — storage reads, sending — is the caller's).

Rules (Integrity 4ce9504, src/contracts/fact_registry.cairo and verifier.cairo)
------------------------------------------------------------------------------
* Keying. ``job_id`` is a bare felt, global to the FactRegistry and to each CairoVerifier:
  it is NOT keyed by caller, and no call checks the caller. The FactRegistry stores
  ``verifier_configs[job_id]``; the CairoVerifier of the config's (layout, hasher) preset
  stores ``state_constant``, ``state_variable`` (Poseidon hashes of the FRI state structs),
  ``state_fact``, ``state_security_bits``, ``state_settings`` under ``job_id``.
* ``verify_proof_initial`` first writes ``verifier_configs[job_id]`` (unconditionally), then
  the verifier asserts ``state_constant[job_id]`` is None (``'job_id already exists'``), runs
  the STARK commitment and query phase and stores the five entries. A revert undoes the
  whole transaction, the config write included.
* ``verify_proof_step`` reads the config for ``job_id`` (``'Job id not found'`` if never
  initialised), and the verifier asserts the sent state constant and variable hash to the
  stored ones (``'Invalid state (constant)'`` / ``'Invalid state (variable)'``), folds one
  FRI layer and stores the new variable hash. Steps are deterministic: step k only succeeds
  when exactly k steps are done.
* ``verify_proof_final_and_register_fact`` checks both hashes, that every inner layer was
  folded and the last layer; it registers the fact (idempotent: a verification already
  registered is not stored twice, the event is emitted again) and resets all five verifier
  entries to None. ``verifier_configs[job_id]`` is left in place (overwritten by the next
  initial with that id). So a job id is reusable after its final call, never before.
* There is no cancel: a job whose initial landed stays open until someone sends its
  remaining steps and final (anyone can, with the same public calldata).
* Consequences. Sent twice, a step or the final reverts on the variable hash; the initial
  re-sent after it landed reverts on ``'job_id already exists'``; a step after the final
  reverts on ``'No state (constant) saved'``. Fee estimation (simulation) reports these
  reverts without sending anything; a reverting transaction that is sent anyway is
  included and charged (devnet: 4.8e15 FRI for a re-sent step). So read the state (or
  simulate) before every send after a restart.
  Ids must be unpredictable and never reused before finalisation: another party using
  the same id first blocks our initial; worse, another party's initial with our open id
  under a *different* (layout, hasher) preset overwrites ``verifier_configs[job_id]``,
  after which our steps are routed to the other verifier and revert (read from the source;
  not exercised on devnet, which has one verifier). Use a random 248-bit id
  (``new_job_id``), persisted before the initial is sent.
* Views. No contract exposes job state. The FactRegistry's views are
  ``get_all_verifications_for_fact_hash(fact)``, ``get_verification(verification_hash)``
  and ``get_verifier_address(preset)``. Job progress must be read from the CairoVerifier's
  storage (``starknet_getStorageAt``): ``verifier_storage_address(name, job_id)`` gives the
  address of an ``Option<felt252>`` entry: slot +0 holds 1 (Some) or 0 (None), slot +1 the
  value. The CairoVerifier's address is ``get_verifier_address((layout, hasher family))``,
  e.g. ``('small', 'keccak')``.

All of the above was checked on starknet-devnet 0.8.2 with the shared Integrity classes
(fibonacci proof, random job id): storage reads gave None/None before the initial, the
plan's constant and step-k variable hashes after each call, None/None after the final;
the same id then started a new job. Note the encodings differ: storage ``Option`` is
1 = Some / 0 = None, while a view returning an ``Option`` (``get_verification``) uses
Serde, 0 = Some / 1 = None.

Resume after a crash (``SplitPlan.next_call``): read ``state_constant[job_id]`` and
``state_variable[job_id]``. Constant None: either nothing landed (send the initial) or the
final landed (the verification is registered: check ``get_verification``), or a sent
transaction is still pending (check the recorded transaction hash first). Constant equal
to this plan's: the variable hash says how many steps are done; send the call whose input
it matches. Anything else: the id is used by another proof; it cannot be recovered.

Calldata limit. Starknet refuses invoke transactions with more than 5,000 calldata felts;
for an account call that is the call's calldata plus 4 (``Call.transaction_felts``).
``verify_proof_initial`` carries the whole proof minus the FRI witness and cannot be split
further: a proof whose initial exceeds the limit (the 38-query allocation proof: 5,006 + 4)
can only be verified on such a network after re-proving with fewer queries (e.g. the same
security with a larger log_n_cosets). ``check_transaction_sizes`` reports it.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from starknet_py.hash.storage import get_storage_var_address

from prover.integrity.calldata import (
    Call,
    VerifierConfiguration,
    split_calls_and_schedule,
)
from prover.integrity.errors import CalldataTooLarge, JobStateMismatch, MalformedProof
from prover.integrity.field import poseidon_many
from prover.integrity.folding import FriStateConstant, FriStateVariable
from prover.integrity.model import StarkProof

MAX_TRANSACTION_CALLDATA = 5_000  # felts per invoke transaction on Starknet networks
IntegrityFlow = Literal["auto", "split"]  # the operator's setting (chain.integrity_flow)
INTEGRITY_FLOWS: tuple[IntegrityFlow, ...] = ("auto", "split")
Flow = Literal["monolith", "split"]  # what is sent for one proof
VerifierStateEntry = Literal[
    "state_constant", "state_variable", "state_fact", "state_security_bits", "state_settings"
]


@dataclass(frozen=True)
class SplitPlan:
    """The split calls of one job and the on-chain state each call expects."""

    job_id: int
    calls: tuple[Call, ...]  # initial, steps..., final
    constant_hash: int  # stored by the initial, expected by every later call
    variable_hashes: tuple[int, ...]  # [i] = state_variable hash calls[i + 1] expects

    def next_call(self, stored_constant: int | None, stored_variable: int | None) -> int | None:
        """Index of the next call to send given the verifier's stored hashes, or None when
        the constant is None (initial not landed *or* final landed: the caller decides
        with ``get_verification``; 0 is then the next call if not registered)."""
        if stored_constant is None:
            return None
        if stored_constant != self.constant_hash or stored_variable is None:
            raise JobStateMismatch(
                f"job {self.job_id:#x} is open on-chain for another proof (its state hash "
                "differs from this proof's): do not reuse the id; start a new job id"
            )
        if stored_variable not in self.variable_hashes:
            raise JobStateMismatch(
                f"job {self.job_id:#x}: the stored FRI state matches none of this proof's "
                "steps: the id is used by another run; start a new job id"
            )
        return self.variable_hashes.index(stored_variable) + 1


def new_job_id() -> int:
    """A random 248-bit job id (fits a felt; collisions and squatting are impractical)."""
    return secrets.randbits(248)


def split_plan(
    proof: StarkProof, job_id: int, config: VerifierConfiguration | None = None
) -> SplitPlan:
    calls, schedule = split_calls_and_schedule(proof, job_id, config)
    return SplitPlan(
        job_id=job_id,
        calls=tuple(calls),
        constant_hash=state_constant_hash(schedule.constant),
        variable_hashes=tuple(state_variable_hash(v) for v in schedule.variables),
    )


def state_constant_hash(constant: FriStateConstant) -> int:
    """Integrity's ``hash_constant``."""
    values = [
        constant.n_layers,
        poseidon_many(constant.eval_points),
        poseidon_many(constant.step_sizes),
        constant.last_layer_coefficients_hash,
    ]
    for config, commitment_hash in zip(
        constant.inner_layers, constant.commitment_hashes, strict=True
    ):
        vector = config.vector
        values += [config.n_columns, vector.height, vector.n_verifier_friendly_commitment_layers]
        values += [vector.height, vector.n_verifier_friendly_commitment_layers, commitment_hash]
    return poseidon_many(values)


def state_variable_hash(variable: FriStateVariable) -> int:
    """Integrity's ``hash_variable``."""
    values = [variable.iteration]
    for query in variable.queries:
        values += [query.index, query.y_value, query.x_inv_value]
    return poseidon_many(values)


def verifier_storage_address(entry: VerifierStateEntry, job_id: int) -> int:
    """Storage address of ``<entry>[job_id]`` in the CairoVerifier (an Option<felt252>
    there: read this slot (1 = Some, 0 = None) and the next one (the value))."""
    return int(get_storage_var_address(entry, job_id))


def stored_option(variant: int, value: int) -> int | None:
    """Decodes an ``Option<felt252>`` from its two storage slots."""
    if variant == 0:
        return None
    if variant == 1:
        return value
    raise MalformedProof(
        f"storage holds Option variant {variant}: not an Integrity CairoVerifier job entry "
        "(wrong contract address or storage slot)"
    )


def check_transaction_sizes(calls: Sequence[Call], limit: int = MAX_TRANSACTION_CALLDATA) -> None:
    """Refuse a call sequence with a transaction over the network's calldata limit."""
    for call in calls:
        if call.transaction_felts > limit:
            raise CalldataTooLarge(
                f"{call.function} needs {call.transaction_felts} calldata felts in one "
                f"transaction; the network accepts {limit}. It cannot be split further: "
                "re-prove with fewer FRI queries (raise log_n_cosets to keep the security "
                "bits), then verify again"
            )


def choose_flow(monolith: Call, limit: int, setting: IntegrityFlow = "auto") -> Flow:
    """How to verify a proof whose one-transaction call is ``monolith``.

    ``"monolith"`` (``verify_proof_full``: one transaction, ~10 M L2 gas less than the
    split, no state re-sent between transactions) when the setting is ``auto`` and its
    whole transaction fits the network's limit: ``Call.transaction_felts`` is the call's
    calldata plus the account's ``__execute__`` framing (``ACCOUNT_CALL_OVERHEAD``), i.e.
    every calldata felt of the invoke. Otherwise ``"split"``; whether the split's own
    transactions fit is ``check_transaction_sizes``'s to say.
    """
    if setting not in INTEGRITY_FLOWS:
        raise ValueError(
            f"integrity flow {setting!r} is not one of {', '.join(INTEGRITY_FLOWS)}"
        )
    if limit <= 0:
        raise ValueError(f"calldata limit {limit} is not a positive number of felts")
    if setting == "auto" and monolith.transaction_felts <= limit:
        return "monolith"
    return "split"
