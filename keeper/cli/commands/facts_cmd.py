"""``fact-hash`` and ``fri-params``: compute what Integrity will register for a program
output, and choose Stone FRI parameters for a trace. No network, no prover."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from prover import facts, fri
from prover.errors import InputError
from prover.settings import ProverSettings

_VERIFIER_OPTIONS = ("layout", "hasher", "stone_version", "memory_verification")


def register(sub: Any) -> None:
    fact = sub.add_parser(
        "fact-hash",
        help="compute program hashes and the fact Integrity registers for an output",
        description="Print the program hash, output hash, direct fact, Pedersen program "
        "hash chain and bootloaded fact of a compiled Cairo 0 program and its output. "
        "With the four verifier options (and --security-bits) also print Integrity's "
        "verifier config hash (and verification hash).",
    )
    fact.add_argument(
        "--program", required=True, metavar="COMPILED.json", help="cairo-compile output (JSON)"
    )
    fact.add_argument(
        "--output",
        required=True,
        nargs="+",
        metavar="V",
        help="program output values, decimal or 0x-hex",
    )
    fact.add_argument(
        "--bootloaded",
        action="store_true",
        help="the proof is bootloaded (Atlantic/SHARP): use the bootloaded fact "
        "as `fact` (default: the direct Stone fact)",
    )
    fact.add_argument("--layout", help="Integrity verifier layout, e.g. small")
    fact.add_argument("--hasher", help="Integrity hasher, e.g. keccak_160_lsb")
    fact.add_argument("--stone-version", help="stone5 or stone6")
    fact.add_argument("--memory-verification", help="strict, relaxed or cairo1")
    fact.add_argument(
        "--security-bits",
        type=int,
        metavar="N",
        help="security bits of the verification (needs the verifier options)",
    )
    fact.add_argument("--json", action="store_true", help="print one JSON object")
    fact.set_defaults(handler=_fact_hash)

    params = sub.add_parser(
        "fri-params",
        help="choose Stone FRI parameters for a trace size and security level",
        description="Print a Stone parameter set (stark section) for n_steps that meets "
        "Stone's FRI rule and Integrity's limits, with its security bits.",
    )
    params.add_argument(
        "--n-steps",
        required=True,
        type=int,
        metavar="N",
        help="n_steps from the public input (a power of two)",
    )
    # The keeper's own defaults (prover.settings), so the command shows what it proves with.
    keeper = ProverSettings()
    params.add_argument(
        "--last-layer-degree-bound", type=int, default=keeper.last_layer_degree_bound,
        metavar="B",
    )
    params.add_argument(
        "--required-bits", type=int, default=keeper.required_security_bits, metavar="BITS"
    )
    params.add_argument("--log-n-cosets", type=int, default=keeper.log_n_cosets, metavar="K")
    params.add_argument(
        "--pow-bits", type=int, default=keeper.proof_of_work_bits, metavar="BITS"
    )
    params.add_argument("--json", action="store_true", help="print one JSON object")
    params.set_defaults(handler=_fri_params)


def _fact_hash(args: argparse.Namespace) -> int:
    outputs = [_parse_value(text) for text in args.output]
    compiled = _read_json(Path(args.program))

    program_hash = facts.program_hash(compiled)
    chain = facts.pedersen_program_hash_chain(compiled)
    direct = facts.direct_fact(program_hash, outputs)
    bootloaded = facts.bootloaded_fact(chain, outputs)
    result: dict[str, int | str] = {
        "program_hash": program_hash,
        "output_hash": facts.output_hash(outputs),
        "direct_fact": direct,
        "pedersen_program_hash_chain": chain,
        "bootloaded_fact": bootloaded,
        "fact_kind": "bootloaded" if args.bootloaded else "direct",
        "fact": bootloaded if args.bootloaded else direct,
    }
    result.update(_verification(args, bootloaded if args.bootloaded else direct))

    # Hashes as hex strings; the two plain values (kind, security bits) as they are.
    shown = {
        k: hex(v) if isinstance(v, int) and k != "security_bits" else v for k, v in result.items()
    }
    if args.json:
        print(json.dumps(shown))
    else:
        for key, value in shown.items():
            print(f"{key.replace('_', ' ')}: {value}")
    return 0


def _verification(args: argparse.Namespace, fact: int) -> dict[str, int | str]:
    given = {name: getattr(args, name) for name in _VERIFIER_OPTIONS}
    if not any(value is not None for value in given.values()):
        if args.security_bits is not None:
            raise InputError(
                "--security-bits needs --layout, --hasher, --stone-version and "
                "--memory-verification"
            )
        return {}
    missing = [f"--{name.replace('_', '-')}" for name, value in given.items() if value is None]
    if missing:
        raise InputError(f"the verifier config hash also needs {', '.join(missing)}")
    config_hash = facts.verifier_config_hash(
        given["layout"], given["hasher"], given["stone_version"], given["memory_verification"]
    )
    out: dict[str, int | str] = {"verifier_config_hash": config_hash}
    if args.security_bits is not None:
        out["security_bits"] = args.security_bits
        out["verification_hash"] = facts.verification_hash(fact, config_hash, args.security_bits)
    return out


def _fri_params(args: argparse.Namespace) -> int:
    params = fri.fri_parameters(
        args.n_steps,
        required_bits=args.required_bits,
        log_n_cosets=args.log_n_cosets,
        proof_of_work_bits=args.pow_bits,
        last_layer_degree_bound=args.last_layer_degree_bound,
    )
    if args.json:
        print(
            json.dumps(
                {
                    "n_steps": args.n_steps,
                    "security_bits": params.security_bits(),
                    "stark": params.to_stone_stark(),
                }
            )
        )
    else:
        print(f"n_steps: {args.n_steps}")
        print(f"fri_step_list: {list(params.fri_step_list)}")
        print(f"last_layer_degree_bound: {params.last_layer_degree_bound}")
        print(f"n_queries: {params.n_queries}")
        print(f"proof_of_work_bits: {params.proof_of_work_bits}")
        print(f"log_n_cosets: {params.log_n_cosets}")
        print(f"security_bits: {params.security_bits()}")
    return 0


def _parse_value(text: str) -> int:
    try:
        value = int(text, 16) if text[:2].lower() == "0x" else int(text, 10)
    except ValueError:
        raise InputError(
            f"output value {text!r} is not a number: write it in decimal or 0x-hex"
        ) from None
    if not 0 <= value < facts.FIELD_PRIME:
        raise InputError(
            f"output value {text} is not a field element (0..P-1); write negatives as P - x"
        )
    return value


def _read_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read compiled program {path}: {exc.strerror}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"compiled program {path} is not JSON (line {exc.lineno}): pass cairo-compile's "
            "--output file"
        ) from None
