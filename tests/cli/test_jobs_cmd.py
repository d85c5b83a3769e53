"""``obsqra-keeper jobs`` and ``jobs retry EPOCH`` against a real store."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from keeper.cli.main import main
from keeper.store.ahead import AheadKey, AheadStore, Proved, Traced
from keeper.store.db import open_store
from keeper.store.jobs import JobState, JobStore
from keeper.store.ledger import Ledger

ROUTER = 0x1


def _config(tmp_path: Path, store_path: Path) -> Path:
    path = tmp_path / "keeper.toml"
    path.write_text(
        "[chain]\n"
        'rpc_url = "http://127.0.0.1:5050"\n'
        'chain_id = "SN_SEPOLIA"\n'
        f'router_address = "{ROUTER:#x}"\n'
        'risk_engine_address = "0x2"\n'
        'account_address = "0x3"\n'
        "[store]\n"
        f'path = "{store_path}"\n'
    )
    return path


@pytest.fixture
def config(tmp_path: Path) -> Path:
    store_path = tmp_path / "keeper.sqlite3"
    with open_store(store_path) as store:
        jobs = JobStore(store)
        done = jobs.create(ROUTER, 1, "interval")
        parked = jobs.create(ROUTER, 2, "request")
        waiting = jobs.create(ROUTER, 3, "drift")
        assert done and parked and waiting
        jobs.supersede(done, "epoch moved")
        jobs.fail(parked, "reverted", "stale inputs commitment", retry_after=None, paid=True)
        later = datetime(2031, 1, 1, tzinfo=UTC)
        jobs.fail(waiting, "rpc_unreachable", "node down", retry_after=later)
        unfunded = jobs.create(ROUTER, 4, "interval")
        assert unfunded
        jobs.set_columns(
            unfunded, failure_code="insufficient_funds", failure_reason="insufficient_funds: …"
        )
    return _config(tmp_path, store_path)


def test_a_job_waiting_for_funds_runs_when_funded(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["jobs", "--config", str(config), "--json"]) == 0
    row = {r["epoch"]: r for r in json.loads(capsys.readouterr().out)}[4]
    assert (row["state"], row["next_run"], row["failure_code"]) == (
        "detected", "when funded", "insufficient_funds"
    )


def test_jobs_lists_state_run_and_what_happens_next(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["jobs", "--config", str(config), "--json"]) == 0
    rows = {row["epoch"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows[1]["state"] == "superseded" and rows[1]["next_run"] is None
    assert (rows[2]["state"], rows[2]["next_run"], rows[2]["paid_failures"]) == (
        "failed", "parked", 1
    )
    assert rows[3]["next_run"].startswith("2031-01-01")
    assert main(["jobs", "--config", str(config)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["epoch", "state", "run", "attempts", "prover", "next", "run",
                                "reason"]
    assert any("parked" in line and "stale inputs commitment" in line for line in table)


def test_retry_releases_a_parked_epoch(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["jobs", "retry", "2", "--config", str(config)]) == 0
    assert "runs the job again" in capsys.readouterr().out
    store_path = config.parent / "keeper.sqlite3"
    with open_store(store_path) as store:
        job = JobStore(store).for_epoch(ROUTER, 2)
    assert job is not None and job.state == JobState.FAILED
    assert not job.parked and job.paid_failures == 0


@pytest.mark.parametrize(
    ("epoch", "message"),
    [("1", "superseded, not failed"), ("9", "no job for epoch 9")],
)
def test_retry_refuses_what_it_cannot_retry(
    config: Path, capsys: pytest.CaptureFixture[str], epoch: str, message: str
) -> None:
    assert main(["jobs", "retry", epoch, "--config", str(config)]) == 2
    assert message in capsys.readouterr().err


def test_retry_needs_an_epoch_number(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["jobs", "retry", "x", "--config", str(config)])
    assert info.value.code == 2
    assert "'x' is not an epoch number" in capsys.readouterr().err


def test_jobs_without_a_store_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _config(tmp_path, tmp_path / "absent.sqlite3")
    assert main(["jobs", "--config", str(config)]) == 1
    assert "no store at" in capsys.readouterr().err


def test_jobs_names_the_proofs_made_ahead_that_wait_for_their_rebalance(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with open_store(tmp_path / "keeper.sqlite3") as store:
        ahead = AheadStore(store, Ledger(store))
        ready = ahead.begin(AheadKey(hex(ROUTER), 5, "0xabcdef0123456789", "0x9", 96), "{}")
        making = ahead.begin(AheadKey(hex(ROUTER), 5, "0x777", "0x9", 96), "{}")
        assert ready and making
        ahead.ready(ahead.traced(ready, Traced("[]", "/t", 4096, 1.0, 2.5)),
                    Proved("/t/p.json", "0xf", 96, 10, 30.0, 60.0))
    assert main(["jobs", "--config", str(config)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "proof made ahead for epoch 5: ready (inputs 0xabcdef0123…, 62.5 cpu s)" in out[-2]
    assert out[-1] == "proof made ahead for epoch 5: being made (inputs 0x777…)"
    assert main(["jobs", "--config", str(config), "--json"]) == 0
    assert isinstance(json.loads(capsys.readouterr().out), list)  # the JSON shape is kept
