"""FRI and security parameters for Stone, checked against Stone's rule and Integrity's
limits before any proving starts (FACTS §1, §4).

Stone's rule: ``log2(last_layer_degree_bound) + sum(fri_step_list) == log2(n_steps) + 4``
(the CPU AIR uses 16 trace rows per step). Breaking it makes the prover abort (SIGABRT)
after the trace is built; breaking Integrity's limits yields a proof that can never be
verified on-chain. Both are cheap to check here.

Tiny traces: with the default last layer 64 the FRI has ``log2(n_steps) - 2`` folding
steps. n_steps 4 gives ``[0]`` (one layer: Stone accepts it, Integrity does not) and
n_steps 1 or 2 cannot be proven with that last layer at all. Integrity needs n_steps >= 8
with last layer 64; pass a smaller last layer for smaller traces. cairo-run pads real
programs far beyond that, so this only matters for hand-made inputs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeGuard

from prover.errors import FriParameterError

_LOG_ROWS_PER_STEP = 4  # CPU AIR: 16 trace rows per Cairo step
_MAX_FRI_STEP = 4  # Integrity: inner steps 1..4
_MIN_FRI_LAYERS = 2  # Integrity: 2..15 layers (len(fri_step_list))
_MAX_FRI_LAYERS = 15
_MAX_LOG_LAST_LAYER = 15  # Integrity: log2(last_layer_degree_bound) <= 15
_MIN_POW_BITS = 20  # Integrity: proof_of_work_bits in [20, 50)
_MAX_POW_BITS_EXCLUSIVE = 50
# Not checked by Integrity; StarkWare's Cairo and Solidity verifiers cap these, and past
# them a proof's calldata (queries) or prover memory (blowup) is unreasonable anyway.
_MAX_N_QUERIES = 48
_MAX_LOG_N_COSETS = 16


@dataclass(frozen=True)
class FriParameters:
    """One Stone parameter set (the ``stark`` section of the parameter file)."""

    fri_step_list: tuple[int, ...]
    last_layer_degree_bound: int
    n_queries: int
    proof_of_work_bits: int
    log_n_cosets: int

    def security_bits(self) -> int:
        """n_queries·log_n_cosets + proof_of_work_bits, as Integrity reports it."""
        return security_bits(self.n_queries, self.log_n_cosets, self.proof_of_work_bits)

    def to_stone_stark(self) -> dict[str, Any]:
        """The ``stark`` object of Stone's --parameter_file."""
        return {
            "fri": {
                "fri_step_list": list(self.fri_step_list),
                "last_layer_degree_bound": self.last_layer_degree_bound,
                "n_queries": self.n_queries,
                "proof_of_work_bits": self.proof_of_work_bits,
            },
            "log_n_cosets": self.log_n_cosets,
        }

    @classmethod
    def from_stone_stark(cls, stark: Mapping[str, Any]) -> FriParameters:
        """Read the ``stark`` object of a Stone parameter file (inverse of to_stone_stark).

        Only the shape is checked here; use check_fri_rule for the rules.
        """
        fri = stark.get("fri") if isinstance(stark, Mapping) else None
        if not isinstance(fri, Mapping):
            raise FriParameterError(
                'parameter file "stark" section must hold a "fri" object '
                '(see Stone\'s params.json: {"stark": {"fri": {...}, "log_n_cosets": 4}})'
            )
        steps = fri.get("fri_step_list")
        if not isinstance(steps, list) or not all(_is_int(s) for s in steps):
            raise FriParameterError(f"fri_step_list must be a list of integers, got {steps!r}")
        return cls(
            fri_step_list=tuple(steps),
            last_layer_degree_bound=_int_field(fri, "last_layer_degree_bound"),
            n_queries=_int_field(fri, "n_queries"),
            proof_of_work_bits=_int_field(fri, "proof_of_work_bits"),
            log_n_cosets=_int_field(stark, "log_n_cosets"),
        )


def security_bits(n_queries: int, log_n_cosets: int, proof_of_work_bits: int) -> int:
    """Security of a proof in bits: n_queries·log_n_cosets + proof_of_work_bits."""
    for name, value in (
        ("n_queries", n_queries),
        ("log_n_cosets", log_n_cosets),
        ("proof_of_work_bits", proof_of_work_bits),
    ):
        if not _is_int(value) or value < 0:
            raise FriParameterError(f"{name} must be a non-negative integer, got {value!r}")
    return n_queries * log_n_cosets + proof_of_work_bits


