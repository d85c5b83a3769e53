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

With a real Stone (``--prover stone``, or ``auto`` when `make setup` installed one) it
then measures the real path (Stone, swiftness, Integrity's real classes behind our
IntegrityGuard, the keeper's default proof shape) twice, each on a fresh devnet, and prints
one line each::

    {"bench": "due_to_executed", "prover": "stone", "ahead": false|true, "median_s",
     "p95_s", "epochs", "values", "keeper_median_s", "keeper_values"}

- ``ahead: false`` (``jobs.prove_ahead = false``): each epoch, one owner multicall with a
  small oracle update (new inputs, no drift) and ``request_rebalance``: the job traces,
  proves, registers and executes.
- ``ahead: true`` (the default): the oracle update alone, then, once the keeper's proof of
  the new inputs is ready (it proves them ahead), the request: the job only registers and
  executes.

``values``: seconds from just before the request transaction is sent until the router's
epoch advances (polled every 0.05 s); ``keeper_values``: the job's ``detected`` to
``confirmed`` (the keeper's ``keeper_due_to_executed_seconds``). p95 is the nearest rank.

    .venv/bin/python bench/bench_e2e.py [--rounds 5] [--prover auto|dev|stone]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from keeper.devnet.demo import DemoRun, build_contracts, resolve_prover
from prover.stone_tools import locate_stone

TARGET_KEEPER_S = 1.5
WAIT_STATES = {"proving": "prover_s", "proved": "chain_s", "submitted": "chain_s"}
_POLL_S = 0.05
_DEADLINE_S = 180.0
_STONE_DEADLINE_S = 900.0


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
        latencies.append(await _seconds_until_epoch(run, target, sent, _DEADLINE_S))
    return latencies


async def _seconds_until_epoch(run: DemoRun, target: int, sent: float, deadline_s: float) -> float:
    """Seconds from ``sent`` until the router's epoch reaches ``target`` (polled every
    ``_POLL_S``), then until the keeper confirmed its job."""
    end = sent + deadline_s
    while await run.epoch() < target:
        if time.monotonic() > end:
            raise RuntimeError(f"epoch {target} not reached within {deadline_s:.0f} s")
        await asyncio.sleep(_POLL_S)
    seconds = time.monotonic() - sent
    run.show_progress()
    await run.wait_for_confirmed(target, deadline_s)
    return seconds


def p95(values: Sequence[float]) -> float:
    """Nearest-rank 95th percentile."""
    ordered = sorted(values)
    return ordered[max(math.ceil(0.95 * len(ordered)) - 1, 0)]


def _last_ahead_id(run: DemoRun) -> int:
    return int(run.query("SELECT COALESCE(MAX(id), 0) FROM ahead_proofs")[0][0])


async def _wait_for_ready_ahead(run: DemoRun, epoch: int, after_id: int) -> None:
    """Until the keeper's proof made ahead of the inputs set after row ``after_id`` is
    ready (a proof of the inputs before the update is discarded, never ready: it would
    need tens of seconds, the keeper sees the update within one poll)."""
    end = time.monotonic() + _STONE_DEADLINE_S
    while not run.query(
        "SELECT id FROM ahead_proofs WHERE epoch = ? AND state = 'ready' AND id > ?",
        (epoch, after_id),
    ):
        run.show_progress()
        if time.monotonic() > end:
            raise RuntimeError(f"no proof made ahead for epoch {epoch} within the deadline")
        await asyncio.sleep(_POLL_S * 10)


async def _measure_due(run: DemoRun, rounds: int, *, ahead: bool) -> list[float]:
    await run.wait_for_epoch(1, _STONE_DEADLINE_S)
    await run.wait_for_confirmed(1, _STONE_DEADLINE_S)
    latencies: list[float] = []
    for round_no in range(rounds):
        target = round_no + 2
        if ahead:
            before = _last_ahead_id(run)
            await run.nudge_and_maybe_request(round_no, request=False)
            await _wait_for_ready_ahead(run, target - 1, before)
            sent = time.monotonic()
            await run.request_rebalance()
        else:
            sent = time.monotonic()
            await run.nudge_and_maybe_request(round_no, request=True)
        latencies.append(await _seconds_until_epoch(run, target, sent, _STONE_DEADLINE_S))
    return latencies


def _keeper_due_to_executed(run: DemoRun) -> list[float]:
    """detected → confirmed of each measured job (epochs ≥ 1), the keeper's clock."""
    values = []
    for (job,) in run.query(
        "SELECT id FROM jobs WHERE state = 'confirmed' AND epoch >= 1 ORDER BY epoch"
    ):
        rows = run.query(
            "SELECT to_state, at FROM job_transitions WHERE job_id = ? ORDER BY id", (job,)
        )
        values.append(job_times([(str(r[0]), str(r[1])) for r in rows])["total_s"])
    return values


def bench_stone(rounds: int, *, ahead: bool, say: Callable[[str], None]) -> dict[str, Any]:
    env = {**os.environ, "KEEPER_JOBS__PROVE_AHEAD": "true" if ahead else "false"}
    setup = resolve_prover("stone", env)
    with tempfile.TemporaryDirectory(prefix="obsqra-bench-due-") as tmp:
        run = DemoRun(Path(tmp), say)
        try:
            run.start_devnet()
            run.deploy(build_contracts(say), setup)
            run.start_keeper(setup.policy, (setup.stone_prover, setup.stone_verifier), env)
            latencies = asyncio.run(_measure_due(run, rounds, ahead=ahead))
            if run.stop_keeper() != 0:
                raise RuntimeError("the keeper did not exit 0 on SIGTERM")
            keeper_values = _keeper_due_to_executed(run)
            used = run.query("SELECT COUNT(*) FROM ahead_proofs WHERE state = 'used'")[0][0]
        finally:
            run.close()
    if ahead and used != rounds:
        raise RuntimeError(f"{used} of {rounds} rebalances used a proof made ahead")
    return {
        "bench": "due_to_executed",
        "prover": "stone",
        "ahead": ahead,
        "median_s": round(statistics.median(latencies), 2),
        "p95_s": round(p95(latencies), 2),
        "epochs": rounds,
        "values": [round(v, 2) for v in latencies],
        "keeper_median_s": round(statistics.median(keeper_values), 2),
        "keeper_values": [round(v, 2) for v in keeper_values],
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--prover", choices=("auto", "dev", "stone"), default="auto")
    args = parser.parse_args(argv)

    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    if args.prover in ("auto", "dev"):
        bench_dev(args.rounds, say)
    if args.prover == "stone" or (args.prover == "auto" and locate_stone(os.environ)):
        for ahead in (False, True):
            print(json.dumps(bench_stone(args.rounds, ahead=ahead, say=say)), flush=True)
    elif args.prover == "auto":
        say("no real Stone (make setup installs it): the due_to_executed lines are skipped")
    return 0


def bench_dev(rounds: int, say: Callable[[str], None]) -> None:
    """The dev-prover line (``"bench": "e2e"``)."""
    args = argparse.Namespace(rounds=rounds)
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
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    sys.exit(main())
