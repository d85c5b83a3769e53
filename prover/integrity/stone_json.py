"""Typed access to Stone's proof JSON (``proof_parameters`` and the generic helpers).

Only what Integrity's calldata depends on is read; everything read is type-checked, so a
malformed file gives a ``MalformedProof`` naming the field instead of a ``KeyError``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from prover.integrity.errors import MalformedProof, UnsupportedProof

# Stone's commitment_hash name -> Integrity's hasher name. Blake2s variants are refused:
# their proof of work and masking are not replayed here.
HASHERS = {
    "keccak256_masked160_lsb": "keccak_160_lsb",
    "keccak256_masked248_lsb": "keccak_248_lsb",
}
_CHANNEL = "poseidon3"
_POW_HASH = "keccak256"
# Settings Stone records that Integrity's verifier assumes (checked when present).
_OPTIONAL_CHOICES: dict[str, object] = {
    "verifier_friendly_commitment_hash": "poseidon3",
    "verifier_friendly_channel_updates": True,
    "use_extension_field": False,
}


@dataclass(frozen=True)
class StoneParameters:
    hasher: str
    n_verifier_friendly_commitment_layers: int
    fri_step_list: tuple[int, ...]
    last_layer_degree_bound: int
    n_queries: int
    proof_of_work_bits: int
    log_n_cosets: int


def mapping(value: object, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise MalformedProof(f"{what} must be a JSON object, got {type(value).__name__}")
    return value


def field(container: Mapping[str, Any], name: str, what: str) -> Any:
    if name not in container:
        raise MalformedProof(
            f'{what} has no "{name}": pass the JSON cpu_air_prover wrote, unmodified'
        )
    return container[name]


def integer(container: Mapping[str, Any], name: str, what: str, *, minimum: int = 0) -> int:
    """An integer field in [minimum, 2**64): every integer of Stone's JSON is a u64 or less."""
    value = field(container, name, what)
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value < 2**64:
        raise MalformedProof(
            f'{what} "{name}" must be an integer in [{minimum}, 2**64), got {value!r}'
        )
    return value


def parameters(value: object) -> StoneParameters:
    """``proof_parameters``, refusing what Integrity cannot verify."""
    params = mapping(value, "proof_parameters")
    _require_choice(params, "channel_hash", _CHANNEL, "Integrity's channel is Poseidon")
    for name, wanted in _OPTIONAL_CHOICES.items():
        if name in params and params[name] != wanted:
            raise UnsupportedProof(
                f"{name} is {params[name]!r}; Integrity verifies only proofs made with "
                f"{wanted!r}: set it in the Stone parameter file and prove again"
            )
    commitment_hash = field(params, "commitment_hash", "proof_parameters")
    if not isinstance(commitment_hash, str) or commitment_hash not in HASHERS:
        raise UnsupportedProof(
            f"commitment_hash {commitment_hash!r} is not supported here (supported: "
            f"{', '.join(HASHERS)}; blake2s proofs are not replayed): set it in the Stone "
            "parameter file and prove again"
        )
    _require_choice(params, "pow_hash", _POW_HASH, "the keccak hashers' proof of work")
    stark = mapping(field(params, "stark", "proof_parameters"), "proof_parameters.stark")
    fri = mapping(field(stark, "fri", "proof_parameters.stark"), "proof_parameters.stark.fri")
    steps = field(fri, "fri_step_list", "fri")
    if not isinstance(steps, list) or not all(
        isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 2**64 for s in steps
    ):
        raise MalformedProof(f"fri_step_list must be a list of integers >= 0, got {steps!r}")
    return StoneParameters(
        hasher=HASHERS[commitment_hash],
        n_verifier_friendly_commitment_layers=integer(
            params, "n_verifier_friendly_commitment_layers", "proof_parameters"
        ),
        fri_step_list=tuple(steps),
        last_layer_degree_bound=integer(fri, "last_layer_degree_bound", "fri", minimum=1),
        n_queries=integer(fri, "n_queries", "fri", minimum=1),
        proof_of_work_bits=integer(fri, "proof_of_work_bits", "fri"),
        log_n_cosets=integer(stark, "log_n_cosets", "stark", minimum=1),
    )


def _require_choice(params: Mapping[str, Any], name: str, wanted: str, why: str) -> None:
    found = field(params, name, "proof_parameters")
    if found != wanted:
        raise UnsupportedProof(
            f'{name} is {found!r}, Integrity needs "{wanted}" ({why}): set it in the Stone '
            "parameter file and prove again"
        )
