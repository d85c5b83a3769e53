"""Compile the allocation program (proof mode), cache it, and check Integrity's rules.

The compiled JSON is what ``cairo-compile --proof_mode`` writes; its ``data`` is what
the program hash (FACTS §3) is computed over, so the same source must always give the
same JSON. The on-disk cache is keyed by a hash of the source and the compiler version.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from prover.errors import InputError, ProverError

SOURCE_PATH = Path(__file__).with_name("cairo") / "allocation.cairo"

# Layouts with an Integrity verifier on Starknet (FACTS §4).
INTEGRITY_LAYOUTS = (
    "dex",
    "recursive",
    "recursive_with_poseidon",
    "small",
    "starknet",
    "starknet_with_keccak",
)

# `small`. Measured with bench/bench_trace.py (cairo-lang 0.14.0.1, bench inputs, n_steps
# for 3 / 16 protocols, 2,288 / 8,576 executed steps with the 637-word program):
#   small                    4,096 / 16,384  (16 rc units per step: the 2^15 range-check
#                                             hole needs ~2,520 steps, see allocation.cairo)
#   dex                     65,536 / 65,536  (same builtins, but 4 rc units per step: the
#                                             hole alone needs 32,768+ steps)
#   recursive               65,536 / 65,536  no ecdsa builtin (bitwise instead)
#   recursive_with_poseidon 65,536 / 65,536  no ecdsa builtin
#   starknet               131,072 /131,072  7 builtins: our 4 are not its full list
#   starknet_with_keccak    65,536 / 65,536  8 builtins, keccak forces >= 32,768 steps
# Only small and dex pass check_integrity_rules for this program (strict mode needs the
# layout's exact builtin list); small proves a 16x shorter trace.
DEFAULT_LAYOUT = "small"

# The proof-mode prologue `ap += n_args; call rel main; jmp rel 0` (FACTS §4): the program
# is loaded at address 1, so the run starts at pc 1 and ends on the `jmp rel 0` at pc 5.
_AP_ADD_IMM = 0x40780017FFF7FFF
_CALL_REL_IMM = 0x1104800180018000
_JMP_REL_IMM = 0x10780017FFF7FFF
_START_PC = 0
_END_PC = 4


class CompileError(ProverError):
    """The allocation program does not compile (a bug in the shipped source)."""

    code = "cairo_compile_failed"


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "obsqra-keeper"


def _source_key(source: str) -> str:
    from starkware.cairo.lang.version import __version__ as cairo_lang_version

    digest = hashlib.sha256(f"{cairo_lang_version}\0{source}".encode()).hexdigest()
    return digest[:32]


def _compile(source: str) -> dict[str, Any]:
    from starkware.cairo.lang.cairo_constants import DEFAULT_PRIME
    from starkware.cairo.lang.compiler.cairo_compile import compile_cairo
    from starkware.cairo.lang.compiler.error_handling import LocationError
    from starkware.cairo.lang.compiler.program import Program

    try:
        program = compile_cairo(
            [(source, str(SOURCE_PATH))], prime=DEFAULT_PRIME, add_start=True, debug_info=False
        )
    except LocationError as exc:
        raise CompileError(f"cannot compile {SOURCE_PATH}: {exc}") from exc
    compiled: dict[str, Any] = Program.Schema().dump(program)
    return compiled


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


_memo: dict[str, dict[str, Any]] = {}


def compiled_program(cache_dir: Path | str | None = None) -> dict[str, Any]:
    """The compiled (proof-mode) JSON of the allocation program, from cache when possible.

    A fresh dict is returned each time, so callers may not mutate the cache.
    """
    source = SOURCE_PATH.read_text(encoding="utf-8")
    key = _source_key(source)
    if key not in _memo:
        directory = Path(cache_dir) if cache_dir is not None else _default_cache_dir()
        path = directory / f"allocation-{key}.json"
        compiled: dict[str, Any] | None = None
        try:
            compiled = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            compiled = None  # missing or damaged cache entry: recompile
        if not isinstance(compiled, dict) or "data" not in compiled:
            compiled = _compile(source)
            # An unwritable cache only costs a recompile next time.
            with contextlib.suppress(OSError):
                _write_atomically(path, json.dumps(compiled, indent=2, sort_keys=True) + "\n")
        _memo[key] = compiled
    copy: dict[str, Any] = json.loads(json.dumps(_memo[key]))
    return copy


def layout_builtins(layout: str) -> list[str]:
    """The builtins of a layout in their canonical order (what strict mode requires)."""
    from starkware.cairo.lang.instances import LAYOUTS

    if layout not in LAYOUTS or layout in ("plain", "dynamic"):
        known = ", ".join(INTEGRITY_LAYOUTS)
        raise InputError(f"unknown layout {layout!r}; Integrity verifies: {known}")
    return list(LAYOUTS[layout].builtins)


def _as_int(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return int(value, 0)
        except ValueError:
            return None
    return None


def check_integrity_rules(compiled: dict[str, Any], layout: str) -> list[str]:
    """Problems that would stop Integrity's strict verifier; empty when the program is OK.

    Rules (FACTS §4): the layout has an Integrity verifier; the program declares exactly
    the layout's builtins in order; it is a proof-mode program whose `__start__` is at
    offset 0 (pc 1 once loaded at address 1) and whose `__end__` (`jmp rel 0`) is at
    offset 4 (pc 5).
    """
    problems: list[str] = []
    if layout not in INTEGRITY_LAYOUTS:
        problems.append(
            f"layout {layout!r} has no Integrity verifier (use one of "
            f"{', '.join(INTEGRITY_LAYOUTS)})"
        )
        return problems
    expected = layout_builtins(layout)
    declared = compiled.get("builtins")
    if declared != expected:
        problems.append(
            f"program declares builtins {declared}, but strict verification on {layout!r} "
            f"needs exactly {expected} in that order"
        )
    identifiers = compiled.get("identifiers", {})
    main_scope = compiled.get("main_scope", "__main__")
    for label, pc in (("__start__", _START_PC), ("__end__", _END_PC)):
        entry = identifiers.get(f"{main_scope}.{label}")
        if not isinstance(entry, dict) or entry.get("pc") != pc:
            problems.append(
                f"{label} must be at offset {pc} (pc {pc + 1} once loaded): compile with "
                "--proof_mode"
            )
    data = [_as_int(word) for word in compiled.get("data", [])[:6]]
    n_args = len(declared) if isinstance(declared, list) else None
    prologue_ok = (
        len(data) == 6
        and data[0] == _AP_ADD_IMM
        and data[1] == n_args
        and data[2] == _CALL_REL_IMM
        and data[4] == _JMP_REL_IMM
        and data[5] == 0
    )
    if not prologue_ok:
        problems.append(
            "program does not start with the proof-mode prologue "
            "`ap += n_builtins; call main; jmp rel 0` (start pc 1, end pc 5)"
        )
    return problems
