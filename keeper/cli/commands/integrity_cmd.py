"""``obsqra-keeper integrity-calldata PROOF.json --out DIR [--split] [--target T]``: a Stone
proof as the calldata of the transactions that verify it on Starknet, one file each: to
Integrity's FactRegistry (default), to our IntegrityGuard (the router's registry) or to
Integrity's CairoVerifier itself."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from prover.errors import InputError
from prover.integrity import (
    MAX_TRANSACTION_CALLDATA,
    Call,
    fact_of,
    full_verification_call,
    guard_full_call,
    guard_split_calls,
    new_job_id,
    parse_proof,
    security_bits,
    split_calldata,
    verification_hash,
    verifier_call,
    verifier_config,
    verifier_split_calls,
)

TARGETS = ("registry", "guard", "verifier")


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "integrity-calldata",
        help="turn a Stone proof into Integrity's verification calldata, one file per tx",
        description="Parse PROOF.json (cpu_air_prover --generate_annotations output) and "
        "write the whole calldata of each call, in call order, into DIR: monolith.txt "
        "(verify_proof_full_and_register_fact) or, with --split, 00-initial.txt, "
        "01-step.txt, ..., NN-final.txt (verify_proof_initial, verify_proof_step..., "
        "verify_proof_final_and_register_fact). --target guard writes the calls of our "
        "IntegrityGuard (verify_proof_full / _initial / _step / _final, each one span: the "
        "verifier's calldata), --target verifier those of Integrity's CairoVerifier. One "
        "felt per line. Prints the fact hash the proof registers, its verifier "
        "configuration, security bits and verification hash.",
    )
    parser.add_argument("proof", type=Path, metavar="PROOF.json")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR")
    parser.add_argument("--split", action="store_true", help="the split transactions")
    parser.add_argument(
        "--job-id",
        type=_felt,
        metavar="N",
        help="Integrity job id of the split flow (default: a fresh random one; never reuse "
        "an id before its final call landed)",
    )
    parser.add_argument(
        "--target",
        choices=TARGETS,
        default="registry",
        help="whose calls: Integrity's FactRegistry (default), our IntegrityGuard (what the "
        "router trusts) or Integrity's CairoVerifier",
    )
    parser.add_argument("--hex", action="store_true", help="0x-hex felts (default: decimal)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(handler=_handle)


def _felt(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < 2**251:
        raise argparse.ArgumentTypeError("a job id is a felt in 1..2**251-1")
    return value


def _read_proof(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"no proof at {path}") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{path} is not a readable JSON proof: {exc}") from None


def _file_names(calls: list[Call]) -> list[str]:
    names = []
    for index in range(len(calls)):
        kind = "initial" if index == 0 else "final" if index == len(calls) - 1 else "step"
        names.append(f"{index:02d}-{kind}.txt")
    return names


def _calls(proof: Any, job_id: int, *, split: bool, target: str) -> list[Call]:
    config = verifier_config(proof)
    if target == "guard":
        return guard_split_calls(proof, job_id) if split else [guard_full_call(proof)]
    if target == "verifier":
        if split:
            return verifier_split_calls(proof, job_id)
        return [verifier_call(full_verification_call(proof), config)]
    return split_calldata(proof, job_id) if split else [full_verification_call(proof)]


def _handle(args: argparse.Namespace) -> int:
    proof = parse_proof(_read_proof(args.proof))
    job_id = args.job_id if args.job_id is not None else new_job_id()
    calls = _calls(proof, job_id, split=args.split, target=args.target)
    names = _file_names(calls) if args.split else ["monolith.txt"]
    args.out.mkdir(parents=True, exist_ok=True)
    render = hex if args.hex else str
    written = []
    for name, call in zip(names, calls, strict=True):
        path = args.out / name
        tmp = path.with_name(f".{name}.tmp")
        tmp.write_text("".join(f"{render(felt)}\n" for felt in call.calldata))
        os.replace(tmp, path)
        written.append({
            "file": str(path),
            "function": call.function,
            "calldata_felts": len(call.calldata),
            "over_network_limit": call.transaction_felts > MAX_TRANSACTION_CALLDATA,
        })
    config = verifier_config(proof)
    result: dict[str, Any] = {
        "fact_hash": hex(fact_of(proof)),
        "verifier_config": [
            config.layout, config.hasher, config.stone_version, config.memory_verification
        ],
        "security_bits": security_bits(proof),
        "verification_hash": hex(verification_hash(proof)),
        "job_id": hex(job_id) if args.split else None,
        "target": args.target,
        "transactions": written,
    }
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"fact_hash: {result['fact_hash']}")
    print(f"verifier_config: {', '.join(result['verifier_config'])}")
    print(f"security_bits: {result['security_bits']}")
    print(f"verification_hash: {result['verification_hash']}")
    if args.split:
        print(f"job_id: {result['job_id']}")
    for entry in written:
        warning = (
            f"  (over the {MAX_TRANSACTION_CALLDATA}-felt limit of Starknet networks)"
            if entry["over_network_limit"]
            else ""
        )
        print(f"{entry['file']}: {entry['function']}, {entry['calldata_felts']} felts{warning}")
    return 0
