"""Fact hashes (prover.facts) and the `fact-hash` CLI, against published vectors."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from poseidon_py.poseidon_hash import poseidon_hash, poseidon_hash_many

from keeper.cli.main import main
from prover import facts
from prover.errors import InputError
from tests.support.reference import STONE_SAMPLES

SAMPLES = STONE_SAMPLES
P = facts.FIELD_PRIME

# stone-samples/README.md: weights.cairo run on input.json (output [3, 5000, 3000, 2000, 5000]).
WEIGHTS_OUTPUT = [3, 5000, 3000, 2000, 5000]
WEIGHTS_PROGRAM_HASH = 0x76CDC29BF7BACED2ECFFC77A8A4D00035B7982F63F8AF5B536A3D9DE3B0F725
WEIGHTS_OUTPUT_HASH = 0x2B133007565CC4312EB8C4E48E104EDE67780E3C30F727640D1831AC240824B
WEIGHTS_PEDERSEN_CHAIN = 0x5C61A479C8DD51220F509E8B0CE125759A7EFD151C5CE43AA39672D50B09BB9
# The README's two facts were combined with the 2-input poseidon_hash(a, b); Integrity
# combines with the sponge (poseidon_hash_many([a, b])) — see test_readme_facts_*.
README_DIRECT_FACT = 0xD026EBF9AC99829850E967768BFE34AF3E1B8A87BD496229A0FBFE1BE63CB6
README_BOOTLOADED_FACT = 0x11306D9D116DBC380FF3912807552DBA255AB7D9F7FF546B8D95043B6FAA4B4
# The same two facts as Integrity computes them (poseidon_hash_many of the pair).
WEIGHTS_DIRECT_FACT = 0x4A752C8D600FFE9E6B6D81CDA22FC574AC664463056CA6A371FBAFC9A77EE48
WEIGHTS_BOOTLOADED_FACT = 0x32C140512A634C808CFC6E2E0790E6AF72BEEF9755FFAFBA7A796794AE415E4

# Atlantic's cairo0 fibonacci example (HerodotusDev/atlantic-examples,
# cairo0-python-vm/program.cairo), compiled with cairo-compile 0.14.0.1 without
# --proof_mode (Atlantic bootloads it). Debug info, hints and references stripped: the
# program hash chain reads only main, builtins and data. Integrity's example contract
# (FibonacciRegistry) pins its child hash and the fact for outputs (10, 55); FACTS §3.
ATLANTIC_FIB: dict[str, Any] = {
    "attributes": [],
    "builtins": ["output", "pedersen", "range_check", "bitwise"],
    "compiler_version": "0.14.0.1",
    "data": [
        "0x40780017fff7fff",
        "0x1",
        "0x400380007ffa8000",
        "0x480680017fff8000",
        "0x0",
        "0x480680017fff8000",
        "0x1",
        "0x480a80007fff8000",
        "0x1104800180018000",
        "0x9",
        "0x400280017ffa7fff",
        "0x482680017ffa8000",
        "0x2",
        "0x480a7ffb7fff8000",
        "0x480a7ffc7fff8000",
        "0x480a7ffd7fff8000",
        "0x208b7fff7fff7ffe",
        "0x20780017fff7ffd",
        "0x4",
        "0x480a7ffb7fff8000",
        "0x208b7fff7fff7ffe",
        "0x480a7ffc7fff8000",
        "0x482a7ffc7ffb8000",
        "0x482680017ffd8000",
        "0x800000000000011000000000000000000000000000000000000000000000000",
        "0x1104800180018000",
        "0x800000000000010fffffffffffffffffffffffffffffffffffffffffffffff9",
        "0x208b7fff7fff7ffe",
    ],
    "debug_info": None,
    "hints": {},
    "identifiers": {"__main__.main": {"decorators": [], "pc": 0, "type": "function"}},
    "main_scope": "__main__",
    "prime": "0x800000000000011000000000000000000000000000000000000000000000001",
    "reference_manager": {"references": []},
}
ATLANTIC_FIB_CHILD_HASH = 0x407908712E70DD914B006062D8D70BD8AEAE06BCFC973CBD4309E7F3A2E825B
ATLANTIC_FIB_FACT = 0x1C446D13EFC5A3A16387EEEC2C9347E9FD44E195B178916E1BD27C0A18220F1
# Same contract, Cairo 1 program bootloaded twice (cairo1 bootloader inside SHARP's).
CAIRO1_BOOTLOADER_HASH = 0x288BA12915C0C7E91DF572CF3ED0C9F391AA673CB247C5A208BEAA50B668F09
CAIRO1_OUTPUT_CONST = 0x49EE3EBA8C1600700EE1B87EB599F16716B0B1022947733551FDE4050CA6804
CAIRO1_FIB_PROGRAM_HASH = 0x1B2F325BF7C611B8CF643EED5451102DF4128CB17D621DAD15E2CDB9D3E3AFB
CAIRO1_FIB_FACT = 0x5C596AC545E4CA0E8C459FF2AF206315E49EC121FDC101D35B5AB038B823923


@pytest.fixture(scope="module")
def weights_compiled() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((SAMPLES / "weights_compiled.json").read_text())
    return data


felts = st.integers(min_value=0, max_value=P - 1)


# --- vectors ---------------------------------------------------------------------------


def test_weights_program_and_output_hash_match_readme(weights_compiled: dict[str, Any]) -> None:
    assert facts.program_hash(weights_compiled) == WEIGHTS_PROGRAM_HASH
    assert facts.output_hash(WEIGHTS_OUTPUT) == WEIGHTS_OUTPUT_HASH


def test_weights_pedersen_chain_matches_readme(weights_compiled: dict[str, Any]) -> None:
    assert facts.pedersen_program_hash_chain(weights_compiled) == WEIGHTS_PEDERSEN_CHAIN


def test_weights_facts_as_integrity_computes_them(weights_compiled: dict[str, Any]) -> None:
    direct = facts.direct_fact(WEIGHTS_PROGRAM_HASH, WEIGHTS_OUTPUT)
    bootloaded = facts.bootloaded_fact(WEIGHTS_PEDERSEN_CHAIN, WEIGHTS_OUTPUT)
    assert direct == WEIGHTS_DIRECT_FACT
    assert bootloaded == WEIGHTS_BOOTLOADED_FACT


def test_readme_facts_use_the_two_input_poseidon_not_integritys_sponge() -> None:
    # Pins the disagreement: the README's facts are poseidon_hash(a, b), which Integrity
    # never registers. If this test fails, the README was corrected: update the vectors.
    bootloader_output = poseidon_hash_many(
        [1, len(WEIGHTS_OUTPUT) + 2, WEIGHTS_PEDERSEN_CHAIN, *WEIGHTS_OUTPUT]
    )
    assert poseidon_hash(WEIGHTS_PROGRAM_HASH, WEIGHTS_OUTPUT_HASH) == README_DIRECT_FACT
    assert poseidon_hash(facts.BOOTLOADER_PROGRAM_HASH, bootloader_output) == (
        README_BOOTLOADED_FACT
    )
    assert README_DIRECT_FACT != WEIGHTS_DIRECT_FACT
    assert README_BOOTLOADED_FACT != WEIGHTS_BOOTLOADED_FACT


def test_atlantic_fibonacci_child_hash_and_fact() -> None:
    child = facts.pedersen_program_hash_chain(ATLANTIC_FIB)
    assert child == ATLANTIC_FIB_CHILD_HASH
    assert facts.bootloaded_fact(child, [10, 55]) == ATLANTIC_FIB_FACT


def test_cairo1_double_bootloaded_fact_vector() -> None:
    # Integrity's calculate_cairo1_fact_hash(program, input [17], output [1597]).
    inner = [0, CAIRO1_OUTPUT_CONST, 1, 1 + 1 + 5, CAIRO1_FIB_PROGRAM_HASH, 0, 1, 1597, 1, 17]
    assert facts.bootloaded_fact(CAIRO1_BOOTLOADER_HASH, inner) == CAIRO1_FIB_FACT


def test_pedersen_chain_equals_cairo_langs_own(weights_compiled: dict[str, Any]) -> None:
    from starkware.cairo.bootloaders.hash_program import (
        HashFunction,
        compute_program_hash_chain,
    )
    from starkware.cairo.lang.compiler.program import Program

    for compiled in (weights_compiled, ATLANTIC_FIB):
        program = Program.load(data=compiled)
        expected = compute_program_hash_chain(program, program_hash_function=HashFunction.PEDERSEN)
        assert facts.pedersen_program_hash_chain(compiled) == expected


def test_sample_output_is_what_public_memory_holds() -> None:
    public_input = json.loads((SAMPLES / "public_input.json").read_text())
    segment = public_input["memory_segments"]["output"]
    memory = {entry["address"]: int(entry["value"], 16) for entry in public_input["public_memory"]}
    addresses = range(segment["begin_addr"], segment["stop_ptr"])
    assert all(address in memory for address in addresses)
    assert [memory[address] for address in addresses] == WEIGHTS_OUTPUT


def test_verifier_config_and_verification_hash() -> None:
    def short(text: str) -> int:
        return int.from_bytes(text.encode(), "big")

    config = facts.verifier_config_hash("recursive", "keccak_160_lsb", "stone6", "strict")
    assert config == poseidon_hash_many(
        [short("recursive"), short("keccak_160_lsb"), short("stone6"), short("strict")]
    )
    assert short("stone6") == 0x73746F6E6536
    assert facts.verification_hash(WEIGHTS_DIRECT_FACT, config, 96) == poseidon_hash_many(
        [WEIGHTS_DIRECT_FACT, config, 96]
    )


# --- properties ------------------------------------------------------------------------


@given(program=felts, outputs=st.lists(felts, max_size=8))
def test_direct_fact_is_sponge_of_program_and_output_hash(program: int, outputs: list[int]) -> None:
    fact = facts.direct_fact(program, outputs)
    assert fact == poseidon_hash_many([program, poseidon_hash_many(outputs)])
    assert 0 <= fact < P


@given(child=felts, outputs=st.lists(felts, min_size=1, max_size=8), bump=st.integers(1, 5))
def test_bootloaded_fact_depends_on_every_output(child: int, outputs: list[int], bump: int) -> None:
    changed = [*outputs[:-1], (outputs[-1] + bump) % P]
    assert facts.bootloaded_fact(child, outputs) != facts.bootloaded_fact(child, changed)
    assert facts.bootloaded_fact(child, outputs) != facts.direct_fact(child, outputs)


# --- bad input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("compiled", "fragment"),
    [
        ({"builtins": []}, 'no "data" field'),
        ({"data": []}, "non-empty list"),
        ({"data": "0x1"}, "non-empty list"),
        ({"data": ["0x1", "12"]}, '"data"[1]'),
        ({"data": ["0xZZ"]}, "hex string"),
        ({"data": [hex(P)]}, "not a field element"),
        (["0x1"], "JSON object"),
    ],
)
def test_bad_compiled_program_is_input_error(compiled: Any, fragment: str) -> None:
    with pytest.raises(InputError, match="compiled program") as info:
        facts.program_hash(compiled)
    assert fragment in str(info.value)
    assert info.value.exit_code == 2


def test_pedersen_chain_rejects_incomplete_program() -> None:
    with pytest.raises(InputError, match="not valid cairo-compile output"):
        facts.pedersen_program_hash_chain({"data": ["0x1"]})
    no_main = copy.deepcopy(ATLANTIC_FIB)
    no_main["identifiers"] = {}
    with pytest.raises(InputError, match="no `main` function"):
        facts.pedersen_program_hash_chain(no_main)


@pytest.mark.parametrize("bad", [-1, P, True, "5"])
def test_bad_output_value_is_input_error(bad: Any) -> None:
    with pytest.raises(InputError, match=r"output\[1\]"):
        facts.output_hash([1, bad])


def test_bad_verifier_inputs_are_input_errors() -> None:
    with pytest.raises(InputError, match="short string"):
        facts.verifier_config_hash("x" * 32, "keccak_160_lsb", "stone6", "strict")
    with pytest.raises(InputError, match="non-empty"):
        facts.verifier_config_hash("small", "", "stone6", "strict")
    with pytest.raises(InputError, match="u32"):
        facts.verification_hash(1, 2, 2**32)


# --- CLI -------------------------------------------------------------------------------


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_fact_hash_json_reproduces_vectors(capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "fact-hash",
        "--program",
        str(SAMPLES / "weights_compiled.json"),
        "--output",
        "3",
        "5000",
        "0xbb8",
        "2000",
        "5000",
        "--json",
    ]
    code, out, err = _run(argv, capsys)
    assert (code, err) == (0, "")
    result = json.loads(out)
    assert int(result["program_hash"], 16) == WEIGHTS_PROGRAM_HASH
    assert int(result["output_hash"], 16) == WEIGHTS_OUTPUT_HASH
    assert int(result["pedersen_program_hash_chain"], 16) == WEIGHTS_PEDERSEN_CHAIN
    assert int(result["direct_fact"], 16) == WEIGHTS_DIRECT_FACT
    assert int(result["bootloaded_fact"], 16) == WEIGHTS_BOOTLOADED_FACT
    assert (result["fact_kind"], int(result["fact"], 16)) == ("direct", WEIGHTS_DIRECT_FACT)
    assert "verification_hash" not in result


def test_cli_fact_hash_bootloaded_with_verification(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    program = tmp_path / "fib.json"
    program.write_text(json.dumps(ATLANTIC_FIB))
    argv = [
        "fact-hash",
        "--program",
        str(program),
        "--output",
        "10",
        "55",
        "--bootloaded",
        "--layout",
        "recursive",
        "--hasher",
        "keccak_160_lsb",
        "--stone-version",
        "stone6",
        "--memory-verification",
        "relaxed",
        "--security-bits",
        "96",
    ]
    code, out, _ = _run(argv, capsys)
    assert code == 0
    lines = dict(line.split(": ", 1) for line in out.splitlines())
    assert int(lines["fact"], 16) == ATLANTIC_FIB_FACT
    assert lines["fact kind"] == "bootloaded"
    config = facts.verifier_config_hash("recursive", "keccak_160_lsb", "stone6", "relaxed")
    assert int(lines["verifier config hash"], 16) == config
    assert lines["security bits"] == "96"
    assert int(lines["verification hash"], 16) == facts.verification_hash(
        ATLANTIC_FIB_FACT, config, 96
    )


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--output", "0xZZ"], "'0xZZ' is not a number"),
        (["--output", "-3"], "not a field element"),
        (["--output", "1", "--layout", "small"], "also needs --hasher"),
        (["--output", "1", "--security-bits", "96"], "--security-bits needs"),
    ],
)
def test_cli_fact_hash_bad_input_exits_2(
    extra: list[str], fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["fact-hash", "--program", str(SAMPLES / "weights_compiled.json"), *extra]
    code, out, err = _run(argv, capsys)
    assert code == 2
    assert out == ""
    assert fragment in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_cli_fact_hash_unreadable_program_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    not_json = tmp_path / "prog.cairo"
    not_json.write_text("func main() {}")
    for path, fragment in ((tmp_path / "missing.json", "cannot read"), (not_json, "not JSON")):
        code, _, err = _run(["fact-hash", "--program", str(path), "--output", "1"], capsys)
        assert code == 2
        assert fragment in err
