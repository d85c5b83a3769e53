"""Fact hashes that Integrity (and SHARP via Atlantic) register, and the keys Integrity
files verifications under (FACTS §3).

Every "poseidon of a few values" here is Cairo's ``PoseidonTrait::new().update(a)
.update(b)...finalize()``, which equals ``poseidon_hash_many([a, b, ...])``. It is NOT
the two-input ``poseidon_hash(a, b)`` (a different padding): Integrity's own
``calculate_fact_hash`` / ``calculate_bootloaded_fact_hash`` and its verifier use the
sponge form, and Atlantic's published fibonacci vector only matches that form.

Pure functions; the only I/O-like step is cairo-lang parsing a compiled program, which
is imported lazily because it costs about a second at import time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from poseidon_py.poseidon_hash import poseidon_hash_many
from starknet_py.hash.utils import pedersen_hash

from prover.errors import InputError

FIELD_PRIME = 2**251 + 17 * 2**192 + 1

# SHARP's bootloader (the top program of every Atlantic / SHARP proof).
BOOTLOADER_PROGRAM_HASH: int = 0x5AB580B04E3532B6B18F81CFA654A05E29DD8E2352D88DF1E765A84072DB07

_SHORT_STRING_MAX_LEN = 31  # a Cairo short string must fit in one felt
_U32_MAX = 2**32 - 1  # Integrity stores security_bits as u32


def program_hash(compiled: Mapping[str, Any]) -> int:
    """Poseidon hash of the compiled program's bytecode (``compiled["data"]``).

    This is the program hash Integrity derives from a directly proven (not bootloaded)
    proof-mode program: no header, no length prefix.
    """
    return int(poseidon_hash_many(_compiled_data(compiled)))


def output_hash(outputs: Sequence[int]) -> int:
    """Poseidon hash of the program output values, as Integrity computes it."""
    return int(poseidon_hash_many(_felts(outputs, "output")))


def direct_fact(program_hash: int, outputs: Sequence[int]) -> int:
    """Fact of a direct Stone proof: poseidon(program_hash, output_hash(outputs))."""
    return _poseidon(_felt(program_hash, "program hash"), output_hash(outputs))


def pedersen_program_hash_chain(compiled: Mapping[str, Any]) -> int:
    """The program hash SHARP's bootloader reports for a child program.

    Same value as cairo-lang 0.14.0.1's ``compute_program_hash_chain(program,
    program_hash_function=HashFunction.PEDERSEN)`` (bootloader_version 0): a Pedersen
    hash chain over ``[len, 0, main, n_builtins, *builtin_names, *data]``. Computed here
    with the C++ Pedersen binding, several times faster than cairo-lang's.
    """
    data = _compiled_data(compiled)  # clear messages for the common mistakes first
    program = _load_program(compiled)
    if program.prime != FIELD_PRIME:
        raise InputError(
            f"compiled program is for prime {program.prime:#x}, not Starknet's field "
            f"{FIELD_PRIME:#x}: compile it with cairo-compile's default prime"
        )
    main = program.main
    if main is None:
        raise InputError(
            "compiled program has no `main` function: the bootloader hashes main's pc, "
            "compile the program that defines `func main`"
        )
    builtins = [int.from_bytes(str(name).encode("ascii"), "big") for name in program.builtins]
    chain = [0, int(main), len(builtins), *builtins, *data]
    # compute_hash_chain([n, *xs]) = h(n, h(x0, h(x1, ... h(x_{k-2}, x_{k-1}))))
    digest = chain[-1]
    for value in reversed(chain[:-1]):
        digest = pedersen_hash(value, digest)
    return int(pedersen_hash(len(chain), digest))


def bootloaded_fact(child_program_hash: int, outputs: Sequence[int]) -> int:
    """Fact of a bootloaded proof (Atlantic / SHARP) of a child program.

    The bootloader outputs ``[1, len(outputs) + 2, child_program_hash, *outputs]``; the
    fact is poseidon(BOOTLOADER_PROGRAM_HASH, poseidon_many(that output)).
    """
    child = _felt(child_program_hash, "child program hash")
    values = _felts(outputs, "output")
    bootloader_output = [1, len(values) + 2, child, *values]
    return _poseidon(BOOTLOADER_PROGRAM_HASH, int(poseidon_hash_many(bootloader_output)))


def verifier_config_hash(
    layout: str, hasher: str, stone_version: str, memory_verification: str
) -> int:
    """Integrity's key of a verifier configuration: poseidon of four short strings,
    e.g. ``("recursive", "keccak_160_lsb", "stone6", "strict")``."""
    return _poseidon(
        _short_string(layout, "layout"),
        _short_string(hasher, "hasher"),
        _short_string(stone_version, "stone version"),
        _short_string(memory_verification, "memory verification"),
    )


def verification_hash(fact_hash: int, verifier_config_hash: int, security_bits: int) -> int:
    """Integrity's key of one verification: poseidon(fact, config hash, security bits)."""
    if isinstance(security_bits, bool) or not isinstance(security_bits, int):
        raise InputError(f"security bits must be an integer, got {security_bits!r}")
    if not 0 <= security_bits <= _U32_MAX:
        raise InputError(f"security bits must be in 0..{_U32_MAX} (a u32), got {security_bits}")
    return _poseidon(
        _felt(fact_hash, "fact hash"),
        _felt(verifier_config_hash, "verifier config hash"),
        security_bits,
    )


