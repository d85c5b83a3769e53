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
with stable codes.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal, TypeVar

import aiohttp
from marshmallow import ValidationError as SchemaError
from starknet_py.hash.selector import get_selector_from_name
from starknet_py.net.account.account import Account
from starknet_py.net.client_errors import ClientError
from starknet_py.net.client_models import (
    Call,
    EstimatedFee,
    PriceUnit,
    ResourceBounds,
    ResourceBoundsMapping,
    TransactionExecutionStatus,
    TransactionFinalityStatus,
)
from starknet_py.net.full_node_client import FullNodeClient
from starknet_py.net.http_client import ServerError
from starknet_py.net.signer.key_pair import KeyPair

from keeper.chain.governance import GovernanceParams
from keeper.core.config import ChainConfig, Secrets
from keeper.core.errors import ChainError, KeeperError
from keeper.core.logs import get_logger
from prover.model import AllocationInputs, ModelParams, ProtocolInputs

FIELD_PRIME = 2**251 + 17 * 2**192 + 1
# Order of the STARK curve's generator: a private key is in 1..CURVE_ORDER-1.
CURVE_ORDER = 0x800000000000010FFFFFFFFFFFFFFFFB781126DCAE7B2321E66A241ADC64D2F
_SHORT_STRING_MAX = 31

_log = get_logger("keeper.chain.client")
_T = TypeVar("_T")


# ------------------------------------------------------------------------------- errors


class SignerError(KeeperError):
    """The account key cannot be loaded; an operator fix, so the daemon does not restart."""

    code = "signer"
    exit_code = 78  # EX_CONFIG


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


# ------------------------------------------------------------------------------- values


@dataclass(frozen=True)
class ChainInfo:
    chain_id: int
    chain_name: str  # the short string when the id is one, else hex
    spec_version: str
    block_number: int


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


@dataclass(frozen=True)
class Verification:
    verification_hash: int
    security_bits: int
    verifier_config: VerifierConfig


@dataclass(frozen=True)
class RouterState:
    epoch: int
    allocation: tuple[int, ...]
    governance: GovernanceParams
    last_execution_timestamp: int
    block_number: int


@dataclass(frozen=True)
class RiskInputs:
    protocols: tuple[ProtocolInputs, ...]
    params: ModelParams
    block_number: int


@dataclass(frozen=True)
class TxOutcome:
    """A transaction's final (ACCEPTED_ON_L2 or L1) receipt."""

    tx_hash: int
    status: Literal["succeeded", "reverted"]
    revert_reason: str | None  # decoded (decode_revert_reason); None when succeeded
    actual_fee_amount: int
    actual_fee_unit: str  # "FRI" or "WEI"
    block_number: int | None
    revert_detail: str | None = None  # the node's raw text, for the log

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"


@dataclass(frozen=True)
class FeeQuote:
    estimated_fee: int
    max_fee: int
    unit: str
    resource_bounds: ResourceBoundsMapping


# ------------------------------------------------------------------------- pure helpers


def encode_short_string(text: str) -> int:
    data = text.encode("ascii")
    if len(data) > _SHORT_STRING_MAX:
        raise ValueError(f"{text!r} is longer than {_SHORT_STRING_MAX} characters")
    return int.from_bytes(data, "big")


