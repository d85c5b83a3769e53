"""Progress lines while a proof runs: one at the start, then one per interval with the
phase the prover reports, until the proof ends (and none after)."""

from __future__ import annotations

import asyncio

from structlog.testing import capture_logs

from keeper.engine.progress import proof_progress


async def test_progress_lines_follow_the_phase_until_the_proof_ends() -> None:
    phases = iter(["starting", "Stone: proving 4096 steps (96 bits)"])
    current = {"phase": next(phases)}
    with capture_logs() as logs:

        async def proof() -> None:
            # The "proof" ends once two progress lines were written, one per phase.
            while sum(1 for e in logs if e["event"] == "job.proof_progress") < 1:
                await asyncio.sleep(0)
            current["phase"] = next(phases)
            while sum(1 for e in logs if e["event"] == "job.proof_progress") < 2:
                await asyncio.sleep(0)

        ticks = iter(range(0, 1000, 10))
        async with proof_progress(
            lambda: current["phase"], 75.4, interval_s=0.001, clock=lambda: float(next(ticks))
        ):
            await proof()
        after = len(logs)
        await asyncio.sleep(0.01)  # the ticker is gone: nothing more is logged
    assert len(logs) == after
    started, *progress = logs
    assert started["event"] == "job.proof_started" and started["expected_s"] == 75
    assert [(e["phase"], e["elapsed_s"], e["expected_s"]) for e in progress] == [
        ("starting", 10, 75),
        ("Stone: proving 4096 steps (96 bits)", 20, 75),
    ]


async def test_no_estimate_before_the_first_proof() -> None:
    with capture_logs() as logs:
        async with proof_progress(lambda: "Stone", None, interval_s=60):
            pass
    assert [(e["event"], e["expected_s"]) for e in logs] == [("job.proof_started", None)]
