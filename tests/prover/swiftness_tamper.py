"""Alterations of real Stone proofs, shared by tests/prover/test_swiftness.py and the
recorder of tests/vectors/swiftness/cases.json (so the fixtures and the live tests tamper
the same way). Each returns a modified deep copy; the input is never changed."""

from __future__ import annotations

import copy
import re
from typing import Any

FIELD_PRIME = 2**251 + 17 * 2**192 + 1
_VALUE_AT_END = re.compile(r"\((0x[0-9a-f]+)\)$")


def bump_last_output(proof: dict[str, Any]) -> dict[str, Any]:
    """+1 on the last program output cell of the public memory."""
    altered = copy.deepcopy(proof)
    stop = altered["public_input"]["memory_segments"]["output"]["stop_ptr"]
    cells = [c for c in altered["public_input"]["public_memory"] if c["address"] == stop - 1]
    assert len(cells) == 1, "the proof has no output cell"
    cells[0]["value"] = hex((int(cells[0]["value"], 16) + 1) % FIELD_PRIME)
    return altered


def flip_proof_hex_word(proof: dict[str, Any]) -> dict[str, Any]:
    """Flip the lowest bit of the 32-byte word in the middle of proof_hex."""
    altered = copy.deepcopy(proof)
    digits = altered["proof_hex"][2:]
    at = 64 * (len(digits) // 128)  # start of the middle word, in hex digits
    word = int(digits[at : at + 64], 16) ^ 1
    altered["proof_hex"] = "0x" + digits[:at] + format(word, "064x") + digits[at + 64 :]
    return altered


def flip_annotation(proof: dict[str, Any], needle: str) -> dict[str, Any]:
    """Flip bit 1 of the value of the first P->V annotation containing ``needle``."""
    altered = copy.deepcopy(proof)
    for index, line in enumerate(altered["annotations"]):
        match = _VALUE_AT_END.search(line)
        if line.startswith("P->V") and needle in line and match:
            value = hex(int(match.group(1), 16) ^ 2)
            altered["annotations"][index] = line[: match.start(1)] + value + line[match.end(1) :]
            return altered
    raise AssertionError(f"no single-value P->V annotation contains {needle!r}")
