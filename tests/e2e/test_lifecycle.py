"""The daemon's lifecycle as systemd sees it: notify protocol, SIGTERM during proving,
SIGHUP with a broken config, an invalid config at start."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from prover.swiftness import SwiftnessAnnotationMismatchError
from tests.contracts.conftest import Deployed
from tests.e2e.harness import (
    ROOT,
    KeeperSetup,
    epoch,
    stone_stand_in_env,
    wait_for_epoch,
    wait_for_jobs,
    wait_until,
)
from tests.ops.notify_listener import notify_listener

pytestmark = pytest.mark.devnet


def _state(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def test_invalid_config_at_start_exits_78(tmp_path: Path) -> None:
    config = tmp_path / "keeper.toml"
    config.write_text('[chain]\nrpc_url = "not a url"\n')
    result = subprocess.run(
        [sys.executable, "-m", "keeper", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if not k.startswith("KEEPER_")},
    )
    assert result.returncode == 78
    assert "chain.rpc_url: Value error, must be an http:// or https:// URL" in result.stderr
    assert "chain.router_address: required but missing" in result.stderr
    assert "Traceback" not in result.stderr


async def test_notify_ready_watchdog_stopping_in_a_real_run(
    deployed: Deployed, keeper_dir: Path
) -> None:
    setup = KeeperSetup(deployed, keeper_dir)
    with notify_listener() as listener:
        keeper = setup.start(**listener.environ(watchdog_usec=400_000))
        try:
            async with asyncio.timeout(120):
                await listener.wait_for_async("READY=1")
                ready = listener.first_index("READY=1")
                await listener.wait_for_async("WATCHDOG=1", since=ready + 1)
        finally:
            assert keeper.stop() == 0
        async with asyncio.timeout(30):
            await listener.wait_for_async("STOPPING=1")
    watchdog = listener.first_index("WATCHDOG=1")
    assert listener.first_index("READY=1") < watchdog < listener.first_index("STOPPING=1")


async def test_sigterm_during_proving_exits_0_and_the_next_start_resumes(
    deployed_with_integrity: Deployed, keeper_dir: Path
) -> None:
    """Stone hangs; SIGTERM ends the keeper and Stone's process group, the job stays in
    ``proving``. The next start proves it again, and the stand-in's proof goes on to the
    pre-check against Integrity's rules, which refuses it (the stand-in proves nothing):
    resumed, and still no gas spent on a proof Integrity would refuse."""
    deployed = deployed_with_integrity
    pidfile = keeper_dir.parent / "stone-grandchild.pid"
    setup = KeeperSetup(
        deployed,
        keeper_dir,
        policy="stone_only",
        extra_env=stone_stand_in_env(),
    )
    hanging = setup.start(FAKE_STONE_MODE="hang", FAKE_STONE_CHILD_PIDFILE=str(pidfile))

    async def proving() -> bool:
        return setup.job_states() == ["proving"] and pidfile.exists()

    await wait_until("a job in proving", proving, keeper=hanging)
    hanging.process.send_signal(signal.SIGTERM)
    assert hanging.process.wait(timeout=60) == 0
    (job,) = setup.query("SELECT state FROM jobs")
    assert job["state"] == "proving"  # checkpointed, not failed
    # Stone's whole process group went with the keeper: the grandchild is gone, or a
    # zombie waiting for PID 1 to reap it (containers' PID 1 often never does).
    assert _state(int(pidfile.read_text())) in (None, "Z")
    assert any(line.get("event") == "keeper.stopped" for line in hanging.log_lines())

    keeper = setup.start()
    try:
        await wait_for_jobs(setup, {"failed"}, keeper)
    finally:
        assert keeper.stop() == 0
    (job,) = setup.query("SELECT id, state, run, failure_code FROM jobs")
    assert (job["state"], job["run"]) == ("failed", 1)
    assert job["failure_code"] == SwiftnessAnnotationMismatchError.code
    moves = setup.query(
        "SELECT to_state FROM job_transitions WHERE job_id = ? ORDER BY id", (job["id"],)
    )
    assert [m["to_state"] for m in moves] == ["detected", "traced", "proving", "failed"]
    proofs = setup.query("SELECT outcome FROM costs WHERE kind = 'proof'")
    assert [p["outcome"] for p in proofs][-1] == "ok"  # the resumed proving finished
    assert await epoch(deployed) == 0


async def test_sighup_with_a_broken_config_keeps_the_old_one(
    deployed: Deployed, keeper_dir: Path
) -> None:
    setup = KeeperSetup(deployed, keeper_dir)
    keeper = setup.start()
    try:
        await wait_for_epoch(deployed, 1, keeper)
        good = setup.config_path.read_text()
        setup.config_path.write_text(good.replace('policy = "dev"', 'policy = "fastest"'))
        keeper.process.send_signal(signal.SIGHUP)

        async def rejected() -> bool:
            return bool(keeper.events("config.reload_rejected"))

        await wait_until("the reload to be rejected", rejected, keeper=keeper)
        (line,) = keeper.events("config.reload_rejected")
        assert any("prover.policy" in problem for problem in line["problems"])
        # Still running on the old config: a request is executed as before.
        await deployed.invoke(deployed.owner, "StrategyRouterV2", "request_rebalance")
        await wait_for_epoch(deployed, 2, keeper)
    finally:
        assert keeper.stop() == 0


async def test_health_and_metrics_of_a_running_keeper(deployed: Deployed, keeper_dir: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    setup = KeeperSetup(deployed, keeper_dir, health_port=port)
    keeper = setup.start()
    try:
        await wait_for_epoch(deployed, 1, keeper)
        await wait_for_jobs(setup, {"confirmed"}, keeper)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:

            async def healthy() -> dict[str, object] | None:
                reply = await http.get("/healthz")
                body: dict[str, object] = reply.json()
                return body if reply.status_code == 200 and body["status"] == "ok" else None

            health = await wait_until("/healthz ok", healthy, keeper=keeper)
            metrics = (await http.get("/metrics")).text
    finally:
        assert keeper.stop() == 0
    assert health["provers"] == {"dev": {"available": True}}
    assert health["last_successful_job_at"] is not None
    for series in (
        'keeper_jobs{state="confirmed"} 1.0',
        "keeper_events_total",
        "keeper_fees_total",
        "keeper_stream_lag_blocks",
        'keeper_prover_available{prover="dev"} 1.0',
    ):
        assert series in metrics
