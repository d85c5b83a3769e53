"""The views the keeper reads, decoded from their ABI outputs into typed values. Pure.

Which contract's ABI describes each view, and what the keeper makes of its answer, is the
typed mapping below (``_VIEWS``); the felt layout comes from keeper/abi/. A registry's
verifications are read with DevFactRegistry's ABI, which copies Integrity's FactRegistry
interface (``get_verification``, ``get_all_verifications_for_fact_hash``).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from keeper.chain.abi import ViewLayout, view_layout
from keeper.chain.errors import UnexpectedAnswerError
from keeper.chain.governance import GovernanceParams, GovernedContract, PendingChange
from keeper.chain.shapes import (
    BOOL,
    INT,
    SHORT_STRING,
    SHORT_STRING_OR_HEX,
    Items,
    Maybe,
    Record,
    Shape,
    TupleOf,
)
from keeper.chain.values import (
    RouterState,
    Verification,
    VerificationListElement,
    VerifierConfig,
)
from prover.model import ModelParams, ProtocolInputs

ROUTER = "StrategyRouterV2"
RISK_ENGINE = "RiskEngine"
FACT_REGISTRY = "DevFactRegistry"

ROUTER_STATE_VIEWS = (
    "get_epoch",
    "get_allocation",
    "get_governance_params",
    "last_execution_timestamp",
    "is_rebalance_requested",
)


def _verifier_config(text: Shape) -> Record:
    return Record(
        VerifierConfig, layout=text, hasher=text, stone_version=text, memory_verification=text
    )


@dataclass(frozen=True)
class _PendingChangeAnswer:
    """The router's ``PendingChange`` struct (the view knows no param or subject)."""

    values: tuple[int, ...]
    eta: int


_VIEWS: dict[str, tuple[str, Shape]] = {
    "get_epoch": (ROUTER, INT),
    "get_allocation": (ROUTER, Items(INT)),
    "get_governance_params": (ROUTER, Record(GovernanceParams)),
    "last_execution_timestamp": (ROUTER, INT),
    "is_rebalance_requested": (ROUTER, BOOL),
    "get_pending_change": (ROUTER, Maybe(Record(_PendingChangeAnswer, values=Items(INT)))),
    "get_owner": (ROUTER, INT),
    "get_pending_owner": (ROUTER, INT),
    "is_keeper": (ROUTER, BOOL),
    "is_fact_consumed": (ROUTER, BOOL),
    "get_inputs": (RISK_ENGINE, TupleOf(Items(Record(ProtocolInputs)), Record(ModelParams))),
    "get_inputs_commitment": (RISK_ENGINE, INT),
    # Shown only (a non-text config cannot match a pin, which is text): hex when not text.
    "get_all_verifications_for_fact_hash": (
        FACT_REGISTRY,
        Items(
            Record(
                VerificationListElement, verifier_config=_verifier_config(SHORT_STRING_OR_HEX)
            )
        ),
    ),
    # Exact: the keeper asks for the hash it computed from a pinned (text) configuration.
    "get_verification": (
        FACT_REGISTRY,
        Maybe(Record(Verification, verifier_config=_verifier_config(SHORT_STRING))),
    ),
}


@functools.cache
def _layout(function: str) -> ViewLayout:
    contract, shape = _VIEWS[function]
    return view_layout(contract, function, shape)


def check_view_abis() -> None:
    """Bind every view's mapping to its ABI now (ChainError ``abi_mismatch`` if one differs)."""
    for function in _VIEWS:
        _layout(function)


def decode_view(function: str, felts: Sequence[int]) -> Any:
    """The typed answer of ``function``; UnexpectedAnswerError when it does not fit."""
    try:
        return _layout(function).decode(felts)
    except UnexpectedAnswerError as exc:
        raise UnexpectedAnswerError(
            f"{function} returned {len(felts)} felts that do not fit its ABI ({exc.message}): "
            "is the configured address the contract version this keeper supports?"
        ) from None


def router_state(answers: Sequence[Sequence[int]], block: int) -> RouterState:
    """The ROUTER_STATE_VIEWS answers, in that order, read at ``block``."""
    epoch, allocation, governance, last_ts, requested = (
        decode_view(name, felts) for name, felts in zip(ROUTER_STATE_VIEWS, answers, strict=True)
    )
    return RouterState(epoch, allocation, governance, last_ts, block, requested)


def risk_inputs(felts: Sequence[int]) -> tuple[tuple[ProtocolInputs, ...], ModelParams]:
    protocols, params = decode_view("get_inputs", felts)
    return protocols, params


def verifications(felts: Sequence[int]) -> list[VerificationListElement]:
    return list(decode_view("get_all_verifications_for_fact_hash", felts))


def verification(felts: Sequence[int]) -> Verification | None:
    found: Verification | None = decode_view("get_verification", felts)
    return found


def pending_change(
    param: str, subject: int, felts: Sequence[int], contract: GovernedContract = "router"
) -> PendingChange | None:
    """``get_pending_change(param, subject)``'s answer, with what it was asked about
    (RiskEngine's view answers the same ``Option<PendingChange>``)."""
    answer: _PendingChangeAnswer | None = decode_view("get_pending_change", felts)
    if answer is None:
        return None
    return PendingChange(param, subject, tuple(answer.values), answer.eta, contract)
