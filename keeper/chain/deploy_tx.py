"""A deploy's transactions: estimated, capped, journalled before broadcast, waited for; or
only listed with their fees in a dry run (``PlannedTx``)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from keeper.chain.deploy_artifacts import (
    POLL_S,
    ContractArtifact,
)
from keeper.chain.deploy_params import (
    FeePolicy,
)
from keeper.chain.errors import (
    FeeAboveCeilingError,
    ReceiptTimeoutError,
    WouldRevertError,
)
from keeper.chain.fees import max_fee_of, resource_bounds_for
from keeper.chain.reverts import TXN_HASH_NOT_FOUND, decode_revert_reason, error_text, rpc_code
from keeper.core.errors import ChainError

# ---------------------------------------------------------------------------- transactions


@dataclass
class PlannedTx:
    """One transaction of a run: sent (``tx_hash``) or, in a dry run, estimated only."""

    kind: Literal["declare", "deploy", "invoke"]
    target: str  # what it acts on: a class, a contract to deploy, a contract's functions
    summary: str  # its calldata, summarised
    sender: int
    estimated_fee: int | None = None  # FRI
    max_fee: int | None = None  # the bound it is (would be) sent with
    note: str = ""  # why no estimate (depends on an earlier transaction of this run)
    problem: str = ""  # dry run: why a real run would stop here
    tx_hash: int | None = None
    actual_fee: int | None = None
    block_number: int | None = None


class Sender:
    """One account's transactions: v3 bounds from the estimate (``FeePolicy``), the
    ceiling enforced, the hash journaled before broadcast, the receipt awaited. In a dry
    run only the estimates are made."""

    def __init__(
        self,
        account: Any,
        *,
        chain_id: int,
        fees: FeePolicy,
        dry_run: bool,
        receipt_timeout_s: float,
        journal: Callable[[dict[str, Any] | None], None],
        planned: list[PlannedTx],
    ) -> None:
        self.account = account
        self.address = int(account.address)
        self._chain_id = chain_id
        self._fees = fees
        self.dry_run = dry_run
        self.receipt_timeout_s = receipt_timeout_s
        self._journal = journal
        self.planned = planned

    async def declare(self, artifact: ContractArtifact, casm_hash: int, class_hash: int) -> None:
        sierra_felts = len(json.loads(artifact.sierra).get("sierra_program", []))
        planned = PlannedTx(
            "declare",
            f"class {artifact.name} {class_hash:#x}",
            f"Sierra {sierra_felts} felts, compiled class hash {casm_hash:#x}",
            self.address,
        )

        async def build(nonce: int, bounds: Any) -> Any:
            return await self.account.sign_declare_v3(
                compiled_contract=artifact.sierra,
                compiled_class_hash=casm_hash,
                nonce=nonce,
                resource_bounds=bounds,
            )

        await self._run(planned, build)

    async def invoke(
        self,
        calls: list[Any],
        *,
        kind: Literal["deploy", "invoke"],
        target: str,
        summary: str,
        depends_on: str | None = None,
    ) -> PlannedTx:
        planned = PlannedTx(kind, target, summary, self.address)
        if depends_on is not None and self.dry_run:
            planned.note = f"fee not estimable before {depends_on} (a real run sends that first)"
            self.planned.append(planned)
            return planned

        async def build(nonce: int, bounds: Any) -> Any:
            return await self.account.sign_invoke_v3(calls, nonce=nonce, resource_bounds=bounds)

        await self._run(planned, build)
        return planned

    async def _run(self, planned: PlannedTx, build: Callable[[int, Any], Awaitable[Any]]) -> None:
        from starknet_py.net.client_models import ResourceBoundsMapping

        nonce = int(await self.account.get_nonce(block_number="pre_confirmed"))
        estimate = await self._estimate(planned, await build(nonce, _zero_bounds()))
        if estimate is None:  # dry run: the problem is recorded
            self.planned.append(planned)
            return
        bounds: ResourceBoundsMapping = resource_bounds_for(estimate, self._fees.multiplier)
        planned.estimated_fee, planned.max_fee = int(estimate.overall_fee), max_fee_of(bounds)
        if planned.max_fee > self._fees.max_fee_fri:
            message = (
                f"{planned.kind} {planned.target}: its fee bound {planned.max_fee} FRI "
                f"(estimate {planned.estimated_fee} FRI x fee_multiplier "
                f"{self._fees.multiplier}) exceeds max_fee_fri = {self._fees.max_fee_fri} FRI; "
                "raise [fees] max_fee_fri (or --max-fee-fri) if fees really are this high"
            )
            if not self.dry_run:
                raise FeeAboveCeilingError(
                    "refusing to send " + message,
                    max_fee=planned.max_fee,
                    ceiling=self._fees.max_fee_fri,
                    estimated_fee=planned.estimated_fee,
                )
            planned.problem = message
        if self.dry_run:
            self.planned.append(planned)
            return
        await self._send(planned, await build(nonce, bounds), nonce)

    async def _estimate(self, planned: PlannedTx, unsigned: Any) -> Any:
        from starknet_py.net.client_errors import ClientError

        try:
            estimate = await self.account.estimate_fee(unsigned)
        except ClientError as exc:
            reason = decode_revert_reason(error_text(exc))
            if not self.dry_run:
                raise WouldRevertError(
                    f"{planned.kind} {planned.target} would fail: {reason} (nothing was sent)",
                    reason=reason,
                ) from None
            planned.problem = f"the fee estimate failed: {reason}"
            return None
        unit = getattr(estimate.unit, "value", str(estimate.unit))
        if unit != "FRI":
            raise ChainError(
                f"the node estimated {planned.target} in {unit}, not FRI: v3 transactions pay "
                "in STRK; is the node's RPC version supported?",
                code="fee_unit",
            )
        return estimate

    async def _send(self, planned: PlannedTx, signed: Any, nonce: int) -> None:
        from starknet_py.net.client_errors import ClientError

        tx_hash = int(signed.calculate_hash(self._chain_id))
        what = f"{planned.kind} {planned.target}"
        self._journal(
            {"tx_hash": hex(tx_hash), "nonce": nonce, "sender": hex(self.address), "what": what}
        )
        try:
            if planned.kind == "declare":
                await self.account.client.declare(transaction=signed)
            else:
                await self.account.client.send_transaction(signed)
        except ClientError as exc:
            self._journal(None)  # refused by the node: nothing is in flight
            raise ChainError(
                f"the node refused {what}: {_declare_hint(decode_revert_reason(error_text(exc)))}",
                code="rejected",
            ) from None
        planned.tx_hash = tx_hash
        receipt = await wait_for_receipt(self.account.client, tx_hash, self.receipt_timeout_s, what)
        self._journal(None)
        planned.actual_fee = int(receipt.actual_fee.amount)
        planned.block_number = receipt.block_number
        self.planned.append(planned)
        if receipt.revert_reason is not None or _reverted(receipt):
            raise ChainError(
                f"{what} (tx {tx_hash:#x}) reverted: "
                f"{decode_revert_reason(receipt.revert_reason or '')} "
                f"(fee paid: {planned.actual_fee} FRI)",
                code="reverted",
            )


def _zero_bounds() -> Any:
    from starknet_py.net.client_models import ResourceBoundsMapping

    return ResourceBoundsMapping.init_with_zeros()


def _reverted(receipt: Any) -> bool:
    return str(getattr(receipt.execution_status, "value", receipt.execution_status)) == "REVERTED"


def _declare_hint(reason: str) -> str:
    if "CompiledClassHashMismatch" in reason or "compiled class hash" in reason.lower():
        return (
            f"{reason} (the network compiles Sierra to CASM with another compiler version "
            "than the one that built contracts/target: the declared compiled class hash must "
            "be the network's; see contracts/README.md, Build)"
        )
    return reason


async def wait_for_receipt(client: Any, tx_hash: int, timeout_s: float, what: str) -> Any:
    """The receipt once the transaction is accepted on L2; ReceiptTimeoutError after
    ``timeout_s`` (the journal keeps its hash: the next run settles it)."""
    from starknet_py.net.client_errors import ClientError

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        try:
            receipt = await client.get_transaction_receipt(tx_hash)
        except ClientError as exc:
            if rpc_code(exc) != TXN_HASH_NOT_FOUND:
                raise
            receipt = None
        status = getattr(getattr(receipt, "finality_status", None), "value", "")
        if receipt is not None and status in ("ACCEPTED_ON_L2", "ACCEPTED_ON_L1"):
            return receipt
        if loop.time() >= deadline:
            raise ReceiptTimeoutError(
                f"{what} (tx {tx_hash:#x}) is not accepted after {timeout_s:.0f} s; it may "
                "still be included: run the same deploy again (it settles this transaction "
                "first)",
                tx_hash=tx_hash,
            )
        await asyncio.sleep(POLL_S)
