"""Issue 18 on devnet with Integrity's real contracts: the label laundering that Integrity's
public FactRegistry allows, and our IntegrityGuard refusing it.

The hole (Integrity 4ce9504): ``FactRegistry.verify_proof_initial(J, config, proof)`` stores
``verifier_configs[J] = config`` and never clears it; ``verify_proof_final_and_register_fact``
registers what the verifier returns under that *stored* label and ignores the verifier's
reported settings; the CairoVerifier has no caller check and job ids are global. So after an
honest strict registration of job J, anyone can start J again on the verifier directly in
``cairo1`` mode (which reads the program and output from the main page without checking
where they sit) and finish it through the registry: the registry files the cairo1 fact as
verified under ``strict``.

The guard drives the verifier itself and records only what the verifier's own final report
says, under its pin: whatever happens to a job id in between, a cairo1 (or relaxed) run
records nothing.
"""

from __future__ import annotations

import itertools
import json
from functools import cache
from typing import Any

import pytest
from starknet_py.net.client_errors import ClientError

from keeper.chain.codec import decode_short_string
from keeper.chain.reverts import decode_revert_reason
from keeper.devnet import deploy as devnet_deploy
from prover import facts
from prover.integrity import (
    Call,
    StarkProof,
    VerifierConfiguration,
    fact_of,
    guard_full_call,
    guard_split_calls,
    new_job_id,
    parse_proof,
    security_bits,
    split_calldata,
    verifier_split_calls,
)
from prover.integrity.field import poseidon_many
from tests.contracts.conftest import AbiCodec, deploy_fresh, expect_revert
from tests.integrity.conftest import FIBONACCI, KEEPER, OWNER, IntegrityChain

pytestmark = pytest.mark.devnet
_salts = itertools.count(500)
OUTSIDER = 2  # no role anywhere: the attacker
STRICT = VerifierConfiguration("small", "keccak_160_lsb", "stone6", "strict")
CAIRO1 = VerifierConfiguration("small", "keccak_160_lsb", "stone6", "cairo1")
RELAXED = VerifierConfiguration("small", "keccak_160_lsb", "stone6", "relaxed")


@cache
def _proof() -> StarkProof:
    return parse_proof(json.loads(FIBONACCI.read_text()))


def cairo1_fact(proof: StarkProof) -> int:
    """The fact Integrity's ``cairo1`` memory verification computes: the main page minus
    the output is "the program", the last output-length cells "the output"."""
    values = [cell.value for cell in proof.public_input.main_page]
    output = proof.public_input.segments[2]
    n_output = output.stop_ptr - output.begin_addr
    program_hash = poseidon_many(values[: len(values) - n_output])
    return poseidon_many([program_hash, poseidon_many(values[len(values) - n_output :])])


def vhash(fact: int, config: VerifierConfiguration, bits: int) -> int:
    return facts.verification_hash(fact, config.config_hash(), bits)


async def send(integrity: IntegrityChain, account: int, to: int, calls: list[Call]) -> list[Any]:
    """Each call in its own transaction, in order; the receipts."""
    sender = integrity.account(account)
    receipts = []
    for call in calls:
        sent = await sender.execute_v3(
            calls=[devnet_deploy.make_call(to, call.function, call.calldata)], auto_estimate=True
        )
        receipts.append(
            await sender.client.wait_for_tx(sent.transaction_hash, check_interval=0.05)
        )
    return receipts


async def refused(integrity: IntegrityChain, account: int, to: int, call: Call) -> str:
    """The revert reason of ``call`` (refused at its fee estimate: nothing is sent)."""
    with pytest.raises(ClientError) as caught:
        await send(integrity, account, to, [call])
    return decode_revert_reason(str(caught.value)) + " | " + str(caught.value)


async def verification(integrity: IntegrityChain, registry: int, vh: int) -> list[int] | None:
    """``get_verification(vh)``: [fact, bits, 4 config felts], or None."""
    client = integrity.account(OWNER).client
    raw = await devnet_deploy.call_view(client, registry, "get_verification", [vh])
    return None if raw[0] == 1 else raw[1:]


