"""End-to-end rebalance latency and keeper time per rebalance, dev prover, 3 protocols.

Runs the demo's set-up (keeper/demo.py: a devnet, the contracts with the real program
hashes, a real ``python -m keeper run`` process with the dev prover), lets the keeper
execute the fresh router's first epoch (warm-up, not measured), then measures ``--rounds``
rebalances, each triggered by one owner multicall (oracle metrics update +
``request_rebalance``).

Definitions (per rebalance; the summary gives the median and all values):

- ``latency_s``: wall time from just before the request transaction is sent until the
  benchmark first sees the router's epoch advance, i.e. ``AllocationExecuted`` is on
  chain (polled every 0.05 s: that is the resolution). It includes the request's own
  inclusion, the keeper's event polling (stream.poll_interval_s = 0.2), the keeper's work,
  and both keeper transactions.
- ``keeper_s``: from the job's ``detected`` transition to its ``confirmed`` transition
  (job_transitions timestamps, ms, the keeper's clock) minus the time the job spent in
  the states where it waits on the prover or the chain:
    ``proving``   the prover (dev: nothing; Stone/Atlantic: the proof),
    ``proved``    the fact registration transaction (dev: DevFactRegistry register_fact,
                  sent and waited for),
    ``submitted`` the execute_allocation broadcast and its receipt.
  What remains is the time in ``detected`` (reading the on-chain inputs, tracing the
  allocation program: the ``trace`` cost row's wall_s, reported as ``trace_s``, is keeper
  CPU work and counts), ``traced`` and ``fact_registered`` (reading the router state,
  fee estimate, signing).
- ``prover_s``: time in ``proving``; ``chain_s``: time in ``proved`` + ``submitted``.

Target (reported, not asserted): keeper_s median ≤ 1.5 s at 3 protocols. Prints one JSON
object on stdout; progress goes to stderr.

    .venv/bin/python bench/bench_e2e.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from keeper.devnet.demo import DemoRun, build_contracts

TARGET_KEEPER_S = 1.5
WAIT_STATES = {"proving": "prover_s", "proved": "chain_s", "submitted": "chain_s"}
_POLL_S = 0.05
_DEADLINE_S = 180.0


def job_times(transitions: Sequence[tuple[str, str]]) -> dict[str, float]:
    """Time per kind for one job from its (to_state, at) transitions, in order.

    The interval between two transitions is time spent in the state entered by the
    first; it counts as prover or chain time for the WAIT_STATES, keeper time otherwise.
    Measured from the first ``detected`` to the last ``confirmed``.
    """
    times = {"total_s": 0.0, "keeper_s": 0.0, "prover_s": 0.0, "chain_s": 0.0}
    stamps = [(state, datetime.fromisoformat(at)) for state, at in transitions]
    start = next(i for i, (state, _) in enumerate(stamps) if state == "detected")
    end = max(i for i, (state, _) in enumerate(stamps) if state == "confirmed")
    spans = zip(stamps[start:end], stamps[start + 1 : end + 1], strict=True)
    for (state, began), (_, ended) in spans:
        seconds = (ended - began).total_seconds()
        times["total_s"] += seconds
        times[WAIT_STATES.get(state, "keeper_s")] += seconds
    return times


def _summary(values: list[float]) -> dict[str, Any]:
    return {"median": round(statistics.median(values), 4), "values": [round(v, 4) for v in values]}


async def _measure(run: DemoRun, rounds: int) -> list[float]:
    await run.wait_for_epoch(1, _DEADLINE_S)
    await run.wait_for_confirmed(1, _DEADLINE_S)
    latencies: list[float] = []
    for round_no in range(rounds):
        target = round_no + 2
        sent = time.monotonic()
        await run.update_and_request(round_no)
        end = sent + _DEADLINE_S
        while await run.epoch() < target:
            if time.monotonic() > end:
                raise RuntimeError(f"epoch {target} not reached within {_DEADLINE_S:.0f} s")
            await asyncio.sleep(_POLL_S)
        latencies.append(time.monotonic() - sent)
        run.show_progress()
        await run.wait_for_confirmed(target, _DEADLINE_S)
    return latencies


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)

    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="obsqra-bench-e2e-") as tmp:
        run = DemoRun(Path(tmp), say)
        try:
            run.start_devnet()
            run.deploy(build_contracts(say))
            run.start_keeper("dev", (None, None), os.environ)
            latencies = asyncio.run(_measure(run, args.rounds))
            if run.stop_keeper() != 0:
                raise RuntimeError("the keeper did not exit 0 on SIGTERM")
            jobs = [
                str(row[0])
                for row in run.query(
                    "SELECT id FROM jobs WHERE state = 'confirmed' AND epoch >= 1 ORDER BY epoch"
                )
            ]
            per_job = []
            for job in jobs:
                rows = run.query(
                    "SELECT to_state, at FROM job_transitions WHERE job_id = ? ORDER BY id",
                    (job,),
                )
                times = job_times([(str(r[0]), str(r[1])) for r in rows])
                trace = run.query(
                    "SELECT SUM(wall_s) FROM costs WHERE job_id = ? AND kind = 'trace'", (job,)
                )
                times["trace_s"] = float(trace[0][0] or 0.0)
                per_job.append(times)
        finally:
            run.close()

    keeper_median = statistics.median(t["keeper_s"] for t in per_job)
    result = {
        "bench": "e2e",
        "prover": "dev",
        "protocols": 3,
        "rounds": args.rounds,
        "latency_s": _summary(latencies),
        **{
            key: _summary([t[key] for t in per_job])
            for key in ("keeper_s", "trace_s", "prover_s", "chain_s", "total_s")
        },
        "target_keeper_s": TARGET_KEEPER_S,
        "keeper_s_within_target": keeper_median <= TARGET_KEEPER_S,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
