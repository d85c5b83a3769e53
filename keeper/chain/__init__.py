"""The chain room: the keeper's view of Starknet (reads, transactions, keys, decoding).

Import from here: ``from keeper.chain import ChainClient, RouterState, WouldRevertError``.

Modules: ``client`` (ChainClient: RPC plumbing, reads, submit/wait/receipt), ``views``
(view answers decoded by the ABIs), ``abi`` and ``shapes`` (ABI-driven decoding and the
typed mapping), ``values`` (the result types), ``errors``, ``codec`` (felts, short strings,
chain ids, FIELD_PRIME), ``reverts`` (node error texts), ``fees`` (v3 fee bounds),
``signer`` (the account key), ``governance`` (the router's GovernanceParams, verifier
pins and pending changes).

Names load on first use (PEP 562): importing ``keeper.chain.codec`` or the event decoder's
``keeper.chain.abi`` does not drag in the RPC client and its dependencies (the CLI imports
every command at start-up).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from keeper.chain.client import ChainClient
    from keeper.chain.codec import (
        CURVE_ORDER,
        FIELD_PRIME,
        chain_name,
        decode_short_string,
        encode_short_string,
        parse_chain_id,
    )
    from keeper.chain.errors import (
        CallFailedError,
        ChainUnreachableError,
        FeeAboveCeilingError,
        NonceError,
        ReceiptTimeoutError,
        SendUncertainError,
        ShuttingDownError,
        SignerError,
        TransactionRejectedError,
        TransactionRevertedError,
        UnexpectedAnswerError,
        WouldRevertError,
        WrongChainError,
    )
    from keeper.chain.fees import max_fee_of, resource_bounds_for
    from keeper.chain.governance import GovernanceParams, PendingChange, param_names
    from keeper.chain.reverts import decode_revert_reason
    from keeper.chain.signer import load_signer
    from keeper.chain.values import (
        ChainInfo,
        FeeQuote,
        RiskInputs,
        RouterState,
        TxOutcome,
        Verification,
        VerificationListElement,
        VerifierConfig,
    )
    from keeper.chain.views import check_view_abis

_HOMES: dict[str, tuple[str, ...]] = {
    "keeper.chain.client": ("ChainClient",),
    "keeper.chain.codec": (
        "CURVE_ORDER",
        "FIELD_PRIME",
        "chain_name",
        "decode_short_string",
        "encode_short_string",
        "parse_chain_id",
    ),
    "keeper.chain.errors": (
        "CallFailedError",
        "ChainUnreachableError",
        "FeeAboveCeilingError",
        "NonceError",
        "ReceiptTimeoutError",
        "SendUncertainError",
        "ShuttingDownError",
        "SignerError",
        "TransactionRejectedError",
        "TransactionRevertedError",
        "UnexpectedAnswerError",
        "WouldRevertError",
        "WrongChainError",
    ),
    "keeper.chain.fees": (
        "max_fee_of",
        "resource_bounds_for",
    ),
    "keeper.chain.governance": (
        "GovernanceParams",
        "PendingChange",
        "param_names",
    ),
    "keeper.chain.reverts": ("decode_revert_reason",),
    "keeper.chain.signer": ("load_signer",),
    "keeper.chain.values": (
        "ChainInfo",
        "FeeQuote",
        "RiskInputs",
        "RouterState",
        "TxOutcome",
        "Verification",
        "VerificationListElement",
        "VerifierConfig",
    ),
    "keeper.chain.views": ("check_view_abis",),
}
_HOME = {name: module for module, names in _HOMES.items() for name in names}

__all__ = [
    "CURVE_ORDER",
    "FIELD_PRIME",
    "CallFailedError",
    "ChainClient",
    "ChainInfo",
    "ChainUnreachableError",
    "FeeAboveCeilingError",
    "FeeQuote",
    "GovernanceParams",
    "NonceError",
    "PendingChange",
    "ReceiptTimeoutError",
    "RiskInputs",
    "RouterState",
    "SendUncertainError",
    "ShuttingDownError",
    "SignerError",
    "TransactionRejectedError",
    "TransactionRevertedError",
    "TxOutcome",
    "UnexpectedAnswerError",
    "Verification",
    "VerificationListElement",
    "VerifierConfig",
    "WouldRevertError",
    "WrongChainError",
    "chain_name",
    "check_view_abis",
    "decode_revert_reason",
    "decode_short_string",
    "encode_short_string",
    "load_signer",
    "max_fee_of",
    "param_names",
    "parse_chain_id",
    "resource_bounds_for",
]


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'keeper.chain' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOME})
