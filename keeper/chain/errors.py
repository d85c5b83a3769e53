"""The chain room's errors: each a ``ChainError`` (or, for the signer, a ``KeeperError``)
with a stable ``code`` and a message that tells the operator what to do."""

from __future__ import annotations

from typing import TYPE_CHECKING

from keeper.core.errors import EX_CONFIG, ChainError, KeeperError

if TYPE_CHECKING:
    from keeper.chain.values import TxOutcome


class SignerError(KeeperError):
    """The account key cannot be loaded; an operator fix, so the daemon does not restart."""

    code = "signer"
    exit_code = EX_CONFIG


class ChainUnreachableError(ChainError):
    code = "rpc_unreachable"


class UnexpectedAnswerError(ChainError):
    """The node or a contract answered something of the wrong shape."""

    code = "unexpected_answer"


class WrongChainError(ChainError):
    code = "wrong_chain"


class CallFailedError(ChainError):
    """A view call failed (contract missing, wrong address, view panicked)."""

    code = "call_failed"


class FeeAboveCeilingError(ChainError):
    code = "fee_above_ceiling"

    def __init__(self, message: str, *, max_fee: int, ceiling: int, estimated_fee: int) -> None:
        super().__init__(message)
        self.max_fee = max_fee
        self.ceiling = ceiling
        self.estimated_fee = estimated_fee


class WouldRevertError(ChainError):
    """The fee estimate executed the calls and they failed: nothing was sent."""

    code = "would_revert"

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class TransactionRevertedError(ChainError):
    """The transaction was included and REVERTED; its fee was still paid."""

    code = "reverted"

    def __init__(self, outcome: TxOutcome, *, purpose: str) -> None:
        super().__init__(
            f"{purpose} transaction {outcome.tx_hash:#x} reverted in block "
            f"{outcome.block_number}: {outcome.revert_reason} (fee paid: "
            f"{outcome.actual_fee_amount} {outcome.actual_fee_unit})"
        )
        self.outcome = outcome
        self.reason = outcome.revert_reason or ""


class NonceError(ChainError):
    code = "nonce"


class ReceiptTimeoutError(ChainError):
    code = "receipt_timeout"

    def __init__(self, message: str, *, tx_hash: int) -> None:
        super().__init__(message)
        self.tx_hash = tx_hash


class TransactionRejectedError(ChainError):
    """The node refused the transaction (validation, balance, resource bounds...)."""

    code = "rejected"


class SendUncertainError(ChainError):
    """The broadcast's answer was lost: the transaction may or may not have been sent."""

    code = "send_uncertain"

    def __init__(self, message: str, *, tx_hash: int) -> None:
        super().__init__(message)
        self.tx_hash = tx_hash


class ShuttingDownError(ChainError):
    code = "shutting_down"
