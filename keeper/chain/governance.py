"""The router's governance parameters as its ``get_governance_params`` view returns them."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace


@dataclass(frozen=True)
class GovernanceParams:
    """StrategyRouterV2.get_governance_params(), fields in the contract's order."""

    rebalance_interval_s: int
    drift_threshold_bps: int
    max_single_bps: int
    min_diversification: int
    min_security_bits: int
    fact_registry: int
    program_hash: int  # direct proofs; 0 = none accepted
    child_program_hash: int  # bootloaded proofs; 0 = none accepted
    risk_engine: int

    def __post_init__(self) -> None:
        for f in fields(self):
            _check_felt(f.name, getattr(self, f.name))

    @classmethod
    def from_values(cls, values: tuple[int, ...] | list[int]) -> GovernanceParams:
        """Build from the view's return values, in contract order."""
        names = param_names()
        if len(values) != len(names):
            raise ValueError(
                f"get_governance_params returned {len(values)} values, expected {len(names)} "
                f"({', '.join(names)}): the router's ABI differs from this keeper's"
            )
        return cls(*values)

    def apply_change(self, param: str, new: int) -> GovernanceParams:
        """The params after a ``GovernanceParamsUpdated(param, old, new)``."""
        if param not in param_names():
            raise ValueError(
                f"unknown governance parameter {param!r} (known: {', '.join(param_names())}); "
                "the router may be newer than this keeper"
            )
        return replace(self, **{param: new})

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def param_names() -> tuple[str, ...]:
    """GovernanceParams field names in contract order (the event's ``param`` strings)."""
    return tuple(f.name for f in fields(GovernanceParams))


def _check_felt(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(
            f"governance parameter {name} must be a non-negative integer, got {value!r}"
        )