def decode_short_string(value: int) -> str | None:
    """The printable ASCII text a felt encodes, or None when it is not one."""
    if value <= 0 or value >= 2**248:
        return None
    data = value.to_bytes((value.bit_length() + 7) // 8, "big")
    if all(0x20 <= b < 0x7F for b in data):
        return data.decode("ascii")
    return None


def parse_chain_id(text: str) -> int:
    """'SN_SEPOLIA' (a short string) or '0x534e5f5345504f4c4941' (hex) -> int."""
    value = text.strip()
    if value.lower().startswith("0x"):
        return int(value, 16)
    return encode_short_string(value)


def chain_name(chain_id: int) -> str:
    return decode_short_string(chain_id) or hex(chain_id)


# Markers every Cairo 1 failure chain carries; they say nothing about the cause.
_NOISE = frozenset(
    {
        "ENTRYPOINT_FAILED",
        "argent/multicall-failed",
        "Execution failed",
    }
)
# `0x6f75...` optionally followed by its own rendering `('output ...')`.
_FELT_RE = re.compile(r"0x([0-9a-fA-F]{1,64})(?:\s*\('((?:[^'\\]|\\.)*)'\))?")
# Cairo's ByteArray panics are rendered as a quoted string.
_BYTE_ARRAY_RE = re.compile(r'"((?:[^"\\]|\\.)*)"')
_FAILURE_REASON_RE = re.compile(r"Failure reason:\s*(.+)", re.DOTALL)
_MAX_FALLBACK = 300


def decode_revert_reason(text: str) -> str:
    """The readable reason in a node's revert/execution-error text.

    Cairo panics reach us as felts (``0x6f75747075742065706f6368...``), sometimes already
    rendered (``0x... ('output epoch != current epoch')``), wrapped in one "Error in
    contract" layer per call frame and followed by ENTRYPOINT_FAILED markers. The first
    short string that is not such a marker is the cause; several are joined with "; ".
    Without any, the text's last meaningful line is returned, shortened.
    """
    reasons: list[str] = []

    def keep(reason: str) -> None:
        reason = reason.strip()
        if reason and reason not in _NOISE and reason not in reasons:
            reasons.append(reason)

    for match in _FELT_RE.finditer(text):
        digits, rendered = match.group(1), match.group(2)
        if rendered is not None:
            keep(rendered)
            continue
        decoded = decode_short_string(int(digits, 16))
        # A bare felt counts only when it clearly is text, not an address or a number.
        if decoded is not None and len(decoded) >= 3 and any(c.isalpha() for c in decoded):
            keep(decoded)
    if not reasons:
        for match in _BYTE_ARRAY_RE.finditer(text):
            keep(match.group(1))
    if reasons:
        return "; ".join(reasons)
    return _fallback_reason(text)


def _fallback_reason(text: str) -> str:
    failure = _FAILURE_REASON_RE.search(text)
    body = failure.group(1) if failure else text
    lines = [line.strip() for line in body.splitlines() if line.strip()]
    meaningful = [ln for ln in lines if not ln.startswith(("Error in contract", "Error at pc"))]
    reason = (meaningful or lines or ["(no reason given)"])[-1].rstrip(".")
    if len(reason) > _MAX_FALLBACK:
        reason = reason[: _MAX_FALLBACK - 1] + "…"
    return reason


def resource_bounds_for(estimate: EstimatedFee, multiplier: float) -> ResourceBoundsMapping:
    """Amounts and unit prices of the estimate, each multiplied by ``multiplier`` (rounded
    up, in exact arithmetic: prices in FRI exceed a float's integer precision)."""
    factor = Fraction(multiplier).limit_denominator(10**6)

    def scaled(value: int) -> int:
        return -(-int(value) * factor.numerator // factor.denominator)

    def bound(amount: int, price: int) -> ResourceBounds:
        return ResourceBounds(max_amount=scaled(amount), max_price_per_unit=scaled(price))

    return ResourceBoundsMapping(
        l1_gas=bound(estimate.l1_gas_consumed, estimate.l1_gas_price),
        l1_data_gas=bound(estimate.l1_data_gas_consumed, estimate.l1_data_gas_price),
        l2_gas=bound(estimate.l2_gas_consumed, estimate.l2_gas_price),
    )


def max_fee_of(bounds: ResourceBoundsMapping) -> int:
    """The most a transaction with these bounds can be charged (tip 0)."""
    return sum(
        int(r.max_amount) * int(r.max_price_per_unit)
        for r in (bounds.l1_gas, bounds.l1_data_gas, bounds.l2_gas)
    )


def _stringify_error(exc: ClientError) -> str:
    """The error's message and the texts inside its structured ``data`` (RPC 0.8+ nests
    one ``{contract_address, class_hash, selector, error}`` per call frame)."""
    message = str(exc.message)
    if not isinstance(exc.data, dict | list):
        return message
    message = message.split(" Data: ", 1)[0]  # starknet-py appends the data's repr
    texts: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key not in _FRAME_KEYS:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)
        elif isinstance(node, str):
            texts.append(node)

    walk(exc.data)
    return "\n".join([message, *texts])


_FRAME_KEYS = frozenset({"contract_address", "class_hash", "selector"})
_NONCE_RE = re.compile(
    r"invalid\s*transaction\s*nonce|InvalidTransactionNonce|nonce is invalid"
    r"|nonce.{0,40}(?:got|expected)",
    re.IGNORECASE,
)
# JSON-RPC error codes (Starknet spec) we treat specially.
_TXN_HASH_NOT_FOUND = 29
_CONTRACT_NOT_FOUND = 20
_CONTRACT_ERROR = 40
_TRANSACTION_EXECUTION_ERROR = 41
_INVALID_TRANSACTION_NONCE = 52


def _code_of(exc: ClientError) -> int | None:
    try:
        return int(exc.code) if exc.code is not None else None
    except (TypeError, ValueError):
        return None


def _is_http_failure(exc: ClientError) -> bool:
    # starknet-py puts the HTTP status (a string) in `code` for non-2xx answers.
    return isinstance(exc.code, str) and exc.code.isdigit() and int(exc.code) >= 300


def _is_nonce_error(exc: ClientError) -> bool:
    return _code_of(exc) == _INVALID_TRANSACTION_NONCE or bool(
        _NONCE_RE.search(_stringify_error(exc))
    )


# ------------------------------------------------------------------------------ signer


def load_signer(cfg: ChainConfig, secrets: Secrets) -> KeyPair:
    """The account's key pair, from the encrypted keystore or the private-key secret.

    Exactly one source must be configured. Errors never contain key material.
    """
    has_key = secrets.account_private_key is not None
    if cfg.keystore_path is not None and has_key:
        raise SignerError(
            f"both a keystore ({cfg.keystore_path}) and the account_private_key secret are "
            "configured: remove one, so it is clear which key signs"
        )
    if cfg.keystore_path is not None:
        key = _key_from_keystore(cfg.keystore_path, secrets)
    elif secrets.account_private_key is not None:
        key = _parse_private_key(
            secrets.account_private_key.get_secret_value(), "the account_private_key secret"
        )
    else:
        raise SignerError(
            "no account key configured: set chain.keystore_path (and the keystore_password "
            "secret, KEEPER_KEYSTORE_PASSWORD_FILE) or provide the account_private_key secret "
            "(KEEPER_ACCOUNT_PRIVATE_KEY_FILE)"
        )
    return KeyPair.from_private_key(key)


def _key_from_keystore(path: Path, secrets: Secrets) -> int:
    from eth_keyfile.keyfile import decode_keyfile_json

    if secrets.keystore_password is None:
        raise SignerError(
            f"keystore {path} is configured but the keystore_password secret is not: "
            "set KEEPER_KEYSTORE_PASSWORD_FILE or the systemd credential 'keystore_password'"
        )
    try:
        raw = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SignerError(f"cannot read keystore {path}: {exc.strerror}") from None
    try:
        keystore = json.loads(raw)
    except ValueError:
        raise SignerError(
            f"keystore {path} is not JSON: expected an encrypted keystore as written by "
            "`starkli signer keystore new` (Ethereum keystore v3 format)"
        ) from None
    if not isinstance(keystore, dict) or "crypto" not in {str(k).lower() for k in keystore}:
        raise SignerError(
            f"keystore {path} has no 'crypto' section: expected an encrypted keystore "
            "(Ethereum keystore v3 format, as starkli writes)"
        )
    try:
        secret = decode_keyfile_json(keystore, secrets.keystore_password.get_secret_value())
    except ValueError as exc:
        if "mismatch" in str(exc).lower():
            raise SignerError(
                f"wrong password for keystore {path} (the keystore_password secret does "
                "not decrypt it)"
            ) from None
        raise SignerError(f"keystore {path} cannot be decrypted: {_safe(exc)}") from None
    except (KeyError, TypeError, NotImplementedError) as exc:
        raise SignerError(
            f"keystore {path} is malformed or of an unsupported version ({type(exc).__name__}"
            f" {_safe(exc)}): expected version 3 with scrypt or pbkdf2"
        ) from None
    return _parse_private_key(secret, f"the key in keystore {path}")


def _safe(exc: Exception) -> str:
    # eth-keyfile messages name fields and algorithms, never key bytes; cut anyway.
    return str(exc)[:120]


def _parse_private_key(value: str | bytes, where: str) -> int:
    if isinstance(value, bytes):
        number = int.from_bytes(value, "big")
    else:
        text = value.strip().lower()
        digits = text[2:] if text.startswith("0x") else text
        if not digits or not re.fullmatch(r"[0-9a-f]+", digits):
            raise SignerError(f"{where} is not a hex number (expected 0x followed by hex digits)")
        number = int(digits, 16)
    if not 0 < number < CURVE_ORDER:
        raise SignerError(f"{where} is out of range for a Stark private key")
    return number


# ------------------------------------------------------------------------------ client

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
                f"{what}: no answer from {self._cfg.rpc_url} within {limit:g} s; check the "
                "node (or the RPC provider) is up"
            ) from None
        except aiohttp.ClientError as exc:
            raise ChainUnreachableError(
                f"{what}: cannot reach {self._cfg.rpc_url} ({type(exc).__name__}: {exc}); "
                "check chain.rpc_url and that the node is up"
            ) from None
        except ClientError as exc:
            if _is_http_failure(exc):
                raise ChainUnreachableError(
                    f"{what}: {self._cfg.rpc_url} answered HTTP {exc.code}; check the node "
                    "or the RPC provider"
                ) from None
            raise
        except (ServerError, SchemaError, json.JSONDecodeError, KeyError) as exc:
            # KeyError: starknet-py indexes the answer before checking its shape.
            raise UnexpectedAnswerError(
                f"{what}: {self._cfg.rpc_url} gave an answer that is not Starknet JSON-RPC "
                f"({type(exc).__name__}); is chain.rpc_url a Starknet node?"
            ) from None

    async def _view(self, to: int, function: str, calldata: Sequence[int] = ()) -> list[int]:
        call = Call(to_addr=to, selector=get_selector_from_name(function), calldata=list(calldata))
        try:
            result = await self._rpc(
                f"{function} on {to:#x}", self._client.call_contract(call, block_number="latest")
            )
        except ClientError as exc:
            detail = _stringify_error(exc)
            if _code_of(exc) == _CONTRACT_NOT_FOUND:
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
                f"{self._cfg.rpc_url} is on chain {chain_name(actual)}, but chain.chain_id is "
                f"{chain_name(self._chain_id)}: point chain.rpc_url at a "
                f"{chain_name(self._chain_id)} node or fix chain.chain_id"
            )
        spec = str(await self._rpc("starknet_specVersion", self._client.spec_version()))
        block = await self._block_number()
        info = ChainInfo(actual, chain_name(actual), spec, block)
        _log.info("chain.connected", chain=info.chain_name, spec_version=spec, block=block)
        return info

    async def router_state(self) -> RouterState:
        views, block = await self._consistent(self._read_router)
        return _router_state(views, block)

    async def _read_router(self) -> list[list[int]]:
        names = ("get_epoch", "get_allocation", "get_governance_params", "last_execution_timestamp")
        return list(await asyncio.gather(*(self._view(self._router, name) for name in names)))

    async def risk_inputs(self) -> RiskInputs:
        (protocols, params), block = await self._consistent(self._read_inputs)
        return RiskInputs(protocols, params, block)

    async def _read_inputs(self) -> tuple[tuple[ProtocolInputs, ...], ModelParams]:
        return _risk_inputs(await self._view(self._risk_engine, "get_inputs"))

    async def inputs_commitment(self) -> int:
        return _single(
            await self._view(self._risk_engine, "get_inputs_commitment"), "get_inputs_commitment"
        )

    async def allocation_inputs(self) -> tuple[AllocationInputs, RouterState]:
        """The allocation program's inputs for the router's current epoch, read at one block."""

        async def read() -> tuple[list[list[int]], tuple[tuple[ProtocolInputs, ...], ModelParams]]:
            views, inputs = await asyncio.gather(self._read_router(), self._read_inputs())
            return views, inputs

        (views, (protocols, params)), block = await self._consistent(read)
        state = _router_state(views, block)
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
        return (
            _single(await self._view(self._router, "is_fact_consumed", [fact]), "is_fact_consumed")
            != 0
        )

    async def fact_verifications(self, registry: int, fact: int) -> list[Verification]:
        raw = await self._view(registry, "get_all_verifications_for_fact_hash", [fact])
        return _verifications(raw)

    async def call_view(self, to: int, function: str, calldata: Sequence[int] = ()) -> list[int]:
        """A raw view call (felts in, felts out) for the few reads not wrapped here."""
        return await self._view(to, function, calldata)

    # ----------------------------------------------------------------------- writes

    def execute_allocation_call(self, output: Sequence[int]) -> Call:
        felts = _felts(output, "allocation output")
        return Call(
            to_addr=self._router,
            selector=get_selector_from_name("execute_allocation"),
            calldata=[len(felts), *felts],
        )

    @staticmethod
    def register_fact_call(
        registry: int, fact: int, security_bits: int, verifier_config: VerifierConfig
    ) -> Call:
        (fact_felt,) = _felts([fact], "fact hash")
        if not 0 <= security_bits < 2**32:
            raise ChainError(f"security bits {security_bits} do not fit a u32", code="bad_calldata")
        return Call(
            to_addr=registry,
            selector=get_selector_from_name("register_fact"),
            calldata=[fact_felt, security_bits, *verifier_config.felts()],
        )

    async def execute_allocation(
        self, output: Sequence[int], *, timeout_s: float | None = None
    ) -> TxOutcome:
        return await self.send(
            [self.execute_allocation_call(output)],
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
    ) -> TxOutcome:
        call = self.register_fact_call(registry, fact, security_bits, verifier_config)
        return await self.send([call], purpose="register_dev_fact", timeout_s=timeout_s)

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
        detail = _stringify_error(exc)
        code = _code_of(exc)
        if _is_nonce_error(exc):
            return NonceError(
                f"{purpose}: the node rejected the nonce ({decode_revert_reason(detail)})"
            )
        if stage == "estimate" and code in (_CONTRACT_ERROR, _TRANSACTION_EXECUTION_ERROR):
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
            if _code_of(exc) == _TXN_HASH_NOT_FOUND:
                return None
            raise ChainError(
                f"receipt of {tx_hash:#x}: {decode_revert_reason(_stringify_error(exc))}",
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
        return _single(raw, "is_keeper") != 0

    async def latest_block_timestamp(self) -> int:
        """The chain's clock: the router measures intervals in block timestamps, and so
        must the keeper (a devnet's clock, for one, is not the wall clock)."""
        block = await self._rpc("starknet_getBlock", self._client.get_block(block_number="latest"))
        return int(block.timestamp)


# --------------------------------------------------------------------------- decoding


def _felts(values: Sequence[int], what: str) -> list[int]:
    out = []
    for i, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < FIELD_PRIME:
            raise ChainError(f"{what}[{i}] = {value!r} is not a field element", code="bad_calldata")
        out.append(value)
    return out


def _shape_error(view: str, raw: Sequence[int], expected: str) -> UnexpectedAnswerError:
    return UnexpectedAnswerError(
        f"{view} returned {len(raw)} felts, expected {expected}: is the configured address "
        "the contract version this keeper supports?"
    )


def _single(raw: Sequence[int], view: str) -> int:
    if len(raw) != 1:
        raise _shape_error(view, raw, "1")
    return int(raw[0])


def _array(raw: Sequence[int], view: str) -> list[int]:
    if not raw or len(raw) != 1 + raw[0]:
        raise _shape_error(view, raw, "a length followed by that many items")
    return [int(x) for x in raw[1:]]


_GOVERNANCE_FIELDS = 9


def _router_state(views: Sequence[Sequence[int]], block: int) -> RouterState:
    epoch, allocation, governance, last_ts = views
    return RouterState(
        epoch=_single(epoch, "get_epoch"),
        allocation=tuple(_array(allocation, "get_allocation")),
        governance=_governance(governance),
        last_execution_timestamp=_single(last_ts, "last_execution_timestamp"),
        block_number=block,
    )


def _governance(raw: Sequence[int]) -> GovernanceParams:
    if len(raw) != _GOVERNANCE_FIELDS:
        raise _shape_error("get_governance_params", raw, str(_GOVERNANCE_FIELDS))
    return GovernanceParams(*(int(x) for x in raw))


_PROTOCOL_FIELDS = 6
_MODEL_PARAMS = 12


def _risk_inputs(raw: Sequence[int]) -> tuple[tuple[ProtocolInputs, ...], ModelParams]:
    n = raw[0] if raw else -1
    if n < 0 or len(raw) != 1 + _PROTOCOL_FIELDS * n + _MODEL_PARAMS:
        raise _shape_error("get_inputs", raw, "1 + 6n + 12")
    protocols = tuple(
        ProtocolInputs(*raw[1 + _PROTOCOL_FIELDS * i : 1 + _PROTOCOL_FIELDS * (i + 1)])
        for i in range(n)
    )
    params = ModelParams(*raw[1 + _PROTOCOL_FIELDS * n :])
    return protocols, params


_VERIFICATION_FELTS = 6  # verification_hash, security_bits, 4 config strings


def _verifications(raw: Sequence[int]) -> list[Verification]:
    n = raw[0] if raw else -1
    if n < 0 or len(raw) != 1 + _VERIFICATION_FELTS * n:
        raise _shape_error("get_all_verifications_for_fact_hash", raw, "1 + 6n")
    out = []
    for i in range(n):
        vh, bits, *config = raw[1 + _VERIFICATION_FELTS * i : 1 + _VERIFICATION_FELTS * (i + 1)]
        strings = [decode_short_string(c) or hex(c) for c in config]
        out.append(Verification(int(vh), int(bits), VerifierConfig(*strings)))
    return out
