"""ChainClient and DevProver against a real starknet-devnet and the real contracts."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
import structlog
from starknet_py.hash.storage import get_storage_var_address
from structlog.testing import capture_logs

from keeper.chain import (
    ChainClient,
    FeeAboveCeilingError,
    PendingChange,
    ShuttingDownError,
    TransactionRevertedError,
    Verification,
    VerifierConfig,
    WouldRevertError,
    WrongChainError,
    encode_short_string,
)
from keeper.core.logs import configure_logging
from keeper.devnet import deploy as devnet_deploy
from keeper.devnet.deploy import make_call
from keeper.devnet.dev_prover import DevProver, DevProverRefusedError
from keeper.engine.acceptance import verification_hash_of
from prover import facts, model
from tests.chain.conftest import (
    KEEPER,
    OUTSIDER,
    OWNER,
    PROGRAM_HASH,
    DeployedChain,
    deploy_chain,
)
from tests.support.devnet import Devnet

pytestmark = pytest.mark.devnet

CONFIG = VerifierConfig("small", "keccak_160_lsb", "stone6", "strict")  # the devnet's pin


def proposal(router: int, param: str, subject: int, values: list[int]) -> Any:
    return make_call(
        router, "propose_change", [encode_short_string(param), subject, len(values), *values]
    )


def propose_and_apply(router: int, param: str, subject: int, values: list[int]) -> list[Any]:
    """One owner multicall: with governance_delay_s 0 a change applies in the same block."""
    apply = make_call(router, "apply_change", [encode_short_string(param), subject])
    return [proposal(router, param, subject, values), apply]


async def valid_output(client: ChainClient) -> list[int]:
    inputs, _ = await client.allocation_inputs()
    return model.expected_output(inputs)


async def test_check_chain_on_devnet(chain: DeployedChain) -> None:
    info = await chain.client().check_chain()
    assert info.chain_id == chain.deployment.chain_id
    assert info.block_number >= chain.deployment.block_number


async def test_wrong_chain_id_is_refused(chain: DeployedChain) -> None:
    with pytest.raises(WrongChainError, match=r"chain\.chain_id is SN_MAIN"):
        await chain.client(chain_id="SN_MAIN").check_chain()


async def test_router_and_risk_engine_reads(chain: DeployedChain) -> None:
    client = chain.client()
    state = await client.router_state()
    assert (state.epoch, state.allocation, state.last_execution_timestamp) == (0, (), 0)
    gov = state.governance
    assert (gov.max_single_bps, gov.min_diversification, gov.min_security_bits) == (5000, 2, 96)
    assert (gov.fact_registry, gov.risk_engine) == (chain.registry, chain.risk_engine)
    assert (gov.program_hash, gov.rebalance_interval_s) == (PROGRAM_HASH, 3600)
    assert gov.direct_pin == CONFIG
    assert gov.bootloaded_pin == VerifierConfig("recursive", "keccak_160_lsb", "stone6", "strict")
    assert gov.governance_delay_s == 0
    assert state.rebalance_requested is False
    assert await client.pending_changes() == []

    risk = await client.risk_inputs()
    assert len(risk.protocols) == 3
    assert risk.protocols[0] == model.ProtocolInputs(6500, 1200, 0, 92, 900, 420)
    assert risk.params == model.ModelParams()

    inputs, _ = await client.allocation_inputs()
    assert await client.inputs_commitment() == model.inputs_commitment(inputs)


async def test_dev_prover_then_execute_allocation(chain: DeployedChain) -> None:
    client = chain.client()
    output = await valid_output(client)
    stream = io.StringIO()
    configure_logging(level="info", fmt="json", stream=stream)
    try:
        proof = await DevProver(client).register(
            output, program_hash=PROGRAM_HASH, security_bits=96
        )
    finally:
        structlog.reset_defaults()
    logs = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert proof.kind == "dev"
    assert proof.fact_hash == facts.direct_fact(PROGRAM_HASH, output)
    assert proof.tx.succeeded
    assert proof.tx.actual_fee_unit == "FRI"
    assert proof.tx.actual_fee_amount > 0
    # Every line logged while the dev prover works says "dev", the chain's lines too.
    events = {line["event"] for line in logs}
    assert {"dev_prover.registering", "chain.tx_submitted", "dev_prover.registered"} <= events
    assert all(line.get("prover") == "dev" for line in logs)

    # Registered under the router's direct pin, named by Integrity's verification hash.
    assert proof.verifier_config == CONFIG
    assert proof.verification_hash == verification_hash_of(proof.fact_hash, CONFIG, 96)
    (listed,) = await client.fact_verifications(chain.registry, proof.fact_hash)
    assert (listed.verification_hash, listed.security_bits) == (proof.verification_hash, 96)
    assert listed.verifier_config == CONFIG
    found = await client.get_verification(chain.registry, proof.verification_hash)
    assert found == Verification(proof.fact_hash, 96, CONFIG)
    assert await client.get_verification(chain.registry, proof.verification_hash + 1) is None
    assert not await client.is_fact_consumed(proof.fact_hash)

    outcome = await client.execute_allocation(output, proof.verification_hash)
    assert outcome.status == "succeeded"
    assert outcome.revert_reason is None
    assert (outcome.actual_fee_unit, outcome.actual_fee_amount > 0) == ("FRI", True)
    assert outcome.block_number is not None

    state = await client.router_state()
    n = output[5]
    assert state.epoch == 1
    assert state.allocation == tuple(output[6 : 6 + n])
    assert await client.is_fact_consumed(proof.fact_hash)
    assert await client.receipt(outcome.tx_hash) == outcome


async def test_would_revert_is_decoded_and_nothing_is_sent(chain: DeployedChain) -> None:
    client = chain.client()
    output = await valid_output(client)
    output[1] += 1  # the next epoch, not the current one
    nonce = await chain.nonce()
    with pytest.raises(WouldRevertError) as caught:
        await client.execute_allocation(output, 0x1234)
    assert caught.value.reason == "output epoch != current epoch"
    assert caught.value.code == "would_revert"
    assert await chain.nonce() == nonce


async def test_an_unknown_verification_would_revert(chain: DeployedChain) -> None:
    client = chain.client()
    output = await valid_output(client)
    fact = facts.direct_fact(PROGRAM_HASH, output)
    with pytest.raises(WouldRevertError) as caught:
        await client.execute_allocation(output, verification_hash_of(fact, CONFIG, 96))
    assert caught.value.reason == "verification not found"


async def test_reverted_receipt_is_a_failure_never_success(chain: DeployedChain) -> None:
    """Estimated against a state where it succeeds; included after another keeper
    executed the same output: the receipt is REVERTED and the fee is still reported."""
    client = chain.client()
    output = await valid_output(client)
    fact = facts.direct_fact(PROGRAM_HASH, output)
    await client.register_dev_fact(chain.registry, fact, 96, CONFIG)
    verification = verification_hash_of(fact, CONFIG, 96)
    owner = chain.devnet.accounts[OWNER].address
    await chain.invoke(OWNER, propose_and_apply(chain.router, "keeper", owner, [1]))

    async def other_keeper_executes_first(tx_hash: int) -> None:
        await chain.invoke(OWNER, [client.execute_allocation_call(output, verification)])

    with pytest.raises(TransactionRevertedError) as caught:
        await client.send(
            [client.execute_allocation_call(output, verification)],
            purpose="execute_allocation",
            before_send=other_keeper_executes_first,
        )
    outcome = caught.value.outcome
    assert outcome.status == "reverted"
    assert not outcome.succeeded
    assert outcome.revert_reason == "fact already consumed"
    assert caught.value.code == "reverted"
    assert outcome.actual_fee_amount > 0
    assert outcome.actual_fee_unit == "FRI"
    # The one-shot check after a restart tells the same story.
    again = await client.receipt(outcome.tx_hash)
    assert again is not None
    assert again.status == "reverted"


async def test_fee_above_the_ceiling_is_refused(chain: DeployedChain) -> None:
    client = chain.client(max_fee_fri=1)
    nonce = await chain.nonce()
    with pytest.raises(FeeAboveCeilingError, match="max_fee_fri = 1 FRI") as caught:
        await client.register_dev_fact(chain.registry, 0x1234, 96, CONFIG)
    assert caught.value.max_fee > 1
    assert str(caught.value.max_fee) in str(caught.value)
    assert await chain.nonce() == nonce


async def test_nonce_resync_after_a_transaction_behind_the_clients_back(
    chain: DeployedChain,
) -> None:
    client = chain.client()
    await client.register_dev_fact(chain.registry, 0x1001, 96, CONFIG)
    # The same account sends a transaction the client does not know about.
    behind = client.register_fact_call(chain.registry, 0x1002, 96, CONFIG)
    await chain.invoke(KEEPER, [behind])
    nonce = await chain.nonce()
    with capture_logs() as logs:
        outcome = await client.register_dev_fact(chain.registry, 0x1003, 96, CONFIG)
    assert outcome.succeeded
    assert "chain.nonce_resync" in [line["event"] for line in logs]
    assert await chain.nonce() == nonce + 1
    assert len(await client.fact_verifications(chain.registry, 0x1003)) == 1


async def test_wait_on_an_unknown_hash_returns_none(chain: DeployedChain) -> None:
    client = chain.client()
    assert await client.receipt(0xDEADBEEF) is None
    assert await client.wait(0xDEADBEEF, timeout_s=0.3) is None


async def test_nothing_is_sent_after_shutdown_begins(chain: DeployedChain) -> None:
    client = chain.client()
    client.close_for_shutdown()
    nonce = await chain.nonce()
    with pytest.raises(ShuttingDownError, match="refusing to send a transaction during shutdown"):
        await client.register_dev_fact(chain.registry, 0x2001, 96, CONFIG)
    assert await chain.nonce() == nonce
    # Reads still work during shutdown.
    assert (await client.router_state()).epoch == 0


async def test_shutdown_during_submit_stops_the_broadcast(chain: DeployedChain) -> None:
    client = chain.client()
    nonce = await chain.nonce()
    signed: list[int] = []

    async def shutdown_arrives(tx_hash: int) -> None:
        signed.append(tx_hash)
        client.close_for_shutdown()

    call = client.register_fact_call(chain.registry, 0x2002, 96, CONFIG)
    with pytest.raises(ShuttingDownError):
        await client.submit([call], purpose="register", before_send=shutdown_arrives)
    assert await client.receipt(signed[0]) is None
    assert await chain.nonce() == nonce


async def test_submit_then_wait_gives_the_hash_first(chain: DeployedChain) -> None:
    client = chain.client()
    persisted: list[int] = []

    async def persist(tx_hash: int) -> None:
        persisted.append(tx_hash)

    call = client.register_fact_call(chain.registry, 0x3001, 100, CONFIG)
    tx_hash = await client.submit([call], purpose="register", before_send=persist)
    assert persisted == [tx_hash]
    outcome = await client.wait(tx_hash)
    assert outcome is not None
    assert outcome.succeeded
    assert outcome.tx_hash == tx_hash


async def test_dev_prover_needs_the_keeper_to_be_the_registrar(chain: DeployedChain) -> None:
    client = chain.client(OUTSIDER)
    with pytest.raises(DevProverRefusedError) as caught:
        await DevProver(client).register([1], program_hash=PROGRAM_HASH, security_bits=96)
    assert caught.value.code == "dev_prover_not_registrar"


async def test_dev_prover_never_registers_what_the_router_refuses(
    devnet: Devnet, contract_artifacts: dict[str, devnet_deploy.ContractArtifact]
) -> None:
    chain = await deploy_chain(devnet, contract_artifacts, min_security_bits=128)
    client = chain.client()
    nonce = await chain.nonce()
    with pytest.raises(DevProverRefusedError, match="the router requires 128") as caught:
        await DevProver(client).register([1], program_hash=PROGRAM_HASH, security_bits=96)
    assert caught.value.code == "dev_prover_too_few_bits"
    unpinned = await deploy_chain(devnet, contract_artifacts, pins={"direct_verifier": ()})
    with pytest.raises(DevProverRefusedError, match="pins no verifier configuration") as caught:
        await DevProver(unpinned.client()).register(
            [1], program_hash=PROGRAM_HASH, security_bits=96
        )
    assert caught.value.code == "dev_prover_no_pin"
    assert await chain.nonce() == nonce  # nothing was sent


async def test_pending_changes_and_the_owners_request_are_read(
    devnet: Devnet, contract_artifacts: dict[str, devnet_deploy.ContractArtifact]
) -> None:
    chain = await deploy_chain(devnet, contract_artifacts, governance_delay_s=3600)
    client = chain.client()
    router = chain.router
    pin = VerifierConfig("recursive", "keccak_160_lsb", "stone6", "strict").felts()
    await chain.invoke(
        OWNER,
        [
            proposal(router, "max_single_bps", 0, [6000]),
            proposal(router, "direct_verifier", 0, pin),
            proposal(router, "keeper", chain.devnet.accounts[KEEPER].address, [0]),
            make_call(router, "request_rebalance"),
            proposal(chain.risk_engine, "oracle", 0, [0x0AC1E]),  # RiskEngine's timelock
        ],
    )
    now = await client.latest_block_timestamp()
    pending = await client.pending_changes()
    (oracle,) = [c for c in pending if c.contract == "risk_engine"]
    assert (oracle.param, oracle.values) == ("oracle", (0x0AC1E,))
    assert abs(oracle.eta - (now + 3600)) <= 2  # RiskEngine's delay: the router's
    found = {c.param: c for c in pending if c.contract == "router"}
    assert set(found) == {"max_single_bps", "direct_verifier", "keeper"}
    assert found["max_single_bps"].values == (6000,)
    assert found["direct_verifier"].values == tuple(pin)
    keeper = found["keeper"]
    assert (keeper.subject, keeper.values) == (chain.devnet.accounts[KEEPER].address, (0,))
    assert all(abs(c.eta - (now + 3600)) <= 2 for c in found.values())
    assert await client.pending_change("min_diversification") is None
    assert isinstance(await client.pending_change("max_single_bps"), PendingChange)
    assert await client.is_rebalance_requested() is True
    assert (await client.router_state()).rebalance_requested is True


async def test_storage_at_reads_a_contracts_storage_word(chain: DeployedChain) -> None:
    client = chain.client()
    registrar = await client.storage_at(chain.registry, get_storage_var_address("registrar"))
    assert registrar == chain.devnet.accounts[KEEPER].address
    assert await client.storage_at(chain.registry, get_storage_var_address("nothing_here")) == 0
