"""Generate tests/vectors/allocation_vectors.json from the Python reference model.

The file is the shared test vector of docs/allocation-program.md: prover tests run the
Cairo program against it and the contracts tests run RiskEngine/StrategyRouterV2 against
it. Run `python scripts/gen_vectors.py` after a deliberate change of the spec; the prover
tests fail while the file is out of date (`--check` exits 1 in that case).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from prover.model import (
    AllocationInputs,
    ModelParams,
    ProtocolInputs,
    compute_allocation,
    expected_output,
    inputs_commitment,
    load_inputs,
    parse_inputs,
)

ROOT = Path(__file__).resolve().parent.parent
VECTORS_PATH = ROOT / "tests" / "vectors" / "allocation_vectors.json"
DEVNET_INPUTS = ROOT / "config" / "devnet_inputs.json"


def _protocol(util: int, vol: int, liq: int, audit: int, age: int, apy: int) -> ProtocolInputs:
    return ProtocolInputs(util, vol, liq, audit, age, apy)


def _safe(apy: int) -> ProtocolInputs:
    """No risk terms at all: risk = risk_floor, so score depends on APY only."""
    return _protocol(0, 0, 0, 100, 1000, apy)


def cases() -> list[tuple[str, str, AllocationInputs]]:
    sixteen = tuple(
        _protocol(
            (i * 731) % 10001,
            (i * 1931) % 10001,
            i % 4,
            60 + (i * 7) % 41,
            (i * 97) % 1500,
            200 + i * 113,
        )
        for i in range(16)
    )
    return [
        (
            "devnet",
            "config/devnet_inputs.json: 3 protocols, default params",
            load_inputs(DEVNET_INPUTS),
        ),
        (
            "single_protocol",
            "n = 1 takes everything",
            AllocationInputs(
                router=0x1234,
                epoch=7,
                protocols=(_safe(500),),
                max_single_bps=10000,
                min_diversification=1,
            ),
        ),
        (
            "sixteen_protocols",
            "n = 16, varied inputs, cap 1000 (several rounds)",
            AllocationInputs(
                router=0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF,
                epoch=2**64 - 1,
                protocols=sixteen,
                max_single_bps=1000,
                min_diversification=2,
            ),
        ),
        (
            "zero_apy",
            "all APYs zero: equal split, remainder to index 0",
            AllocationInputs(
                router=0x99,
                epoch=3,
                protocols=(_safe(0), _protocol(9000, 9000, 3, 0, 0, 0), _safe(0)),
                max_single_bps=4000,
                min_diversification=3,
            ),
        ),
        (
            "cap_cascade",
            "capping protocol 0 pushes protocol 1 over the cap: two rounds",
            AllocationInputs(
                router=0xABC,
                epoch=12,
                protocols=(_safe(7000), _safe(1500), _safe(1000), _safe(500)),
                max_single_bps=3000,
                min_diversification=4,
            ),
        ),
        (
            "risk_clamps",
            "one risk clamped at the ceiling, one at the floor, custom params",
            AllocationInputs(
                router=0xDEAD,
                epoch=100,
                protocols=(
                    _protocol(10000, 10000, 3, 0, 0, 900),
                    _protocol(0, 0, 0, 100, 5000, 300),
                    _protocol(4000, 3000, 1, 50, 200, 700),
                ),
                params=ModelParams(
                    w_util=30,
                    w_vol=50,
                    liq_penalty_1=7,
                    liq_penalty_2=20,
                    liq_penalty_3=40,
                    audit_num=2,
                    audit_den=5,
                    age_cap_days=365,
                    age_penalty=12,
                    risk_floor=8,
                    risk_ceiling=90,
                ),
                max_single_bps=6000,
                min_diversification=2,
            ),
        ),
        (
            "extreme_values",
            "every field and parameter at its maximum",
            AllocationInputs(
                router=0x1,
                epoch=0,
                protocols=(
                    _protocol(10000, 10000, 3, 0, 0, 100000),
                    _protocol(0, 0, 0, 100, 100000, 100000),
                ),
                params=ModelParams(*([100000] * 12)),
                max_single_bps=10000,
                min_diversification=0,
            ),
        ),
    ]


def build() -> dict[str, Any]:
    vectors = []
    for name, description, inputs in cases():
        assert parse_inputs(inputs.to_json()) == inputs, name
        result = compute_allocation(inputs)
        vectors.append(
            {
                "name": name,
                "description": description,
                "inputs": inputs.to_json(),
                "elements": [hex(e) for e in inputs.commitment_elements()],
                "commitment": hex(inputs_commitment(inputs)),
                "allocation": list(result.allocation),
                "risk": list(result.risk),
                "output": [hex(v) for v in expected_output(inputs)],
            }
        )
    return {
        "spec": "docs/allocation-program.md",
        "generator": "scripts/gen_vectors.py",
        "note": "elements/commitment: spec section 2; output: spec section 4 (hex felts)",
        "vectors": vectors,
    }


def render() -> str:
    return json.dumps(build(), indent=2) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    args = parser.parse_args()
    text = render()
    if args.check:
        current = VECTORS_PATH.read_text(encoding="utf-8") if VECTORS_PATH.exists() else ""
        if current != text:
            print(f"{VECTORS_PATH} is out of date: run scripts/gen_vectors.py", file=sys.stderr)
            return 1
        return 0
    VECTORS_PATH.write_text(text, encoding="utf-8")
    print(f"wrote {VECTORS_PATH} ({len(build()['vectors'])} vectors)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
