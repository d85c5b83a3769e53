"""Which verification the router will accept for a job's output. Pure: no I/O.

``execute_allocation(output, verification_hash)`` looks up ONE verification in the
registry the router stores (contracts/README.md, checks 13-17). The router accepts it
when its fact is the output's fact under the path's accepted program hash (direct:
``program_hash``, for Stone and dev proofs; bootloaded: ``child_program_hash``, for
Atlantic's), its verifier configuration is that path's pin (which must be set), and its
security bits are at least ``min_security_bits``. A registry may hold other
verifications of the same fact (another layout, relaxed memory verification, too few
bits): they do not count, and the keeper must name one that does.

The keeper therefore works out the one it needs (``requirement``), computes its hash
the way Integrity does (``prover.facts.verification_hash``) for the bits its proof has
(``accepted_verification``), and checks that the registry holds it
(``accepts``, on the registry's ``get_verification`` answer). Atlantic does not say how
many bits its proof has; its job picks an entry of the fact's verification list that
satisfies the same rules (``pick_listed``) and checks it the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from keeper.chain.governance import GovernanceParams, VerificationPath, VerifierConfig
from keeper.chain.values import Verification, VerificationListElement
from prover import facts
from prover.settings import ProverKind

_PROGRAM_HASH_FIELD: dict[VerificationPath, str] = {
    "direct": "program_hash",
    "bootloaded": "child_program_hash",
}


@dataclass(frozen=True)
class Refusal:
    """Why no verification of this job can be accepted; ``code`` is stable."""

    code: str
    reason: str


@dataclass(frozen=True)
class Requirement:
    """What a verification must be for the router to accept it for this output."""

    path: VerificationPath
    fact_hash: int
    config: VerifierConfig  # the router's pin for ``path``
    min_security_bits: int


@dataclass(frozen=True)
class AcceptedVerification:
    """One verification the router accepts, and the hash that names it."""

    path: VerificationPath
    fact_hash: int
    config: VerifierConfig
    security_bits: int
    verification_hash: int


def path_of(prover: ProverKind | str | None) -> VerificationPath:
    """Stone and dev facts are direct (the program's own); Atlantic's are bootloaded."""
    return "bootloaded" if prover == "atlantic" else "direct"


def requirement(
    path: VerificationPath,
    output: Sequence[int],
    fact_hash: int,
    governance: GovernanceParams,
) -> Requirement | Refusal:
    """The verification ``path`` needs for ``output``, whose fact the job computed as
    ``fact_hash``; a Refusal when the router accepts none for it as it stands."""
    field = _PROGRAM_HASH_FIELD[path]
    program = getattr(governance, field)
    if program == 0:
        return Refusal(
            "path_closed",
            f"the router accepts no {path} proofs ({field} is 0): this job's proof cannot "
            "be executed",
        )
    routers_fact = (
        facts.direct_fact(program, list(output))
        if path == "direct"
        else facts.bootloaded_fact(program, list(output))
    )
    if routers_fact != fact_hash:
        return Refusal(
            "other_fact",
            f"the job's fact {fact_hash:#x} is not the one the router computes for this "
            f"output under its {field} {program:#x} ({routers_fact:#x}): governance changed "
            "the program hash since the job was proved",
        )
    felts = governance.pin_felts(path)
    if not any(felts):
        return Refusal(
            "pin_unset",
            f"the router pins no verifier configuration for {path} proofs (all four fields "
            "0): it accepts no verification on that path",
        )
    pin = governance.pin(path)
    if pin is None:
        shown = ", ".join(hex(v) for v in felts)
        return Refusal(
            "pin_not_text",
            f"the router's {path} pin ({shown}) is not four short strings: no verification "
            "Integrity registers can match it; ask governance to pin a real configuration",
        )
    return Requirement(path, fact_hash, pin, governance.min_security_bits)


def accepted_verification(
    required: Requirement, security_bits: int
) -> AcceptedVerification | Refusal:
    """The verification of ``required`` with ``security_bits``, or a Refusal when the
    router would find it too weak."""
    if security_bits < required.min_security_bits:
        return Refusal(
            "too_few_security_bits",
            f"the proof has {security_bits} security bits; the router requires "
            f"{required.min_security_bits}",
        )
    return AcceptedVerification(
        required.path,
        required.fact_hash,
        required.config,
        security_bits,
        verification_hash_of(required.fact_hash, required.config, security_bits),
    )


def verification_hash_of(fact_hash: int, config: VerifierConfig, security_bits: int) -> int:
    """Integrity's key of one verification (the router's ``verification_hash``)."""
    config_hash = facts.verifier_config_hash(
        config.layout, config.hasher, config.stone_version, config.memory_verification
    )
    return facts.verification_hash(fact_hash, config_hash, security_bits)


def accepts(required: Requirement, found: Verification | None) -> bool:
    """Whether the registry's ``get_verification`` answer passes the router's checks
    15-17 for ``required`` (fact, pinned configuration, bits)."""
    return (
        found is not None
        and found.fact_hash == required.fact_hash
        and found.verifier_config == required.config
        and found.security_bits >= required.min_security_bits
    )


def pick_listed(
    required: Requirement, listed: Sequence[VerificationListElement]
) -> AcceptedVerification | None:
    """Among a fact's listed verifications, one the router accepts: pinned configuration,
    enough bits, and a hash that is Integrity's for them (an entry is never trusted on
    its word). The most bits wins; ties go to the lowest hash, so the choice is stable."""
    chosen: AcceptedVerification | None = None
    for entry in listed:
        if entry.verifier_config != required.config:
            continue
        candidate = accepted_verification(required, entry.security_bits)
        if isinstance(candidate, Refusal) or candidate.verification_hash != entry.verification_hash:
            continue
        if chosen is None or (candidate.security_bits, -candidate.verification_hash) > (
            chosen.security_bits,
            -chosen.verification_hash,
        ):
            chosen = candidate
    return chosen


def dev_security_bits(configured: int, min_security_bits: int) -> int:
    """The bits the dev prover registers: the configured value, raised to the router's
    minimum (a dev registration the router refuses would only burn a fee)."""
    return max(configured, min_security_bits)
