"""What the real path costs on-chain: Integrity's verification of the allocation program's
Stone proof, and one execution of the allocation it proves.

Starts a devnet with Integrity's real contracts (../shared/integrity/classes, or
$INTEGRITY_CLASSES_DIR), then

- registers the reference proof of the allocation program
  (../shared/integrity/proofs/allocation_small_stone6_keccak_96bits.proof.json) with the
  keeper's own registrar (keeper.engine.registrar): the split transactions, each one's
  calldata felts, L2 gas and fee from its receipt;
- executes one allocation on a fresh deployment of the project's contracts (its fact
  registered in the DevFactRegistry under the router's pin: the router's gate costs the
  same whatever registry answers ``get_verification``), with the execute transaction's
  L2 gas and fee.

Fees are at the devnet's gas prices (1e9 FRI per unit): the gas figures carry over to a
real network, the fees scale with its prices. Prints one JSON object on stdout.

    .venv/bin/python bench/bench_integrity.py
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from starknet_py.net.full_node_client import FullNodeClient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

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


async def registration(chain: IntegrityChain, work: Path) -> dict[str, Any]:
    store = work / "keeper.sqlite3"
    registrar, jobs = build(
        store, chain.client(KEEPER), max_felts=6000, receipt_timeout_s=120
    )  # 38-query proof: the initial needs 5,010 felts; a devnet does not enforce 5,000
    job = proved_job(jobs, ALLOCATION)
    registry = await chain.fresh_registry(7)
    done = await registrar.register(job, registry=registry, pin=PIN, min_security_bits=96)
    rows = RegistrationLog(jobs._store).for_job(job.id)
    txs = []
    for row in rows:
        assert row.tx_hash is not None
        txs.append({"function": row.function, "calldata_felts": row.calldata_felts,
                    **await _receipt_gas(chain.devnet.url, row.tx_hash)})
    return {
        "proof": ALLOCATION.name,
        "verification_hash": hex(getattr(done, "verification_hash", 0)),
        "transactions": txs,
        "total_l2_gas": sum(t["l2_gas"] for t in txs),
        "total_fee_fri": sum(t["fee_fri"] for t in txs),
        "total_fee_strk": sum(t["fee_fri"] for t in txs) / 1e18,
    }


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
        return {"registration": await registration(chain, work)}


def main() -> int:
    import structlog

    # stdout carries the JSON result: the keeper's log lines go to stderr.
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    if classes_dir() is None or not ALLOCATION.is_file():
        reason = "Integrity's classes or the allocation proof are absent (../shared/integrity)"
        print(json.dumps({"bench": "integrity", "skipped": reason}))
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-integrity-") as tmp:
        result = asyncio.run(measure(Path(tmp)))
    print(json.dumps({"bench": "integrity", **result}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
