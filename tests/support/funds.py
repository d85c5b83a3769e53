"""An account's STRK on a devnet: read it, drain it (a real transfer of the fee token to
another account), fund it again (devnet_mint)."""

from __future__ import annotations

from typing import Any

from starknet_py.net.client_models import ResourceBoundsMapping

from keeper.chain.balance import STRK_FEE_TOKEN, balance_at
from keeper.chain.deploy import make_call
from keeper.chain.fees import max_fee_of, resource_bounds_for
from keeper.devnet.node import Devnet

__all__ = ["STRK_FEE_TOKEN", "balance_at", "drain", "mint"]


def mint(devnet: Devnet, address: int, fri: int) -> None:
    """Fund ``address`` with ``fri`` STRK-FRI (starknet-devnet's devnet_mint)."""
    devnet.rpc("devnet_mint", {"address": hex(address), "amount": fri, "unit": "FRI"})


async def drain(devnet: Devnet, account: Any, *, to: int, keep_fri: int) -> int:
    """Transfer ``account``'s STRK to ``to`` so that about ``keep_fri`` remains (plus what
    its own fee bound left over, a few FRI at most); returns the balance after."""
    address = int(account.address)
    balance = await balance_at(devnet.url, address)
    nonce = int(await account.get_nonce(block_number="pre_confirmed"))

    def transfer(amount: int) -> Any:
        return make_call(STRK_FEE_TOKEN, "transfer", [to, amount % 2**128, amount >> 128])

    unsigned = await account.sign_invoke_v3(
        [transfer(1)], nonce=nonce, resource_bounds=ResourceBoundsMapping.init_with_zeros()
    )
    estimate = await account.estimate_fee(unsigned)
    # The bound the transfer is signed with, at the estimate itself (no margin): what
    # must remain for its fee, and all but a few FRI of it is charged.
    bounds = resource_bounds_for(estimate, 1.0)
    amount = balance - max_fee_of(bounds) - keep_fri
    if amount <= 0:
        return balance
    signed = await account.sign_invoke_v3([transfer(amount)], nonce=nonce, resource_bounds=bounds)
    sent = await account.client.send_transaction(signed)
    receipt = await account.client.wait_for_tx(sent.transaction_hash, check_interval=0.05)
    assert getattr(receipt, "revert_reason", None) is None, receipt.revert_reason
    return await balance_at(devnet.url, address)
