"""Stone proof -> Integrity (Herodotus' Stone verifier on Starknet) calldata, in pure Python.

Usage::

    proof = parse_proof(json.loads(path.read_text()))    # checks everything, ~0.3-1.5 s
    config = verifier_config(proof)                      # (layout, hasher, stone version, strict)
    call = full_verification_call(proof)                 # verify_proof_full_and_register_fact
    calls = split_calldata(proof, job_id)                # initial, steps..., final
    plan = split_plan(proof, job_id)                     # the same calls + state hashes to resume
    guard_split_plan(proof, job_id), guard_full_call(proof)  # through our IntegrityGuard
    check_transaction_sizes(calls)                       # CalldataTooLarge over 5,000 felts
    choose_flow(guard_full_call(proof), 5000)            # "monolith" when it fits one tx
    fact_of(proof), security_bits(proof)                 # what Integrity will register

``parse_proof`` takes the decoded JSON of ``cpu_air_prover --generate_annotations`` (stone5
or stone6; layouts small, recursive, recursive_with_poseidon, dex, starknet,
starknet_with_keccak; hashers keccak_160_lsb and keccak_248_lsb). It refuses, with an
``IntegrityProofError`` (a ``prover.errors.ProverError``), anything it cannot check:
missing or edited annotations, annotations that disagree with ``proof_hex``, sizes that do
not fit the layout, a transcript that does not reproduce the annotated verifier messages,
a bad proof of work or an FRI last layer that does not verify. It never returns calldata
for a proof it could not replay.

Calldata (lists of felts) is byte-for-byte what Integrity's tooling emits: the monolith
equals Integrity's serializer output, the split calls equal integrity-rs 0.1.0's
``split_proof`` + ``into_calls``. ``Call.calldata`` is the whole calldata of one FactRegistry
call; ``Call.transaction_felts`` adds the account's multicall framing.

Job ids of the split flow (global, not per caller; reusable only after the final call;
resumable from the verifier's storage): see ``prover.integrity.jobs``.
"""

from __future__ import annotations

from prover.integrity.calldata import (
    Call,
    VerifierConfiguration,
    full_verification_call,
    monolith_calldata,
    split_calldata,
    verifier_config,
)
from prover.integrity.errors import (
    BadJobId,
    CalldataTooLarge,
    InconsistentProof,
    IntegrityProofError,
    InvalidProof,
    JobStateMismatch,
    MalformedProof,
    MissingAnnotations,
    StatementRejected,
    UnsupportedProof,
)
from prover.integrity.guard import (
    guard_call,
    guard_full_call,
    guard_split_calls,
    guard_split_plan,
    verifier_call,
    verifier_settings,
    verifier_split_calls,
)
from prover.integrity.jobs import (
    INTEGRITY_FLOWS,
    MAX_TRANSACTION_CALLDATA,
    Flow,
    IntegrityFlow,
    SplitPlan,
    check_transaction_sizes,
    choose_flow,
    new_job_id,
    split_plan,
    stored_option,
    verifier_storage_address,
)
from prover.integrity.model import StarkProof
from prover.integrity.proof import parse_proof
from prover.integrity.statement import (
    ProofStatement,
    fact_of,
    proof_statement,
    security_bits,
    verification_hash,
)

__all__ = [
    "INTEGRITY_FLOWS",
    "MAX_TRANSACTION_CALLDATA",
    "BadJobId",
    "Call",
    "CalldataTooLarge",
    "Flow",
    "InconsistentProof",
    "IntegrityFlow",
    "IntegrityProofError",
    "InvalidProof",
    "JobStateMismatch",
    "MalformedProof",
    "MissingAnnotations",
    "ProofStatement",
    "SplitPlan",
    "StarkProof",
    "StatementRejected",
    "UnsupportedProof",
    "VerifierConfiguration",
    "check_transaction_sizes",
    "choose_flow",
    "fact_of",
    "full_verification_call",
    "guard_call",
    "guard_full_call",
    "guard_split_calls",
    "guard_split_plan",
    "monolith_calldata",
    "new_job_id",
    "parse_proof",
    "proof_statement",
    "security_bits",
    "split_calldata",
    "split_plan",
    "stored_option",
    "verification_hash",
    "verifier_call",
    "verifier_config",
    "verifier_settings",
    "verifier_split_calls",
    "verifier_storage_address",
]
