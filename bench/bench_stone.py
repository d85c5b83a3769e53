"""Benchmark the real Stone prover on a trace for parameter sets of equal security.

    .venv/bin/python bench/bench_stone.py [TRACE_DIR] [--bits 96] [--runs 3]

TRACE_DIR defaults to a copy of the Stone samples (n_steps 4,096). Stone comes from
KEEPER_PROVER__STONE_PROVER_PATH / _STONE_VERIFIER_PATH or PATH; without it the script
prints a JSON "skipped" message and exits 0. Output: one JSON object, per parameter set
(blowup vs queries vs PoW at the same security bits) the median of the runs of prove
seconds, peak RSS and proof bytes. PoW grinding is random: expect spread between runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from prover.settings import ProverSettings
from prover.stone import StoneError, StoneParameterSetUnsupportedError, StoneRunner
from prover.stone_tools import locate_stone

SAMPLES = Path(__file__).resolve().parents[1] / "tests" / "vectors" / "stone-samples"
# (log_n_cosets, proof_of_work_bits): n_queries follows from the required bits.
SHAPES = ((2, 20), (2, 24), (3, 20), (4, 20), (4, 24))


def _binaries() -> tuple[Path, Path] | None:
    build = locate_stone(os.environ)
    return None if build is None else (build.prover, build.verifier)


def _sample_trace(root: Path) -> Path:
    trace = root / "trace"
    trace.mkdir()
    for name in ("trace.bin", "memory.bin", "public_input.json", "private_input.json"):
        shutil.copyfile(SAMPLES / name, trace / name)
    shutil.copyfile(SAMPLES / "weights_compiled.json", trace / "program.json")
    return trace


async def _bench(trace: Path, base: ProverSettings, runs: int) -> dict[str, Any]:
    results: list[dict[str, Any]] = []
    settings = base
    for cosets, pow_bits in SHAPES:
        shape = settings.model_copy(update={"log_n_cosets": cosets, "proof_of_work_bits": pow_bits})
        runner = StoneRunner(shape)
        samples = []
        try:
            for _ in range(runs):
                try:
                    samples.append(await runner.prove(trace, out_dir=trace / "bench"))
                except StoneParameterSetUnsupportedError:
                    settings = settings.model_copy(
                        update={"parameter_set": "keccak"}
                    )  # CMake-era build
                    shape = shape.model_copy(update={"parameter_set": "keccak"})
                    runner = StoneRunner(shape)
                    samples.append(await runner.prove(trace, out_dir=trace / "bench"))
        except StoneError as exc:
            results.append(
                {
                    "log_n_cosets": cosets,
                    "proof_of_work_bits": pow_bits,
                    "error": exc.code,
                    "detail": exc.message,
                }
            )
            continue
        first = samples[0]
        results.append(
            {
                "log_n_cosets": cosets,
                "n_queries": first.fri.n_queries,
                "proof_of_work_bits": pow_bits,
                "security_bits": first.security_bits,
                "fri_step_list": list(first.fri.fri_step_list),
                "parameter_set": first.parameter_set,
                "stone_generation": first.stone_generation,
                "prove_seconds_median": round(
                    statistics.median(s.wall_seconds for s in samples), 2
                ),
                "cpu_seconds_median": round(statistics.median(s.cpu_seconds for s in samples), 2),
                "peak_rss_mb_median": round(statistics.median(s.peak_rss_mb for s in samples), 1),
                "proof_bytes_median": int(statistics.median(s.proof_bytes for s in samples)),
                "runs": len(samples),
            }
        )
    return {"trace": str(trace), "required_bits": base.required_security_bits, "sets": results}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trace_dir", nargs="?", type=Path)
    parser.add_argument("--bits", type=int, default=ProverSettings().required_security_bits)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    binaries = _binaries()
    if binaries is None:
        print(
            json.dumps(
                {
                    "skipped": "real Stone not found: put cpu_air_prover on PATH or "
                    "set KEEPER_PROVER__STONE_PROVER_PATH"
                }
            )
        )
        return 0
    base = ProverSettings(
        stone_prover_path=binaries[0],
        stone_verifier_path=binaries[1],
        required_security_bits=args.bits,
        parameter_set=os.environ.get("KEEPER_PROVER__PARAMETER_SET", "stone6"),  # type: ignore[arg-type]
        timeout_s=3600.0,
    )
    with tempfile.TemporaryDirectory() as tmp:
        trace = args.trace_dir or _sample_trace(Path(tmp))
        print(json.dumps(asyncio.run(_bench(trace, base, args.runs)), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