def fri_step_list(n_steps: int, last_layer_degree_bound: int = 64) -> tuple[int, ...]:
    """The usual FRI split ``[0] + [4]*q + ([r] if r else [])`` for this trace.

    q, r = divmod(log2(n_steps) + 4 - log2(last_layer_degree_bound), 4). The result
    always satisfies Stone's rule; it is ``(0,)`` when the last layer already equals the
    degree bound (valid for Stone, too few layers for Integrity).
    """
    log_n_steps = _log2_exact(n_steps, "n_steps")
    log_last = _log2_exact(last_layer_degree_bound, "last_layer_degree_bound")
    folds = log_n_steps + _LOG_ROWS_PER_STEP - log_last
    if folds < 0:
        raise FriParameterError(
            f"last_layer_degree_bound {last_layer_degree_bound} is larger than the STARK "
            f"degree bound 16·n_steps = {16 * n_steps}: use a last layer of at most "
            f"{16 * n_steps} (and at most {8 * n_steps} for Integrity)"
        )
    q, r = divmod(folds, _MAX_FRI_STEP)
    return (0, *([_MAX_FRI_STEP] * q), *([r] if r else []))


def check_fri_rule(n_steps: int, params: FriParameters, *, for_integrity: bool = True) -> None:
    """Raise FriParameterError listing every rule ``params`` breaks for this trace.

    Stone's own rules are always checked; ``for_integrity`` adds the on-chain verifier's
    limits (FACTS §4) and the keeper's sanity caps.
    """
    problems = _stone_problems(n_steps, params)
    if for_integrity:
        problems += _integrity_problems(params)
    if problems:
        raise FriParameterError("; ".join(problems))