def labelled(answer: list[int] | None) -> tuple[int, int, list[str | None]] | None:
    if answer is None:
        return None
    return answer[0], answer[1], [decode_short_string(v) for v in answer[2:]]


async def test_integritys_registry_files_a_cairo1_fact_under_the_strict_label(
    integrity: IntegrityChain,
) -> None:
    """Documents the hole the guard exists for (it must keep working here: if Integrity
    ever fixes it, this test says so)."""
    registry = await integrity.fresh_registry(next(_salts))
    proof = _proof()
    bits = security_bits(proof)
    job = new_job_id()
    # 1. An honest strict registration of job J: verifier_configs[J] = strict stays.
    await send(integrity, KEEPER, registry, split_calldata(proof, job, STRICT))
    honest = vhash(fact_of(proof), STRICT, bits)
    assert labelled(await verification(integrity, registry, honest)) == (
        fact_of(proof), bits, ["small", "keccak_160_lsb", "stone6", "strict"]
    )
    # 2. Anyone: J again, directly on the verifier, in cairo1 mode...
    rerun = verifier_split_calls(proof, job, CAIRO1)
    await send(integrity, OUTSIDER, integrity.deployment.verifier, rerun[:1])
    # 3. ...finished through the registry, which labels it with the stored 'strict'.
    registry_calls = split_calldata(proof, job, STRICT)[1:]
    await send(integrity, OUTSIDER, registry, registry_calls)
    forged = cairo1_fact(proof)
    assert forged != fact_of(proof)
    assert labelled(await verification(integrity, registry, vhash(forged, STRICT, bits))) == (
        forged, bits, ["small", "keccak_160_lsb", "stone6", "strict"]
    )


async def test_the_honest_path_through_the_guard_records_the_strict_verification(
    integrity: IntegrityChain,
) -> None:
    guard = await integrity.fresh_guard(next(_salts))
    proof = _proof()
    bits = security_bits(proof)
    receipts = await send(integrity, KEEPER, guard, guard_split_calls(proof, new_job_id()))
    expected = vhash(fact_of(proof), STRICT, bits)
    assert labelled(await verification(integrity, guard, expected)) == (
        fact_of(proof), bits, ["small", "keccak_160_lsb", "stone6", "strict"]
    )
    # FactRegistered, as Integrity's registry emits it: the verifier that ran included.
    final_events = [
        e for e in receipts[-1].events
        if e.from_address == guard and e.keys[0] == devnet_deploy.selector("FactRegistered")
    ]
    (event,) = final_events
    assert event.keys[1:4] == [fact_of(proof), integrity.deployment.verifier, bits]
    assert event.keys[-1] == expected
    # The monolith records the same verification (once: the list does not grow).
    await send(integrity, KEEPER, guard, [guard_full_call(proof)])
    listed = await integrity.verifications(guard, fact_of(proof))
    assert [row[0] for row in listed] == [expected]


@pytest.mark.parametrize("mode", [CAIRO1, RELAXED], ids=lambda c: c.memory_verification)
async def test_a_job_rerun_in_another_mode_and_finished_through_the_guard_records_nothing(
    integrity: IntegrityChain, mode: VerifierConfiguration
) -> None:
    """The laundering sequence against the guard: an honest job J through the guard, then
    J again on the verifier directly in another mode, finished through the guard."""
    guard = await integrity.fresh_guard(next(_salts))
    proof = _proof()
    bits = security_bits(proof)
    job = new_job_id()
    await send(integrity, KEEPER, guard, guard_split_calls(proof, job))
    before = await integrity.verifications(guard, fact_of(proof))

    rerun = verifier_split_calls(proof, job, mode)
    await send(integrity, OUTSIDER, integrity.deployment.verifier, rerun[:1])
    through_guard = guard_split_calls(proof, job, mode)
    await send(integrity, OUTSIDER, guard, through_guard[1:-1])  # steps: only forwarded
    reason = await refused(integrity, OUTSIDER, guard, through_guard[-1])
    assert "settings not pinned" in reason
    # Nothing recorded under any label; the honest verification is all there is.
    assert await integrity.verifications(guard, fact_of(proof)) == before
    for fact in (cairo1_fact(proof), fact_of(proof)):
        for config in (STRICT, mode):
            if (fact, config) != (fact_of(proof), STRICT):
                assert await verification(integrity, guard, vhash(fact, config, bits)) is None
    # The refusal reverted the verifier's final too: the job is still open, and finishing
    # it on the verifier shows what the guard was handed: a verified run, in that mode.
    (receipt,) = await send(integrity, OUTSIDER, integrity.deployment.verifier, rerun[-1:])
    (report,) = [
        e for e in receipt.events if e.keys[0] == devnet_deploy.selector("ProofVerified")
    ]
    memory = {"cairo1": 2, "relaxed": 1}[mode.memory_verification]
    assert report.keys[1] == job and report.keys[3] == bits
    assert report.keys[4:] == [memory, 0, 1]  # settings: mode, Lsb160, Stone6
    # (relaxed computes this Cairo 0 proof's fact as strict does; cairo1 another one: the
    # guard refuses by the settings the verifier reports, whatever the fact.)
    assert (report.keys[2] == fact_of(proof)) == (mode == RELAXED)
    assert await integrity.verifications(guard, report.keys[2]) == (
        before if mode == RELAXED else []
    )


