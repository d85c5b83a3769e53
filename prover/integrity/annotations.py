"""Stone's proof annotations (``cpu_air_prover --generate_annotations``), parsed strictly.

Each protocol line records one message of the interactive protocol:

    P->V[<start>:<end>]: /cpu air/<path>: <label><Kind>(<payload>)    prover -> verifier
    V->P: /cpu air/<path>: <label><Kind>(<payload>)                   verifier -> prover

``Kind`` is Hash, Field Element, Field Elements (comma-separated), Data or Number; payloads
are hex except Number (decimal). Other lines (title, blank, "Proof Statistics") carry no
protocol data and are skipped.

The prover lines describe the bytes of ``proof_hex`` exactly: ranges are contiguous from 0
to its end, hashes and data are the bytes themselves, field elements are 32-byte words
(decommitted trace/FRI values in Montgomery form, channel values in standard form). That
is checked here, so a truncated, edited or mismatched annotation list is an error instead
of wrong calldata.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from prover.integrity.errors import InconsistentProof, MalformedProof
from prover.integrity.field import MONTGOMERY_R, PRIME

HASH = "Hash"
FIELD_ELEMENT = "Field Element"
FIELD_ELEMENTS = "Field Elements"
DATA = "Data"
NUMBER = "Number"

_LINE = re.compile(
    r"(?:P->V\[(?P<start>\d+):(?P<end>\d+)\]|V->P): /cpu air/(?P<path>[^:]+): "
    r"(?P<label>.*?)(?P<kind>Hash|Field Elements|Field Element|Data|Number)"
    r"\((?P<payload>[^()]*)\)"
)
_HEX = re.compile(r"0x[0-9a-fA-F]{1,64}")
_WORD = 32
_FIX_RERUN = "re-run cpu_air_prover with --generate_annotations and pass its output file unmodified"


@dataclass(frozen=True)
class AnnotationLine:
    """One protocol message. ``byte_range`` is None for verifier-to-prover messages."""

    number: int  # index in the annotations list, for error messages
    byte_range: tuple[int, int] | None
    path: str
    label: str
    kind: str
    values: tuple[int, ...]

    @property
    def from_prover(self) -> bool:
        return self.byte_range is not None


def parse_annotations(lines: Sequence[str]) -> tuple[AnnotationLine, ...]:
    """All protocol lines, in order; any malformed protocol line is an error."""
    parsed = []
    for number, line in enumerate(lines):
        if line.startswith(("P->V", "V->P")):
            parsed.append(_parse_line(number, line))
    return tuple(parsed)


def _parse_line(number: int, line: str) -> AnnotationLine:
    match = _LINE.fullmatch(line)
    if match is None:
        raise MalformedProof(
            f"annotation line {number} is not a Stone protocol line: {_excerpt(line)}; "
            f"the annotations are truncated or edited, {_FIX_RERUN}"
        )
    byte_range = None
    if match["start"] is not None:
        byte_range = (int(match["start"]), int(match["end"]))
    kind = match["kind"]
    return AnnotationLine(
        number=number,
        byte_range=byte_range,
        path=match["path"],
        label=match["label"],
        kind=kind,
        values=_payload_values(number, kind, match["payload"]),
    )


def _payload_values(number: int, kind: str, payload: str) -> tuple[int, ...]:
    if kind == NUMBER:
        if not payload.isdecimal():
            raise MalformedProof(f"annotation line {number}: bad number {payload!r}; {_FIX_RERUN}")
        return (int(payload),)
    items = [item.strip() for item in payload.split(",")] if kind == FIELD_ELEMENTS else [payload]
    values = []
    for item in items:
        if _HEX.fullmatch(item) is None:
            raise MalformedProof(
                f"annotation line {number}: {item!r} is not a hex value; {_FIX_RERUN}"
            )
        value = int(item, 16)
        if value >= PRIME:
            raise MalformedProof(
                f"annotation line {number}: {item} is not a field element (>= P); {_FIX_RERUN}"
            )
        values.append(value)
    return tuple(values)


def check_against_proof_bytes(lines: Sequence[AnnotationLine], proof: bytes) -> None:
    """The prover messages must be exactly the proof's bytes, in order, without gaps."""
    position = 0
    for line in lines:
        if line.byte_range is None:
            continue
        start, end = line.byte_range
        if start != position or end <= start or end > len(proof):
            raise InconsistentProof(
                f"annotation line {line.number} covers proof bytes [{start}:{end}] but the "
                f"next unannotated byte is {position} of {len(proof)}: annotations and "
                f"proof_hex are not from the same run, or lines are missing; {_FIX_RERUN}"
            )
        if _encode(line, end - start) != proof[start:end]:
            raise InconsistentProof(
                f"annotation line {line.number} ({line.path}) does not match proof_hex bytes "
                f"[{start}:{end}]: the annotations were edited or belong to another proof; "
                f"{_FIX_RERUN}"
            )
        position = end
    if position != len(proof):
        raise InconsistentProof(
            f"the annotations describe {position} bytes but proof_hex has {len(proof)}: "
            f"annotation lines are missing at the end; {_FIX_RERUN}"
        )


def _encode(line: AnnotationLine, size: int) -> bytes:
    if line.kind == DATA:
        value = line.values[0]
        return value.to_bytes(size, "big") if value < 256**size else b""
    values = line.values
    if line.kind in (FIELD_ELEMENT, FIELD_ELEMENTS) and "/Decommitment/" in line.path:
        values = tuple(value * MONTGOMERY_R % PRIME for value in values)
    return b"".join(value.to_bytes(_WORD, "big") for value in values)


def _excerpt(line: str) -> str:
    return repr(line if len(line) <= 120 else line[:117] + "...")
