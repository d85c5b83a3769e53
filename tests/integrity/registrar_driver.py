"""Runs the keeper's Integrity registrar on one stored job until its fact is registered.

A separate process so that the crash-safety test can SIGKILL it at a registrar crash
point (KEEPER_TEST_CRASH_AT=registration_before_broadcast#2, ...) and start it again:

    python -m tests.integrity.registrar_driver --store S --job J --rpc URL --chain-id C \\
        --key-file F --account A --registry R --min-bits 60 --max-felts 5000 [--flow split]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

from starknet_py.net.signer.key_pair import KeyPair

from keeper.chain import ChainClient, TxOutcome, VerifierConfig
from keeper.core import faults
from keeper.core.config import ChainConfig, Secrets
from keeper.devnet.dev_prover import is_starknet_devnet
from keeper.engine.registrar import IntegrityRegistrar, Registered
from keeper.engine.worker import fee_entry
from keeper.store.db import open_store
from keeper.store.jobs import Job, JobStore
from keeper.store.ledger import Ledger
from keeper.store.registrations import RegistrationLog
from prover.integrity import INTEGRITY_FLOWS, IntegrityFlow

PIN = VerifierConfig("small", "keccak_160_lsb", "stone6", "strict")


def build(store_path: Path, chain: ChainClient, *, max_felts: int, receipt_timeout_s: float,
          flow: IntegrityFlow = "auto") -> tuple[IntegrityRegistrar, JobStore]:
    store = open_store(store_path)
    jobs, ledger = JobStore(store), Ledger(store)

    def record_fee(job: Job, outcome: TxOutcome) -> None:
        ledger.record(None, fee_entry(job, "fact_registration", outcome))

    registrar = IntegrityRegistrar(
        chain=chain,
        jobs=jobs,
        log=RegistrationLog(store),
        record_fee=record_fee,
        max_calldata_felts=max_felts,
        receipt_timeout_s=receipt_timeout_s,
        flow=flow,
    )
    return registrar, jobs


async def run(args: argparse.Namespace) -> int:
    cfg = ChainConfig(
        rpc_url=args.rpc,
        chain_id=args.chain_id,
        router_address="0x1",
        risk_engine_address="0x2",
        account_address=args.account,
        receipt_timeout_s=args.receipt_timeout,
    )
    key = KeyPair.from_private_key(int(Path(args.key_file).read_text().strip(), 16))
    chain = ChainClient(cfg, Secrets(), key_pair=key)
    info = await chain.check_chain()
    faults.arm(os.environ, chain_id=info.chain_name, on_devnet=await is_starknet_devnet(args.rpc))
    registrar, jobs = build(
        Path(args.store), chain, max_felts=args.max_felts, receipt_timeout_s=args.receipt_timeout,
        flow=args.flow,
    )
    while True:
        progress = await registrar.register(
            jobs.require(args.job),
            registry=int(args.registry, 16),
            pin=PIN,
            min_security_bits=args.min_bits,
        )
        if isinstance(progress, Registered):
            print(json.dumps({"verification_hash": hex(progress.verification_hash)}))
            return 0
        await asyncio.sleep(0.2)  # waiting for a receipt (polling the chain, deadline: caller)


def main() -> int:
    parser = argparse.ArgumentParser()
    for name in ("store", "job", "rpc", "chain-id", "key-file", "account", "registry"):
        parser.add_argument(f"--{name}", required=True)
    parser.add_argument("--min-bits", type=int, required=True)
    parser.add_argument("--max-felts", type=int, default=5000)
    parser.add_argument("--receipt-timeout", type=float, default=5.0)
    parser.add_argument("--flow", choices=INTEGRITY_FLOWS, default="auto")
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