def _poseidon(*values: int) -> int:
    # Cairo's PoseidonTrait update(...)...finalize() == poseidon_hash_many, see module doc.
    return int(poseidon_hash_many(list(values)))


def _felt(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{what} must be an integer field element, got {value!r}")
    if not 0 <= value < FIELD_PRIME:
        raise InputError(
            f"{what} {value} is not a field element: it must be in 0..P-1 "
            f"(P = 2**251 + 17*2**192 + 1); write negative values as P - x"
        )
    return value


def _felts(values: Sequence[int], what: str) -> list[int]:
    if isinstance(values, str | bytes) or not isinstance(values, Sequence):
        raise InputError(f"{what} must be a list of integers, got {type(values).__name__}")
    return [_felt(v, f"{what}[{i}]") for i, v in enumerate(values)]


def _compiled_data(compiled: Mapping[str, Any]) -> list[int]:
    if not isinstance(compiled, Mapping):
        raise InputError(
            f"compiled program must be a JSON object (cairo-compile output), "
            f"got {type(compiled).__name__}"
        )
    if "data" not in compiled:
        raise InputError(
            'compiled program has no "data" field: pass the JSON written by '
            "cairo-compile --output, not the Cairo source or a proof"
        )
    data = compiled["data"]
    if not isinstance(data, list) or not data:
        raise InputError('compiled program "data" must be a non-empty list of hex strings')
    words: list[int] = []
    for index, item in enumerate(data):
        words.append(_felt(_hex_word(item, index), f'compiled program "data"[{index}]'))
    return words


def _hex_word(item: object, index: int) -> int:
    if isinstance(item, int) and not isinstance(item, bool):
        return item
    if isinstance(item, str) and item[:2].lower() == "0x":
        try:
            return int(item, 16)
        except ValueError:
            pass
    raise InputError(
        f'compiled program "data"[{index}] is {item!r}: expected a hex string like "0x4002"'
    )


def _load_program(compiled: Mapping[str, Any]) -> Any:
    import marshmallow
    from starkware.cairo.lang.compiler.program import Program

    try:
        return Program.load(data=dict(compiled))
    except marshmallow.ValidationError as exc:
        messages = exc.messages
        fields = ", ".join(sorted(map(str, messages))) if isinstance(messages, dict) else "?"
        raise InputError(
            f"compiled program is not valid cairo-compile output (bad or missing: {fields}); "
            "recompile it with cairo-compile"
        ) from exc


def _short_string(text: str, what: str) -> int:
    if not isinstance(text, str) or not text:
        raise InputError(f"{what} must be a non-empty string, got {text!r}")
    if not text.isascii() or len(text) > _SHORT_STRING_MAX_LEN:
        raise InputError(
            f"{what} {text!r} is not a Cairo short string (ASCII, at most "
            f"{_SHORT_STRING_MAX_LEN} characters)"
        )
    return int.from_bytes(text.encode("ascii"), "big")
