"""keeper.engine.acceptance: the one verification the router accepts for a job's output
(contracts/README.md, execute_allocation checks 13-17), chosen without I/O."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keeper.chain import Verification, VerificationListElement, VerifierConfig
from keeper.chain.governance import GovernanceParams
from keeper.engine.acceptance import (
    AcceptedVerification,
    Refusal,
    Requirement,
    accepted_verification,
    accepts,
    dev_security_bits,
    path_of,
    pick_listed,
    requirement,
    verification_hash_of,
)
from prover import facts
from tests.support.governance import BOOTLOADED_PIN, DIRECT_PIN, UNSET, make_governance, pin_values

PROGRAM, CHILD = 0x1234, 0xABCD
GOV = make_governance(program_hash=PROGRAM, child_program_hash=CHILD)

felts = st.integers(min_value=0, max_value=2**251)
outputs = st.lists(st.integers(min_value=0, max_value=2**64), min_size=1, max_size=12)
bits = st.integers(min_value=0, max_value=300)
words = st.sampled_from(["small", "recursive", "keccak_160_lsb", "stone5", "stone6", "strict",
                         "relaxed", "cairo1", "dynamic"])
configs = st.one_of(
    st.sampled_from([DIRECT_PIN, BOOTLOADED_PIN]),
    st.builds(VerifierConfig, words, words, words, words),
)


def fact_of(path: str, output: list[int], gov: GovernanceParams = GOV) -> int:
    if path == "direct":
        return facts.direct_fact(gov.program_hash, output)
    return facts.bootloaded_fact(gov.child_program_hash, output)


def test_stone_and_dev_are_direct_atlantic_bootloaded() -> None:
    assert [path_of(p) for p in ("stone", "dev", "atlantic")] == ["direct", "direct", "bootloaded"]


@given(output=outputs, path=st.sampled_from(["direct", "bootloaded"]))
def test_the_requirement_is_the_paths_fact_pin_and_minimum(output: list[int], path: str) -> None:
    needed = requirement(path, output, fact_of(path, output), GOV)  # type: ignore[arg-type]
    pin = DIRECT_PIN if path == "direct" else BOOTLOADED_PIN
    assert needed == Requirement(path, fact_of(path, output), pin, 96)  # type: ignore[arg-type]


@given(output=outputs, path=st.sampled_from(["direct", "bootloaded"]), other=felts)
def test_a_fact_under_another_program_hash_is_refused(
    output: list[int], path: str, other: int
) -> None:
    field = "program_hash" if path == "direct" else "child_program_hash"
    changed = replace(GOV, **{field: other})
    job_fact = fact_of(path, output)  # proved under the old hash
    got = requirement(path, output, job_fact, changed)  # type: ignore[arg-type]
    if other == getattr(GOV, field):
        assert isinstance(got, Requirement)
    elif other == 0:
        assert got == Refusal("path_closed", got.reason)  # type: ignore[union-attr]
        assert f"{field} is 0" in got.reason  # type: ignore[union-attr]
    else:
        assert isinstance(got, Refusal)
        assert got.code == "other_fact"
        assert hex(job_fact) in got.reason and hex(other) in got.reason


@pytest.mark.parametrize("path", ["direct", "bootloaded"])
def test_an_unset_or_garbage_pin_is_refused(path: str) -> None:
    output = [1, 2, 3]
    unset = replace(GOV, **pin_values(path, UNSET))
    got = requirement(path, output, fact_of(path, output), unset)  # type: ignore[arg-type]
    assert isinstance(got, Refusal) and got.code == "pin_unset"
    garbage = replace(GOV, **pin_values(path, (1, 2, 3, 4)))
    got = requirement(path, output, fact_of(path, output), garbage)  # type: ignore[arg-type]
    assert isinstance(got, Refusal) and got.code == "pin_not_text"
    assert "0x1, 0x2, 0x3, 0x4" in got.reason


@given(output=outputs, have=bits, minimum=st.integers(min_value=80, max_value=256))
def test_the_verification_hash_is_integritys_for_enough_bits(
    output: list[int], have: int, minimum: int
) -> None:
    gov = replace(GOV, min_security_bits=minimum)
    needed = requirement("direct", output, fact_of("direct", output), gov)
    assert isinstance(needed, Requirement)
    got = accepted_verification(needed, have)
    if have < minimum:
        assert got == Refusal("too_few_security_bits", got.reason)  # type: ignore[union-attr]
        assert f"{have} security bits" in got.reason and str(minimum) in got.reason  # type: ignore[union-attr]
        return
    config_hash = facts.verifier_config_hash("small", "keccak_160_lsb", "stone6", "strict")
    expected = facts.verification_hash(needed.fact_hash, config_hash, have)
    assert got == AcceptedVerification("direct", needed.fact_hash, DIRECT_PIN, have, expected)


@given(
    fact=st.sampled_from([0xFAC7, 0xBAD]),
    config=configs,
    have=bits,
)
def test_accepts_is_the_routers_checks_15_to_17(
    fact: int, config: VerifierConfig, have: int
) -> None:
    needed = Requirement("direct", 0xFAC7, DIRECT_PIN, 96)
    found = Verification(fact, have, config)
    assert accepts(needed, found) == (fact == 0xFAC7 and config == DIRECT_PIN and have >= 96)
    assert not accepts(needed, None)


entries = st.builds(
    lambda config, have, forged: (config, have, forged),
    configs,
    bits,
    st.booleans(),
)


@given(listed=st.lists(entries, max_size=8))
def test_pick_listed_takes_the_strongest_accepted_entry_and_never_a_forged_one(
    listed: list[tuple[VerifierConfig, int, bool]],
) -> None:
    needed = Requirement("bootloaded", 0xFAC7, BOOTLOADED_PIN, 96)
    elements = [
        VerificationListElement(
            verification_hash_of(0xFAC7, config, have) + (1 if forged else 0), have, config
        )
        for config, have, forged in listed
    ]
    chosen = pick_listed(needed, elements)
    good = [
        (have, -verification_hash_of(0xFAC7, config, have))
        for config, have, forged in listed
        if config == BOOTLOADED_PIN and have >= 96 and not forged
    ]
    if not good:
        assert chosen is None
        return
    best_bits, neg_hash = max(good)
    assert chosen == AcceptedVerification(
        "bootloaded", 0xFAC7, BOOTLOADED_PIN, best_bits, -neg_hash
    )
    assert chosen.verification_hash in {e.verification_hash for e in elements}


@given(configured=st.integers(min_value=1, max_value=256), minimum=st.integers(80, 256))
def test_dev_bits_are_raised_to_the_routers_minimum(configured: int, minimum: int) -> None:
    got = dev_security_bits(configured, minimum)
    assert got >= minimum and got >= configured and got in (configured, minimum)
