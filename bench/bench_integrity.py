"""What a verified allocation costs: Stone proving time and Integrity's verification gas,
per FRI configuration, on the real path.

For each configuration (log_n_cosets, PoW bits, last layer, FRI steps; n_queries follows
from the required security bits) the script proves one allocation trace with the real
Stone (KEEPER_PROVER__STONE_PROVER_PATH / _STONE_VERIFIER_PATH or PATH), verifies it on a
devnet with Integrity's real contracts (../shared/integrity/classes, or
$INTEGRITY_CLASSES_DIR) through the keeper's own registrar (keeper.engine.registrar, its
split transactions: ``chain.integrity_flow = "split"``) through a fresh IntegrityGuard, and
prints one JSON line (bench_guard.py compares the guard with Integrity's own FactRegistry):

    {"bench": "integrity", "log_n_cosets", "n_queries", "proof_of_work_bits",
     "fri_step_list", "security_bits", "program_words", "prove_wall_s", "prove_cpu_s",
     "l2_gas_total", "l2_gas_per_tx": [...], "felts_per_tx": [...], "max_tx_felts",
     "register_wall_s", "monolith_l2_gas", "monolith_register_wall_s", "default": true|false}

``default`` marks the configuration ProverSettings() proves with. With ``--breakdown`` a
second line per configuration, ``{"bench": "integrity_breakdown", ...}``, says where the
gas goes: the calldata felts per part of the proof (public memory / program bytecode,
decommitments, FRI layers, OODS values), each transaction's L2 gas split by contract from
``starknet_traceTransaction`` (OODS evaluations run in their own contract), and, with
``--monolith``, the same proof sent as one transaction: ``monolith`` by the registrar
through a fresh guard (what it sends when it fits, ``chain.integrity_flow = "auto"``;
``fits_5000`` says whether it would on Starknet), ``monolith_fact_registry`` as
``verify_proof_full_and_register_fact`` to Integrity's own FactRegistry.
``register_wall_s`` is register() until Registered on devnet (blocks are instant there:
it is the keeper's own time, simulation and fee estimates included, not a network's).

Gas is the receipts' L2 gas (fees scale with a network's prices; devnet's is 1e9 FRI per
unit). Times: prove_wall_s is wall-clock on whatever else the machine runs; prove_cpu_s
(prover + local verifier, user + system) is the figure to compare. PoW grinding is random:
its share varies run to run. Without devnet (--offline) the gas fields are null and the
calldata felts are computed from the proof alone.

    .venv/bin/python bench/bench_integrity.py                       # the default set
    .venv/bin/python bench/bench_integrity.py --config c=4,pow=24 --config c=3,pow=24,last=256 \\
        --breakdown --monolith
    .venv/bin/python bench/bench_integrity.py --work /tmp/bi --offline   # proofs kept in
                                                                         # /tmp/bi, reused
Config syntax: c=LOG_N_COSETS,pow=POW_BITS[,last=LAST_LAYER][,keccak=KECCAK_LAYERS]
[,steps=0-4-4-2][,bits=SECURITY_BITS] (keccak: ProverSettings.keccak_commitment_layers; last
and keccak default to ProverSettings'). bits (default 96) sets the security the proof is
made for, hence n_queries: a low value measures what a verification costs without its
queries (e.g. c=5,pow=20,bits=30 is 2 queries); it is a measurement, never a setting.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from prover.integrity import (  # noqa: E402
    MAX_TRANSACTION_CALLDATA,
    IntegrityFlow,
    parse_proof,
    split_calldata,
)
from prover.integrity.calldata import (  # noqa: E402
    ACCOUNT_CALL_OVERHEAD,
    calldata_parts,
    full_verification_call,
)
from prover.model import load_inputs  # noqa: E402
from prover.settings import ProverSettings  # noqa: E402

INPUTS = ROOT / "config" / "devnet_inputs.json"
REQUIRED_BITS = 96
# The configurations worth comparing at 96 bits (see docs/verification-cost.md).
DEFAULT_CONFIGS = (
    "c=4,pow=20,last=64,keccak=0",  # the default before issue 20
    "c=4,pow=20,last=64,keccak=1",
    "c=5,pow=21,last=64,keccak=1",
    "c=5,pow=21,last=256,keccak=1",  # ProverSettings' default
    "c=5,pow=21,last=256,keccak=2",
)


@dataclass(frozen=True)
class Shape:
    log_n_cosets: int
    proof_of_work_bits: int
    last_layer_degree_bound: int = ProverSettings().last_layer_degree_bound
    fri_step_list: tuple[int, ...] | None = None
    keccak_commitment_layers: int = ProverSettings().keccak_commitment_layers
    security_bits: int = REQUIRED_BITS

    @classmethod
    def parse(cls, text: str) -> Shape:
        fields: dict[str, Any] = {}
        names = {
            "c": "log_n_cosets",
            "pow": "proof_of_work_bits",
            "last": "last_layer_degree_bound",
            "keccak": "keccak_commitment_layers",
            "bits": "security_bits",
        }
        try:
            for item in text.split(","):
                key, value = item.split("=")
                if key == "steps":
                    fields["fri_step_list"] = tuple(int(s) for s in value.split("-"))
                else:
                    fields[names[key]] = int(value)
            return cls(**fields)
        except (KeyError, ValueError, TypeError) as exc:
            raise argparse.ArgumentTypeError(
                f"config {text!r}: c=COSETS,pow=BITS[,last=N][,keccak=N][,steps=0-4-4-2]"
                "[,bits=N]"
            ) from exc

    @property
    def key(self) -> str:
        steps = "-".join(map(str, self.fri_step_list)) if self.fri_step_list else "auto"
        bits = "" if self.security_bits == REQUIRED_BITS else f"_b{self.security_bits}"
        return (
            f"c{self.log_n_cosets}_pow{self.proof_of_work_bits}_"
            f"ll{self.last_layer_degree_bound}_k{self.keccak_commitment_layers}_{steps}{bits}"
        )

    def settings(self, base: ProverSettings) -> ProverSettings:
        return base.model_copy(
            update={
                "log_n_cosets": self.log_n_cosets,
                "proof_of_work_bits": self.proof_of_work_bits,
                "last_layer_degree_bound": self.last_layer_degree_bound,
                "fri_step_list": self.fri_step_list,
                "keccak_commitment_layers": self.keccak_commitment_layers,
                "required_security_bits": self.security_bits,
            }
        )

    def is_default(self) -> bool:
        d = ProverSettings()
        return self.settings(d) == d


# --- proving ----------------------------------------------------------------------------


def trace(
    work: Path, inputs_path: Path, extra_words: int = 0, source: Path | None = None
) -> Path:
    """The allocation trace; with ``extra_words`` the program carries that many more
    bytecode words in a function nothing calls (same run, same output, bigger public
    memory): what each word of the program costs every verification. With ``source``
    another version of the program is proven (e.g. the previous one, to compare)."""
    from prover import program
    from prover.trace import generate_trace

    name = "trace" + (f"_{source.stem}" if source else "")
    out = work / (name if not extra_words else f"{name}_plus{extra_words}")
    if (out / "trace.json").is_file():
        return out
    original = program.SOURCE_PATH
    text = (source or original).read_text(encoding="utf-8")
    if extra_words:
        # `tempvar` of an immediate is one instruction + its immediate: 2 words each.
        body = "".join(f"    tempvar pad{i} = {i + 1};\n" for i in range(extra_words // 2))
        text += f"\nfunc unused_padding() {{\n{body}    ret;\n}}\n"
    if text == original.read_text(encoding="utf-8"):
        generate_trace(load_inputs(inputs_path), out)
        return out
    patched = work / f"{out.name}.cairo"
    patched.write_text(text)
    program.SOURCE_PATH = patched
    try:
        generate_trace(load_inputs(inputs_path), out)
    finally:
        program.SOURCE_PATH = original
    return out


async def prove(shape: Shape, trace_dir: Path, work: Path, base: ProverSettings) -> dict[str, Any]:
    """Prove once per configuration; a proof already in ``work`` is reused with its times."""
    from prover.stone import StoneRunner

    suffix = "" if trace_dir.name == "trace" else "_" + trace_dir.name
    out = work / "proofs" / (shape.key + suffix)
    record = out / "bench.json"
    if record.is_file():
        return dict(json.loads(record.read_text()))
    out.mkdir(parents=True, exist_ok=True)
    result = await StoneRunner(shape.settings(base)).prove(trace_dir, out_dir=out)
    data = {
        "proof_path": str(result.proof_path),
        "prove_wall_s": round(result.wall_seconds, 1),
        "prove_cpu_s": round(result.cpu_seconds, 1),
        "peak_rss_mb": round(result.peak_rss_mb),
    }
    record.write_text(json.dumps(data))
    return data


# --- on-chain ---------------------------------------------------------------------------


def _rpc(url: str, method: str, params: dict[str, Any]) -> Any:
    reply = httpx.post(
        url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params}, timeout=120
    ).json()
    if "error" in reply:
        raise RuntimeError(f"{method}: {reply['error']}")
    return reply["result"]


def gas_by_contract(url: str, tx_hash: str, names: dict[int, str]) -> dict[str, int]:
    """L2 gas of a transaction's calls, each contract's own share (inner calls excluded)."""
    traced = _rpc(url, "starknet_traceTransaction", {"transaction_hash": tx_hash})
    shares: dict[str, int] = {}

    def walk(call: dict[str, Any]) -> None:
        inner = call.get("calls", [])
        own = int(call["execution_resources"]["l2_gas"]) - sum(
            int(c["execution_resources"]["l2_gas"]) for c in inner
        )
        name = names.get(int(call["contract_address"], 16), "account")
        shares[name] = shares.get(name, 0) + own
        for c in inner:
            walk(c)

    for section in ("validate_invocation", "execute_invocation", "fee_transfer_invocation"):
        call = traced.get(section)
        if isinstance(call, dict) and "execution_resources" in call:
            walk(call)
    return shares


async def verify_on_devnet(
    chain: Any,
    proof_path: Path,
    salt: int,
    *,
    breakdown: bool,
    monolith: bool,
    min_security_bits: int = REQUIRED_BITS,
) -> dict[str, Any]:
    from starknet_py.net.full_node_client import FullNodeClient

    from keeper.chain.deploy import invoke, make_call
    from keeper.store.registrations import RegistrationLog
    from tests.integrity.conftest import KEEPER, OWNER, PIN, proved_job
    from tests.integrity.registrar_driver import build

    url = chain.devnet.url
    client = FullNodeClient(node_url=url)
    fact = parse_proof(json.loads(await asyncio.to_thread(proof_path.read_text)))
    from prover.integrity import fact_of

    await asyncio.to_thread(
        proof_path.with_suffix("").with_suffix(".fact").write_text, hex(fact_of(fact))
    )
    names = {
        chain.deployment.verifier: "CairoVerifier",
        chain.deployment.oods: "LayoutOodsContract",
    }

    async def register(flow: IntegrityFlow, guard_salt: int) -> tuple[list[dict[str, Any]], float]:
        """The keeper's registrar through a fresh IntegrityGuard; the limit is reported
        (max_tx_felts), not enforced: devnet carries any size, so auto is the monolith."""
        work = Path(tempfile.mkdtemp(prefix="bench-integrity-store-"))
        registrar, jobs = build(
            work / "keeper.sqlite3", chain.client(KEEPER), max_felts=100_000,
            receipt_timeout_s=300, flow=flow,
        )
        job = proved_job(jobs, proof_path)
        registry = await chain.fresh_guard(guard_salt)  # the keeper's path
        names[registry] = "IntegrityGuard"
        started = time.perf_counter()
        while True:
            done = await registrar.register(
                job, registry=registry, pin=PIN, min_security_bits=min_security_bits
            )
            if type(done).__name__ == "Registered":
                break
            await asyncio.sleep(0.2)
        wall = time.perf_counter() - started
        txs = []
        for row in RegistrationLog(jobs._store).for_job(job.id):
            assert row.tx_hash is not None
            receipt = await client.get_transaction_receipt(int(row.tx_hash, 16))
            entry: dict[str, Any] = {
                "function": row.function,
                "felts": row.calldata_felts,
                "l2_gas": int(receipt.execution_resources.l2_gas),
            }
            if breakdown:
                entry["l2_gas_by_contract"] = gas_by_contract(url, row.tx_hash, names)
            txs.append(entry)
        return txs, wall

    txs, split_wall = await register("split", salt)
    result: dict[str, Any] = {"transactions": txs, "register_wall_s": round(split_wall, 2)}
    if monolith:
        # What the keeper sends when it fits (chain.integrity_flow = auto): one
        # verify_proof_full through the guard.
        (full,), full_wall = await register("auto", salt + 200_000)
        full["register_wall_s"] = round(full_wall, 2)
        full["fits_5000"] = full["felts"] <= MAX_TRANSACTION_CALLDATA
        result["monolith"] = full
        # The same proof through Integrity's own FactRegistry (older lines compare this).
        call = full_verification_call(fact)
        other = await chain.fresh_registry(salt + 100_000)
        names[other] = "FactRegistry"
        tx_hash = await invoke(
            chain.account(OWNER), [make_call(other, call.function, list(call.calldata))]
        )
        receipt = await client.get_transaction_receipt(tx_hash)
        result["monolith_fact_registry"] = {
            "felts": call.transaction_felts,
            "l2_gas": int(receipt.execution_resources.l2_gas),
            "l2_gas_by_contract": gas_by_contract(url, hex(tx_hash), names) if breakdown else None,
        }
    return result


async def devnet_chain(work: Path) -> Any:
    from starknet_py.net.full_node_client import FullNodeClient

    from keeper.devnet import deploy as devnet_deploy
    from keeper.devnet.integrity import classes_dir, deploy_integrity
    from tests.integrity.conftest import IntegrityChain

    directory = classes_dir()
    assert directory is not None
    devnet = _DEVNET["devnet"]
    client = FullNodeClient(node_url=devnet.url)
    chain_id = int(await client.get_chain_id(), 16)
    version = str((await client.get_block(block_number="latest")).starknet_version)
    owner = devnet_deploy.make_account(devnet.url, devnet.accounts[0], chain_id)
    deployment = await deploy_integrity(
        owner, directory, starknet_version=version, owner=devnet.accounts[0].address
    )
    return IntegrityChain(devnet, chain_id, version, deployment)


_DEVNET: dict[str, Any] = {}


# --- one line per configuration ---------------------------------------------------------


def line(shape: Shape, proved: dict[str, Any], onchain: dict[str, Any] | None) -> dict[str, Any]:
    proof = parse_proof(json.loads(Path(proved["proof_path"]).read_text()))
    calls = split_calldata(proof, 1)
    felts = [c.transaction_felts for c in calls]
    gas = [t["l2_gas"] for t in onchain["transactions"]] if onchain else None
    program = proof.public_input.segments[1].begin_addr - 2 - 1  # [1, initial_fp - 2)
    return {
        "bench": "integrity",
        "log_n_cosets": proof.config.log_n_cosets,
        "n_queries": proof.config.n_queries,
        "proof_of_work_bits": proof.config.proof_of_work_bits,
        "fri_step_list": list(proof.config.fri.fri_step_sizes),
        "security_bits": proof.config.security_bits,
        "program_words": program,
        "prove_wall_s": proved["prove_wall_s"],
        "prove_cpu_s": proved["prove_cpu_s"],
        "l2_gas_total": sum(gas) if gas else None,
        "l2_gas_per_tx": gas,
        "felts_per_tx": felts,
        "max_tx_felts": max(felts),
        "register_wall_s": onchain["register_wall_s"] if onchain else None,
        "monolith_l2_gas": (onchain.get("monolith") or {}).get("l2_gas") if onchain else None,
        "monolith_register_wall_s": (
            (onchain.get("monolith") or {}).get("register_wall_s") if onchain else None
        ),
        "default": shape.is_default(),
    }


def breakdown_line(
    shape: Shape, proved: dict[str, Any], onchain: dict[str, Any] | None
) -> dict[str, Any]:
    proof = parse_proof(json.loads(Path(proved["proof_path"]).read_text()))
    monolith = full_verification_call(proof)
    return {
        "bench": "integrity_breakdown",
        "config": shape.key,
        "n_queries": proof.config.n_queries,
        "calldata_parts": calldata_parts(proof),
        "monolith_felts": len(monolith.calldata) + ACCOUNT_CALL_OVERHEAD,
        "transactions": onchain["transactions"] if onchain else None,
        "monolith": onchain.get("monolith") if onchain else None,
        "monolith_fact_registry": onchain.get("monolith_fact_registry") if onchain else None,
    }


async def run(args: argparse.Namespace, work: Path) -> None:
    import os

    from prover.stone_tools import locate_stone

    build = locate_stone(os.environ)
    if build is None:
        print(
            json.dumps(
                {
                    "bench": "integrity",
                    "skipped": "real Stone not found: set "
                    "KEEPER_PROVER__STONE_PROVER_PATH / _STONE_VERIFIER_PATH",
                }
            )
        )
        return
    base = ProverSettings(
        stone_prover_path=build.prover,
        stone_verifier_path=build.verifier,
        required_security_bits=REQUIRED_BITS,
        timeout_s=3600.0,
    )
    trace_dir = trace(work, args.inputs, args.extra_program_words, args.program)
    chain = None if args.offline else await devnet_chain(work)
    for index, shape in enumerate(args.config or [Shape.parse(c) for c in DEFAULT_CONFIGS]):
        proved = await prove(shape, trace_dir, work, base)
        onchain = None
        if chain is not None:
            onchain = await verify_on_devnet(
                chain,
                Path(proved["proof_path"]),
                1000 + index,
                breakdown=args.breakdown,
                monolith=args.monolith,
                min_security_bits=shape.security_bits,
            )
        print(json.dumps(line(shape, proved, onchain)), flush=True)
        if args.breakdown:
            print(json.dumps(breakdown_line(shape, proved, onchain)), flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    import structlog

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Shape.parse, action="append")
    parser.add_argument("--inputs", type=Path, default=INPUTS)
    parser.add_argument("--work", type=Path, help="keep traces and proofs here (reused)")
    parser.add_argument("--offline", action="store_true", help="no devnet: calldata only")
    parser.add_argument("--breakdown", action="store_true")
    parser.add_argument("--monolith", action="store_true")
    parser.add_argument(
        "--extra-program-words",
        type=int,
        default=0,
        metavar="N",
        help="prove a program N words bigger (uncalled code): gas per bytecode word",
    )
    parser.add_argument(
        "--program",
        type=Path,
        metavar="SOURCE",
        help="prove this version of allocation.cairo instead of the shipped one (same inputs)",
    )
    args = parser.parse_args(argv)
    # stdout carries the JSON lines: the keeper's log lines go to stderr.
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    from keeper.devnet.integrity import DEVNET_ARGS, classes_dir

    if not args.offline and classes_dir() is None:
        print(
            json.dumps(
                {
                    "bench": "integrity",
                    "skipped": "Integrity's classes are absent "
                    "(../shared/integrity/classes or $INTEGRITY_CLASSES_DIR)",
                }
            )
        )
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-integrity-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        if args.offline:
            asyncio.run(run(args, work))
            return 0
        from keeper.devnet.node import start_devnet

        with start_devnet(work, extra_args=DEVNET_ARGS) as devnet:
            _DEVNET["devnet"] = devnet
            asyncio.run(run(args, work))
    return 0


if __name__ == "__main__":
    sys.exit(main())