@pytest.mark.parametrize("mode", [CAIRO1, RELAXED], ids=lambda c: c.memory_verification)
async def test_the_guard_refuses_other_settings_at_its_own_initial_and_monolith(
    integrity: IntegrityChain, mode: VerifierConfiguration
) -> None:
    guard = await integrity.fresh_guard(next(_salts))
    proof = _proof()
    initial = guard_split_calls(proof, new_job_id(), mode)[0]
    assert "settings not pinned" in await refused(integrity, OUTSIDER, guard, initial)
    full = guard_full_call(proof, mode)
    assert "settings not pinned" in await refused(integrity, OUTSIDER, guard, full)
    assert await integrity.verifications(guard, cairo1_fact(proof)) == []


async def test_a_guard_pinned_to_another_stone_version_records_nothing(
    integrity: IntegrityChain,
) -> None:
    """stone5 settings change the proof's transcript: the verifier refuses the proof; a
    guard pinned to stone5 cannot be made to record a stone6 run either."""
    stone5 = VerifierConfiguration("small", "keccak_160_lsb", "stone5", "strict")
    from keeper.chain import VerifierConfig

    guard = await integrity.fresh_guard(
        next(_salts), pin=VerifierConfig("small", "keccak_160_lsb", "stone5", "strict")
    )
    proof = _proof()
    job = new_job_id()
    # A stone6 run started directly on the verifier, finished through the stone5 guard.
    rerun = verifier_split_calls(proof, job, STRICT)
    await send(integrity, OUTSIDER, integrity.deployment.verifier, rerun[:-1])
    final = guard_split_calls(proof, job, stone5)[-1]
    assert "settings not pinned" in await refused(integrity, OUTSIDER, guard, final)
    assert await integrity.verifications(guard, fact_of(proof)) == []


async def test_the_router_refuses_a_verification_its_guard_did_not_record(
    integrity: IntegrityChain, contract_artifacts: dict[str, devnet_deploy.ContractArtifact]
) -> None:
    """A router deployed with 'integrity' trusts the guard: a verification that exists only
    in Integrity's registry (however labelled) is not found."""
    codecs = {name: AbiCodec(a.abi) for name, a in contract_artifacts.items()}
    deployed = await deploy_fresh(
        integrity.devnet, contract_artifacts, codecs, fact_registry="integrity"
    )
    guard = deployed.deployment.address("IntegrityGuard")
    gov = await deployed.view("StrategyRouterV2", "get_governance_params")
    assert gov["fact_registry"] == guard
    registry = integrity.deployment.fact_registry
    assert deployed.deployment.address("IntegrityFactRegistry") == registry
    proof = _proof()
    await send(integrity, KEEPER, registry, split_calldata(proof, new_job_id(), STRICT))
    in_registry_only = vhash(fact_of(proof), STRICT, security_bits(proof))
    assert await verification(integrity, registry, in_registry_only) is not None
    output = await deployed.expected_output()
    await expect_revert(deployed.execute(output, in_registry_only), "verification not found")
    assert await deployed.view("StrategyRouterV2", "get_epoch") == 0
