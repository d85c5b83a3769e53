"""Shared parts of the stand-in cpu_air_prover / cpu_air_verifier (stdlib only).

The stand-ins honour Stone's command line (gflags: unknown flag -> exit 1), read the same
inputs, enforce the same FRI rule with the same abort text, and write/check a proof of the
real top-level shape. ``proof_hex`` is a digest chain over the public input, the
parameters and the trace, so tampering with the proof or its public input fails
verification with the real verifier's messages.

Behaviour switches (environment):
  FAKE_STONE_GENERATION = cmake | stone5 | stone6 (default stone6); cmake rejects the
      verifier-friendly parameter set like the CMake-era build.
  FAKE_STONE_MODE = hang | crash | garbage | no_output | oom | lib_missing | tamper
  FAKE_STONE_CHILD_PIDFILE = path: in hang mode, also start a grandchild and write its pid
  FAKE_STONE_REPORT_NICENESS = 1: the prover logs its scheduling niceness
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import sys
from typing import Any, NoReturn

STARKWARE_TERMINATE = (
    "terminate called after throwing an instance of 'starkware::StarkwareException'"
)
VERIFIER_FRIENDLY_KEYS = (
    "channel_hash",
    "commitment_hash",
    "n_verifier_friendly_commitment_layers",
    "pow_hash",
    "verifier_friendly_channel_updates",
    "verifier_friendly_commitment_hash",
)
TOP_LEVEL_KEYS = (
    "annotations",
    "private_input",
    "proof_hex",
    "proof_parameters",
    "prover_config",
    "public_input",
    "version",
)


def parse_flags(argv: list[str], known: dict[str, bool]) -> dict[str, str | bool]:
    """gflags-style parsing: --name=value, --name / --noname for booleans."""
    flags: dict[str, str | bool] = {}
    for arg in argv:
        if not arg.startswith("-"):
            continue  # gflags leaves positional arguments to the program, which ignores them
        body = arg.lstrip("-")
        name, has_value, value = body.partition("=")
        if name in known:
            if known[name]:  # boolean
                flags[name] = value.lower() not in ("false", "0") if has_value else True
            else:
                if not has_value:
                    die_flag(f"flag '{name}' is missing its argument")
                flags[name] = value
        elif name.startswith("no") and known.get(name[2:]):
            flags[name[2:]] = False
        else:
            die_flag(f"unknown command line flag '{name}'")
    return flags


def die_flag(message: str) -> NoReturn:
    sys.stderr.write(f"ERROR: {message}\n")
    sys.exit(1)


def glog(level: str, where: str, message: str) -> None:
    sys.stderr.write(f"{level}1125 19:27:00.000000 {os.getpid()} {where}] {message}\n")
    sys.stderr.flush()


def abort_with(what: str) -> NoReturn:
    """Die like an uncaught StarkwareException: message, stack trace, SIGABRT."""
    sys.stderr.write(f"{STARKWARE_TERMINATE}\n  what():  {what}\n")
    sys.stderr.write("Stack trace (most recent call last):\n")
    sys.stderr.write('#0    Object "fake", at 0x0, in abort\n')
    sys.stderr.flush()
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core file in the trace dir
    os.abort()


def glog_fatal(where: str, message: str) -> NoReturn:
    glog("F", where, message)
    sys.stderr.write("*** Check failure stack trace: ***\n")
    sys.stderr.flush()
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    os.abort()


def read_json(path: str, what: str) -> Any:
    try:
        with open(path) as fh:
            return json.load(fh)
    except OSError as exc:
        glog_fatal(
            "file_utils.cc:32", f"Check failed: false Failed to open {what} {path}: {exc.strerror}"
        )
    except ValueError:
        glog_fatal("json.cc:41", f"Check failed: false Failed parsing {what} {path} as JSON")


def canonical_digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def fri_degrees(params: dict[str, Any], n_steps: int) -> tuple[int, int]:
    """(FRI degree bound from the parameters, STARK degree bound 16 * n_steps)."""
    fri = params["stark"]["fri"]
    return fri["last_layer_degree_bound"] * 2 ** sum(fri["fri_step_list"]), 16 * n_steps


def is_power_of_two(value: int) -> bool:
    return value >= 1 and value & (value - 1) == 0


def make_proof_hex(public_input: Any, params: Any, trace_digest: str) -> str:
    payload = canonical_digest(public_input) + canonical_digest(params) + trace_digest * 64
    return "0x" + payload + hashlib.sha256(payload.encode()).hexdigest()


def split_proof_hex(proof_hex: str) -> tuple[str, str, str, str]:
    """(public input digest, params digest, payload, seal)."""
    body = proof_hex[2:]
    payload, seal = body[:-64], body[-64:]
    return payload[:64], payload[64:128], payload, seal
