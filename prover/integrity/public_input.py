"""Stone's ``public_input`` JSON to Integrity's PublicInput.

Segments are put in Stone's canonical order and must be exactly the layout's; the main page
is the public memory in file order and the padding cell is its first entry (as Integrity's
serializer takes them). Public memory on pages other than 0 (continuous pages, i.e. a
bootloaded run) is refused: every Integrity memory-verification mode rejects it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from prover.integrity.errors import InconsistentProof, MalformedProof, UnsupportedProof
from prover.integrity.field import PRIME
from prover.integrity.layouts import (
    MAX_LOG_N_STEPS,
    MAX_RANGE_CHECK,
    Layout,
    layout_named,
)
from prover.integrity.model import MemoryCell, PublicInput, SegmentInfo
from prover.integrity.stone_json import field, integer, mapping

_HEX = re.compile(r"0x[0-9a-fA-F]{1,64}")


def parse_public_input(value: object) -> tuple[Layout, PublicInput, int]:
    """The layout, Integrity's PublicInput and n_steps."""
    source = mapping(value, "public_input")
    layout = layout_named(field(source, "layout", "public_input"))
    if source.get("dynamic_params") not in (None, {}):
        raise UnsupportedProof(
            "the public input has dynamic_params (a dynamic layout): Integrity has no "
            "verifier for dynamic layouts; prove with a fixed layout"
        )
    n_steps = integer(source, "n_steps", "public_input", minimum=1)
    log_n_steps = n_steps.bit_length() - 1
    if n_steps != 2**log_n_steps or log_n_steps > MAX_LOG_N_STEPS:
        raise InconsistentProof(f"n_steps {n_steps} is not a power of two up to 2**50")
    rc_min = integer(source, "rc_min", "public_input")
    rc_max = integer(source, "rc_max", "public_input")
    if not rc_min < rc_max <= MAX_RANGE_CHECK:
        raise InconsistentProof(
            f"range-check bounds [{rc_min}, {rc_max}] are outside what Integrity accepts "
            f"(rc_min < rc_max <= {MAX_RANGE_CHECK})"
        )
    main_page = _main_page(field(source, "public_memory", "public_input"))
    public_input = PublicInput(
        log_n_steps=log_n_steps,
        range_check_min=rc_min,
        range_check_max=rc_max,
        layout=layout.code,
        dynamic_params=(),
        segments=_segments(field(source, "memory_segments", "public_input"), layout),
        padding_addr=main_page[0].address,
        padding_value=main_page[0].value,
        main_page=main_page,
    )
    return layout, public_input, n_steps


def _segments(value: object, layout: Layout) -> tuple[SegmentInfo, ...]:
    segments = mapping(value, "public_input.memory_segments")
    if set(segments) != set(layout.segment_names):
        raise InconsistentProof(
            f"memory segments {sorted(segments)} are not those of the {layout.name} layout "
            f"({', '.join(layout.segment_names)}): the public input is not from this layout"
        )
    result = []
    for name in layout.segment_names:
        segment = mapping(segments[name], f"memory segment {name!r}")
        result.append(
            SegmentInfo(
                begin_addr=integer(segment, "begin_addr", f"segment {name!r}"),
                stop_ptr=integer(segment, "stop_ptr", f"segment {name!r}"),
            )
        )
    return tuple(result)


def _main_page(value: object) -> tuple[MemoryCell, ...]:
    if not isinstance(value, list) or not value:
        raise MalformedProof("public_input.public_memory must be a non-empty list")
    cells = []
    for index, item in enumerate(value):
        entry: Mapping[str, Any] = mapping(item, f"public_memory[{index}]")
        if integer(entry, "page", f"public_memory[{index}]") != 0:
            raise UnsupportedProof(
                "the public memory has continuous pages (a bootloaded proof): Integrity's "
                "verifiers accept only single-page public memory; prove the program directly"
            )
        cells.append(
            MemoryCell(
                address=integer(entry, "address", f"public_memory[{index}]"),
                value=_felt_hex(field(entry, "value", f"public_memory[{index}]"), index),
            )
        )
    return tuple(cells)


def _felt_hex(value: object, index: int) -> int:
    if isinstance(value, str) and _HEX.fullmatch(value) and int(value, 16) < PRIME:
        return int(value, 16)
    raise MalformedProof(f"public_memory[{index}].value {value!r} is not a hex field element")
