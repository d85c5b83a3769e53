"""``obsqra-keeper trace``: run the allocation program in proof mode and write a trace dir."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from prover.model import load_inputs
from prover.program import DEFAULT_LAYOUT, INTEGRITY_LAYOUTS
from prover.trace import generate_trace


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "trace",
        help="run the allocation program on INPUTS.json and write a Stone trace directory",
        description="Validate INPUTS.json, run the allocation program in proof mode and "
        "write trace.bin, memory.bin, public/private input and a summary to DIR. Prints one "
        "JSON line: layout, n_steps, steps, output, seconds.",
    )
    parser.add_argument("--inputs", required=True, type=Path, metavar="INPUTS.json")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR")
    parser.add_argument(
        "--layout",
        default=DEFAULT_LAYOUT,
        choices=INTEGRITY_LAYOUTS,
        help=f"Cairo layout (default {DEFAULT_LAYOUT}, the only one Integrity verifies "
        "this program on)",
    )
    parser.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    inputs = load_inputs(args.inputs)
    result = generate_trace(inputs, args.out, layout=args.layout)
    line = {
        "layout": result.layout,
        "n_steps": result.n_steps,
        "steps": result.steps,
        "output": [hex(value) for value in result.output],
        "seconds": result.seconds,
    }
    print(json.dumps(line))
    return 0
