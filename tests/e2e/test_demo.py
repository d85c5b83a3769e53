"""``obsqra-keeper demo`` (make demo): the whole product end to end, as a user runs it.

The demo runs as a subprocess: it must finish with ≥ 3 executed epochs and the cost
table, and a Ctrl-C in the middle must leave no devnet or keeper process behind.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keeper.devnet import deploy as devnet_deploy
from keeper.devnet.demo import (
    PIDS_FILE,
    DemoError,
    decode_executed,
    metrics_update,
    progress_line,
    with_protocol_replaced,
)
from prover import model

ROOT = Path(__file__).resolve().parents[2]
DEMO = [sys.executable, "-m", "keeper", "demo"]
RUN_DEADLINE_S = 600.0


def _demo_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("KEEPER_")}


def _read_until(process: subprocess.Popen[str], pattern: str, deadline_s: float) -> str:
    """The demo's stdout up to the first line matching ``pattern`` (fails on exit/deadline)."""
    assert process.stdout is not None
    seen: list[str] = []
    end = time.monotonic() + deadline_s
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while time.monotonic() < end:
            if not selector.select(timeout=end - time.monotonic()):
                break
            line = process.stdout.readline()
            if not line:
                break
            seen.append(line)
            if re.search(pattern, line):
                return "".join(seen)
    raise AssertionError(f"the demo never printed {pattern!r}; it printed:\n{''.join(seen)}")


