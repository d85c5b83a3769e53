"""ChainClient and DevProver against a real starknet-devnet and the real contracts."""

from __future__ import annotations

import io
import json

import pytest
import structlog
from structlog.testing import capture_logs

from keeper.chain import (
    ChainClient,
    FeeAboveCeilingError,
    ShuttingDownError,
    TransactionRevertedError,
    VerifierConfig,
    WouldRevertError,
    WrongChainError,
)
from keeper.core.logs import configure_logging
from keeper.devnet.deploy import make_call
from keeper.devnet.dev_prover import DEV_VERIFIER_CONFIG, DevProver, DevProverRefusedError
from prover import facts, model
from tests.chain.conftest import KEEPER, OUTSIDER, OWNER, PROGRAM_HASH, DeployedChain

pytestmark = pytest.mark.devnet

CONFIG = VerifierConfig("small", "keccak_160_lsb", "stone6", "strict")


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

    (verification,) = await client.fact_verifications(chain.registry, proof.fact_hash)
    assert verification.security_bits == 96
    assert verification.verifier_config == DEV_VERIFIER_CONFIG
    assert not await client.is_fact_consumed(proof.fact_hash)

    outcome = await client.execute_allocation(output)
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
        await client.execute_allocation(output)
    assert caught.value.reason == "output epoch != current epoch"
    assert caught.value.code == "would_revert"
    assert await chain.nonce() == nonce


async def test_unregistered_fact_would_revert(chain: DeployedChain) -> None:
    client = chain.client()
    with pytest.raises(WouldRevertError) as caught:
        await client.execute_allocation(await valid_output(client))
    assert caught.value.reason == "fact not registered"


async def test_reverted_receipt_is_a_failure_never_success(chain: DeployedChain) -> None:
    """Estimated against a state where it succeeds; included after another keeper
    executed the same output: the receipt is REVERTED and the fee is still reported."""
    client = chain.client()
    output = await valid_output(client)
    fact = facts.direct_fact(PROGRAM_HASH, output)
    await client.register_dev_fact(chain.registry, fact, 96, CONFIG)
    owner = chain.devnet.accounts[OWNER].address
    await chain.invoke(OWNER, [make_call(chain.router, "set_keeper", [owner, 1])])

    async def other_keeper_executes_first(tx_hash: int) -> None:
        await chain.invoke(OWNER, [client.execute_allocation_call(output)])

    with pytest.raises(TransactionRevertedError) as caught:
        await client.send(
            [client.execute_allocation_call(output)],
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
