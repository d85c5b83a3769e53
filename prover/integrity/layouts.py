"""The Stone CPU AIR layouts Integrity verifies, as far as calldata and the verifier replay
need them.

A layout fixes the number of trace columns (original and interaction), the number of
interaction elements the verifier draws after the first trace commitment, the builtins
(hence the memory segments, in Stone's canonical order) and the OODS mask. The mask size
plus the composition degree is the number of OODS values in the proof.

``dynamic`` (parameters in the public input) and ``plain`` are not supported: Integrity has
no verifier for them.
"""

from __future__ import annotations

from dataclasses import dataclass

from prover.integrity.errors import UnsupportedProof
from prover.integrity.field import short_string
from prover.integrity.masks import OODS_MASKS, MaskTable

CPU_COMPONENT_HEIGHT = 16  # trace rows per Cairo step in every supported layout
CONSTRAINT_DEGREE = 2  # composition polynomial split into this many columns
MAX_LOG_N_STEPS = 50
MAX_RANGE_CHECK = 2**16 - 1

# Stone's order of memory segments (program, execution, then the builtins).
SEGMENT_ORDER = (
    "program",
    "execution",
    "output",
    "pedersen",
    "range_check",
    "ecdsa",
    "bitwise",
    "ec_op",
    "keccak",
    "poseidon",
    "range_check96",
    "add_mod",
    "mul_mod",
)


@dataclass(frozen=True)
class Layout:
    name: str
    n_original_columns: int
    n_interaction_columns: int
    n_interaction_elements: int
    builtins: tuple[str, ...]  # in segment order; a `strict` program declares exactly these
    mask: MaskTable

    @property
    def code(self) -> int:
        """The layout's name as a short string, as in the public input."""
        return short_string(self.name)

    @property
    def segment_names(self) -> tuple[str, ...]:
        return ("program", "execution", *self.builtins)

    @property
    def mask_size(self) -> int:
        return sum(len(offsets) for _, offsets in self.mask)

    @property
    def n_oods_values(self) -> int:
        return self.mask_size + CONSTRAINT_DEGREE


def _layout(name: str, columns: tuple[int, int], n_elements: int, builtins: str) -> Layout:
    return Layout(
        name=name,
        n_original_columns=columns[0],
        n_interaction_columns=columns[1],
        n_interaction_elements=n_elements,
        builtins=tuple(builtins.split()),
        mask=OODS_MASKS[name],
    )


LAYOUTS: dict[str, Layout] = {
    layout.name: layout
    for layout in (
        _layout("small", (23, 2), 3, "output pedersen range_check ecdsa"),
        _layout("dex", (21, 1), 3, "output pedersen range_check ecdsa"),
        _layout("recursive", (7, 3), 6, "output pedersen range_check bitwise"),
        _layout(
            "recursive_with_poseidon", (6, 2), 6, "output pedersen range_check bitwise poseidon"
        ),
        _layout("starknet", (9, 1), 6, "output pedersen range_check ecdsa bitwise ec_op poseidon"),
        _layout(
            "starknet_with_keccak",
            (12, 3),
            6,
            "output pedersen range_check ecdsa bitwise ec_op keccak poseidon",
        ),
    )
}


def layout_named(name: object) -> Layout:
    """The layout called ``name``, or a clear error for the ones Integrity cannot verify."""
    if isinstance(name, str) and name in LAYOUTS:
        return LAYOUTS[name]
    raise UnsupportedProof(
        f"layout {name!r} is not supported for Integrity calldata (supported: "
        f"{', '.join(sorted(LAYOUTS))}); prove with one of them (cairo-run --layout)"
    )
