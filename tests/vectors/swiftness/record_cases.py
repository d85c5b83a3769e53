"""Record real swiftness 1.0.0 runs into cases.json (the parser tests' fixtures).

    .venv/bin/python -m tests.vectors.swiftness.record_cases [INTEGRITY_DIR]

Needs the builds small/recursive keccak_160_lsb stone6 and small keccak_160_lsb stone5
(scripts/install_swiftness.sh small:keccak_160_lsb:stone6 recursive:keccak_160_lsb:stone6
small:keccak_160_lsb:stone5) and the shared Integrity proofs (default
/work/shared/integrity). Runs each binary exactly as prover/swiftness.py does
(RUST_BACKTRACE=0, minimal environment) and stores exit code, stdout and stderr verbatim.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prover.swiftness import SWIFTNESS_VERSION, default_install_root
from tests.prover.swiftness_tamper import bump_last_output, flip_annotation, flip_proof_hex_word

HERE = Path(__file__).resolve().parent
FIB = "small_stone6_keccak_fibonacci"
ALLOC = "allocation_small_stone6_keccak_96bits"
SMALL6 = "small-keccak_160_lsb-stone6"
ENV = {"PATH": "/usr/bin:/bin", "RUST_BACKTRACE": "0", "LC_ALL": "C"}


@dataclass(frozen=True)
class Case:
    name: str
    proof: str | None = None  # a shared proof, written (tampered) to a temporary file
    tamper: str = "none"
    alter: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    raw: str | None = None  # file content instead of a proof
    args: tuple[str, ...] | None = None  # None: --proof <the file>
    build: str = SMALL6


def _annotation(needle: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda proof: flip_annotation(proof, needle)


CASES = (
    Case("verified_fibonacci", FIB),
    Case("verified_allocation", ALLOC),
    Case("rejected_output_fibonacci", FIB, "last output cell +1", bump_last_output),
    Case("rejected_output_allocation", ALLOC, "last output cell +1", bump_last_output),
    Case("accepted_proof_hex_flip_fibonacci", FIB, "proof_hex middle word ^1", flip_proof_hex_word),
    Case("accepted_proof_hex_flip_allocation", ALLOC, "proof_hex middle word ^1",
         flip_proof_hex_word),
    Case("rejected_trace_value", FIB, "annotation Trace 0 row value ^2",
         _annotation("Virtual Oracle/Trace 0: Row")),
    Case("rejected_trace_commitment", FIB, "annotation Original Commit on Trace ^2",
         _annotation("Original/Commit on Trace")),
    Case("rejected_proof_of_work", FIB, "annotation POW nonce ^2", _annotation("Proof of Work")),
    Case("accepted_fri_inner_layer_node", FIB, "annotation FRI Layer 1 node hash ^2",
         _annotation("Decommitment/Layer 1: For node")),
    Case("rejected_wrong_layout_build", FIB, build="recursive-keccak_160_lsb-stone6"),
    Case("rejected_wrong_stone_version_build", ALLOC, build="small-keccak_160_lsb-stone5"),
    Case("rejected_not_json", tamper="file is 'hello'", raw="hello"),
    Case("rejected_not_a_proof", tamper="file is a JSON object", raw='{"not": "a proof"}'),
    Case("rejected_missing_file", tamper="no such file",
         args=("--proof", "/nonexistent/proof.json")),
    Case("usage_no_proof_argument", tamper="no --proof", args=()),
    Case("version", tamper="--version", args=("--version",)),
)  # fmt: skip


def record(case: Case, integrity: Path, scratch: Path) -> dict[str, Any]:
    path = scratch / f"{case.name}.json"
    if case.proof is not None:
        proof = json.loads((integrity / "proofs" / f"{case.proof}.proof.json").read_text())
        path.write_text(json.dumps(case.alter(proof) if case.alter else proof))
    elif case.raw is not None:
        path.write_text(case.raw)
    argv = ["--proof", str(path)] if case.args is None else list(case.args)
    binary = default_install_root() / case.build / "bin" / "swiftness"
    run = subprocess.run(
        [str(binary), *argv], capture_output=True, text=True, env=ENV, check=False
    )
    return {
        "name": case.name,
        "build": case.build,
        "proof": case.proof,
        "tamper": case.tamper,
        "args": ["--proof", "<proof>"] if case.args is None else list(case.args),
        "exit_code": run.returncode,
        "stdout": run.stdout,
        "stderr": run.stderr,
    }


def main() -> None:
    integrity = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("/work/shared/integrity")
    with tempfile.TemporaryDirectory() as scratch:
        cases = [record(case, integrity, Path(scratch)) for case in CASES]
    for case in cases:
        print(f"{case['name']}: exit {case['exit_code']}")
    out = {"swiftness_version": SWIFTNESS_VERSION, "env": ENV, "cases": cases}
    (HERE / "cases.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
