"""Python reference of the allocation program (docs/allocation-program.md).

Pure: no I/O except ``load_inputs``. The Cairo program in ``prover/cairo/allocation.cairo``
must produce exactly ``expected_output(inputs)``; tests run both on the same inputs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from starknet_py.hash.utils import compute_hash_on_elements

from prover.errors import InfeasibleAllocation, InputError

BPS = 10_000
MAX_PROTOCOLS = 16
MAX_VALUE = 100_000  # bound of age_days, apy_bps and every model parameter
DIVERSIFIED_BPS = 1_000
FIELD_PRIME = 2**251 + 17 * 2**192 + 1
ADDRESS_BOUND = 2**251
EPOCH_BOUND = 2**64


@dataclass(frozen=True)
class ProtocolInputs:
    """One protocol's on-chain inputs, in RiskEngine's storage order."""

    utilization_bps: int
    volatility_bps: int
    liquidity_tier: int
    audit_score: int
    age_days: int
    apy_bps: int

    def as_list(self) -> list[int]:
        return [getattr(self, f.name) for f in fields(self)]


# Inclusive ranges of the protocol fields (spec section 1).
_PROTOCOL_RANGES: dict[str, tuple[int, int]] = {
    "utilization_bps": (0, BPS),
    "volatility_bps": (0, BPS),
    "liquidity_tier": (0, 3),
    "audit_score": (0, 100),
    "age_days": (0, MAX_VALUE),
    "apy_bps": (0, MAX_VALUE),
}


@dataclass(frozen=True)
class ModelParams:
    """The 12 governance parameters of the risk model, in commitment order."""

    w_util: int = 25
    w_vol: int = 40
    liq_penalty_0: int = 0
    liq_penalty_1: int = 5
    liq_penalty_2: int = 15
    liq_penalty_3: int = 30
    audit_num: int = 3
    audit_den: int = 10
    age_cap_days: int = 730
    age_penalty: int = 10
    risk_floor: int = 5
    risk_ceiling: int = 95

    def as_list(self) -> list[int]:
        return [getattr(self, f.name) for f in fields(self)]

    @property
    def liq_penalties(self) -> tuple[int, int, int, int]:
        return (self.liq_penalty_0, self.liq_penalty_1, self.liq_penalty_2, self.liq_penalty_3)


# Lower bounds above 0 (spec section 1); every parameter is <= MAX_VALUE.
_PARAM_MINIMUMS: dict[str, int] = {"audit_den": 1, "age_cap_days": 1}


@dataclass(frozen=True)
class AllocationInputs:
    """Everything the program reads: router, epoch, protocols, params, constraints."""

    router: int
    epoch: int
    protocols: tuple[ProtocolInputs, ...]
    params: ModelParams = field(default_factory=ModelParams)
    max_single_bps: int = BPS
    min_diversification: int = 0

    def commitment_elements(self) -> list[int]:
        """``[n, 6 fields per protocol..., 12 params]`` (spec section 2)."""
        elements = [len(self.protocols)]
        for protocol in self.protocols:
            elements.extend(protocol.as_list())
        elements.extend(self.params.as_list())
        return elements

    def program_input(self) -> dict[str, Any]:
        """The JSON object the Cairo program's hint reads as ``program_input``."""
        return {
            "router": self.router,
            "epoch": self.epoch,
            "elements": self.commitment_elements(),
            "max_single_bps": self.max_single_bps,
            "min_diversification": self.min_diversification,
        }

    def to_json(self) -> dict[str, Any]:
        """The INPUTS.json shape that ``parse_inputs`` reads back."""
        return {
            "router": hex(self.router),
            "epoch": self.epoch,
            "protocols": [{f.name: getattr(p, f.name) for f in fields(p)} for p in self.protocols],
            "params": {f.name: getattr(self.params, f.name) for f in fields(self.params)},
            "max_single_bps": self.max_single_bps,
            "min_diversification": self.min_diversification,
        }


@dataclass(frozen=True)
class AllocationResult:
    allocation: tuple[int, ...]
    risk: tuple[int, ...]


# --- parsing ---------------------------------------------------------------------------


