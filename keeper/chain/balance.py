"""The account's fee-token (STRK) balance, and whether it pays for a list of transactions.

v3 transactions pay in STRK (FRI, 10^18 per STRK); the fee token is the same contract on
mainnet, Sepolia and starknet-devnet (``STRK_FEE_TOKEN``). The balance is the token's
``balance_of`` (a u256: low and high felts).

Whether a balance pays for transactions sent in order (pure): each is expected to cost
its fee estimate times a margin (the keeper's ``chain.fee_multiplier``), and when each is
sent the account must still hold its whole fee bound (a node refuses a transaction whose
bound the balance does not cover). ``required_balance`` is the least balance meeting both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_UP, Decimal
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from keeper.core.errors import ChainError

if TYPE_CHECKING:
    from keeper.chain.client import ChainClient

STRK_FEE_TOKEN = 0x04718F5A0FC34CC1AF16A1CDEE98FFB20C31F5CD61D6AB07201858F4287C938D
FRI_PER_STRK = 10**18


@dataclass(frozen=True)
class TxFee:
    """One transaction still to send: its fee estimate and the bound it is signed with."""

    estimated_fee: int  # FRI
    max_fee: int  # FRI: sum(max_amount * max_price_per_unit) of its resource bounds


def expected_charge(estimated_fee: int, margin: float) -> int:
    """What a transaction is expected to cost: its estimate times the margin, rounded up
    (exact: FRI amounts exceed a float's integer precision)."""
    if estimated_fee < 0:
        raise ValueError(f"a fee estimate is not negative, got {estimated_fee}")
    factor = Fraction(margin).limit_denominator(10**6)
    if factor < 1:
        raise ValueError(f"the margin must be at least 1, got {margin}")
    return -(-estimated_fee * factor.numerator // factor.denominator)


def required_balance(fees: Sequence[TxFee], margin: float) -> int:
    """The least balance that pays for every one of ``fees``, sent in order: the sum of
    their expected charges, and at each one its whole bound on top of what the ones
    before it are expected to have cost. 0 for no transaction."""
    required = 0
    spent = 0
    for fee in fees:
        if fee.max_fee < 0:
            raise ValueError(f"a fee bound is not negative, got {fee.max_fee}")
        required = max(required, spent + fee.max_fee)
        spent += expected_charge(fee.estimated_fee, margin)
    return max(required, spent)


def strk_decimal(fri: int, *, places: int = 6, up: bool = False) -> str:
    """FRI as STRK with ``places`` decimals, rounded down (up with ``up``: a requirement
    must never read smaller than it is)."""
    quantum = Decimal(1).scaleb(-places)
    value = (Decimal(fri) / FRI_PER_STRK).quantize(quantum, ROUND_UP if up else ROUND_DOWN)
    return f"{value:f}"


def strk(fri: int, *, up: bool = False) -> str:
    return f"{strk_decimal(fri, up=up)} STRK"


def u256(raw: Sequence[int]) -> int:
    """A Cairo u256 from its two felts (low, high)."""
    if len(raw) != 2 or not all(0 <= part < 2**128 for part in raw):
        raise ChainError(
            f"balance_of answered {list(raw)!r}, not a u256 (low, high): is the fee token "
            "address right?",
            code="unexpected_answer",
        )
    return int(raw[0]) + (int(raw[1]) << 128)


async def fee_token_balance(
    chain: ChainClient, *, token: int = STRK_FEE_TOKEN, account: int | None = None
) -> int:
    """The FRI balance of the keeper's account (or ``account``) at the latest block."""
    owner = chain.account_address if account is None else account
    return u256(await chain.call_view(token, "balance_of", [owner]))


async def balance_at(rpc_url: str, account: int, *, token: int = STRK_FEE_TOKEN) -> int:
    """The FRI balance of ``account``, for tools without a signing client (``status``,
    ``deploy --dry-run``). Node errors pass through as starknet-py raises them."""
    from starknet_py.hash.selector import get_selector_from_name
    from starknet_py.net.client_models import Call
    from starknet_py.net.full_node_client import FullNodeClient

    client: Any = FullNodeClient(node_url=rpc_url)
    call = Call(to_addr=token, selector=get_selector_from_name("balance_of"), calldata=[account])
    return u256([int(v) for v in await client.call_contract(call, block_number="latest")])


@dataclass(frozen=True)
class Affordability:
    """Whether a balance pays for a run's transactions (``deploy --dry-run``)."""

    balance_fri: int
    required_fri: int
    estimated: int  # transactions with a fee estimate
    unestimated: int  # transactions whose fee could not be estimated beforehand

    @property
    def can_pay(self) -> bool:
        return self.balance_fri >= self.required_fri

    def describe(self, account: int) -> str:
        shortfall = self.required_fri - self.balance_fri
        head = (
            f"account {account:#x} holds {strk(self.balance_fri)}; the {self.estimated} "
            f"estimated transaction(s) need {strk(self.required_fri, up=True)} (estimates x "
            "fee multiplier, each one's whole fee bound available when it is sent)"
        )
        verdict = (
            ": it can pay for them"
            if self.can_pay
            else f": it CANNOT pay for them, {strk(shortfall, up=True)} short; fund it first"
        )
        tail = (
            f"; {self.unestimated} more could not be estimated before the earlier ones are "
            "sent: leave room for them"
            if self.unestimated
            else ""
        )
        return head + verdict + tail


def affordability(
    balance_fri: int, fees: Sequence[TxFee | None], margin: float
) -> Affordability:
    """``fees`` in sending order, None for a transaction without an estimate. Pure."""
    known = [fee for fee in fees if fee is not None]
    return Affordability(
        balance_fri=balance_fri,
        required_fri=required_balance(known, margin),
        estimated=len(known),
        unestimated=len(fees) - len(known),
    )


__all__ = [
    "FRI_PER_STRK",
    "STRK_FEE_TOKEN",
    "Affordability",
    "TxFee",
    "affordability",
    "balance_at",
    "expected_charge",
    "fee_token_balance",
    "required_balance",
    "strk",
    "strk_decimal",
    "u256",
]
