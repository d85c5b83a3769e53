"""The swiftness pre-check (prover.swiftness).

Pure parts against real swiftness 1.0.0 outputs (tests/vectors/swiftness/cases.json,
recorded by record_cases.py) and generated inputs; the runner against the real binary on
the shared Integrity proofs (skipped with the reason when either is absent) and against
stand-in scripts for the failure modes a real binary cannot be made to show on demand.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prover import swiftness as sw
from prover.errors import ProverError
from prover.facts import FIELD_PRIME
from prover.stone import public_outputs
from tests.prover.swiftness_tamper import bump_last_output, flip_annotation, flip_proof_hex_word
from tests.support.reference import ROOT

P = FIELD_PRIME
VECTORS = ROOT / "tests" / "vectors" / "swiftness"
CASES: dict[str, dict[str, Any]] = {
    case["name"]: case
    for case in json.loads((VECTORS / "cases.json").read_text())["cases"]
}
INTEGRITY_DIR = Path(os.environ.get("INTEGRITY_DIR", "/work/shared/integrity"))
FIB = "small_stone6_keccak_fibonacci"
ALLOC = "allocation_small_stone6_keccak_96bits"
SMALL6 = sw.VerifierConfig("small", "keccak_160_lsb", "stone6")

# The public memory of the two shared proofs (their output segments), written out by hand.
FIB_OUTPUTS = (0x2710, 0x50E9BDB6F0A079DDA35B66A7853BD9431FE79EFC4EF54955AA6D928EA307226)
ALLOC_OUTPUTS = (
    0x1234, 0x7, 0x6B4820B827CACB4225E2FD47A9E1911A9853BAB6B3AD47AFDED840FA7D12AA2,
    0x2328, 0x1, 0x3, 0xACD, 0x78D, 0x14B6, 0x1B, 0x38, 0xA,
)  # fmt: skip
FIB_PEDERSEN = 0x9F6693F4A5610A46B5D71EF573C43BEF5F0D111FC1C5E506D509C458A29BAE  # FACTS §4
ALLOC_PEDERSEN = 0x782127AA385CA72C143E60A4F49AFCE9734837DDF0EBF93814D46FDC0B2216D

felts = st.integers(min_value=0, max_value=P - 1)


def swiftness_stdout(program_hash: int, outputs: list[int] | tuple[int, ...]) -> str:
    """What swiftness 1.0.0 prints (Rust `{:#x}` / lambdaworks Display: 0x, no zero pad)."""
    return f"program hash: {program_hash:#x}\nprogram output: [{', '.join(map(hex, outputs))}]\n"


# --- parse_swiftness_stdout -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "program_hash", "outputs"),
    [
        ("verified_fibonacci", FIB_PEDERSEN, FIB_OUTPUTS),
        ("verified_allocation", ALLOC_PEDERSEN, ALLOC_OUTPUTS),
        # swiftness never reads proof_hex, and skips the inner FRI layers' Merkle check:
        ("accepted_proof_hex_flip_fibonacci", FIB_PEDERSEN, FIB_OUTPUTS),
        ("accepted_proof_hex_flip_allocation", ALLOC_PEDERSEN, ALLOC_OUTPUTS),
        ("accepted_fri_inner_layer_node", FIB_PEDERSEN, FIB_OUTPUTS),
    ],
)
def test_parses_recorded_success(name: str, program_hash: int, outputs: tuple[int, ...]) -> None:
    case = CASES[name]
    assert case["exit_code"] == 0
    assert case["stderr"] == ""
    report = sw.parse_swiftness_stdout(case["stdout"])
    assert report == sw.SwiftnessReport(program_hash, outputs)


def test_recorded_success_is_the_exact_format_we_emulate() -> None:
    for name in ("verified_fibonacci", "verified_allocation"):
        report = sw.parse_swiftness_stdout(CASES[name]["stdout"])
        assert swiftness_stdout(report.program_hash, report.outputs) == CASES[name]["stdout"]


@pytest.mark.parametrize(
    "name", [n for n, c in CASES.items() if c["exit_code"] != 0 or n == "version"]
)
def test_recorded_non_reports_never_parse(name: str) -> None:
    case = CASES[name]
    for text in (case["stdout"], case["stderr"]):
        with pytest.raises(sw.SwiftnessUnreadableOutputError):
            sw.parse_swiftness_stdout(text)


@given(felts, st.lists(felts, max_size=40))
def test_parse_round_trips_every_report(program_hash: int, outputs: list[int]) -> None:
    report = sw.parse_swiftness_stdout(swiftness_stdout(program_hash, outputs))
    assert report == sw.SwiftnessReport(program_hash, tuple(outputs))


def test_parse_accepts_missing_final_newline_and_empty_output() -> None:
    assert sw.parse_swiftness_stdout("program hash: 0x0\nprogram output: []") == (
        sw.SwiftnessReport(0, ())
    )


GOOD = CASES["verified_fibonacci"]["stdout"]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "\n",
        GOOD.splitlines()[0] + "\n",  # no output line
        GOOD.splitlines()[1] + "\n",  # no hash line
        "\n".join(reversed(GOOD.splitlines())) + "\n",  # lines swapped
        GOOD + "warning: something\n",  # an extra line
        "note\n" + GOOD,
        GOOD.replace("\n", "\r\n"),
        GOOD.replace("0x9f66", "0x9F66"),  # upper-case hex
        GOOD.replace("program hash: ", "program hash:  "),
        GOOD.replace("]", "] "),
        GOOD.replace("[", "[ "),
        GOOD.replace(", ", ","),
        GOOD.replace("0x2710", "10000"),  # decimal
        GOOD.replace("0x2710", "-0x2710"),
        GOOD.replace("0x2710", "0x"),
        # what `swiftness -o` prints instead of the values: never accepted as a report
        GOOD.splitlines()[0] + "\nprogram output hash: 0x1234\n",
        f"program hash: {P:#x}\nprogram output: []\n",  # not a field element
        f"program hash: 0x1\nprogram output: [{P + 5:#x}]\n",
    ],
)
def test_parse_rejects_anything_else(text: str) -> None:
    with pytest.raises(sw.SwiftnessUnreadableOutputError) as info:
        sw.parse_swiftness_stdout(text)
    assert info.value.code == "swiftness_unreadable_output"


@given(st.text(max_size=300))
def test_parse_of_arbitrary_text_either_fails_cleanly_or_is_a_report(text: str) -> None:
    try:
        report = sw.parse_swiftness_stdout(text)
    except sw.SwiftnessUnreadableOutputError:
        return
    assert text.startswith("program hash: 0x")  # only the grammar gets through
    assert report.program_hash < P


# --- rejection_reason -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "reason_start"),
    [
        ("rejected_output_fibonacci", "Commit(Oods(EvaluationInvalid {"),
        ("rejected_output_allocation", "Commit(Oods(EvaluationInvalid {"),
        ("rejected_trace_value", "Verify(TraceDecommitError("),
        ("rejected_trace_commitment", "Commit(Oods(EvaluationInvalid {"),
        ("rejected_proof_of_work", "Commit(POW(ProofOfWorkFail))"),
        ("rejected_wrong_layout_build", "Validation(Trace(ColumnsNumInvalid))"),
        ("rejected_wrong_stone_version_build", "Commit(Oods(EvaluationInvalid {"),
        ("rejected_not_json", "expected value at line 1 column 1"),
        ("rejected_not_a_proof", "missing field `proof_parameters`"),
        ("rejected_missing_file", "Os { code: 2, kind: NotFound"),
        ("usage_no_proof_argument", "the following required arguments were not provided"),
    ],
)
def test_rejection_reason_quotes_swiftness(name: str, reason_start: str) -> None:
    case = CASES[name]
    assert case["exit_code"] in (1, 2)
    assert case["stdout"] == ""
    assert sw.rejection_reason(case["stderr"]).startswith(reason_start)


def test_rejection_reason_without_error_line() -> None:
    panic = "thread 'main' panicked at src/fri.rs:88:5:\nInvalid value\nnote: run with ...\n"
    assert sw.rejection_reason(panic) == "panic: Invalid value"
    assert sw.rejection_reason("") == "(no message)"
    assert sw.rejection_reason("Killed\n") == "Killed"
    with_backtrace = "Error: missing field `x`\n\nStack backtrace:\n   0: anyhow::...\n"
    assert sw.rejection_reason(with_backtrace) == "missing field `x`"


# --- check_report -----------------------------------------------------------------------------


def _check(report: sw.SwiftnessReport, **overrides: Any) -> None:
    kwargs: dict[str, Any] = {
        "expected_program_hash": FIB_PEDERSEN,
        "expected_outputs": FIB_OUTPUTS,
        "security_bits": 60,
        "min_security_bits": 60,
    }
    kwargs.update(overrides)
    sw.check_report(report, **kwargs)


FIB_REPORT = sw.SwiftnessReport(FIB_PEDERSEN, FIB_OUTPUTS)


def test_check_report_passes_on_a_match() -> None:
    _check(FIB_REPORT)
    _check(FIB_REPORT, min_security_bits=None, security_bits=0)
    _check(FIB_REPORT, expected_outputs=list(FIB_OUTPUTS))


def test_check_report_program_hash_mismatch() -> None:
    with pytest.raises(sw.ProgramHashMismatchError) as info:
        _check(FIB_REPORT, expected_program_hash=ALLOC_PEDERSEN)
    assert info.value.code == "program_hash_mismatch"
    assert f"{FIB_PEDERSEN:#x}" in info.value.message
    assert f"{ALLOC_PEDERSEN:#x}" in info.value.message


def test_check_report_names_the_first_differing_output() -> None:
    with pytest.raises(sw.OutputMismatchError) as info:
        _check(FIB_REPORT, expected_outputs=(0x2710, 5))
    assert info.value.code == "output_mismatch"
    assert "output[1] is 0x50e9" in info.value.message
    assert "0x5 in the trace" in info.value.message
    with pytest.raises(sw.OutputMismatchError, match="2 output values, the trace 3"):
        _check(FIB_REPORT, expected_outputs=(*FIB_OUTPUTS, 0))
    with pytest.raises(sw.OutputMismatchError, match="2 output values, the trace 0"):
        _check(FIB_REPORT, expected_outputs=())


def test_check_report_security_bits() -> None:
    with pytest.raises(sw.SecurityBitsTooLowError) as info:
        _check(FIB_REPORT, security_bits=59, min_security_bits=60)
    assert info.value.code == "security_bits_too_low"
    assert "59 security bits" in info.value.message
    _check(FIB_REPORT, security_bits=96, min_security_bits=60)


@given(st.lists(felts, max_size=6), st.lists(felts, max_size=6), felts, felts)
def test_check_report_passes_exactly_when_everything_matches(
    got: list[int], want: list[int], got_hash: int, want_hash: int
) -> None:
    report = sw.SwiftnessReport(got_hash, tuple(got))
    try:
        _check(report, expected_program_hash=want_hash, expected_outputs=want)
    except (sw.ProgramHashMismatchError, sw.OutputMismatchError):
        assert (got_hash, got) != (want_hash, want)
    else:
        assert (got_hash, got) == (want_hash, want)


def test_error_classes_have_stable_codes() -> None:
    codes = {
        sw.SwiftnessError: "swiftness_failed",
        sw.SwiftnessBinaryMissingError: "swiftness_missing",
        sw.SwiftnessUnreadableProofError: "proof_unreadable",
        sw.SwiftnessUnsupportedProofError: "proof_unsupported",
        sw.SwiftnessProofRejectedError: "proof_rejected",
        sw.SwiftnessAnnotationMismatchError: "proof_annotations_mismatch",
        sw.SwiftnessTimeoutError: "swiftness_timeout",
        sw.SwiftnessUnreadableOutputError: "swiftness_unreadable_output",
        sw.ProgramHashMismatchError: "program_hash_mismatch",
        sw.OutputMismatchError: "output_mismatch",
        sw.SecurityBitsTooLowError: "security_bits_too_low",
    }
    for cls, code in codes.items():
        assert issubclass(cls, ProverError)
        assert cls("x").code == code
    assert issubclass(sw.SwiftnessAnnotationMismatchError, sw.SwiftnessProofRejectedError)
    assert len(sw.SwiftnessError("m", detail="d" * 5000).detail) == 2000


# --- verifier_config / proof_security_bits -----------------------------------------------------


def proof_header(
    layout: str = "small",
    commitment_hash: str = "keccak256_masked160_lsb",
    stark: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "public_input": {"layout": layout},
        "proof_parameters": {
            "commitment_hash": commitment_hash,
            "stark": stark or {
                "log_n_cosets": 2,
                "fri": {"n_queries": 38, "proof_of_work_bits": 20},
            },
        },
    }


@given(
    st.sampled_from(sw.LAYOUTS),
    st.sampled_from(sorted(sw.HASHER_BY_COMMITMENT_HASH.items())),
    st.sampled_from(sw.STONE_VERSIONS),
)
def test_verifier_config_from_proof(layout: str, hashes: tuple[str, str], version: str) -> None:
    commitment_hash, hasher = hashes
    config = sw.verifier_config(proof_header(layout, commitment_hash), version)
    assert config == sw.VerifierConfig(layout, hasher, version)  # type: ignore[arg-type]
    assert config.name == f"{layout}-{hasher}-{version}"
    assert config.build_info == (
        f"swiftness=1.0.0 layout={layout} hasher={hasher} stone_version={version}"
    )


def test_build_info_matches_the_install_script() -> None:
    script = (ROOT / "scripts" / "install_swiftness.sh").read_text()
    assert 'SWIFTNESS_VERSION=1.0.0' in script
    assert (
        'info="swiftness=$SWIFTNESS_VERSION layout=$layout hasher=$hasher '
        'stone_version=$version"' in script
    )
    assert 'obsqra-keeper/swiftness' in script
    for name in (*sw.LAYOUTS, *sw.HASHER_BY_COMMITMENT_HASH.values(), *sw.STONE_VERSIONS):
        assert re.search(rf"\b{name}\b", script), name


@pytest.mark.parametrize(
    ("proof", "version", "error", "fragment"),
    [
        (proof_header(), "keccak", sw.SwiftnessUnsupportedProofError, "stone5 or stone6"),
        (proof_header(layout="plain"), "stone6", sw.SwiftnessUnsupportedProofError, "'plain'"),
        (proof_header(layout="dynamic"), "stone6", sw.SwiftnessUnsupportedProofError, "dynamic"),
        (proof_header(commitment_hash="keccak256"), "stone6", sw.SwiftnessUnsupportedProofError,
         "'keccak256'"),
        ({"public_input": {}}, "stone6", sw.SwiftnessUnreadableProofError, "public_input.layout"),
        ({"public_input": {"layout": "small"}}, "stone6", sw.SwiftnessUnreadableProofError,
         "proof_parameters.commitment_hash"),
        ({}, "stone6", sw.SwiftnessUnreadableProofError, "public_input.layout"),
    ],
)  # fmt: skip
def test_verifier_config_refuses(
    proof: dict[str, Any], version: str, error: type[Exception], fragment: str
) -> None:
    with pytest.raises(error, match=re.escape(fragment)):
        sw.verifier_config(proof, version)


def test_security_bits() -> None:
    assert sw.proof_security_bits(proof_header()) == 96
    stark = {"log_n_cosets": 2, "fri": {"n_queries": 18, "proof_of_work_bits": 24}}
    assert sw.proof_security_bits(proof_header(stark=stark)) == 60
    for bad in ({"log_n_cosets": 2, "fri": {"n_queries": "18", "proof_of_work_bits": 24}},
                {"log_n_cosets": True, "fri": {"n_queries": 18, "proof_of_work_bits": 24}},
                {"log_n_cosets": -1, "fri": {"n_queries": 18, "proof_of_work_bits": 24}},
                {"fri": {"n_queries": 18, "proof_of_work_bits": 24}}):  # fmt: skip
        with pytest.raises(sw.SwiftnessUnreadableProofError):
            sw.proof_security_bits(proof_header(stark=bad))


# --- check_annotations_match_proof_hex ----------------------------------------------------------

R = 2**256 % P
# ("Hash" | "Data" | "Row" (a table row: Montgomery form) | "Field Element(s)" (channel), values)
Segment = tuple[str, list[int]]
_PATHS = {
    "Hash": ("/cpu air/STARK/FRI/Decommitment/Layer 1: For node 5", "Hash"),
    "Data": ("/cpu air/STARK/FRI/Proof of Work: POW", "Data"),
    "Row": ("/cpu air/STARK/FRI/Decommitment/Layer 0/Virtual Oracle/Trace 0: Row 9, Column 1",
            "Field Element"),
    "Field Element": ("/cpu air/STARK/Out Of Domain Sampling/x", "Field Element"),
    "Field Elements": ("/cpu air/STARK/Out Of Domain Sampling/OODS values: ", "Field Elements"),
}  # fmt: skip


def build_proof(segments: list[Segment]) -> dict[str, Any]:
    """A proof_hex and its annotations written the way Stone writes them."""
    raw = b""
    lines = ["title cpu air Proof Protocol", "", "V->P: /cpu air/STARK/x: Field Element(0x1)"]
    for kind, values in segments:
        if kind in ("Hash", "Data"):
            chunk = values[0].to_bytes(32, "big")
        else:
            factor = R if kind == "Row" else 1
            chunk = b"".join((v * factor % P).to_bytes(32, "big") for v in values)
        path, printed_kind = _PATHS[kind]
        text = ", ".join(map(hex, values))
        end = len(raw) + len(chunk)
        lines.append(f"P->V[{len(raw)}:{end}]: {path}: {printed_kind}({text})")
        raw += chunk
    return {"proof_hex": "0x" + raw.hex(), "annotations": [*lines, "", "Data count: 1"]}


words256 = st.integers(0, 2**256 - 1)
segment = st.one_of(
    st.tuples(st.sampled_from(["Hash", "Data"]), st.lists(words256, min_size=1, max_size=1)),
    st.tuples(st.sampled_from(["Row", "Field Element"]), st.lists(felts, min_size=1, max_size=1)),
    st.tuples(st.just("Field Elements"), st.lists(felts, min_size=1, max_size=5)),
)


@given(st.lists(segment, min_size=1, max_size=8))
def test_annotations_of_an_untouched_proof_pass(segments: list[Segment]) -> None:
    assert sw.check_annotations_match_proof_hex(build_proof(segments)) == len(segments)


@given(st.lists(segment, min_size=1, max_size=8), st.data())
def test_any_changed_proof_byte_is_caught(segments: list[Segment], data: st.DataObject) -> None:
    proof = build_proof(segments)
    raw = bytearray(bytes.fromhex(proof["proof_hex"][2:]))
    at = data.draw(st.integers(0, len(raw) - 1))
    raw[at] ^= data.draw(st.integers(1, 255))
    proof["proof_hex"] = "0x" + raw.hex()
    with pytest.raises(sw.SwiftnessAnnotationMismatchError):
        sw.check_annotations_match_proof_hex(proof)


@given(felts.filter(lambda v: v * R % P != v))
def test_representation_is_bound_to_the_location(value: int) -> None:
    """A table row must be Montgomery, a channel value plain: the other form of the same
    bytes is a different value and must not pass."""
    row = build_proof([("Row", [value])])
    channel = build_proof([("Field Element", [value])])
    assert sw.check_annotations_match_proof_hex(row) == 1
    assert sw.check_annotations_match_proof_hex(channel) == 1
    swapped_row = {**row, "proof_hex": channel["proof_hex"]}
    swapped_channel = {**channel, "proof_hex": row["proof_hex"]}
    for proof in (swapped_row, swapped_channel):
        with pytest.raises(sw.SwiftnessAnnotationMismatchError):
            sw.check_annotations_match_proof_hex(proof)


def _edit(proof: dict[str, Any], index: int, change: Callable[[str], str]) -> dict[str, Any]:
    proof["annotations"][index] = change(proof["annotations"][index])
    return proof


BASE: list[Segment] = [("Hash", [0xABC]), ("Field Elements", [1, 2]), ("Data", [7])]


@pytest.mark.parametrize(
    ("alter", "fragment"),
    [
        (lambda p: _edit(p, 3, lambda s: s.replace("0xabc", "0xabd")), "does not match"),
        (lambda p: _edit(p, 4, lambda s: s.replace("0x1, 0x2", "0x2, 0x1")), "does not match"),
        (lambda p: _edit(p, 4, lambda s: s.replace("0x1, 0x2", "0x1")), "does not match"),
        (lambda p: _edit(p, 4, lambda s: s.replace("[32:96]", "[33:96]")), "next unannotated byte"),
        (lambda p: _edit(p, 5, lambda s: s.replace("[96:128]", "[96:160]")), "next unannotated"),
        (lambda p: _edit(p, 3, lambda s: s.replace("Hash(", "Digest(")), "not in a form"),
        (lambda p: _edit(p, 3, lambda s: s.replace("0xabc", "0xABC")), "not in a form"),
        (lambda p: {**p, "annotations": p["annotations"][:5]}, "cover 96 of the 128"),
        (lambda p: {**p, "annotations": p["annotations"][:3]}, "cover 0 of the 128"),
        (lambda p: {**p, "proof_hex": p["proof_hex"] + "00"}, "cover 128 of the 129"),
    ],
)  # fmt: skip
def test_annotation_mismatches(
    alter: Callable[[dict[str, Any]], dict[str, Any]], fragment: str
) -> None:
    assert sw.check_annotations_match_proof_hex(build_proof(BASE)) == 3
    with pytest.raises(sw.SwiftnessAnnotationMismatchError, match=re.escape(fragment)):
        sw.check_annotations_match_proof_hex(alter(build_proof(BASE)))


@pytest.mark.parametrize(
    "proof",
    [
        {"annotations": []},
        {"proof_hex": "abc", "annotations": []},
        {"proof_hex": "0xzz", "annotations": []},
        {"proof_hex": "0x00", "annotations": "P->V"},
        {"proof_hex": "0x00", "annotations": [1]},
    ],
)
def test_unreadable_proof_fields(proof: dict[str, Any]) -> None:
    with pytest.raises(sw.SwiftnessUnreadableProofError):
        sw.check_annotations_match_proof_hex(proof)


# --- swiftness_program_hash --------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(st.lists(felts, min_size=1, max_size=12))
def test_program_hash_is_cairo_langs_compute_hash_on_elements(words: list[int]) -> None:
    from starkware.cairo.common.hash_state import compute_hash_on_elements

    compiled = {"data": [hex(w) for w in words]}
    assert sw.swiftness_program_hash(compiled) == compute_hash_on_elements(words)


@pytest.mark.parametrize("data", [None, [], ["0x1", "12"], ["0x1", hex(P)], ["0x1", True], "0x1"])
def test_program_hash_refuses_bad_compiled_programs(data: Any) -> None:
    with pytest.raises(sw.SwiftnessError) as info:
        sw.swiftness_program_hash({"data": data} if data is not None else {})
    assert info.value.code == "bad_compiled_program"


# --- the shared proofs (pure parts) --------------------------------------------------------


def _shared_proof(name: str) -> dict[str, Any]:
    path = INTEGRITY_DIR / "proofs" / f"{name}.proof.json"
    if not path.is_file():
        pytest.skip(f"{path} is absent (set INTEGRITY_DIR to the shared Integrity folder)")
    proof: dict[str, Any] = json.loads(path.read_text())
    return proof


def _program_words(proof: dict[str, Any]) -> list[str]:
    """The program segment of the public memory: addresses 1 .. initial_fp - 3."""
    public_input = proof["public_input"]
    memory = {cell["address"]: cell["value"] for cell in public_input["public_memory"]}
    initial_fp = public_input["memory_segments"]["execution"]["begin_addr"]
    return [memory[address] for address in range(1, initial_fp - 2)]


@pytest.mark.parametrize(
    ("name", "program_hash", "outputs", "bits", "words"),
    [(FIB, FIB_PEDERSEN, FIB_OUTPUTS, 60, 34), (ALLOC, ALLOC_PEDERSEN, ALLOC_OUTPUTS, 96, 1105)],
)
def test_shared_proofs_pure_facts(
    name: str, program_hash: int, outputs: tuple[int, ...], bits: int, words: int
) -> None:
    proof = _shared_proof(name)
    assert sw.verifier_config(proof, "stone6") == SMALL6
    assert sw.proof_security_bits(proof) == bits
    assert sw.check_annotations_match_proof_hex(proof) > 1000
    program = _program_words(proof)
    assert len(program) == words
    assert sw.swiftness_program_hash({"data": program}) == program_hash
    assert public_outputs(proof["public_input"]) == outputs


@pytest.mark.parametrize("name", [FIB, ALLOC])
def test_tampered_proof_hex_and_annotations_are_caught(name: str) -> None:
    proof = _shared_proof(name)
    for altered in (
        flip_proof_hex_word(proof),
        flip_annotation(proof, "Decommitment/Layer 1: For node"),
        flip_annotation(proof, "Proof of Work"),
    ):
        with pytest.raises(sw.SwiftnessAnnotationMismatchError):
            sw.check_annotations_match_proof_hex(altered)
    # the public memory is not in the annotations: that tamper is swiftness' to catch
    assert sw.check_annotations_match_proof_hex(bump_last_output(proof)) > 1000


# --- the runner against the real binary -------------------------------------------------------


@pytest.fixture
def runner() -> sw.SwiftnessRunner:
    real = sw.SwiftnessRunner()
    try:
        real.binary_for(SMALL6)
    except sw.SwiftnessBinaryMissingError as exc:
        pytest.skip(f"real swiftness absent: {exc}")
    return real


def _write(tmp_path: Path, proof: dict[str, Any], name: str = "proof.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(proof))
    return path


@pytest.mark.parametrize(
    ("name", "program_hash", "outputs", "bits"),
    [(FIB, FIB_PEDERSEN, FIB_OUTPUTS, 60), (ALLOC, ALLOC_PEDERSEN, ALLOC_OUTPUTS, 96)],
)
async def test_real_precheck_passes(
    runner: sw.SwiftnessRunner, name: str, program_hash: int, outputs: tuple[int, ...], bits: int
) -> None:
    proof = _shared_proof(name)
    result = await runner.precheck(
        INTEGRITY_DIR / "proofs" / f"{name}.proof.json",
        stone_version="stone6",
        expected_program_hash=sw.swiftness_program_hash({"data": _program_words(proof)}),
        expected_outputs=public_outputs(proof["public_input"]),
        min_security_bits=bits,
    )
    assert result.config == SMALL6
    assert result.report == sw.SwiftnessReport(program_hash, outputs)
    assert result.security_bits == bits


async def test_real_wrong_expectations(runner: sw.SwiftnessRunner) -> None:
    path = INTEGRITY_DIR / "proofs" / f"{ALLOC}.proof.json"
    _shared_proof(ALLOC)
    good: dict[str, Any] = {
        "stone_version": "stone6",
        "expected_program_hash": ALLOC_PEDERSEN,
        "expected_outputs": ALLOC_OUTPUTS,
    }
    with pytest.raises(sw.ProgramHashMismatchError):
        await runner.precheck(path, **{**good, "expected_program_hash": FIB_PEDERSEN})
    wrong_epoch = (ALLOC_OUTPUTS[0], 8, *ALLOC_OUTPUTS[2:])
    with pytest.raises(sw.OutputMismatchError, match=r"output\[1\] is 0x7 in the proof"):
        await runner.precheck(path, **{**good, "expected_outputs": wrong_epoch})
    with pytest.raises(sw.SecurityBitsTooLowError):
        await runner.precheck(path, **good, min_security_bits=100)


@pytest.mark.parametrize("name", [FIB, ALLOC])
async def test_real_tampered_output_is_rejected_by_swiftness(
    runner: sw.SwiftnessRunner, tmp_path: Path, name: str
) -> None:
    path = _write(tmp_path, bump_last_output(_shared_proof(name)))
    with pytest.raises(sw.SwiftnessProofRejectedError) as info:
        await runner.verify(path, stone_version="stone6")
    error = info.value
    assert type(error) is sw.SwiftnessProofRejectedError
    assert error.code == "proof_rejected"
    assert error.exit_status == 1
    assert "Commit(Oods(EvaluationInvalid" in error.message
    assert error.detail.startswith("Error: Commit(Oods(EvaluationInvalid")


async def test_real_tampered_proof_hex_is_rejected_before_swiftness(
    runner: sw.SwiftnessRunner, tmp_path: Path
) -> None:
    path = _write(tmp_path, flip_proof_hex_word(_shared_proof(FIB)))
    with pytest.raises(sw.SwiftnessAnnotationMismatchError) as info:
        await runner.verify(path, stone_version="stone6")
    assert info.value.code == "proof_annotations_mismatch"


async def test_real_stone5_build_rejects_a_stone6_proof(tmp_path: Path) -> None:
    config = sw.VerifierConfig("small", "keccak_160_lsb", "stone5")
    runner = sw.SwiftnessRunner()
    try:
        runner.binary_for(config)
    except sw.SwiftnessBinaryMissingError as exc:
        pytest.skip(f"no stone5 build: {exc}")
    _shared_proof(ALLOC)
    path = INTEGRITY_DIR / "proofs" / f"{ALLOC}.proof.json"
    with pytest.raises(sw.SwiftnessProofRejectedError) as info:
        await runner.verify(path, stone_version="stone5")
    assert "Commit(Oods(EvaluationInvalid" in info.value.message
    assert "prover.parameter_set 'stone5'" in info.value.message


# --- the runner: missing pieces and stand-ins -------------------------------------------------


def _synthetic_proof(tmp_path: Path) -> Path:
    proof = {
        **proof_header(),
        **build_proof([("Hash", [1]), ("Field Elements", [2, 3])]),
    }
    return _write(tmp_path, proof)


def _install_stand_in(root: Path, script: str, config: sw.VerifierConfig = SMALL6) -> Path:
    """A fake swiftness build (a shell script) with a valid BUILD_INFO stamp."""
    bin_dir = root / config.name / "bin"
    bin_dir.mkdir(parents=True)
    binary = bin_dir / "swiftness"
    binary.write_text("#!/bin/sh\n" + script)
    binary.chmod(binary.stat().st_mode | stat.S_IXUSR)
    (root / config.name / "BUILD_INFO").write_text(config.build_info + "\n")
    return binary


async def test_missing_binary_says_run_make_setup(tmp_path: Path) -> None:
    runner = sw.SwiftnessRunner(tmp_path / "empty")
    with pytest.raises(sw.SwiftnessBinaryMissingError) as info:
        await runner.verify(_synthetic_proof(tmp_path), stone_version="stone6")
    assert info.value.code == "swiftness_missing"
    assert "run `make setup`" in info.value.message
    assert "small:keccak_160_lsb:stone6" in info.value.message


def test_unfinished_or_foreign_build_counts_as_missing(tmp_path: Path) -> None:
    binary = _install_stand_in(tmp_path, "exit 0\n")
    runner = sw.SwiftnessRunner(tmp_path)
    assert runner.binary_for(SMALL6) == binary
    (binary.parent.parent / "BUILD_INFO").write_text("swiftness=0.9 layout=small\n")
    with pytest.raises(sw.SwiftnessBinaryMissingError):
        runner.binary_for(SMALL6)
    (binary.parent.parent / "BUILD_INFO").unlink()
    with pytest.raises(sw.SwiftnessBinaryMissingError):
        runner.binary_for(SMALL6)
    (binary.parent.parent / "BUILD_INFO").write_text(SMALL6.build_info)
    binary.chmod(0o644)
    with pytest.raises(sw.SwiftnessBinaryMissingError):
        runner.binary_for(SMALL6)


async def test_unreadable_proof_files(tmp_path: Path) -> None:
    runner = sw.SwiftnessRunner(tmp_path)
    with pytest.raises(sw.SwiftnessUnreadableProofError, match="not found"):
        await runner.verify(tmp_path / "nope.json", stone_version="stone6")
    (tmp_path / "text.json").write_text("hello")
    with pytest.raises(sw.SwiftnessUnreadableProofError, match="not readable JSON"):
        await runner.verify(tmp_path / "text.json", stone_version="stone6")
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(sw.SwiftnessUnreadableProofError, match="not a JSON object"):
        await runner.verify(tmp_path / "list.json", stone_version="stone6")


async def test_stand_in_sees_only_a_private_copy_and_a_clean_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = tmp_path / "seen"
    _install_stand_in(
        tmp_path / "root",
        f'env > {seen}.env; cp "$2" {seen}.proof; echo "$1 $2" > {seen}.args\n'
        'printf "program hash: 0x5\\nprogram output: [0x1, 0x2]\\n"\n',
    )
    proof_path = _synthetic_proof(tmp_path)
    monkeypatch.setenv("OBSQRA_TEST_SECRET", "do-not-leak")
    result = await sw.SwiftnessRunner(tmp_path / "root").verify(proof_path, stone_version="stone6")
    assert result.report == sw.SwiftnessReport(5, (1, 2))
    assert result.security_bits == 96
    assert Path(f"{seen}.proof").read_bytes() == proof_path.read_bytes()
    flag, copy = Path(f"{seen}.args").read_text().split()
    assert flag == "--proof"
    assert copy != str(proof_path)
    assert not Path(copy).exists()  # the private copy is gone afterwards
    env = Path(f"{seen}.env").read_text()
    assert "do-not-leak" not in env
    assert "RUST_BACKTRACE=0" in env


async def test_stand_in_unknown_output_is_an_error(tmp_path: Path) -> None:
    _install_stand_in(tmp_path / "root", 'echo "verified!"\n')
    with pytest.raises(sw.SwiftnessUnreadableOutputError, match="verified!"):
        await sw.SwiftnessRunner(tmp_path / "root").verify(
            _synthetic_proof(tmp_path), stone_version="stone6"
        )


async def test_stand_in_killed_by_a_signal_is_a_rejection(tmp_path: Path) -> None:
    _install_stand_in(tmp_path / "root", "kill -9 $$\n")
    with pytest.raises(sw.SwiftnessProofRejectedError) as info:
        await sw.SwiftnessRunner(tmp_path / "root").verify(
            _synthetic_proof(tmp_path), stone_version="stone6"
        )
    assert info.value.exit_status == -9


async def test_stand_in_that_hangs_times_out_and_is_killed(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    _install_stand_in(tmp_path / "root", f"echo $$ > {pid_file}\nexec sleep 600\n")
    runner = sw.SwiftnessRunner(tmp_path / "root", timeout_s=1.0)
    with pytest.raises(sw.SwiftnessTimeoutError) as info:
        await runner.verify(_synthetic_proof(tmp_path), stone_version="stone6")
    assert info.value.code == "swiftness_timeout"
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # killed and reaped