def _int_field(obj: Mapping[str, Any], key: str, path: str, low: int, high: int) -> int:
    where = f"{path}.{key}" if path else key
    if key not in obj:
        raise InputError(f"inputs: missing field {where} (an integer in {low}..{high})")
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"inputs: {where} must be an integer in {low}..{high}, got {value!r}")
    if not low <= value <= high:
        raise InputError(f"inputs: {where} = {value} is out of range {low}..{high}")
    return value


def _reject_unknown(obj: Mapping[str, Any], allowed: Sequence[str], path: str) -> None:
    unknown = sorted(set(obj) - set(allowed))
    if unknown:
        where = path or "inputs"
        raise InputError(
            f"inputs: unknown field(s) {', '.join(unknown)} in {where}; "
            f"allowed: {', '.join(allowed)}"
        )


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InputError(f"inputs: {where} must be a JSON object, got {type(value).__name__}")
    return value


def _router(value: Any) -> int:
    bound = f"a hex felt 0x0..{hex(ADDRESS_BOUND - 1)}"
    if isinstance(value, str):
        text = value.strip()
        if not text.lower().startswith("0x"):
            raise InputError(f"inputs: router must be {bound}, got {value!r}")
        try:
            number = int(text, 16)
        except ValueError:
            raise InputError(f"inputs: router must be {bound}, got {value!r}") from None
    elif isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        raise InputError(f"inputs: router must be {bound}, got {value!r}")
    if not 0 <= number < ADDRESS_BOUND:
        raise InputError(f"inputs: router {value!r} is out of range: must be {bound}")
    return number


def _protocol(obj: Any, index: int) -> ProtocolInputs:
    path = f"protocols[{index}]"
    mapping = _mapping(obj, path)
    _reject_unknown(mapping, list(_PROTOCOL_RANGES), path)
    values = {
        name: _int_field(mapping, name, path, low, high)
        for name, (low, high) in _PROTOCOL_RANGES.items()
    }
    return ProtocolInputs(**values)


def _params(obj: Any) -> ModelParams:
    mapping = _mapping(obj, "params")
    names = [f.name for f in fields(ModelParams)]
    _reject_unknown(mapping, names, "params")
    defaults = ModelParams()
    values: dict[str, int] = {}
    for name in names:
        low = _PARAM_MINIMUMS.get(name, 0)
        if name in mapping:
            values[name] = _int_field(mapping, name, "params", low, MAX_VALUE)
        else:
            values[name] = getattr(defaults, name)
    params = ModelParams(**values)
    if params.risk_ceiling < params.risk_floor:
        raise InputError(
            f"inputs: params.risk_ceiling = {params.risk_ceiling} must be >= "
            f"params.risk_floor = {params.risk_floor}"
        )
    return params


_TOP_LEVEL = ("router", "epoch", "protocols", "params", "max_single_bps", "min_diversification")


def parse_inputs(obj: Any) -> AllocationInputs:
    """Validate the INPUTS.json shape; raise InputError naming the field and its range."""
    mapping = _mapping(obj, "the top level")
    _reject_unknown(mapping, _TOP_LEVEL, "")
    if "router" not in mapping:
        raise InputError("inputs: missing field router (a hex contract address)")
    router = _router(mapping["router"])
    epoch = _int_field(mapping, "epoch", "", 0, EPOCH_BOUND - 1)
    if "protocols" not in mapping:
        raise InputError(f"inputs: missing field protocols (a list of 1..{MAX_PROTOCOLS})")
    raw_protocols = mapping["protocols"]
    if not isinstance(raw_protocols, list):
        raise InputError(f"inputs: protocols must be a list of 1..{MAX_PROTOCOLS} objects")
    if not 1 <= len(raw_protocols) <= MAX_PROTOCOLS:
        raise InputError(
            f"inputs: protocols has {len(raw_protocols)} entries; allowed 1..{MAX_PROTOCOLS}"
        )
    protocols = tuple(_protocol(p, i) for i, p in enumerate(raw_protocols))
    params = _params(mapping["params"]) if "params" in mapping else ModelParams()
    max_single = _int_field(mapping, "max_single_bps", "", 1, BPS)
    min_div = _int_field(mapping, "min_diversification", "", 0, MAX_PROTOCOLS)
    return AllocationInputs(
        router=router,
        epoch=epoch,
        protocols=protocols,
        params=params,
        max_single_bps=max_single,
        min_diversification=min_div,
    )


