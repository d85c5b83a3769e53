"""Trace generation time and n_steps per layout and protocol count.

Prints one JSON object:
    {"repeat": 5, "sizes": [...], "layouts": {layout: {"integrity_ok": bool,
      "problems": [...], "runs": {n: {"n_steps", "steps", "seconds_median", "seconds"}}}}}

Each run is a full generate_trace (proof-mode VM run, padding, relocation, files) in
this process, after one warm-up run that compiles and loads the program. Layouts that
lack a builtin the program declares still run (the pointer is 0, as with cairo-run
--proof_mode) but fail check_integrity_rules: their "integrity_ok" is false.

    .venv/bin/python bench/bench_trace.py [--repeat 5] [--sizes 2,3,8,16] [--layouts small,dex]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

from prover.model import AllocationInputs, ProtocolInputs
from prover.program import INTEGRITY_LAYOUTS, check_integrity_rules, compiled_program
from prover.trace import generate_trace


def bench_inputs(n: int) -> AllocationInputs:
    """Deterministic, realistic inputs: varied risk, APYs 2-12%, one cap round or more."""
    protocols = tuple(
        ProtocolInputs(
            utilization_bps=4000 + (i * 937) % 5000,
            volatility_bps=800 + (i * 1231) % 4000,
            liquidity_tier=i % 4,
            audit_score=70 + (i * 13) % 31,
            age_days=200 + (i * 173) % 1200,
            apy_bps=200 + (i * 397) % 1000,
        )
        for i in range(n)
    )
    return AllocationInputs(
        router=0x3C5B1E7D2A9F4E8B6C0D1A2F3E4B5C6D7E8F9A0B1C2D3E4F5A6B7C8D9E0F1A2,
        epoch=1,
        protocols=protocols,
        max_single_bps=max(3500, -(-10000 // n)),
        min_diversification=0,  # the check costs the same for any value
    )


def _layout_runs(layout: str, sizes: list[int], repeat: int, work: Path) -> dict[str, Any]:
    runs: dict[str, Any] = {}
    for n in sizes:
        inputs = bench_inputs(n)
        seconds: list[float] = []
        result = None
        for i in range(repeat):
            result = generate_trace(inputs, work / f"{layout}-{n}-{i}", layout=layout)
            seconds.append(result.seconds)
        assert result is not None
        runs[str(n)] = {
            "n_steps": result.n_steps,
            "steps": result.steps,
            "seconds_median": round(statistics.median(seconds), 3),
            "seconds": seconds,
        }
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="trace generation benchmark (JSON out)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--sizes", default="2,3,8,16")
    parser.add_argument("--layouts", default=",".join(INTEGRITY_LAYOUTS))
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    layouts = args.layouts.split(",")
    warnings.simplefilter("ignore")

    compiled = compiled_program()
    report: dict[str, Any] = {"repeat": args.repeat, "sizes": sizes, "layouts": {}}
    with tempfile.TemporaryDirectory(prefix="bench-trace-") as tmp:
        work = Path(tmp)
        generate_trace(bench_inputs(3), work / "warmup")
        for layout in layouts:
            problems = check_integrity_rules(compiled, layout)
            report["layouts"][layout] = {
                "integrity_ok": not problems,
                "problems": problems,
                "runs": _layout_runs(layout, sizes, args.repeat, work),
            }
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