def _run_demo(*args: str) -> str:
    """The demo run to its end; its stdout (fails with both streams on a non-zero exit)."""
    result = subprocess.run(
        [*DEMO, *args],
        cwd=ROOT,
        env=_demo_env(),
        capture_output=True,
        text=True,
        timeout=RUN_DEADLINE_S,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    return result.stdout


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.devnet
def test_demo_executes_three_epochs_and_prints_the_cost_table(tmp_path: Path) -> None:
    work = tmp_path / "demo"
    out = _run_demo("--epochs", "3", "--prover", "dev", "--keep-dir", str(work))
    match = re.search(r"demo ok: (\d+) executed epochs", out)
    assert match is not None and int(match.group(1)) >= 3, out[-3000:]
    for epoch in range(3):
        assert re.search(rf"^  epoch {epoch}: \[[ \d,]+\] bps", out, re.MULTILINE), out[-3000:]
    assert "costs, all time (UTC days)" in out
    assert re.search(r"^prover +rows +failed +wall s +cpu s .*L2 fees", out, re.MULTILINE)
    assert "executed allocations: 3" in out
    assert "keeper: epoch 2: allocation executed in block" in out
    key = work / "account_private_key"
    assert key.stat().st_mode & 0o777 == 0o600
    pids = json.loads((work / PIDS_FILE).read_text())
    assert not any(_group_alive(pid) for pid in pids.values())


@pytest.mark.devnet
@pytest.mark.stone
def test_the_real_path_demo_reports_progress_while_stone_proves(tmp_path: Path) -> None:
    """`make demo` where setup installed Stone and Integrity's classes are there: the real
    path (no --prover needed), and progress lines while the proof runs. One epoch here; the
    three of `make demo` are the same loop three times."""
    from keeper.devnet.demo import ProverSetup, resolve_prover

    if resolve_prover("auto", _demo_env()) == ProverSetup("dev"):
        pytest.skip("no Stone or no Integrity classes: the demo would run the dev prover")
    out = _run_demo("--epochs", "1", "--keep-dir", str(tmp_path / "demo"))
    assert "policy stone_only" in out and "facts from Integrity" in out, out[-3000:]
    lines = out.splitlines()
    started = next(i for i, line in enumerate(lines) if "epoch 0: proof started" in line)
    checked = next(i for i, line in enumerate(lines) if "proof pre-checked by swiftness" in line)
    progress = [line for line in lines[started:checked] if "  … Stone: " in line]
    assert progress, "\n".join(lines[started : checked + 1])
    assert re.search(r"… Stone: proving 4096 steps \(\d+ bits\): \d+ s", progress[0])
    assert re.search(r"epoch 0: Integrity \w+ step \d+ \(fee ", out), out[-3000:]
    assert "keeper: epoch 0: allocation executed in block" in out
    assert re.search(r"demo ok: 1 executed epochs", out), out[-3000:]


@pytest.mark.devnet
def test_ctrl_c_mid_run_stops_keeper_and_devnet(tmp_path: Path) -> None:
    work = tmp_path / "demo"
    process = subprocess.Popen(
        [*DEMO, "--epochs", "5", "--prover", "dev", "--keep-dir", str(work)],
        cwd=ROOT,
        env=_demo_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        printed = _read_until(process, r"keeper: epoch 0: job detected", RUN_DEADLINE_S)
        pids = json.loads((work / PIDS_FILE).read_text())
        assert f"pid {pids['devnet']}" in printed and f"pid {pids['keeper']}" in printed
        assert all(_group_alive(pid) for pid in pids.values())
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, rest
    assert "interrupted: stopping the keeper and the devnet" in rest
    assert [pid for pid in pids.values() if _group_alive(pid)] == []


def test_bad_epochs_is_a_usage_error() -> None:
    result = subprocess.run(
        [*DEMO, "--epochs", "0"], env=_demo_env(), capture_output=True, text=True, check=False
    )
    assert result.returncode == 2
    assert "--epochs" in result.stderr and "1..100" in result.stderr


@given(st.integers(min_value=1, max_value=12))
def test_every_driven_round_keeps_the_model_feasible(rounds: int) -> None:
    params = devnet_deploy.load_deploy_params(ROOT / "config" / "deploy.devnet.toml")
    protocols = [
        dict(zip(devnet_deploy.PROTOCOL_FIELDS, row, strict=True)) for row in params.metrics
    ]
    for round_no in range(rounds):
        index, metrics = metrics_update(round_no)
        protocols[index] = metrics
    inputs = model.AllocationInputs(
        router=1,
        epoch=rounds,
        protocols=tuple(model.ProtocolInputs(**p) for p in protocols),
        max_single_bps=params.router["max_single_bps"],
        min_diversification=params.router["min_diversification"],
    )
    allocation = model.compute_allocation(inputs).allocation
    assert sum(allocation) == 10000
    assert max(allocation) <= params.router["max_single_bps"]


def test_progress_lines_for_the_job_pipeline_and_silence_otherwise() -> None:
    confirmed = {
        "event": "job.confirmed",
        "epoch": 2,
        "block": 9,
        "fee": "1500000000000000000",
        "unit": "FRI",
    }
    assert progress_line(confirmed) == "epoch 2: allocation executed in block 9 (fee 1.5 STRK)"
    assert progress_line({"event": "keeper.halted", "reason": "program hash 0x1234"}) == (
        "KEEPER HALTED: program hash 0x1234"
    )
    assert progress_line({"event": "keeper.crashed", "level": "error", "error": "boom"}) == (
        "keeper error: keeper.crashed boom"
    )
    assert progress_line({"event": "stream.block", "level": "info"}) is None
    progress = {
        "event": "job.proof_progress",
        "epoch": 1,
        "phase": "Stone: proving 4096 steps (96 bits)",
        "elapsed_s": 30,
        "expected_s": 74,
    }
    assert progress_line(progress) == (
        "epoch 1:   … Stone: proving 4096 steps (96 bits): 30 s of ~74 s expected"
    )
    assert progress_line({**progress, "expected_s": None}) == (
        "epoch 1:   … Stone: proving 4096 steps (96 bits): 30 s"
    )
    started = {"event": "job.proof_started", "epoch": 1, "phase": "starting", "expected_s": 66}
    assert progress_line(started) == "epoch 1: proof started (recent proofs took ~66 s)"
    assert progress_line({**started, "expected_s": None}) == "epoch 1: proof started"


def test_allocation_executed_event_decoding() -> None:
    direct = int.from_bytes(b"direct", "big")
    event = decode_executed([0xABC, 4], [0xFAC7, 3, 3318, 3014, 3668, direct])
    assert (event.epoch, event.fact_hash, event.allocation, event.prover_kind) == (
        4,
        0xFAC7,
        (3318, 3014, 3668),
        "direct",
    )


def test_an_oracle_round_is_one_complete_snapshot() -> None:
    """RiskEngine has no per-protocol setter: the demo sends the whole set, one replaced."""
    inputs = [2, *range(1, 7), *range(11, 17), *range(100, 112)]  # get_inputs: n, 6n, 12
    _, metrics = metrics_update(0)
    snapshot = with_protocol_replaced(inputs, 1, metrics)
    assert snapshot == [
        2,
        *range(1, 7),
        *(metrics[name] for name in devnet_deploy.PROTOCOL_FIELDS),
    ]
    with pytest.raises(DemoError, match="RiskEngine has 2 protocols"):
        with_protocol_replaced(inputs, 2, metrics)