def load_inputs(path: Path | str) -> AllocationInputs:
    """Read and validate an INPUTS.json file (unreadable file or bad JSON: InputError)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read inputs file {path}: {exc}") from exc
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"inputs file {path} is not valid JSON: {exc}") from exc
    return parse_inputs(obj)


# --- semantics (spec sections 2 and 3) -------------------------------------------------


def inputs_commitment(inputs: AllocationInputs) -> int:
    """Starknet compute_hash_on_elements (Pedersen chain) of the commitment elements."""
    result: int = compute_hash_on_elements(inputs.commitment_elements())
    return result


def risk_score(p: ProtocolInputs, params: ModelParams) -> int:
    age_term = (
        (params.age_cap_days - p.age_days) * params.age_penalty // params.age_cap_days
        if p.age_days < params.age_cap_days
        else 0
    )
    raw = (
        p.utilization_bps * params.w_util // BPS
        + p.volatility_bps * params.w_vol // BPS
        + params.liq_penalties[p.liquidity_tier]
        + (100 - p.audit_score) * params.audit_num // params.audit_den
        + age_term
    )
    return min(max(raw, params.risk_floor), params.risk_ceiling)


def _argmax(weights: Sequence[int], members: Sequence[int]) -> int:
    """Index in members with the largest weight, lowest index on ties."""
    return max(members, key=lambda i: (weights[i], -i))


def _split(amount: int, weights: Sequence[int], members: Sequence[int]) -> dict[int, int]:
    """amount * w_i / sum(w) for i in members, remainder to the largest weight."""
    total = sum(weights[i] for i in members)
    shares = {i: amount * weights[i] // total for i in members}
    shares[_argmax(weights, members)] += amount - sum(shares.values())
    return shares


def compute_allocation(inputs: AllocationInputs) -> AllocationResult:
    """The allocation (bps) and risk per protocol; InfeasibleAllocation names the constraint."""
    n = len(inputs.protocols)
    risks = [risk_score(p, inputs.params) for p in inputs.protocols]
    scores = [p.apy_bps * BPS // (r + 1) for p, r in zip(inputs.protocols, risks, strict=True)]
    weights = scores if sum(scores) > 0 else [1] * n
    everyone = list(range(n))
    shares = _split(BPS, weights, everyone)
    alloc = [shares[i] for i in everyone]

    cap = inputs.max_single_bps
    if any(a > cap for a in alloc) and n * cap < BPS:
        raise InfeasibleAllocation(
            f"infeasible: max_single_bps = {cap} with {n} protocols cannot place 10000 bps "
            f"(needs max_single_bps >= {-(-BPS // n)}); raise max_single_bps on the router"
        )
    capped: set[int] = set()
    while True:
        over = [i for i in everyone if alloc[i] > cap]
        if not over:
            break
        excess = sum(alloc[i] - cap for i in over)
        for i in over:
            alloc[i] = cap
            capped.add(i)
        receivers = [i for i in everyone if i not in capped]
        receiver_weights = scores if sum(scores[i] for i in receivers) > 0 else [1] * n
        for i, share in _split(excess, receiver_weights, receivers).items():
            alloc[i] += share

    diversified = sum(1 for a in alloc if a >= DIVERSIFIED_BPS)
    if diversified < inputs.min_diversification:
        raise InfeasibleAllocation(
            f"infeasible: min_diversification = {inputs.min_diversification} but only "
            f"{diversified} protocol(s) get >= {DIVERSIFIED_BPS} bps; lower "
            "min_diversification on the router or change the inputs"
        )
    return AllocationResult(allocation=tuple(alloc), risk=tuple(risks))


def expected_output(inputs: AllocationInputs) -> list[int]:
    """The program's public output (spec section 4), length 6 + 2n."""
    result = compute_allocation(inputs)
    return [
        inputs.router,
        inputs.epoch,
        inputs_commitment(inputs),
        inputs.max_single_bps,
        inputs.min_diversification,
        len(inputs.protocols),
        *result.allocation,
        *result.risk,
    ]
