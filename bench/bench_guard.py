"""The guard's overhead: the verification of the allocation program's Stone
proof by Integrity's CairoVerifier, through our IntegrityGuard (the keeper's path) and,
for comparison, through Integrity's own FactRegistry (whose labels the router no longer
trusts: issue 18).

Starts a devnet with Integrity's real contracts (../shared/integrity/classes, or
$INTEGRITY_CLASSES_DIR) and builds ours (scripts/build_contracts.sh), then verifies the
reference proof of the allocation program
(../shared/integrity/proofs/allocation_small_stone6_keccak_96bits.proof.json):

- ``through_guard``: with the keeper's own registrar (keeper.engine.registrar), the split
  transactions sent to a fresh IntegrityGuard;
- ``through_registry``: the same split transactions sent to a fresh Integrity
  FactRegistry (``verify_proof_*_and_register_fact`` calldata);

each transaction's calldata felts, L2 gas and fee from its receipt, the totals, and the
guard's overhead (``guard_vs_registry``).

Fees are at the devnet's gas prices (1e9 FRI per unit): the gas figures carry over to a
real network, the fees scale with its prices. Prints one JSON object on stdout.

    .venv/bin/python bench/bench_guard.py
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from starknet_py.net.full_node_client import FullNodeClient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from keeper.devnet.deploy import make_call  # noqa: E402
from keeper.devnet.integrity import DEVNET_ARGS, classes_dir  # noqa: E402
from keeper.devnet.node import start_devnet  # noqa: E402
from keeper.store.registrations import RegistrationLog  # noqa: E402
from tests.integrity.conftest import (  # noqa: E402
    ALLOCATION,
    KEEPER,
    PIN,
    IntegrityChain,
    proved_job,
)
from tests.integrity.registrar_driver import build  # noqa: E402


async def _receipt_gas(url: str, tx_hash: str) -> dict[str, Any]:
    receipt = await FullNodeClient(node_url=url).get_transaction_receipt(int(tx_hash, 16))
    resources = receipt.execution_resources
    return {
        "tx_hash": tx_hash,
        "l2_gas": int(resources.l2_gas),
        "l1_data_gas": int(resources.l1_data_gas),
        "fee_fri": int(receipt.actual_fee.amount),
    }


def _totals(txs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "transactions": txs,
        "total_l2_gas": sum(t["l2_gas"] for t in txs),
        "total_fee_fri": sum(t["fee_fri"] for t in txs),
        "total_fee_strk": sum(t["fee_fri"] for t in txs) / 1e18,
    }


async def through_guard(chain: IntegrityChain, work: Path) -> dict[str, Any]:
    store = work / "keeper.sqlite3"
    registrar, jobs = build(
        store, chain.client(KEEPER), max_felts=6000, receipt_timeout_s=120
    )  # 38-query proof: the initial needs 5,010 felts; a devnet does not enforce 5,000
    job = proved_job(jobs, ALLOCATION)
    guard = await chain.fresh_guard(7)
    done = await registrar.register(job, registry=guard, pin=PIN, min_security_bits=96)
    rows = RegistrationLog(jobs._store).for_job(job.id)
    txs = []
    for row in rows:
        assert row.tx_hash is not None
        txs.append({"function": row.function, "calldata_felts": row.calldata_felts,
                    **await _receipt_gas(chain.devnet.url, row.tx_hash)})
    return {"verification_hash": hex(getattr(done, "verification_hash", 0)), **_totals(txs)}


async def through_registry(chain: IntegrityChain) -> dict[str, Any]:
    from prover.integrity import new_job_id, parse_proof, split_calldata

    registry = await chain.fresh_registry(8)
    proof = parse_proof(json.loads(ALLOCATION.read_text()))
    account = chain.account(KEEPER)
    txs = []
    for call in split_calldata(proof, new_job_id()):
        sent = await account.execute_v3(
            calls=[make_call(registry, call.function, call.calldata)], auto_estimate=True
        )
        await account.client.wait_for_tx(sent.transaction_hash, check_interval=0.05)
        txs.append({"function": call.function, "calldata_felts": call.transaction_felts,
                    **await _receipt_gas(chain.devnet.url, hex(sent.transaction_hash))})
    return _totals(txs)


async def measure(work: Path) -> dict[str, Any]:
    from keeper.devnet import deploy as devnet_deploy
    from keeper.devnet.integrity import deploy_integrity

    directory = classes_dir()
    assert directory is not None  # main() checked
    with start_devnet(work, extra_args=DEVNET_ARGS) as devnet:
        client = FullNodeClient(node_url=devnet.url)
        chain_id = int(await client.get_chain_id(), 16)
        version = str((await client.get_block(block_number="latest")).starknet_version)
        owner = devnet_deploy.make_account(devnet.url, devnet.accounts[0], chain_id)
        deployment = await deploy_integrity(
            owner, directory, starknet_version=version, owner=devnet.accounts[0].address
        )
        chain = IntegrityChain(devnet, chain_id, version, deployment)
        guard = await through_guard(chain, work)
        registry = await through_registry(chain)
        overhead = guard["total_l2_gas"] - registry["total_l2_gas"]
        return {
            "proof": ALLOCATION.name,
            "through_guard": guard,
            "through_registry": registry,
            "guard_vs_registry": {
                "l2_gas": overhead,
                "percent": round(100 * overhead / registry["total_l2_gas"], 3),
            },
        }


def main() -> int:
    import structlog

    # stdout carries the JSON result: the keeper's log lines go to stderr.
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    if classes_dir() is None or not ALLOCATION.is_file():
        reason = "Integrity's classes or the allocation proof are absent (../shared/integrity)"
        print(json.dumps({"bench": "integrity", "skipped": reason}))
        return 0
    build = subprocess.run(
        ["bash", str(ROOT / "scripts" / "build_contracts.sh")],
        capture_output=True, text=True, check=False,
    )
    if build.returncode != 0:
        print(f"scripts/build_contracts.sh failed:\n{build.stderr[-3000:]}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="bench-integrity-") as tmp:
        result = asyncio.run(measure(Path(tmp)))
    print(json.dumps({"bench": "integrity", **result}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
