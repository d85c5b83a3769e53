"""``obsqra-keeper jobs``: the keeper's jobs, and ``jobs retry EPOCH`` for a failed one.

``jobs retry`` only writes the store: the running daemon reopens the job at its next
look at the chain (within ``stream.poll_interval_s``), if the epoch is still current.
"""

from __future__ import annotations

import argparse
import json
import os
from datetime import UTC, datetime
from typing import Any

from keeper.cli.options import add_config_option
from keeper.cli.tables import format_table
from keeper.core.config import config_path_from, load_config
from keeper.core.errors import UsageError
from keeper.engine.funds import INSUFFICIENT_FUNDS
from keeper.store.ahead import AheadProof, AheadStore
from keeper.store.db import open_existing_store
from keeper.store.jobs import Job, JobState, JobStore
from keeper.store.ledger import Ledger


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "jobs",
        help="list the keeper's jobs; `jobs retry EPOCH` runs a failed one again",
        description="List the most recent jobs (one per epoch): state, run, attempts, and "
        "for a failed job its reason and when it runs again, or that it is parked (a money "
        "rule stopped it: only `jobs retry EPOCH` runs it again); a job that waits for "
        "funds (insufficient_funds) runs on by itself once the account is funded.",
    )
    add_config_option(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON array")
    parser.add_argument("--limit", type=_positive, default=20, metavar="N", help="default 20")
    parser.set_defaults(handler=_list)
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    retry = actions.add_parser(
        "retry",
        help="run a failed or parked job of EPOCH again",
        description="Let the daemon run the failed job of EPOCH again at once, its paid "
        "failures forgiven (you accept what another run may cost). The daemon picks it up "
        "if EPOCH is still the router's current epoch.",
    )
    add_config_option(retry)
    retry.add_argument("epoch", type=_epoch, metavar="EPOCH")
    retry.set_defaults(handler=_retry)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _epoch(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an epoch number") from None
    if value < 0:
        raise argparse.ArgumentTypeError("an epoch is not negative")
    return value


def job_summary(job: Job) -> dict[str, Any]:
    if job.is_open and job.failure_code == INSUFFICIENT_FUNDS:
        next_run = "when funded"  # it resumes by itself (keeper.engine.funds_guard)
    elif job.state != JobState.FAILED:
        next_run = None
    elif job.parked:
        next_run = "parked"
    else:
        next_run = job.retry_after
    return {
        "epoch": job.epoch,
        "state": job.state.value,
        "run": job.run,
        "attempts": job.attempts,
        "trigger": job.trigger,
        "prover": job.prover,
        "failure_code": job.failure_code,
        "failure_reason": job.failure_reason,
        "next_run": next_run,
        "paid_failures": job.paid_failures,
        "updated_at": job.updated_at,
    }


def _list(args: argparse.Namespace) -> int:
    cfg = load_config(config_path_from(args.config, os.environ), os.environ)
    with open_existing_store(cfg.store.path) as store:
        jobs = JobStore(store).recent(args.limit)
        ahead = AheadStore(store, Ledger(store)).live(hex(int(cfg.chain.router_address, 16)))
    rows = [job_summary(job) for job in jobs]
    if args.json:
        print(json.dumps(rows))
        return 0
    notes = [ahead_line(proof) for proof in ahead]
    if not rows:
        print("\n".join(["no jobs yet", *notes]))
        return 0
    header = ("epoch", "state", "run", "attempts", "prover", "next run", "reason")
    table = [
        (
            str(r["epoch"]),
            r["state"],
            str(r["run"]),
            str(r["attempts"]),
            r["prover"] or "",
            r["next_run"] or "",
            "" if r["failure_code"] is None else f"{r['failure_code']}: {r['failure_reason']}",
        )
        for r in rows
    ]
    print("\n".join([*format_table(header, table), *notes]))
    return 0


def ahead_line(proof: AheadProof) -> str:
    """One line on a proof made ahead that no job has taken yet."""
    inputs = f"inputs {proof.inputs_commitment[:12]}…"
    if proof.state == "ready":
        return (
            f"proof made ahead for epoch {proof.epoch}: ready ({inputs}, "
            f"{proof.cpu_s:.1f} cpu s); the rebalance will only register and execute it"
        )
    return f"proof made ahead for epoch {proof.epoch}: being made ({inputs})"


def _retry(args: argparse.Namespace) -> int:
    cfg = load_config(config_path_from(args.config, os.environ), os.environ)
    router = int(cfg.chain.router_address, 16)
    with open_existing_store(cfg.store.path) as store:
        jobs = JobStore(store)
        job = jobs.for_epoch(router, args.epoch)
        if job is None:
            raise UsageError(f"no job for epoch {args.epoch} of router {router:#x} in the store")
        if job.state != JobState.FAILED:
            raise UsageError(
                f"the job of epoch {args.epoch} is {job.state.value}, not failed: nothing to retry"
            )
        jobs.allow_retry(job, at=datetime.now(UTC))
    print(
        f"epoch {args.epoch}: the daemon runs the job again at its next look at the chain "
        "(if the epoch is still current); follow it with `obsqra-keeper jobs`"
    )
    return 0
