"""The real Stone on the allocation trace: what each blowup costs to prove and to send.

    .venv/bin/python bench/bench_stone.py [--cosets 2,3,4] [--bits 96] [--pow 20]
        [--last-layer 64] [--keccak-layers 0] [--runs 1]

Traces the allocation program on config/devnet_inputs.json (the keeper's own trace,
4,096 steps on the small layout), then proves it with the Stone that `make setup`
installed (or KEEPER_PROVER__STONE_*_PATH, or PATH) once per ``log_n_cosets``, each at the
same security bits (queries follow from the blowup and the PoW bits). One JSON line per
configuration:

    {"bench": "stone", "log_n_cosets", "n_queries", "proof_of_work_bits", "security_bits",
     "fri_step_list", "n_steps", "prove_wall_s", "prove_cpu_s", "peak_rss_mb",
     "proof_bytes", "calldata_felts": [initial, steps…, final], "max_tx_felts", "runs"}

``prove_*`` are the medians of ``--runs`` runs (prover plus local verifier, as the keeper
runs them); ``calldata_felts`` are the felts of each transaction of Integrity's split
verification (the account's multicall framing included). Wall time depends on what else
the machine runs; CPU seconds much less. PoW grinding is random: expect spread. Without a
Stone the script prints one "skipped" line and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from prover import model  # noqa: E402
from prover.integrity import parse_proof, split_calldata  # noqa: E402
from prover.settings import ProverSettings  # noqa: E402
from prover.stone import StoneError, StoneResult, StoneRunner  # noqa: E402
from prover.stone_tools import locate_stone  # noqa: E402
from prover.trace import generate_trace  # noqa: E402

INPUTS = ROOT / "config" / "devnet_inputs.json"


def _felts_per_tx(proof_path: Path) -> list[int]:
    proof = parse_proof(json.loads(proof_path.read_text()))
    return [call.transaction_felts for call in split_calldata(proof, job_id=1)]


async def _one(trace: Path, settings: ProverSettings, runs: int, out: Path) -> dict[str, Any]:
    runner = StoneRunner(settings)
    samples: list[StoneResult] = []
    for _ in range(runs):
        samples.append(await runner.prove(trace, out_dir=out))
    first = samples[0]
    felts = _felts_per_tx(first.proof_path)
    return {
        "bench": "stone",
        "log_n_cosets": settings.log_n_cosets,
        "n_queries": first.fri.n_queries,
        "proof_of_work_bits": settings.proof_of_work_bits,
        "security_bits": first.security_bits,
        "fri_step_list": list(first.fri.fri_step_list),
        "last_layer_degree_bound": settings.last_layer_degree_bound,
        "keccak_commitment_layers": settings.keccak_commitment_layers,
        "n_steps": json.loads((trace / "public_input.json").read_text())["n_steps"],
        "parameter_set": first.parameter_set,
        "prove_wall_s": round(statistics.median(s.wall_seconds for s in samples), 1),
        "prove_cpu_s": round(statistics.median(s.cpu_seconds for s in samples), 1),
        "peak_rss_mb": round(statistics.median(s.peak_rss_mb for s in samples)),
        "proof_bytes": int(statistics.median(s.proof_bytes for s in samples)),
        "calldata_felts": felts,
        "max_tx_felts": max(felts),
        "runs": len(samples),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cosets", default="2,3,4", help="log_n_cosets values (default 2,3,4)")
    parser.add_argument("--bits", type=int, default=96, help="security bits (default 96)")
    parser.add_argument("--pow", type=int, default=20, help="proof-of-work bits (default 20)")
    parser.add_argument("--last-layer", type=int, default=64, help="last FRI layer degree bound")
    parser.add_argument(
        "--keccak-layers",
        type=int,
        default=0,
        help="Merkle layers hashed with keccak (0: all Poseidon)",
    )
    parser.add_argument("--runs", type=int, default=1, help="runs per configuration")
    args = parser.parse_args()
    build = locate_stone(os.environ)
    if build is None:
        print(json.dumps({"bench": "stone", "skipped": "no Stone: run make setup"}))
        return 0
    base = ProverSettings(
        stone_prover_path=build.prover,
        stone_verifier_path=build.verifier,
        required_security_bits=args.bits,
        proof_of_work_bits=args.pow,
        last_layer_degree_bound=args.last_layer,
        keccak_commitment_layers=args.keccak_layers,
        timeout_s=3600.0,
    )
    inputs = model.load_inputs(INPUTS)
    with tempfile.TemporaryDirectory() as tmp:
        trace = generate_trace(inputs, Path(tmp) / "trace").dir
        for cosets in (int(c) for c in args.cosets.split(",")):
            settings = base.model_copy(update={"log_n_cosets": cosets})
            try:
                line = asyncio.run(_one(trace, settings, args.runs, Path(tmp) / f"c{cosets}"))
            except StoneError as exc:
                line = {
                    "bench": "stone",
                    "log_n_cosets": cosets,
                    "error": exc.code,
                    "detail": exc.message,
                }
            print(json.dumps(line), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
