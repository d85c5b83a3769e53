"""The keeper's Starknet client: reads the router and RiskEngine, sends v3 transactions.

Sending is split in two so the jobs module can persist the transaction hash between
the steps (crash safety):

    tx_hash = await chain.submit(calls, purpose="execute", before_send=persist_hash)
    outcome = await chain.wait(tx_hash)        # None = not known yet at the deadline
    outcome = await chain.receipt(tx_hash)     # one-shot check after a restart

``submit`` estimates the fee (v3 resource bounds), multiplies amounts and unit prices by
``fee_multiplier`` (as starknet-py's auto-estimate does with 1.5), refuses when the
resulting bound ``sum(max_amount * max_price_per_unit)`` exceeds ``max_fee_fri``, signs
with a nonce kept locally (read from the chain when unknown, resynced and retried once
on a nonce error) and computes the hash before broadcasting. A transaction the node
says would revert is never sent (``WouldRevertError``). A REVERTED receipt is never success:
``send``/``execute_allocation``/``register_dev_fact`` raise ``TransactionRevertedError``
(which carries the outcome and its fee), and ``TxOutcome.status`` says "reverted".

After ``close_for_shutdown()`` nothing is sent any more (reads and waits still work).

Every RPC call is bounded by a timeout; node failures become ``ChainError`` subclasses
with stable codes. Messages name the node as ``scheme://host[:port]`` only (``display_url``):
the rest of an RPC URL often holds the provider's key.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aiohttp
from marshmallow import ValidationError as SchemaError
from starknet_py.hash.selector import get_selector_from_name
from starknet_py.net.account.account import Account
from starknet_py.net.client_errors import ClientError
from starknet_py.net.client_models import (
    Call,
    EstimatedFee,
    PriceUnit,
    ResourceBoundsMapping,
    TransactionExecutionStatus,
    TransactionFinalityStatus,
)
from starknet_py.net.full_node_client import FullNodeClient
from starknet_py.net.http_client import ServerError
from starknet_py.net.signer.key_pair import KeyPair

from keeper.chain import views as view_decoding
from keeper.chain.codec import chain_name, encode_short_string, felts, parse_chain_id
from keeper.chain.errors import (
    CallFailedError,
    ChainUnreachableError,
    FeeAboveCeilingError,
    NonceError,
    ReceiptTimeoutError,
    SendUncertainError,
    ShuttingDownError,
    TransactionRejectedError,
    TransactionRevertedError,
    UnexpectedAnswerError,
    WouldRevertError,
    WrongChainError,
)
from keeper.chain.fees import max_fee_of, resource_bounds_for
from keeper.chain.governance import (
    KEEPER_PROPOSAL,
    PROPOSAL_FIELDS,
    RISK_ENGINE_PROPOSALS,
    PendingChange,
)
from keeper.chain.reverts import (
    CONTRACT_ERROR,
    CONTRACT_NOT_FOUND,
    TRANSACTION_EXECUTION_ERROR,
    TXN_HASH_NOT_FOUND,
    decode_revert_reason,
    error_text,
    is_http_failure,
    is_nonce_error,
    rpc_code,
)
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
from keeper.core.config import ChainConfig, Secrets
from keeper.core.errors import ChainError
from keeper.core.logs import display_url, get_logger
from prover.model import AllocationInputs, ModelParams, ProtocolInputs

_log = get_logger("keeper.chain.client")
_T = TypeVar("_T")

RPC_TIMEOUT_S = 30.0
POLL_INTERVAL_S = 1.0
_CONSISTENT_READ_ATTEMPTS = 3


class ChainClient:
    """Reads and transactions of one keeper account against one node."""

    def __init__(
        self,
        cfg: ChainConfig,
        secrets: Secrets,
        *,
        key_pair: KeyPair | None = None,
        rpc_timeout_s: float = RPC_TIMEOUT_S,
        poll_interval_s: float = POLL_INTERVAL_S,
    ) -> None:
        self._cfg = cfg
        self._chain_id = parse_chain_id(cfg.chain_id)
        self._router = int(cfg.router_address, 16)
        self._risk_engine = int(cfg.risk_engine_address, 16)
        self._client = FullNodeClient(node_url=cfg.rpc_url)
        self._endpoint = display_url(cfg.rpc_url)  # the URL may carry a provider key
        self._account = Account(
            address=int(cfg.account_address, 16),
            client=self._client,
            key_pair=key_pair if key_pair is not None else load_signer(cfg, secrets),
            chain=self._chain_id,
        )
        self._rpc_timeout_s = rpc_timeout_s
        self._poll_interval_s = poll_interval_s
        self._next_nonce: int | None = None
        self._submit_lock = asyncio.Lock()
        self._shutting_down = False

    @property
    def account_address(self) -> int:
        return int(self._account.address)

    @property
    def router_address(self) -> int:
        return self._router

    @property
    def rpc_url(self) -> str:
        """The full URL, for requests only: show ``display_url(rpc_url)`` instead."""
        return self._cfg.rpc_url

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    def close_for_shutdown(self) -> None:
        """From now on every submit raises ShuttingDownError. Reads and waits still work."""
        if not self._shutting_down:
            _log.info("chain.sending_disabled", reason="shutdown")
        self._shutting_down = True

    # -------------------------------------------------------------------- plumbing

    async def _rpc(self, what: str, call: Awaitable[_T], *, timeout_s: float | None = None) -> _T:
        """Await one node call with a deadline; transport failures become ChainUnreachableError.

        JSON-RPC errors (``ClientError`` with a JSON-RPC code) pass through for the caller.
        """
        limit = self._rpc_timeout_s if timeout_s is None else max(timeout_s, 0.001)
        try:
            async with asyncio.timeout(limit):
                return await call
        except TimeoutError:
            raise ChainUnreachableError(
                f"{what}: no answer from {self._endpoint} within {limit:g} s; check the "
                "node (or the RPC provider) is up"
            ) from None
        except aiohttp.ClientError as exc:
            raise ChainUnreachableError(
                f"{what}: cannot reach {self._endpoint} ({type(exc).__name__}: "
                f"{self._without_url(str(exc))}); "
                "check chain.rpc_url and that the node is up"
            ) from None
        except ClientError as exc:
            if is_http_failure(exc):
                raise ChainUnreachableError(
                    f"{what}: {self._endpoint} answered HTTP {exc.code}; check the node "
                    "or the RPC provider"
                ) from None
            raise
        except (ServerError, SchemaError, json.JSONDecodeError, KeyError) as exc:
            # KeyError: starknet-py indexes the answer before checking its shape.
            raise UnexpectedAnswerError(
                f"{what}: {self._endpoint} gave an answer that is not Starknet JSON-RPC "
                f"({type(exc).__name__}); is chain.rpc_url a Starknet node?"
            ) from None

    def _without_url(self, text: str) -> str:
        """``text`` (a library's error message) without the URL's key-bearing parts."""
        url = self._cfg.rpc_url
        parts = urlsplit(url)
        tail = url.split(parts.netloc, 1)[-1] if parts.netloc else url
        for piece in (url, url.rstrip("/"), tail, parts.path, parts.query, parts.netloc):
            if len(piece) > 1 and piece not in self._endpoint:
                text = text.replace(piece, "…")
        return text

    async def _view(self, to: int, function: str, calldata: Sequence[int] = ()) -> list[int]:
        call = Call(to_addr=to, selector=get_selector_from_name(function), calldata=list(calldata))
        try:
            result = await self._rpc(
                f"{function} on {to:#x}", self._client.call_contract(call, block_number="latest")
            )
        except ClientError as exc:
            detail = error_text(exc)
            if rpc_code(exc) == CONTRACT_NOT_FOUND:
                raise CallFailedError(
                    f"no contract at {to:#x} on {chain_name(self._chain_id)}: check the "
                    "configured addresses against the deployment"
                ) from None
            raise CallFailedError(
                f"view {function} on {to:#x} failed: {decode_revert_reason(detail)}"
            ) from None
        return [int(x) for x in result]

    async def _block_number(self) -> int:
        return int(await self._rpc("starknet_blockNumber", self._client.get_block_number()))

    async def _consistent(self, read: Callable[[], Awaitable[_T]]) -> tuple[_T, int]:
        """Run ``read`` (views at "latest") so that no block closed in between."""
        for _ in range(_CONSISTENT_READ_ATTEMPTS):
            before = await self._block_number()
            value = await read()
            if await self._block_number() == before:
                return value, before
        raise ChainError(
            f"the chain advanced during each of {_CONSISTENT_READ_ATTEMPTS} reads of the "
            "router state; retry later",
            code="unstable_reads",
        )

    # ------------------------------------------------------------------------ reads

    async def check_chain(self) -> ChainInfo:
        """Startup gate: the node answers and is on the configured chain."""
        actual = int(await self._rpc("starknet_chainId", self._client.get_chain_id()), 16)
        if actual != self._chain_id:
            raise WrongChainError(
                f"{self._endpoint} is on chain {chain_name(actual)}, but chain.chain_id is "
                f"{chain_name(self._chain_id)}: point chain.rpc_url at a "
                f"{chain_name(self._chain_id)} node or fix chain.chain_id"
            )
        spec = str(await self._rpc("starknet_specVersion", self._client.spec_version()))
        block = await self._block_number()
        info = ChainInfo(actual, chain_name(actual), spec, block)
        _log.info("chain.connected", chain=info.chain_name, spec_version=spec, block=block)
        return info

    async def router_state(self) -> RouterState:
        answers, block = await self._consistent(self._read_router)
        return view_decoding.router_state(answers, block)

    async def _read_router(self) -> list[list[int]]:
        names = view_decoding.ROUTER_STATE_VIEWS
        return list(await asyncio.gather(*(self._view(self._router, name) for name in names)))

    async def risk_inputs(self) -> RiskInputs:
        (protocols, params), block = await self._consistent(self._read_inputs)
        return RiskInputs(protocols, params, block)

    async def _read_inputs(self) -> tuple[tuple[ProtocolInputs, ...], ModelParams]:
        return view_decoding.risk_inputs(await self._view(self._risk_engine, "get_inputs"))

    async def inputs_commitment(self) -> int:
        raw = await self._view(self._risk_engine, "get_inputs_commitment")
        return int(view_decoding.decode_view("get_inputs_commitment", raw))

    async def allocation_inputs(self) -> tuple[AllocationInputs, RouterState]:
        """The allocation program's inputs for the router's current epoch, read at one block."""

        async def read() -> tuple[list[list[int]], tuple[tuple[ProtocolInputs, ...], ModelParams]]:
            answers, inputs = await asyncio.gather(self._read_router(), self._read_inputs())
            return answers, inputs

        (answers, (protocols, params)), block = await self._consistent(read)
        state = view_decoding.router_state(answers, block)
        if state.governance.risk_engine != self._risk_engine:
            raise ChainError(
                f"the router reads RiskEngine {state.governance.risk_engine:#x} but "
                f"chain.risk_engine_address is {self._risk_engine:#x}: fix the config",
                code="config_mismatch",
            )
        inputs = AllocationInputs(
            router=self._router,
            epoch=state.epoch,
            protocols=protocols,
            params=params,
            max_single_bps=state.governance.max_single_bps,
            min_diversification=state.governance.min_diversification,
        )
        return inputs, state

    async def is_fact_consumed(self, fact: int) -> bool:
        raw = await self._view(self._router, "is_fact_consumed", [fact])
        return bool(view_decoding.decode_view("is_fact_consumed", raw))

    async def fact_verifications(self, registry: int, fact: int) -> list[VerificationListElement]:
        """Every verification of ``fact`` (a list that grows with each registration:
        fine to read, never what the router pays to look through)."""
        raw = await self._view(registry, "get_all_verifications_for_fact_hash", [fact])
        return view_decoding.verifications(raw)

    async def get_verification(self, registry: int, verification_hash: int) -> Verification | None:
        """The one verification ``verification_hash`` names in ``registry`` (the lookup the
        router makes, constant cost), or None when the registry has none of that hash."""
        (key,) = felts([verification_hash], "verification hash")
        raw = await self._view(registry, "get_verification", [key])
        return view_decoding.verification(raw)

    async def is_rebalance_requested(self) -> bool:
        """Whether the router's owner requested a rebalance of the current epoch."""
        raw = await self._view(self._router, "is_rebalance_requested")
        return bool(view_decoding.decode_view("is_rebalance_requested", raw))

    async def pending_change(self, param: str, subject: int = 0) -> PendingChange | None:
        """The router's pending proposal of ``param`` (for 'keeper': of keeper ``subject``)."""
        raw = await self._view(
            self._router, "get_pending_change", [encode_short_string(param), subject]
        )
        return view_decoding.pending_change(param, subject, raw)

    async def risk_engine_pending_change(self, param: str) -> PendingChange | None:
        """RiskEngine's pending proposal of ``param`` (model_params, oracle, its delay)."""
        raw = await self._view(
            self._risk_engine, "get_pending_change", [encode_short_string(param), 0]
        )
        return view_decoding.pending_change(param, 0, raw, "risk_engine")

    async def pending_changes(self) -> list[PendingChange]:
        """Every pending proposal of a governance value, of this keeper's own flag, and of
        RiskEngine's model parameters, oracle and delay."""
        asked = [(param, 0) for param in PROPOSAL_FIELDS]
        asked.append((KEEPER_PROPOSAL, self.account_address))
        found = await asyncio.gather(
            *(self.pending_change(p, s) for p, s in asked),
            *(self.risk_engine_pending_change(p) for p in RISK_ENGINE_PROPOSALS),
        )
        return [change for change in found if change is not None]

    async def storage_at(self, contract: int, key: int) -> int:
        """Raw storage word ``key`` of ``contract`` at the latest block."""
        (address, slot) = felts([contract, key], "storage address and key")
        try:
            value = await self._rpc(
                f"storage {slot:#x} of {address:#x}",
                self._client.get_storage_at(address, slot, block_number="latest"),
            )
        except ClientError as exc:
            if rpc_code(exc) == CONTRACT_NOT_FOUND:
                raise CallFailedError(
                    f"no contract at {address:#x} on {chain_name(self._chain_id)}: check the "
                    "configured addresses against the deployment"
                ) from None
            raise CallFailedError(
                f"storage {slot:#x} of {address:#x}: {decode_revert_reason(error_text(exc))}"
            ) from None
        return int(value)

    async def call_view(self, to: int, function: str, calldata: Sequence[int] = ()) -> list[int]:
        """A raw view call (felts in, felts out) for the few reads not wrapped here."""
        return await self._view(to, function, calldata)

    # ----------------------------------------------------------------------- writes

    def execute_allocation_call(self, output: Sequence[int], verification_hash: int) -> Call:
        """``execute_allocation(output, verification_hash)``: the output and the ONE
        verification (in the router's registry) the router is to check it against."""
        values = felts(output, "allocation output")
        (verification,) = felts([verification_hash], "verification hash")
        return Call(
            to_addr=self._router,
            selector=get_selector_from_name("execute_allocation"),
            calldata=[len(values), *values, verification],
        )

    @staticmethod
    def register_fact_call(
        registry: int, fact: int, security_bits: int, verifier_config: VerifierConfig
    ) -> Call:
        (fact_felt,) = felts([fact], "fact hash")
        if not 0 <= security_bits < 2**32:
            raise ChainError(f"security bits {security_bits} do not fit a u32", code="bad_calldata")
        return Call(
            to_addr=registry,
            selector=get_selector_from_name("register_fact"),
            calldata=[fact_felt, security_bits, *verifier_config.felts()],
        )

    async def execute_allocation(
        self, output: Sequence[int], verification_hash: int, *, timeout_s: float | None = None
    ) -> TxOutcome:
        return await self.send(
            [self.execute_allocation_call(output, verification_hash)],
            purpose="execute_allocation",
            timeout_s=timeout_s,
        )

    async def register_dev_fact(
        self,
        registry: int,
        fact: int,
        security_bits: int,
        verifier_config: VerifierConfig,
        *,
        timeout_s: float | None = None,
        before_send: Callable[[int], Awaitable[None]] | None = None,
    ) -> TxOutcome:
        call = self.register_fact_call(registry, fact, security_bits, verifier_config)
        return await self.send(
            [call], purpose="register_dev_fact", timeout_s=timeout_s, before_send=before_send
        )

    async def send(
        self,
        calls: Sequence[Call],
        *,
        purpose: str,
        timeout_s: float | None = None,
        before_send: Callable[[int], Awaitable[None]] | None = None,
    ) -> TxOutcome:
        """submit + wait. Raises ReceiptTimeoutError when not final in time and
        TransactionRevertedError when it reverted: a returned outcome always succeeded."""
        tx_hash = await self.submit(calls, purpose=purpose, before_send=before_send)
        outcome = await self.wait(tx_hash, timeout_s)
        if outcome is None:
            limit = self._cfg.receipt_timeout_s if timeout_s is None else timeout_s
            raise ReceiptTimeoutError(
                f"{purpose} transaction {tx_hash:#x} has no final receipt after {limit:.0f} s; "
                "it may still be included: check it before sending again",
                tx_hash=tx_hash,
            )
        if not outcome.succeeded:
            raise TransactionRevertedError(outcome, purpose=purpose)
        return outcome

    async def estimate(self, calls: Sequence[Call], *, nonce: int | None = None) -> FeeQuote:
        """Fee estimate and the bound submit would use (raises WouldRevertError, NonceError...)."""
        if nonce is None:
            nonce = await self._nonce()
        return await self._quote(list(calls), nonce, purpose="estimate")

    async def estimate_sequence(
        self, transactions: Sequence[Sequence[Call]], *, purpose: str
    ) -> list[FeeQuote]:
        """Fee estimates of transactions to be sent one after another, each simulated on
        the state the ones before it leave (consecutive nonces, one starknet_estimateFee):
        what a registration's remaining steps and the execution will cost before the
        first of them is sent. Raises WouldRevertError when one of them would revert."""
        if not transactions:
            return []
        for attempt in (1, 2):
            try:
                estimates = await self._estimate_in_order(transactions, purpose)
                break
            except NonceError:
                self._next_nonce = None  # another sender used the account: re-read it
                if attempt == 2:
                    raise
        if not isinstance(estimates, list) or len(estimates) != len(transactions):
            raise UnexpectedAnswerError(
                f"fee estimate of {purpose}: {len(transactions)} transactions, answer {estimates!r}"
            )
        quotes = []
        for estimate in estimates:
            unit = (
                estimate.unit.value if isinstance(estimate.unit, PriceUnit) else str(estimate.unit)
            )
            bounds = resource_bounds_for(estimate, self._cfg.fee_multiplier)
            quotes.append(FeeQuote(int(estimate.overall_fee), max_fee_of(bounds), unit, bounds))
        return quotes

    async def _estimate_in_order(
        self, transactions: Sequence[Sequence[Call]], purpose: str
    ) -> Any:
        nonce = await self._nonce()
        zeros = ResourceBoundsMapping.init_with_zeros()
        unsigned = [
            await self._sign(list(calls), nonce + offset, zeros, purpose)
            for offset, calls in enumerate(transactions)
        ]
        try:
            return await self._rpc(
                f"fee estimate of {purpose}", self._account.estimate_fee(unsigned)
            )
        except ClientError as exc:
            raise self._classify(exc, purpose, stage="estimate") from None

    async def submit(
        self,
        calls: Sequence[Call],
        *,
        purpose: str,
        before_send: Callable[[int], Awaitable[None]] | None = None,
    ) -> int:
        """Estimate, check the ceiling, sign and broadcast; return the transaction hash.

        ``before_send(tx_hash)`` runs after signing and before broadcasting (persist the
        hash there: a crash after it leaves a hash that ``receipt`` can resolve).
        """
        self._refuse_if_shutting_down(purpose)
        call_list = list(calls)
        async with self._submit_lock:
            for attempt in (1, 2):
                nonce = await self._nonce()
                try:
                    return await self._submit_once(call_list, purpose, nonce, before_send)
                except NonceError as exc:
                    self._next_nonce = None
                    if attempt == 2:
                        raise
                    _log.warning(
                        "chain.nonce_resync", purpose=purpose, used_nonce=nonce, error=str(exc)
                    )
                except ChainError:
                    self._next_nonce = None  # whatever happened, re-read before the next send
                    raise
        raise AssertionError("unreachable")

    def _refuse_if_shutting_down(self, purpose: str) -> None:
        if self._shutting_down:
            raise ShuttingDownError(
                f"refusing to send a transaction during shutdown ({purpose}); it will be "
                "retried after restart"
            )

    async def _nonce(self) -> int:
        if self._next_nonce is None:
            self._next_nonce = int(
                await self._rpc(
                    "starknet_getNonce", self._account.get_nonce(block_number="pre_confirmed")
                )
            )
        return self._next_nonce

    async def _quote(self, calls: list[Call], nonce: int, *, purpose: str) -> FeeQuote:
        unsigned = await self._sign(calls, nonce, ResourceBoundsMapping.init_with_zeros(), purpose)
        try:
            estimate = await self._rpc(
                f"fee estimate of {purpose}", self._account.estimate_fee(unsigned)
            )
        except ClientError as exc:
            raise self._classify(exc, purpose, stage="estimate") from None
        if not isinstance(estimate, EstimatedFee):
            raise UnexpectedAnswerError(
                f"fee estimate of {purpose}: not one estimate ({estimate!r})"
            )
        unit = estimate.unit.value if isinstance(estimate.unit, PriceUnit) else str(estimate.unit)
        bounds = resource_bounds_for(estimate, self._cfg.fee_multiplier)
        return FeeQuote(int(estimate.overall_fee), max_fee_of(bounds), unit, bounds)

    async def _sign(
        self, calls: list[Call], nonce: int, bounds: ResourceBoundsMapping, purpose: str
    ) -> Any:
        return await self._rpc(
            f"signing {purpose}",
            self._account.sign_invoke_v3(calls, nonce=nonce, resource_bounds=bounds),
        )

    async def _submit_once(
        self,
        calls: list[Call],
        purpose: str,
        nonce: int,
        before_send: Callable[[int], Awaitable[None]] | None,
    ) -> int:
        quote = await self._quote(calls, nonce, purpose=purpose)
        if quote.unit != "FRI":
            raise ChainError(
                f"the node estimated {purpose} in {quote.unit}, not FRI: v3 transactions pay "
                "in STRK (FRI); is the node's RPC version supported?",
                code="fee_unit",
            )
        if quote.max_fee > self._cfg.max_fee_fri:
            raise FeeAboveCeilingError(
                f"refusing to send {purpose}: its fee bound {quote.max_fee} FRI (estimate "
                f"{quote.estimated_fee} FRI x fee_multiplier {self._cfg.fee_multiplier} on "
                f"amounts and prices) exceeds chain.max_fee_fri = {self._cfg.max_fee_fri} FRI; "
                "raise the ceiling if the network's fees really are this high",
                max_fee=quote.max_fee,
                ceiling=self._cfg.max_fee_fri,
                estimated_fee=quote.estimated_fee,
            )
        signed = await self._sign(calls, nonce, quote.resource_bounds, purpose)
        tx_hash = int(signed.calculate_hash(self._chain_id))
        if before_send is not None:
            await before_send(tx_hash)
        self._refuse_if_shutting_down(purpose)  # shutdown may have begun while we estimated
        try:
            sent = await self._client_send(signed, purpose, tx_hash)
        except ClientError as exc:
            raise self._classify(exc, purpose, stage="send") from None
        self._next_nonce = nonce + 1
        if int(sent.transaction_hash) != tx_hash:
            _log.warning(
                "chain.tx_hash_mismatch", computed=hex(tx_hash), node=hex(sent.transaction_hash)
            )
            tx_hash = int(sent.transaction_hash)
        _log.info(
            "chain.tx_submitted",
            purpose=purpose,
            tx_hash=hex(tx_hash),
            nonce=nonce,
            estimated_fee_fri=quote.estimated_fee,
            max_fee_fri=quote.max_fee,
        )
        return tx_hash

    async def _client_send(self, signed: Any, purpose: str, tx_hash: int) -> Any:
        try:
            return await self._rpc(f"sending {purpose}", self._client.send_transaction(signed))
        except (ChainUnreachableError, UnexpectedAnswerError) as exc:
            # The request may have reached the node before its answer was lost.
            raise SendUncertainError(
                f"{purpose} transaction {tx_hash:#x} may or may not have been sent ({exc}); "
                "check its receipt before sending again",
                tx_hash=tx_hash,
            ) from None

    def _classify(self, exc: ClientError, purpose: str, *, stage: str) -> ChainError:
        detail = error_text(exc)
        code = rpc_code(exc)
        if is_nonce_error(exc):
            return NonceError(
                f"{purpose}: the node rejected the nonce ({decode_revert_reason(detail)})"
            )
        if stage == "estimate" and code in (CONTRACT_ERROR, TRANSACTION_EXECUTION_ERROR):
            reason = decode_revert_reason(detail)
            return WouldRevertError(
                f"{purpose} would revert: {reason} (nothing was sent)", reason=reason
            )
        return TransactionRejectedError(
            f"the node refused {purpose} at {stage} (code {exc.code}): "
            f"{decode_revert_reason(detail)}"
        )

    # ------------------------------------------------------------------------ receipts

    async def receipt(self, tx_hash: int, *, timeout_s: float | None = None) -> TxOutcome | None:
        """The final outcome, or None while the node does not know the hash or the
        transaction is not in an accepted block yet."""
        try:
            receipt = await self._rpc(
                f"receipt of {tx_hash:#x}",
                self._client.get_transaction_receipt(tx_hash),
                timeout_s=timeout_s,
            )
        except ClientError as exc:
            if rpc_code(exc) == TXN_HASH_NOT_FOUND:
                return None
            raise ChainError(
                f"receipt of {tx_hash:#x}: {decode_revert_reason(error_text(exc))}",
                code="receipt_failed",
            ) from None
        if receipt.finality_status not in (
            TransactionFinalityStatus.ACCEPTED_ON_L2,
            TransactionFinalityStatus.ACCEPTED_ON_L1,
        ):
            return None
        reverted = receipt.execution_status == TransactionExecutionStatus.REVERTED
        raw = receipt.revert_reason or ""
        fee = receipt.actual_fee
        unit = fee.unit.value if isinstance(fee.unit, PriceUnit) else str(fee.unit)
        return TxOutcome(
            tx_hash=int(receipt.transaction_hash),
            status="reverted" if reverted else "succeeded",
            revert_reason=(decode_revert_reason(raw) if raw else "reverted (no reason given)")
            if reverted
            else None,
            actual_fee_amount=int(fee.amount),
            actual_fee_unit=unit,
            block_number=receipt.block_number,
            revert_detail=raw[:4000] if reverted else None,
        )

    async def wait(self, tx_hash: int, timeout_s: float | None = None) -> TxOutcome | None:
        """Poll for the final outcome until the deadline; None if still unknown by then.

        A node that is briefly unreachable does not end the wait early.
        """
        loop = asyncio.get_running_loop()
        limit = self._cfg.receipt_timeout_s if timeout_s is None else timeout_s
        deadline = loop.time() + limit
        while True:
            remaining = deadline - loop.time()
            try:
                outcome = await self.receipt(tx_hash, timeout_s=min(self._rpc_timeout_s, remaining))
            except (ChainUnreachableError, UnexpectedAnswerError) as exc:
                _log.warning("chain.receipt_poll_failed", tx_hash=hex(tx_hash), error=str(exc))
                outcome = None
            if outcome is not None:
                _log.info(
                    "chain.tx_final",
                    tx_hash=hex(tx_hash),
                    status=outcome.status,
                    revert_reason=outcome.revert_reason,
                    fee=outcome.actual_fee_amount,
                    unit=outcome.actual_fee_unit,
                    block=outcome.block_number,
                )
                return outcome
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            await asyncio.sleep(min(self._poll_interval_s, remaining))

    async def is_keeper(self) -> bool:
        """Whether the router lets this keeper's account execute (a start-up gate)."""
        raw = await self._view(self._router, "is_keeper", [self.account_address])
        return bool(view_decoding.decode_view("is_keeper", raw))

    async def latest_block_timestamp(self) -> int:
        """The chain's clock: the router measures intervals in block timestamps, and so
        must the keeper (a devnet's clock, for one, is not the wall clock)."""
        block = await self._rpc("starknet_getBlock", self._client.get_block(block_number="latest"))
        return int(block.timestamp)
