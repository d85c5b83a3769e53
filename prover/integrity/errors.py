"""Errors of the Integrity calldata package (all subclass ``prover.errors.ProverError``).

Codes are stable (logs, ledger, metrics); messages say what the operator should do. Every
problem with a proof file is one of these: the package never lets an ``IndexError`` or a
``KeyError`` escape, and never returns calldata for a proof it could not check.
"""

from __future__ import annotations

from prover.errors import ProverError


class IntegrityProofError(ProverError):
    """Base of this package's errors (mostly: a Stone proof Integrity cannot take). Exit 2."""

    code = "integrity_proof_error"
    exit_code = 2


class MissingAnnotations(IntegrityProofError):
    """The proof JSON has no annotations: Integrity's calldata is built from them."""

    code = "proof_without_annotations"


class UnsupportedProof(IntegrityProofError):
    """A layout, hasher, channel or Stone version this package (or Integrity) cannot handle."""

    code = "unsupported_proof"


class MalformedProof(IntegrityProofError):
    """The JSON is not a well-formed Stone proof: bad types, bad annotation lines, bad hex."""

    code = "malformed_proof"


class InconsistentProof(IntegrityProofError):
    """The parts of the proof disagree: sizes, annotations vs proof bytes, transcript."""

    code = "inconsistent_proof"


class InvalidProof(IntegrityProofError):
    """The proof is well formed but does not verify (Integrity would revert on it)."""

    code = "invalid_proof"


class StatementRejected(IntegrityProofError):
    """Integrity's memory verification (``strict``) would refuse the proof's public memory."""

    code = "statement_rejected"


class CalldataTooLarge(IntegrityProofError):
    """A transaction of the verification would exceed the network's calldata limit."""

    code = "calldata_too_large"


class BadJobId(IntegrityProofError):
    """A split-verification job id that is not a field element."""

    code = "bad_integrity_job_id"


class JobStateMismatch(IntegrityProofError):
    """On-chain state of a split-verification job does not belong to this proof."""

    code = "integrity_job_state_mismatch"
    exit_code = 1
