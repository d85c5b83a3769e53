"""The keeper's own Stone proofs verified by Integrity's real CairoVerifier on devnet,
through our IntegrityGuard (the router's fact registry).

``keeper.engine.registrar`` sends the guard, which drives the verifier, either the whole
verification in one transaction (monolith: when it fits the calldata limit and the flow is
``auto``) or the split flow (initial, steps, final); the fact it records is the one
``prover`` computes, under the pinned configuration, and no transaction is ever paid for
twice — also when the process is SIGKILLed at any point of the registration.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest

from keeper.chain.codec import decode_short_string
from keeper.engine.registrar import Registered, RegistrationError
from keeper.store.registrations import RegistrationLog
from prover import facts
from prover.integrity import CalldataTooLarge, IntegrityFlow
from tests.integrity.conftest import (
    ALLOCATION,
    FIBONACCI,
    KEEPER,
    PIN,
    IntegrityChain,
    open_jobs,
    proved_job,
)
from tests.integrity.registrar_driver import build

pytestmark = pytest.mark.devnet
ROOT = Path(__file__).resolve().parents[2]
_salts = itertools.count(100)


def _fact(proof: Path) -> int:
    return int(proof.with_suffix("").with_suffix(".fact").read_text().strip(), 16)


async def _register(
    integrity: IntegrityChain,
    jobs_path: Path,
    proof: Path,
    registry: int,
    *,
    min_bits: int,
    max_felts: int = 5000,
    flow: IntegrityFlow = "auto",
) -> Registered:
    chain = integrity.client(KEEPER)
    registrar, jobs = build(
        jobs_path, chain, max_felts=max_felts, receipt_timeout_s=60, flow=flow
    )
    job = jobs.for_epoch(0xABC, 1) or proved_job(jobs, proof)
    for _ in range(20):
        progress = await registrar.register(
            jobs.require(job.id), registry=registry, pin=PIN, min_security_bits=min_bits
        )
        if isinstance(progress, Registered):
            return progress
        await asyncio.sleep(0.2)  # a receipt not there yet: poll again, bounded
    raise AssertionError("the registration did not finish")


def _rows(jobs_path: Path) -> list[tuple[int, str]]:
    return [(step, status) for step, status, _ in _calls(jobs_path)]


def _calls(jobs_path: Path) -> list[tuple[int, str, str]]:
    jobs = open_jobs(jobs_path)
    log = RegistrationLog(jobs._store)
    return [(r.step, r.status, r.function) for r in log.for_job("0xabc:1")]


def _fees(jobs_path: Path) -> list[tuple[str, str]]:
    store = open_jobs(jobs_path)._store
    rows = store.query("SELECT kind, outcome FROM costs WHERE job_id = '0xabc:1' ORDER BY id")
    return [(r["kind"], r["outcome"]) for r in rows]


async def test_fibonacci_proof_registers_its_fact_in_one_monolith_transaction(
    integrity: IntegrityChain, tmp_path: Path
) -> None:
    registry = await integrity.fresh_guard(next(_salts))
    store = tmp_path / "k.sqlite3"
    # 3,335 felts with the account's framing: one transaction fits Starknet's 5,000.
    done = await _register(integrity, store, FIBONACCI, registry, min_bits=60)
    fact = _fact(FIBONACCI)
    (only,) = await integrity.verifications(registry, fact)
    assert (only[0], only[1]) == (done.verification_hash, 60)
    assert [decode_short_string(v) for v in only[2:]] == [
        "small", "keccak_160_lsb", "stone6", "strict"
    ]
    assert _calls(store) == [(0, "succeeded", "verify_proof_full")]
    assert _fees(store) == [("fact_registration", "ok")]
    assert done.final_tx is not None

    again = await _register(integrity, store, FIBONACCI, registry, min_bits=60)
    assert again.final_tx is None  # already registered: nothing sent
    assert len(_rows(store)) == 1 and len(_fees(store)) == 1


async def test_fibonacci_proof_forced_to_split_registers_through_the_split_transactions(
    integrity: IntegrityChain, tmp_path: Path
) -> None:
    registry = await integrity.fresh_guard(next(_salts))
    store = tmp_path / "k.sqlite3"
    done = await _register(integrity, store, FIBONACCI, registry, min_bits=60, flow="split")
    fact = _fact(FIBONACCI)
    config_hash = facts.verifier_config_hash(
        PIN.layout, PIN.hasher, PIN.stone_version, PIN.memory_verification
    )
    assert done.verification_hash == facts.verification_hash(fact, config_hash, 60)
    (only,) = await integrity.verifications(registry, fact)
    assert only[0] == done.verification_hash and only[1] == 60
    assert [decode_short_string(v) for v in only[2:]] == [
        "small", "keccak_160_lsb", "stone6", "strict"
    ]
    # initial, 4 steps, final: each sent once and succeeded, each fee in the ledger.
    assert _rows(store) == [(step, "succeeded") for step in range(6)]
    assert _fees(store) == [("fact_registration", "ok")] * 6

    assert [f for _, _, f in _calls(store)] == [
        "verify_proof_initial", *["verify_proof_step"] * 4, "verify_proof_final"
    ]

    again = await _register(integrity, store, FIBONACCI, registry, min_bits=60, flow="split")
    assert again.final_tx is None  # already registered: nothing sent
    assert len(_rows(store)) == 6 and len(_fees(store)) == 6


async def test_allocation_proof_too_big_for_one_transaction_goes_split_or_sends_nothing(
    integrity: IntegrityChain, tmp_path: Path
) -> None:
    registry = await integrity.fresh_guard(next(_salts))
    store = tmp_path / "k.sqlite3"
    # 38 queries: the monolith is 6,803 felts and the split's initial 5,010, both over
    # Starknet's 5,000: nothing can be sent.
    with pytest.raises(CalldataTooLarge, match="raise log_n_cosets"):
        await _register(integrity, store, ALLOCATION, registry, min_bits=96)
    assert _rows(store) == [] and _fees(store) == []
    # Under 6,000 felts the split fits and the monolith does not: auto sends the split.
    done = await _register(integrity, store, ALLOCATION, registry, min_bits=96, max_felts=6000)
    (only,) = await integrity.verifications(registry, _fact(ALLOCATION))
    assert (only[0], only[1]) == (done.verification_hash, 96)
    assert _rows(store) == [(step, "succeeded") for step in range(5)]
    assert _calls(store)[0][2] == "verify_proof_initial"


@pytest.mark.parametrize(
    ("pin_change", "min_bits", "message"),
    [
        ({"stone_version": "stone5"}, 60, "the router accepts"),
        ({"layout": "recursive"}, 60, "the router accepts"),
        ({}, 61, "the router requires 61"),
    ],
)
async def test_a_proof_the_router_would_refuse_sends_nothing(
    integrity: IntegrityChain, tmp_path: Path, pin_change: dict[str, str], min_bits: int,
    message: str,
) -> None:
    registry = await integrity.fresh_guard(next(_salts))
    store = tmp_path / "k.sqlite3"
    registrar, jobs = build(store, integrity.client(KEEPER), max_felts=5000, receipt_timeout_s=60)
    job = proved_job(jobs, FIBONACCI)
    pin = dataclasses.replace(PIN, **pin_change)
    with pytest.raises(RegistrationError, match=message):
        await registrar.register(job, registry=registry, pin=pin, min_security_bits=min_bits)
    assert _rows(store) == []
    assert await integrity.verifications(registry, _fact(FIBONACCI)) == []


CRASHES = [
    f"{point}#{n}"
    for point in ("registration_before_broadcast", "registration_confirmed")
    for n in range(1, 7)
]


def _crash_and_resume(
    integrity: IntegrityChain, tmp_path: Path, registry: int, crash_at: str, flow: str,
    resume_flow: str | None = None, resume: bool = True,
) -> None:
    store = tmp_path / "k.sqlite3"
    jobs = open_jobs(store)
    proved_job(jobs, FIBONACCI)
    account = integrity.devnet.accounts[KEEPER]
    key_file = tmp_path / "key"
    key_file.write_text(hex(account.private_key))
    args = [
        sys.executable, "-m", "tests.integrity.registrar_driver",
        "--store", str(store), "--job", "0xabc:1", "--rpc", integrity.devnet.url,
        "--chain-id", hex(integrity.chain_id), "--key-file", str(key_file),
        "--account", hex(account.address), "--registry", hex(registry),
        "--min-bits", "60", "--receipt-timeout", "2", "--flow", flow,
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEPER_")}
    crashed = subprocess.run(
        args, env={**env, "KEEPER_TEST_CRASH_AT": crash_at}, cwd=ROOT,
        capture_output=True, text=True, timeout=600, check=False,
    )
    assert crashed.returncode == -9, crashed.stderr[-3000:]
    if not resume:
        return
    if resume_flow is not None:
        args[-1] = resume_flow
    resumed = subprocess.run(
        args, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]


@pytest.mark.parametrize("crash_at", CRASHES)
def test_sigkill_at_every_registrar_step_registers_once_and_pays_each_step_once(
    integrity: IntegrityChain, tmp_path: Path, crash_at: str
) -> None:
    registry = asyncio.run(integrity.fresh_guard(next(_salts)))
    store = tmp_path / "k.sqlite3"
    _crash_and_resume(integrity, tmp_path, registry, crash_at, "split")

    (only,) = asyncio.run(integrity.verifications(registry, _fact(FIBONACCI)))
    assert only[1] == 60
    rows = _rows(store)
    succeeded = [step for step, status in rows if status == "succeeded"]
    assert sorted(succeeded) == list(range(6))  # every step landed exactly once
    assert all(status in ("succeeded", "dropped") for _, status in rows)  # none reverted
    # A fee for every transaction that landed, and only for those: no step paid twice.
    assert _fees(store) == [("fact_registration", "ok")] * 6


@pytest.mark.parametrize(
    ("crash_at", "rows"),
    [
        # The hash was persisted, the transaction never broadcast: once its receipt is
        # known not to come (3 receipt timeouts), it is dropped and sent again.
        ("registration_before_broadcast#1", [(0, "dropped"), (0, "succeeded")]),
        # Broadcast, receipt unknown at the crash: resolved first; it landed, so the
        # guard holds the verification and nothing more is sent.
        ("registration_sent#1", [(0, "succeeded")]),
        ("registration_confirmed#1", [(0, "succeeded")]),
    ],
)
def test_sigkill_around_the_monolith_registers_once_and_pays_once(
    integrity: IntegrityChain, tmp_path: Path, crash_at: str, rows: list[tuple[int, str]]
) -> None:
    registry = asyncio.run(integrity.fresh_guard(next(_salts)))
    store = tmp_path / "k.sqlite3"
    _crash_and_resume(integrity, tmp_path, registry, crash_at, "auto")

    (only,) = asyncio.run(integrity.verifications(registry, _fact(FIBONACCI)))
    assert only[1] == 60
    assert _rows(store) == rows
    assert {function for _, _, function in _calls(store)} == {"verify_proof_full"}
    assert _fees(store) == [("fact_registration", "ok")]  # one paid monolith, recorded once


def test_a_split_begun_before_the_setting_changed_to_auto_is_finished_as_a_split(
    integrity: IntegrityChain, tmp_path: Path
) -> None:
    registry = asyncio.run(integrity.fresh_guard(next(_salts)))
    store = tmp_path / "k.sqlite3"
    # The initial landed under "split"; the keeper restarts with "auto": the verifier's
    # open job is finished (5 calls left), not abandoned for a whole monolith.
    _crash_and_resume(
        integrity, tmp_path, registry, "registration_confirmed#1", "split", resume_flow="auto"
    )
    (only,) = asyncio.run(integrity.verifications(registry, _fact(FIBONACCI)))
    assert only[1] == 60
    assert _rows(store) == [(step, "succeeded") for step in range(6)]
    assert "verify_proof_full" not in {function for _, _, function in _calls(store)}
    assert _fees(store) == [("fact_registration", "ok")] * 6


def test_a_monolith_found_registered_after_a_crash_has_its_fee_settled_once(
    integrity: IntegrityChain, tmp_path: Path
) -> None:
    """The worker finds the verification in the guard before it calls ``register``: the
    monolith sent before the crash registered it, and ``settle_in_flight`` records it."""
    registry = asyncio.run(integrity.fresh_guard(next(_salts)))
    store = tmp_path / "k.sqlite3"
    _crash_and_resume(integrity, tmp_path, registry, "registration_sent#1", "auto",
                      resume=False)
    (only,) = asyncio.run(integrity.verifications(registry, _fact(FIBONACCI)))
    assert only[1] == 60  # it landed; the crashed keeper never read its receipt
    assert _rows(store) == [(0, "sent")] and _fees(store) == []

    registrar, jobs = build(store, integrity.client(KEEPER), max_felts=5000,
                            receipt_timeout_s=60)
    job = jobs.require("0xabc:1")
    assert asyncio.run(registrar.settle_in_flight(job)) is None
    assert asyncio.run(registrar.settle_in_flight(job)) is None  # nothing left to settle
    assert _rows(store) == [(0, "succeeded")]
    assert _fees(store) == [("fact_registration", "ok")]