def choose_queries(required_bits: int, log_n_cosets: int, proof_of_work_bits: int) -> int:
    """The smallest n_queries (at least 1) with n_queries·log_n_cosets + PoW >= required."""
    if not _is_int(required_bits) or required_bits < 1:
        raise FriParameterError(f"required security bits must be >= 1, got {required_bits!r}")
    if not _is_int(log_n_cosets) or log_n_cosets < 1:
        raise FriParameterError(f"log_n_cosets must be >= 1 (blowup 2), got {log_n_cosets!r}")
    if not _is_int(proof_of_work_bits) or proof_of_work_bits < 0:
        raise FriParameterError(f"proof_of_work_bits must be >= 0, got {proof_of_work_bits!r}")
    n_queries = max(1, -(-(required_bits - proof_of_work_bits) // log_n_cosets))
    if n_queries > _MAX_N_QUERIES:
        best = _MAX_N_QUERIES * log_n_cosets + proof_of_work_bits
        raise FriParameterError(
            f"{required_bits} security bits are unreachable with log_n_cosets {log_n_cosets} "
            f"and {proof_of_work_bits} PoW bits: it needs {n_queries} queries, the limit is "
            f"{_MAX_N_QUERIES} (at most {best} bits); raise log_n_cosets or proof_of_work_bits"
        )
    return n_queries


def fri_parameters(
    n_steps: int,
    *,
    required_bits: int,
    log_n_cosets: int = 4,
    proof_of_work_bits: int = 24,
    last_layer_degree_bound: int = 64,
) -> FriParameters:
    """A parameter set for this trace reaching ``required_bits``, valid for Stone and
    Integrity (raises FriParameterError otherwise)."""
    _check_pow(proof_of_work_bits)
    params = FriParameters(
        fri_step_list=fri_step_list(n_steps, last_layer_degree_bound),
        last_layer_degree_bound=last_layer_degree_bound,
        n_queries=choose_queries(required_bits, log_n_cosets, proof_of_work_bits),
        proof_of_work_bits=proof_of_work_bits,
        log_n_cosets=log_n_cosets,
    )
    check_fri_rule(n_steps, params, for_integrity=True)
    return params


def _stone_problems(n_steps: int, params: FriParameters) -> list[str]:
    problems: list[str] = []
    log_n_steps = _log2_or_none(n_steps)
    if log_n_steps is None:
        problems.append(f"n_steps must be a power of two (from the public input), got {n_steps!r}")
    log_last = _log2_or_none(params.last_layer_degree_bound)
    if log_last is None:
        problems.append(
            "last_layer_degree_bound must be a power of two, got "
            f"{params.last_layer_degree_bound!r}"
        )
    steps = params.fri_step_list
    if not steps or not all(_is_int(s) and s >= 0 for s in steps):
        problems.append(f"fri_step_list must be non-empty non-negative integers, got {list(steps)}")
    elif log_n_steps is not None and log_last is not None:
        expected = log_n_steps + _LOG_ROWS_PER_STEP
        if log_last + sum(steps) != expected:
            problems.append(
                f"FRI degree bound does not match the STARK degree bound: "
                f"log2(last_layer_degree_bound {params.last_layer_degree_bound}) + "
                f"sum(fri_step_list {list(steps)}) = {log_last} + {sum(steps)} = "
                f"{log_last + sum(steps)}, but 16·n_steps = {16 * n_steps} needs {expected} "
                f"(Stone aborts with 'Fri parameters do not match stark degree bound'); "
                f"the steps must sum to {expected - log_last}"
            )
    if not _is_int(params.n_queries) or params.n_queries < 1:
        problems.append(f"n_queries must be >= 1, got {params.n_queries!r}")
    if not _is_int(params.log_n_cosets) or params.log_n_cosets < 1:
        problems.append(f"log_n_cosets must be >= 1 (blowup 2), got {params.log_n_cosets!r}")
    if not _is_int(params.proof_of_work_bits) or params.proof_of_work_bits < 0:
        problems.append(f"proof_of_work_bits must be >= 0, got {params.proof_of_work_bits!r}")
    return problems


def _integrity_problems(params: FriParameters) -> list[str]:
    problems: list[str] = []
    steps = params.fri_step_list
    if steps and steps[0] != 0:
        problems.append(f"Integrity needs the first FRI step to be 0, got {list(steps)}")
    bad_inner = [s for s in steps[1:] if not (_is_int(s) and 1 <= s <= _MAX_FRI_STEP)]
    if bad_inner:
        problems.append(
            f"Integrity needs every FRI step after the first in 1..{_MAX_FRI_STEP}, "
            f"got {bad_inner} in {list(steps)}"
        )
    if not _MIN_FRI_LAYERS <= len(steps) <= _MAX_FRI_LAYERS:
        problems.append(
            f"Integrity needs {_MIN_FRI_LAYERS}..{_MAX_FRI_LAYERS} FRI layers "
            f"(len(fri_step_list)), got {len(steps)} in {list(steps)}; "
            "lower last_layer_degree_bound for a small trace"
        )
    log_last = _log2_or_none(params.last_layer_degree_bound)
    if log_last is not None and log_last > _MAX_LOG_LAST_LAYER:
        problems.append(
            f"Integrity needs last_layer_degree_bound <= 2**{_MAX_LOG_LAST_LAYER}, "
            f"got {params.last_layer_degree_bound}"
        )
    pow_bits = params.proof_of_work_bits
    if _is_int(pow_bits) and not _MIN_POW_BITS <= pow_bits < _MAX_POW_BITS_EXCLUSIVE:
        problems.append(
            f"Integrity needs proof_of_work_bits in {_MIN_POW_BITS}..{_MAX_POW_BITS_EXCLUSIVE - 1}"
            f", got {pow_bits}"
        )
    if _is_int(params.n_queries) and params.n_queries > _MAX_N_QUERIES:
        problems.append(
            f"n_queries must be at most {_MAX_N_QUERIES}, got {params.n_queries}; "
            "raise log_n_cosets or proof_of_work_bits instead"
        )
    if _is_int(params.log_n_cosets) and params.log_n_cosets > _MAX_LOG_N_COSETS:
        problems.append(
            f"log_n_cosets must be at most {_MAX_LOG_N_COSETS}, got {params.log_n_cosets}"
        )
    return problems


def _check_pow(proof_of_work_bits: int) -> None:
    if not _is_int(proof_of_work_bits) or not (
        _MIN_POW_BITS <= proof_of_work_bits < _MAX_POW_BITS_EXCLUSIVE
    ):
        raise FriParameterError(
            f"proof_of_work_bits must be in {_MIN_POW_BITS}..{_MAX_POW_BITS_EXCLUSIVE - 1} "
            f"(Integrity's limits), got {proof_of_work_bits!r}"
        )


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _log2_or_none(value: object) -> int | None:
    if not _is_int(value):
        return None
    if value < 1 or value & (value - 1):
        return None
    return value.bit_length() - 1


def _log2_exact(value: int, name: str) -> int:
    log = _log2_or_none(value)
    if log is None:
        raise FriParameterError(f"{name} must be a power of two (1, 2, 4, ...), got {value!r}")
    return log


def _int_field(section: Mapping[str, Any], key: str) -> int:
    value = section.get(key)
    if not _is_int(value):
        raise FriParameterError(f"parameter file field {key!r} must be an integer, got {value!r}")
    return value
