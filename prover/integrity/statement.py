"""What Integrity will register for a proof: program hash, output, fact, security bits,
verification hash; following its ``strict`` memory verification (``verify_strict``, the
same for every supported layout apart from the builtin list).

``strict`` reads the main page in this exact order and refuses anything else:
  1. the program, addresses [initial_pc=1, initial_fp - 2): it must start with
     ``ap += n_builtins; call rel ?; ...; jmp rel 0`` (final_pc == 5) and declare exactly
     the layout's builtins; program_hash = poseidon(program words);
  2. the two cells below initial_fp (initial_fp and 0: the return fp and pc);
  3. the builtin pointers on the initial stack (begin addresses) and on the final stack
     (stop pointers), in segment order;
  4. the output segment; output_hash = poseidon(output words).
The main page must end there. fact = poseidon(program_hash, output_hash).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from prover import facts
from prover.integrity.calldata import VerifierConfiguration, verifier_config
from prover.integrity.errors import StatementRejected
from prover.integrity.field import poseidon_many
from prover.integrity.model import MemoryCell, SegmentInfo, StarkProof

_INITIAL_PC = 1
_MAX_ADDRESS = 2**64 - 1
_AP_ADD_N_BUILTINS = 0x40780017FFF7FFF  # ap += n_builtins
_CALL_REL = 0x1104800180018000  # call rel ?
_JMP_REL_0 = 0x10780017FFF7FFF  # jmp rel 0
_PROGRAM, _EXECUTION, _OUTPUT = 0, 1, 2  # segment indices in every supported layout


@dataclass(frozen=True)
class ProofStatement:
    program_hash: int
    output: tuple[int, ...]
    output_hash: int
    fact_hash: int


def proof_statement(proof: StarkProof) -> ProofStatement:
    """Program hash, output and fact as Integrity's ``strict`` verification computes them."""
    public_input = proof.public_input
    segments = public_input.segments
    reader = _PageReader(public_input.main_page)
    initial_fp = segments[_EXECUTION].begin_addr
    final_ap = segments[_EXECUTION].stop_ptr
    if initial_fp >= _MAX_ADDRESS or final_ap >= _MAX_ADDRESS:
        raise _rejected("the execution segment lies beyond 2**64")
    program = _program(reader, segments, initial_fp, len(proof.layout.builtins))
    if reader.take(initial_fp - 2, 2) != (initial_fp, 0):
        raise _rejected("the cells below initial_fp are not (initial_fp, 0)")
    builtin_segments = segments[2:]
    n_builtins = len(builtin_segments)
    if reader.take(initial_fp, n_builtins) != tuple(s.begin_addr for s in builtin_segments):
        raise _rejected("the initial stack does not hold the builtin segments' begin addresses")
    if reader.take(final_ap - n_builtins, n_builtins) != tuple(
        s.stop_ptr for s in builtin_segments
    ):
        raise _rejected("the final stack does not hold the builtin segments' stop pointers")
    output_segment = segments[_OUTPUT]
    output = reader.take(
        output_segment.begin_addr, output_segment.stop_ptr - output_segment.begin_addr
    )
    if not reader.at_end():
        raise _rejected("the main page holds cells after the output segment")
    program_hash = poseidon_many(program)
    output_hash = poseidon_many(output)
    return ProofStatement(
        program_hash=program_hash,
        output=output,
        output_hash=output_hash,
        fact_hash=poseidon_many([program_hash, output_hash]),
    )


def fact_of(proof: StarkProof) -> int:
    """The fact hash Integrity registers for this proof (``strict`` memory verification)."""
    return proof_statement(proof).fact_hash


def security_bits(proof: StarkProof) -> int:
    """n_queries * log_n_cosets + proof-of-work bits, as Integrity registers it."""
    return proof.config.security_bits


def verification_hash(proof: StarkProof, config: VerifierConfiguration | None = None) -> int:
    """Integrity's key of the verification: poseidon(fact, config hash, security bits)."""
    config_hash = (config or verifier_config(proof)).config_hash()
    return facts.verification_hash(fact_of(proof), config_hash, security_bits(proof))


def _program(
    reader: _PageReader, segments: Sequence[SegmentInfo], initial_fp: int, n_builtins: int
) -> tuple[int, ...]:
    program_segment = segments[_PROGRAM]
    if program_segment.begin_addr != _INITIAL_PC or program_segment.stop_ptr != _INITIAL_PC + 4:
        raise _rejected(
            "the program does not start at pc 1 and end at pc 5 (a proof-mode main that "
            "returns into `jmp rel 0`)"
        )
    program = reader.take(_INITIAL_PC, initial_fp - 2 - _INITIAL_PC)
    if len(program) < 6 or (program[0], program[1], program[2], program[4], program[5]) != (
        _AP_ADD_N_BUILTINS,
        n_builtins,
        _CALL_REL,
        _JMP_REL_0,
        0,
    ):
        raise _rejected(
            f"the program does not begin with Cairo's proof-mode header declaring the "
            f"layout's {n_builtins} builtins (`%builtins` must list all of them, in order)"
        )
    return program


class _PageReader:
    """Walks the main page in order, as ``extract_range`` does."""

    def __init__(self, page: Sequence[MemoryCell]) -> None:
        self._page = page
        self._index = 0

    def take(self, address: int, count: int) -> tuple[int, ...]:
        if count < 0 or self._index + count > len(self._page):
            raise _rejected("the main page is shorter than the segments say")
        cells = self._page[self._index : self._index + count]
        if any(cell.address != address + i for i, cell in enumerate(cells)):
            raise _rejected(f"the main page does not hold addresses {address}..{address + count}")
        self._index += count
        return tuple(cell.value for cell in cells)

    def at_end(self) -> bool:
        return self._index == len(self._page)


def _rejected(reason: str) -> StatementRejected:
    return StatementRejected(
        f"Integrity's strict memory verification would reject this proof: {reason}. "
        "Prove a Cairo 0 proof-mode program (cairo-compile --proof_mode) that declares all "
        "of the layout's builtins"
    )
