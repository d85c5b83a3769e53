"""The dev prover: for a starknet-devnet only. It proves NOTHING.

It computes the direct fact of the real trace output (``prover.facts.direct_fact``) and
registers it in the DevFactRegistry the router stores, so the whole keeper flow runs on a
devnet without Stone. Everything it produces is labelled "dev": the log lines
(``prover="dev"``) and the result (``DevProof.kind``).

It registers only what the router accepts (contracts/README.md, execute_allocation checks
15-17): under the router's direct verifier pin (read from ``get_governance_params``; the
registry records whatever configuration it is given, and a 'dev' one could never be
pinned) and with at least the router's ``min_security_bits``. A router that pins no
direct configuration, or asks for more bits than given, is refused before anything is
sent. The keeper's dev policy registers ``max(prover.dev_security_bits, min_security_bits)``
bits (``keeper.engine.acceptance.dev_security_bits``).

Devnet gate: starknet-devnet answers ``starknet_chainId`` with SN_SEPOLIA by default, so
the chain id cannot tell a devnet from Sepolia. The gate asks the node for
``devnet_getConfig``, a method only starknet-devnet serves, and requires a JSON object
back; any other answer (method not found, HTTP error, not JSON) refuses. SN_MAIN is
refused whatever the node claims. The gate runs before every registration. On top, the
router's registry must answer DevFactRegistry's ``get_registrar`` (Integrity's
FactRegistry does not) with this keeper's account.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import httpx

from keeper.chain import (
    CallFailedError,
    ChainClient,
    TxOutcome,
    VerifierConfig,
    chain_name,
    encode_short_string,
)
from keeper.core.errors import KeeperError
from keeper.core.logs import bind_job, display_url, get_logger
from prover import facts

_MAINNET = encode_short_string("SN_MAIN")
_GATE_TIMEOUT_S = 10.0

_log = get_logger("keeper.devnet.dev_prover", prover="dev")


class DevProverRefusedError(KeeperError):
    code = "dev_prover_not_devnet"


@dataclass(frozen=True)
class DevProof:
    fact_hash: int
    tx: TxOutcome
    security_bits: int
    verifier_config: VerifierConfig  # the router's direct pin
    verification_hash: int  # what execute_allocation is given
    kind: Literal["dev"] = "dev"


class DevProver:
    def __init__(self, chain: ChainClient) -> None:
        self._chain = chain

    async def ensure_devnet(self) -> None:
        """Raise DevProverRefusedError unless the node is a starknet-devnet."""
        url = self._chain.rpc_url
        shown = display_url(url)  # the URL may carry a provider key
        info = await self._chain.check_chain()
        if info.chain_id == _MAINNET:
            raise DevProverRefusedError(
                f"the dev prover never runs on {chain_name(info.chain_id)} ({shown}): use a real "
                "prover policy (stone_then_atlantic)"
            )
        if not await is_starknet_devnet(url):
            raise DevProverRefusedError(
                f"{shown} ({info.chain_name}) is not a starknet-devnet (it does not serve "
                "devnet_getConfig): the dev prover registers unproven facts and runs on a "
                "devnet only; set prover.policy to a real prover for this chain"
            )

    async def register(
        self,
        output: Sequence[int],
        *,
        program_hash: int,
        security_bits: int,
        before_send: Callable[[int], Awaitable[None]] | None = None,
    ) -> DevProof:
        """Register the direct fact of ``output`` in the router's DevFactRegistry, under
        the router's direct pin, with ``security_bits`` (at least the router's minimum).
        ``before_send(tx_hash)`` runs between signing and broadcasting (persist it)."""
        with bind_job(prover="dev"):
            await self.ensure_devnet()
            fact = facts.direct_fact(program_hash, list(output))
            gov = (await self._chain.router_state()).governance
            pin = self._acceptable_pin(gov.pin_felts("direct"), gov.direct_pin)
            if security_bits < gov.min_security_bits:
                raise DevProverRefusedError(
                    f"refusing to register {security_bits} security bits: the router requires "
                    f"{gov.min_security_bits} and would refuse the verification",
                    code="dev_prover_too_few_bits",
                )
            registry = gov.fact_registry
            await self._ensure_registrar(registry)
            _log.info(
                "dev_prover.registering",
                fact_hash=hex(fact),
                registry=hex(registry),
                security_bits=security_bits,
                verifier_config=str(pin),
                note="dev: no proof, trusted registration",
            )
            outcome = await self._chain.register_dev_fact(
                registry, fact, security_bits, pin, before_send=before_send
            )
            config_hash = facts.verifier_config_hash(
                pin.layout, pin.hasher, pin.stone_version, pin.memory_verification
            )
            verification_hash = facts.verification_hash(fact, config_hash, security_bits)
            _log.info(
                "dev_prover.registered",
                fact_hash=hex(fact),
                verification_hash=hex(verification_hash),
                tx_hash=hex(outcome.tx_hash),
                fee=outcome.actual_fee_amount,
                unit=outcome.actual_fee_unit,
            )
            return DevProof(fact, outcome, security_bits, pin, verification_hash)

    @staticmethod
    def _acceptable_pin(felts: tuple[int, ...], pin: VerifierConfig | None) -> VerifierConfig:
        if pin is not None:
            return pin
        if not any(felts):
            raise DevProverRefusedError(
                "the router pins no verifier configuration for direct proofs (direct_verifier "
                "is all 0): it would refuse any registration; deploy with a direct_verifier",
                code="dev_prover_no_pin",
            )
        raise DevProverRefusedError(
            f"the router's direct pin ({', '.join(hex(v) for v in felts)}) is not four short "
            "strings: the dev prover cannot register under it",
            code="dev_prover_no_pin",
        )

    async def _ensure_registrar(self, registry: int) -> None:
        try:
            (registrar,) = await self._chain.call_view(registry, "get_registrar")
        except (CallFailedError, ValueError) as exc:
            raise DevProverRefusedError(
                f"the router's fact registry {registry:#x} is not a DevFactRegistry "
                f"({exc}); the dev prover only registers facts in the devnet stand-in"
            ) from None
        if registrar != self._chain.account_address:
            raise DevProverRefusedError(
                f"the DevFactRegistry {registry:#x} registrar is {registrar:#x}, not this "
                f"keeper's account {self._chain.account_address:#x}: make the keeper the "
                "registrar (deploy with roles.registrar = the keeper)",
                code="dev_prover_not_registrar",
            )


async def is_starknet_devnet(url: str) -> bool:
    """Whether the node at ``url`` is a starknet-devnet: it serves ``devnet_getConfig``
    (its chain id alone cannot tell; a devnet answers SN_SEPOLIA by default)."""
    payload = {"jsonrpc": "2.0", "id": 1, "method": "devnet_getConfig"}
    try:
        async with httpx.AsyncClient(timeout=_GATE_TIMEOUT_S) as http:
            reply = (await http.post(url, json=payload)).json()
    except (httpx.HTTPError, ValueError):
        return False
    result = reply.get("result") if isinstance(reply, dict) else None
    return isinstance(result, dict)
