"""Run the allocation program in proof mode (in-process) and write a Stone trace dir.

The trace directory holds what ``cpu_air_prover`` reads and what the keeper needs to
reproduce the run:

    trace.bin, memory.bin            binary trace and memory (cairo-run format)
    public_input.json                AIR public input (layout, rc bounds, n_steps, memory)
    private_input.json               names trace.bin/memory.bin by *relative* path: Stone
                                     opens them relative to its working directory, so the
                                     prover runner must start Stone with cwd = this dir
    program.json, program_input.json the compiled program and the hint input of the run
    inputs.json                      the validated INPUTS.json
    trace.json                       summary: layout, n_steps, steps, output, seconds

Every run is checked against the Python reference model: an output that differs, or a
VM failure on inputs the model accepts, is a CairoRunError (a bug, never bad input).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prover import model
from prover.errors import CairoRunError, InputError
from prover.program import DEFAULT_LAYOUT, compiled_program, layout_builtins

if TYPE_CHECKING:
    from starkware.cairo.lang.vm.cairo_runner import CairoRunner

TRACE_FILE = "trace.bin"
MEMORY_FILE = "memory.bin"
PUBLIC_INPUT_FILE = "public_input.json"
PRIVATE_INPUT_FILE = "private_input.json"
PROGRAM_FILE = "program.json"
PROGRAM_INPUT_FILE = "program_input.json"
INPUTS_FILE = "inputs.json"
SUMMARY_FILE = "trace.json"
# In the order they are moved into place; the summary last marks a complete trace.
_FILES = (
    TRACE_FILE,
    MEMORY_FILE,
    PUBLIC_INPUT_FILE,
    PRIVATE_INPUT_FILE,
    PROGRAM_FILE,
    PROGRAM_INPUT_FILE,
    INPUTS_FILE,
    SUMMARY_FILE,
)


@dataclass(frozen=True)
class TraceResult:
    layout: str
    n_steps: int  # padded trace length (a power of two): what Stone proves
    steps: int  # steps the program actually executed
    output: list[int]
    seconds: float
    dir: Path

    def summary(self) -> dict[str, Any]:
        data = asdict(self)
        data["dir"] = str(self.dir)
        return data


@dataclass(frozen=True)
class Execution:
    """A run without trace files: the output and the executed step count."""

    output: list[int]
    steps: int


_programs: dict[str, Any] = {}


def _program(cache_dir: Path | str | None) -> Any:
    """The loaded cairo-lang Program, reused across runs (loading costs ~0.1 s)."""
    from starkware.cairo.lang.compiler.program import Program

    compiled = compiled_program(cache_dir)
    key = json.dumps(compiled["data"])
    if key not in _programs:
        _programs.clear()
        _programs[key] = Program.load(data=compiled)
    return _programs[key]


def _check_layout(layout: str) -> None:
    layout_builtins(layout)  # raises InputError for an unknown layout


def _run(
    inputs: model.AllocationInputs, layout: str, cache_dir: Path | str | None, *, pad: bool
) -> CairoRunner:
    """A fresh runner per call: cairo-lang keeps all run state on the runner object."""
    from starkware.cairo.lang.vm.cairo_runner import CairoRunner
    from starkware.cairo.lang.vm.memory_dict import InconsistentMemoryError, UnknownMemoryError
    from starkware.cairo.lang.vm.vm_exceptions import SecurityError, VmExceptionBase

    runner = CairoRunner(
        program=_program(cache_dir),
        layout=layout,
        proof_mode=True,
        # Same default as `cairo-run --proof_mode`: a layout without one of the declared
        # builtins still runs (its pointer is 0), which is what the bench measures.
        allow_missing_builtins=True,
    )
    try:
        runner.initialize_segments()
        end = runner.initialize_main_entrypoint()
        runner.initialize_zero_segment()
        runner.initialize_vm(hint_locals={"program_input": inputs.program_input()})
        runner.run_until_pc(end)
        # Proof mode: one more step so the last executed pc is __end__ (as cairo-run does).
        runner.run_for_steps(1)
        runner.original_steps = runner.vm.current_step
        # end_run prints "Warning: ... Increasing number of steps." on stdout while it pads;
        # keep stdout for our own output (the CLI prints exactly one JSON line).
        with contextlib.redirect_stdout(io.StringIO()):
            runner.end_run(disable_trace_padding=not pad)
        runner.read_return_values()
        if pad:
            # Builtin segment sizes follow from the padded n_steps; unpadded runs skip it.
            runner.finalize_segments()
    except (
        VmExceptionBase,
        AssertionError,
        InconsistentMemoryError,
        UnknownMemoryError,
        SecurityError,
    ) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CairoRunError(
            f"the Cairo VM failed on inputs the reference model accepts ({first_line}); "
            "this is a bug in prover/cairo/allocation.cairo or prover/model.py: report it "
            "with the inputs file"
        ) from exc
    return runner


def _output(runner: CairoRunner) -> list[int]:
    base = runner.builtin_runners["output_builtin"].base
    size = runner.segments.get_segment_used_size(base.segment_index)
    return [int(runner.vm_memory[base + i]) for i in range(size)]


def _check_output(output: list[int], expected: list[int]) -> None:
    if output != expected:
        raise CairoRunError(
            f"the Cairo program output {output} differs from the reference model's "
            f"{expected}; do not prove it: report a bug in prover/cairo/allocation.cairo "
            "or prover/model.py"
        )


def execute(
    inputs: model.AllocationInputs,
    *,
    layout: str = DEFAULT_LAYOUT,
    cache_dir: Path | str | None = None,
) -> Execution:
    """Run the program (proof mode, no trace padding, no files) and check its output.

    The cheap path for property tests and dry runs: same program, same output as
    generate_trace, without the padding and relocation that only Stone needs.
    """
    _check_layout(layout)
    expected = model.expected_output(inputs)
    runner = _run(inputs, layout, cache_dir, pad=False)
    output = _output(runner)
    _check_output(output, expected)
    return Execution(output=output, steps=int(runner.original_steps))


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")


def generate_trace(
    inputs: model.AllocationInputs,
    out_dir: Path,
    *,
    layout: str = DEFAULT_LAYOUT,
    cache_dir: Path | str | None = None,
) -> TraceResult:
    """Run in proof mode and write the trace directory (see the module docstring).

    InfeasibleAllocation (from the reference model) comes before any VM work. The files
    are written into a temporary sibling directory and then moved into ``out_dir`` one by
    one, trace.json last: a directory with trace.json holds a complete trace. Other files
    in ``out_dir`` are left alone.
    """
    _check_layout(layout)
    started = time.monotonic()
    expected = model.expected_output(inputs)
    compiled = compiled_program(cache_dir)
    runner = _run(inputs, layout, cache_dir, pad=True)
    output = _output(runner)
    _check_output(output, expected)
    runner.relocate()

    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"trace output {out_dir} exists and is not a directory")
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}."))
    except OSError as exc:
        raise InputError(f"cannot create the trace directory {out_dir}: {exc}") from exc
    try:
        _write_vm_files(staging, runner, layout)
        _write_json(staging / PROGRAM_FILE, compiled)
        _write_json(staging / PROGRAM_INPUT_FILE, inputs.program_input())
        _write_json(staging / INPUTS_FILE, inputs.to_json())
        result = TraceResult(
            layout=layout,
            n_steps=len(runner.relocated_trace),
            steps=int(runner.original_steps),
            output=output,
            seconds=round(time.monotonic() - started, 3),
            dir=out_dir,
        )
        _write_json(staging / SUMMARY_FILE, result.summary())
        out_dir.mkdir(exist_ok=True)
        (out_dir / SUMMARY_FILE).unlink(missing_ok=True)
        for name in _FILES:
            os.replace(staging / name, out_dir / name)
        staging.rmdir()
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise InputError(f"cannot write the trace directory {out_dir}: {exc}") from exc
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return result


def _write_vm_files(staging: Path, runner: Any, layout: str) -> None:
    """What Stone reads, from the relocated run: trace, memory, public and private input."""
    from starkware.cairo.lang.vm.cairo_run import (
        write_air_public_input,
        write_binary_memory,
        write_binary_trace,
    )

    with open(staging / TRACE_FILE, "wb") as trace_file:
        write_binary_trace(trace_file, runner.relocated_trace)
    with open(staging / MEMORY_FILE, "wb") as memory_file:
        field_bytes = math.ceil(runner.program.prime.bit_length() / 8)
        write_binary_memory(memory_file, runner.relocated_memory, field_bytes)
    rc_min, rc_max = runner.get_perm_range_check_limits()
    with open(staging / PUBLIC_INPUT_FILE, "w", encoding="utf-8") as public_file:
        write_air_public_input(
            layout=layout,
            public_input_file=public_file,
            memory=runner.relocated_memory,
            public_memory_addresses=runner.segments.get_public_memory_addresses(
                segment_offsets=runner.get_segment_offsets()
            ),
            memory_segment_addresses=runner.get_memory_segment_addresses(),
            trace=runner.relocated_trace,
            rc_min=rc_min,
            rc_max=rc_max,
        )
    private_input = {
        "trace_path": TRACE_FILE,
        "memory_path": MEMORY_FILE,
        **runner.get_air_private_input(),
    }
    _write_json(staging / PRIVATE_INPUT_FILE, private_input)
