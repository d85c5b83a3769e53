"""The router's governance: its parameters as ``get_governance_params`` returns them, its
verifier pins, and its timelocked proposals (``get_pending_change``, the
``GovernanceChange*`` events); and RiskEngine's proposals (model parameters, oracle and its
own delay), which follow the same timelock.

Every field is the felt the contract stores (integers, addresses, hashes and short
strings alike), so a ``GovernanceParamsUpdated(param, old, new)`` applies as it is; the
eight pin fields are short strings, read as ``VerifierConfig`` through ``pin(path)``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Literal

from keeper.chain.codec import decode_short_string, encode_short_string

GovernedContract = Literal["router", "risk_engine"]

VerificationPath = Literal["direct", "bootloaded"]
VERIFICATION_PATHS: tuple[VerificationPath, ...] = ("direct", "bootloaded")

# A change may be applied from its eta until this long after it (GOVERNANCE_GRACE_S).
GOVERNANCE_GRACE_S = 14 * 24 * 3600
STRICT_MEMORY_VERIFICATION = "strict"


@dataclass(frozen=True)
class VerifierConfig:
    """Integrity's VerifierConfiguration: four short strings."""

    layout: str
    hasher: str
    stone_version: str
    memory_verification: str

    def felts(self) -> list[int]:
        return [
            encode_short_string(self.layout),
            encode_short_string(self.hasher),
            encode_short_string(self.stone_version),
            encode_short_string(self.memory_verification),
        ]

    @classmethod
    def from_felts(cls, values: tuple[int, ...] | list[int]) -> VerifierConfig:
        """Four felts as text; ValueError naming the first that is no short string."""
        if len(values) != 4:
            raise ValueError(f"a verifier configuration is 4 short strings, got {len(values)}")
        texts = []
        for name, value in zip(_CONFIG_FIELDS, values, strict=True):
            text = decode_short_string(value)
            if text is None:
                raise ValueError(f"{name} = {value:#x} is not a printable short string")
            texts.append(text)
        return cls(*texts)

    def __str__(self) -> str:
        return f"({self.layout}, {self.hasher}, {self.stone_version}, {self.memory_verification})"


_CONFIG_FIELDS = ("layout", "hasher", "stone_version", "memory_verification")


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
    # The pinned Integrity VerifierConfiguration per path: short strings; all 0 = unset.
    direct_layout: int
    direct_hasher: int
    direct_stone_version: int
    direct_memory_verification: int
    bootloaded_layout: int
    bootloaded_hasher: int
    bootloaded_stone_version: int
    bootloaded_memory_verification: int
    governance_delay_s: int

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

    def pin_felts(self, path: VerificationPath) -> tuple[int, int, int, int]:
        """The pinned configuration of ``path`` as the four felts the router stores."""
        names = PIN_FIELDS[path]
        a, b, c, d = (getattr(self, name) for name in names)
        return a, b, c, d

    def pin(self, path: VerificationPath) -> VerifierConfig | None:
        """The pinned configuration of ``path`` as text; None when it is unset (all 0: the
        router accepts nothing on that path) or not four short strings (then no
        verification Integrity registers can match it)."""
        felts = self.pin_felts(path)
        if not any(felts):
            return None
        try:
            return VerifierConfig.from_felts(felts)
        except ValueError:
            return None

    @property
    def direct_pin(self) -> VerifierConfig | None:
        return self.pin("direct")

    @property
    def bootloaded_pin(self) -> VerifierConfig | None:
        return self.pin("bootloaded")

    def proposal_values(self, param: str) -> tuple[int, ...]:
        """The current values of proposal ``param`` (one felt, or four for a pin); what a
        pending change of it would replace. ValueError for 'keeper' and unknown names."""
        if param not in PROPOSAL_FIELDS:
            raise ValueError(f"{param!r} is not a proposal of a GovernanceParams value")
        return tuple(getattr(self, name) for name in PROPOSAL_FIELDS[param])

    def with_proposal(self, param: str, values: tuple[int, ...]) -> GovernanceParams:
        """The params after proposal ``param`` := ``values`` is applied."""
        names = PROPOSAL_FIELDS.get(param)
        if names is None or len(values) != len(names):
            raise ValueError(
                f"proposal {param!r} with {len(values)} value(s) does not change GovernanceParams"
            )
        return replace(self, **dict(zip(names, values, strict=True)))


def param_names() -> tuple[str, ...]:
    """GovernanceParams field names in contract order (the event's ``param`` strings)."""
    return tuple(f.name for f in fields(GovernanceParams))


PIN_FIELDS: dict[VerificationPath, tuple[str, str, str, str]] = {
    path: (
        f"{path}_layout",
        f"{path}_hasher",
        f"{path}_stone_version",
        f"{path}_memory_verification",
    )
    for path in VERIFICATION_PATHS
}

# Proposal ``param`` (propose_change / GovernanceChange* events) -> the fields it sets.
# 'keeper' changes the keeper set, not GovernanceParams, and is not listed here.
PROPOSAL_FIELDS: dict[str, tuple[str, ...]] = {
    **{
        name: (name,)
        for name in param_names()
        if not any(name in pin for pin in PIN_FIELDS.values())
    },
    "direct_verifier": PIN_FIELDS["direct"],
    "bootloaded_verifier": PIN_FIELDS["bootloaded"],
}
KEEPER_PROPOSAL = "keeper"
PROPOSAL_PARAMS: tuple[str, ...] = (*PROPOSAL_FIELDS, KEEPER_PROPOSAL)
# RiskEngine's proposal params (subject always 0): its 12 model parameters in doc §1
# order, its oracle, its own governance_delay_s.
RISK_ENGINE_MODEL_PARAMS = "model_params"
RISK_ENGINE_PROPOSALS: tuple[str, ...] = (RISK_ENGINE_MODEL_PARAMS, "oracle", "governance_delay_s")


@dataclass(frozen=True)
class PendingChange:
    """A proposed governance change: ``param`` := ``values`` from ``eta`` (block time)
    until ``eta + GOVERNANCE_GRACE_S``; ``subject`` is the keeper for param 'keeper'.
    ``contract``: whose proposal it is (the router's, or RiskEngine's)."""

    param: str
    subject: int
    values: tuple[int, ...]
    eta: int
    contract: GovernedContract = "router"

    @property
    def expires_at(self) -> int:
        return self.eta + GOVERNANCE_GRACE_S

    def applicable_at(self, now: int) -> bool:
        return self.eta <= now <= self.expires_at

    def expired_at(self, now: int) -> bool:
        return now > self.expires_at


def _check_felt(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(
            f"governance parameter {name} must be a non-negative integer, got {value!r}"
        )
