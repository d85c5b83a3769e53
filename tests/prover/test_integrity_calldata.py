"""Integrity calldata from Stone proofs (prover.integrity), against the shared reference data.

Reference data: ``$INTEGRITY_DIR`` (default /work/shared/integrity). Tests that need it skip
with the reason below when it is absent.

Discovery rule (new proofs and calldata are picked up without code changes):
* every ``proofs/<name>.proof.json`` is parsed and, when ``proofs/<name>.fact`` exists, its
  fact is checked;
* every folder among ``calldata/`` and its direct subfolders holding ``split_initial.txt``
  or ``proof_monolith.txt`` is a reference set. It belongs to the proof whose
  original-trace commitment (the first annotated prover message, ``STARK/Original/Commit on
  Trace``) occurs among the set's felts; a set that matches no proof or several fails.
  So ``calldata/*.txt`` pairs with the fibonacci proof and ``calldata/allocation/*.txt``
  with the allocation proof, and a folder named after anything still finds its proof;
* in a set, each file present is compared byte for byte (space-separated decimal felts and
  a newline): ``proof_monolith.txt`` = the monolith, ``verify_proof_full.txt`` = the
  ``verify_proof_full_and_register_fact`` calldata, ``split_initial.txt``,
  ``split_step_<k>.txt`` (k = 1, 2, ...) and ``split_final.txt`` = the split calls in
  order, built with the job id the set used (the first felt of ``split_initial.txt``).
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prover.errors import ProverError
from prover.integrity import (
    MAX_TRANSACTION_CALLDATA,
    CalldataTooLarge,
    InconsistentProof,
    IntegrityProofError,
    InvalidProof,
    JobStateMismatch,
    MalformedProof,
    MissingAnnotations,
    StarkProof,
    StatementRejected,
    UnsupportedProof,
    VerifierConfiguration,
    check_transaction_sizes,
    fact_of,
    full_verification_call,
    guard_full_call,
    guard_split_calls,
    guard_split_plan,
    monolith_calldata,
    parse_proof,
    proof_statement,
    security_bits,
    split_calldata,
    split_plan,
    stored_option,
    verification_hash,
    verifier_config,
    verifier_settings,
    verifier_split_calls,
)
from prover.integrity.calldata import calldata_parts
from prover.integrity.field import MONTGOMERY_R, PRIME
from prover.integrity.folding import FRI_GROUP, FriLayerQuery, fold_layer, fri_formula
from prover.integrity.model import MemoryCell

INTEGRITY_DIR = Path(os.environ.get("INTEGRITY_DIR", "/work/shared/integrity"))
PROOFS = INTEGRITY_DIR / "proofs"
CALLDATA = INTEGRITY_DIR / "calldata"
SKIP_REASON = (
    f"Integrity reference data not found at {INTEGRITY_DIR} (set INTEGRITY_DIR to the folder "
    "holding proofs/ and calldata/)"
)
FIBONACCI = "small_stone6_keccak_fibonacci"
ALLOCATION = "allocation_small_stone6_keccak_96bits"
_COMMITMENT_LINE = re.compile(
    r"P->V\[0:\d+\]: /cpu air/STARK/Original/Commit on Trace: .*Hash\((0x[0-9a-f]+)\)"
)
_STEP_FILE = re.compile(r"split_step_(\d+)\.txt")


# ---------------------------------------------------------------- discovery and loading


def _proof_paths() -> list[Path]:
    return sorted(PROOFS.glob("*.proof.json")) if PROOFS.is_dir() else []


def _reference_sets() -> list[Path]:
    if not CALLDATA.is_dir():
        return []
    folders = [CALLDATA, *sorted(p for p in CALLDATA.iterdir() if p.is_dir())]
    return [
        f
        for f in folders
        if (f / "split_initial.txt").exists() or (f / "proof_monolith.txt").exists()
    ]


def _params(paths: list[Path], base: Path) -> list[Any]:
    if not paths:
        return [pytest.param(None, marks=pytest.mark.skip(reason=SKIP_REASON), id="no-data")]
    return [pytest.param(p, id=str(p.relative_to(base)) or ".") for p in paths]


@functools.cache
def _document(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(path.read_text())
    return document


@functools.cache
def _proof(path: Path) -> StarkProof:
    return parse_proof(_document(path))


def _named_proof_path(name: str) -> Path:
    path = PROOFS / f"{name}.proof.json"
    if not path.exists():
        pytest.skip(f"{path} not found ({SKIP_REASON})")
    return path


def _felts(path: Path) -> list[int]:
    return [int(word) for word in path.read_text().split()]


def _render(felts: list[int] | tuple[int, ...]) -> str:
    return " ".join(str(felt) for felt in felts) + "\n"


def _trace_commitment(document: dict[str, Any]) -> int:
    for line in document.get("annotations", []):
        match = _COMMITMENT_LINE.fullmatch(line)
        if match:
            return int(match[1], 16)
    raise AssertionError("proof without an original-trace commitment annotation")


def _owner(reference_set: Path) -> Path:
    """The proof a reference set belongs to (see the module docstring)."""
    sample = reference_set / "split_initial.txt"
    felts = set(_felts(sample if sample.exists() else reference_set / "proof_monolith.txt"))
    owners = [p for p in _proof_paths() if _trace_commitment(_document(p)) in felts]
    assert len(owners) == 1, f"{reference_set} matches proofs {owners}; expected exactly one"
    return owners[0]


def _split_files(reference_set: Path) -> list[Path]:
    steps = sorted(
        (int(m[1]), p) for p in reference_set.iterdir() if (m := _STEP_FILE.fullmatch(p.name))
    )
    assert [k for k, _ in steps] == list(range(1, len(steps) + 1)), "split_step_<k> gap"
    return [
        reference_set / "split_initial.txt",
        *(p for _, p in steps),
        reference_set / "split_final.txt",
    ]


# ---------------------------------------------------------------- reference calldata


@pytest.mark.parametrize("reference_set", _params(_reference_sets(), CALLDATA))
def test_reference_calldata_is_reproduced_byte_for_byte(reference_set: Path) -> None:
    proof = _proof(_owner(reference_set))
    checked = 0
    monolith = reference_set / "proof_monolith.txt"
    if monolith.exists():
        assert _render(monolith_calldata(proof)) == monolith.read_text()
        checked += 1
    full = reference_set / "verify_proof_full.txt"
    if full.exists():
        assert _render(full_verification_call(proof).calldata) == full.read_text()
        checked += 1
    if (reference_set / "split_initial.txt").exists():
        files = _split_files(reference_set)
        job_id = _felts(files[0])[0]
        calls = split_calldata(proof, job_id)
        assert [c.function for c in calls] == (
            ["verify_proof_initial"]
            + ["verify_proof_step"] * (len(files) - 2)
            + ["verify_proof_final_and_register_fact"]
        )
        for call, path in zip(calls, files, strict=True):
            assert _render(call.calldata) == path.read_text(), path.name
        checked += len(files)
    assert checked > 0


@pytest.mark.parametrize("proof_path", _params(_proof_paths(), PROOFS))
def test_every_shared_proof_parses_and_has_its_fact(proof_path: Path) -> None:
    proof = _proof(proof_path)
    config = verifier_config(proof)
    assert (config.layout, config.memory_verification) == (proof.layout.name, "strict")
    c = proof.config
    assert security_bits(proof) == c.n_queries * c.log_n_cosets + c.proof_of_work_bits
    fact_file = proof_path.with_name(proof_path.name.replace(".proof.json", ".fact"))
    if fact_file.exists():
        assert fact_of(proof) == int(fact_file.read_text().strip(), 16)


def test_fibonacci_statement_matches_integrity_on_devnet() -> None:
    """The values the README records from Integrity's FactRegistered event on devnet."""
    proof = _proof(_named_proof_path(FIBONACCI))
    statement = proof_statement(proof)
    assert (
        statement.program_hash == 0x7AC5582E353F8750487838481A46B5429EF84B2F18F909AAAB9388F1FE0A28B
    )
    assert statement.output == (
        0x2710,
        0x50E9BDB6F0A079DDA35B66A7853BD9431FE79EFC4EF54955AA6D928EA307226,
    )
    assert (
        statement.output_hash == 0x4E080977F3153468C1E538D6A12A951D336D13F5217B58663CABAE57D7EC01F
    )
    assert statement.fact_hash == 0x1E69A6F91B41E77C283FDE3BDDA3D31E624B4535E541FD122BB0408E1AB6DEC
    assert security_bits(proof) == 60
    assert verifier_config(proof).felts() == (
        int.from_bytes(b"small", "big"),
        int.from_bytes(b"keccak_160_lsb", "big"),
        int.from_bytes(b"stone6", "big"),
        int.from_bytes(b"strict", "big"),
    )
    expected = 0x47C069F9DF76CC5A1F33D5A4423ACEFA22EFBE6EFCB6C0D6550E3E19730D9C6
    assert verification_hash(proof) == expected


def test_transaction_limit_refuses_the_allocation_initial_call() -> None:
    fibonacci = split_calldata(_proof(_named_proof_path(FIBONACCI)), 1)
    check_transaction_sizes(fibonacci)  # 1,930 felts at most: fits
    allocation = split_calldata(_proof(_named_proof_path(ALLOCATION)), 1)
    assert [c.transaction_felts for c in allocation] == [5010, 1028, 876, 340, 206]
    with pytest.raises(CalldataTooLarge, match="verify_proof_initial needs 5010") as caught:
        check_transaction_sizes(allocation)
    assert caught.value.code == "calldata_too_large"
    check_transaction_sizes(allocation, limit=5010)  # the limit is the only obstacle
    assert MAX_TRANSACTION_CALLDATA == 5000


def test_calldata_parts_add_up_to_the_monolith_and_find_the_program() -> None:
    for name, program_words in ((FIBONACCI, 34), (ALLOCATION, 1105)):
        proof = _proof(_named_proof_path(name))
        parts = calldata_parts(proof)
        assert sum(parts.values()) == len(monolith_calldata(proof))
        assert parts["public_memory_program"] == 2 * program_words  # (address, value) pairs
        assert parts["oods_values"] == 1 + len(proof.unsent_commitment.oods_values)
        assert all(felts > 0 for felts in parts.values())


# ---------------------------------------------------------------- split structure


def _decode_state_call(calldata: tuple[int, ...]) -> tuple[int, list[int], int, list[int]]:
    """(job id, state constant felts, iteration, rest) of a step or final call."""
    n_commitments = calldata[2]
    end = 3 + 6 * n_commitments
    end += 1 + calldata[end]  # eval points
    end += 1 + calldata[end]  # step sizes
    end += 1  # last layer coefficients hash
    iteration, n_queries = calldata[end], calldata[end + 1]
    return calldata[0], list(calldata[1:end]), iteration, list(calldata[end + 2 + 3 * n_queries :])


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(job_id=st.integers(min_value=0, max_value=PRIME - 1))
def test_split_carries_exactly_the_monolith(job_id: int) -> None:
    """Whatever the job id: the initial call is the monolith without the FRI witness, the
    steps carry the FRI witness layer by layer, the final the last layer coefficients."""
    proof = _proof(_named_proof_path(FIBONACCI))
    monolith = monolith_calldata(proof)
    calls = split_calldata(proof, job_id)
    initial = calls[0].calldata
    assert initial[0] == job_id
    assert initial[1:5] == verifier_config(proof).felts()
    proof_part = list(initial[5:])
    assert proof_part[-1] == 0  # the FRI witness is sent by the steps
    witness = []
    constants = set()
    for iteration, call in enumerate(calls[1:-1]):
        job, constant, state_iteration, rest = _decode_state_call(call.calldata)
        assert (job, state_iteration) == (job_id, iteration)
        constants.add(tuple(constant))
        witness += rest
    assert monolith == [*proof_part[:-1], len(witness), *witness]
    job, constant, state_iteration, rest = _decode_state_call(calls[-1].calldata)
    assert (job, state_iteration) == (job_id, len(calls) - 2)
    assert constants == {tuple(constant)}
    coefficients = proof.unsent_commitment.fri_last_layer_coefficients
    assert rest == [len(coefficients), *coefficients]


def test_split_plan_resume_points() -> None:
    proof = _proof(_named_proof_path(FIBONACCI))
    plan = split_plan(proof, 7)
    assert [c.calldata for c in plan.calls] == [c.calldata for c in split_calldata(proof, 7)]
    assert len(plan.variable_hashes) == len(plan.calls) - 1
    assert len(set(plan.variable_hashes)) == len(plan.variable_hashes)
    assert plan.next_call(None, None) is None
    for k, variable in enumerate(plan.variable_hashes):
        assert plan.next_call(plan.constant_hash, variable) == k + 1
    with pytest.raises(JobStateMismatch):
        plan.next_call(plan.constant_hash + 1, plan.variable_hashes[0])
    with pytest.raises(JobStateMismatch):
        plan.next_call(plan.constant_hash, 12345)
    assert stored_option(0, 99) is None
    assert stored_option(1, 99) == 99
    with pytest.raises(MalformedProof):
        stored_option(2, 99)


# ---------------------------------------------------------------- malformed proofs


def _edited(document: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**document, **changes}


def _with_lines(document: dict[str, Any], edit: Callable[[list[str]], list[str]]) -> dict[str, Any]:
    return _edited(document, annotations=edit(list(document["annotations"])))


_MUTATIONS = (
    "truncate_line",
    "drop_line",
    "duplicate_line",
    "swap_lines",
    "change_digit",
    "cut_list",
)


def _mutate(lines: list[str], kind: str, data: st.DataObject) -> list[str]:
    i = data.draw(st.integers(0, len(lines) - 1))
    line = lines[i]
    if kind == "truncate_line":
        lines[i] = line[: data.draw(st.integers(0, max(len(line) - 1, 0)))]
    elif kind == "drop_line":
        del lines[i]
    elif kind == "duplicate_line":
        lines.insert(i, line)
    elif kind == "swap_lines":
        j = data.draw(st.integers(0, len(lines) - 1))
        lines[i], lines[j] = lines[j], lines[i]
    elif kind == "change_digit":
        digits = [k for k, ch in enumerate(line) if ch.isdigit()]
        if digits:
            k = data.draw(st.sampled_from(digits))
            lines[i] = line[:k] + str((int(line[k]) + 1) % 10) + line[k + 1 :]
    else:
        del lines[i:]
    return lines


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(_MUTATIONS), data=st.data())
def test_edited_annotations_give_a_clean_error_or_the_same_calldata(
    kind: str, data: st.DataObject
) -> None:
    """An edit either changes nothing the verifier reads (a Merkle node label, a statistics
    line) and yields the reference calldata, or is refused with an IntegrityProofError:
    never another exception, never different calldata."""
    path = _named_proof_path(FIBONACCI)
    document = _with_lines(_document(path), lambda lines: _mutate(lines, kind, data))
    refused: IntegrityProofError | None = None
    try:
        proof = parse_proof(document)
    except IntegrityProofError as error:
        refused = error
    if refused is not None:
        assert refused.code.isidentifier() and str(refused)
        return
    assert monolith_calldata(proof) == monolith_calldata(_proof(path))


@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_truncated_protocol_lines_are_always_refused(data: st.DataObject) -> None:
    document = _document(_named_proof_path(FIBONACCI))
    protocol = [
        i for i, line in enumerate(document["annotations"]) if line.startswith(("P->V", "V->P"))
    ]
    i = data.draw(st.sampled_from(protocol))
    cut = data.draw(st.integers(0, len(document["annotations"][i]) - 1))

    def truncate(lines: list[str]) -> list[str]:
        lines[i] = lines[i][:cut]
        return lines

    with pytest.raises(IntegrityProofError):
        parse_proof(_with_lines(document, truncate))


def test_missing_annotations_say_how_to_get_them() -> None:
    document = _document(_named_proof_path(FIBONACCI))
    for edited in (
        {k: v for k, v in document.items() if k != "annotations"},
        _edited(document, annotations=[]),
    ):
        with pytest.raises(MissingAnnotations, match="--generate_annotations") as caught:
            parse_proof(edited)
        assert caught.value.code == "proof_without_annotations"
        assert isinstance(caught.value, ProverError)


def _with_parameters(document: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return _edited(document, proof_parameters={**document["proof_parameters"], **changes})


def _with_public_input(document: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return _edited(document, public_input={**document["public_input"], **changes})


def _with_fri(document: dict[str, Any], **changes: Any) -> dict[str, Any]:
    stark = document["proof_parameters"]["stark"]
    return _with_parameters(document, stark={**stark, "fri": {**stark["fri"], **changes}})


@pytest.mark.parametrize(
    ("edit", "error", "message"),
    [
        (lambda d: _with_public_input(d, layout="plain"), UnsupportedProof, "layout 'plain'"),
        (lambda d: _with_public_input(d, layout="dynamic"), UnsupportedProof, "layout 'dynamic'"),
        (lambda d: _with_public_input(d, dynamic_params={"x": 1}), UnsupportedProof, "dynamic"),
        (
            lambda d: _with_parameters(d, commitment_hash="blake256_masked248_lsb"),
            UnsupportedProof,
            "blake",
        ),
        (lambda d: _with_parameters(d, channel_hash="keccak256"), UnsupportedProof, "Poseidon"),
        (lambda d: _with_fri(d, proof_of_work_bits=19), UnsupportedProof, "proof-of-work bits"),
        (lambda d: _with_fri(d, n_queries=17), InconsistentProof, "query indices"),
        (lambda d: _with_fri(d, n_queries="18"), MalformedProof, "n_queries"),
        (lambda d: _with_fri(d, fri_step_list=[0, 4, 4, 4, 2]), InconsistentProof, "do not add up"),
        (
            lambda d: _with_parameters(d, n_verifier_friendly_commitment_layers=999),
            InconsistentProof,
            "stone",
        ),
        (lambda d: _with_public_input(d, rc_max=32770), InconsistentProof, "interaction elements"),
        (lambda d: _edited(d, proof_hex=None), MalformedProof, "proof_hex"),
        (lambda d: _edited(d, proof_hex=d["proof_hex"][:-64]), InconsistentProof, "proof_hex"),
        (lambda d: [d], MalformedProof, "JSON object"),
    ],
)
def test_bad_proof_files_are_refused_with_a_clear_error(
    edit: Callable[[dict[str, Any]], Any], error: type[IntegrityProofError], message: str
) -> None:
    with pytest.raises(error, match=message):
        parse_proof(edit(_document(_named_proof_path(FIBONACCI))))


def test_continuous_pages_are_refused() -> None:
    document = _document(_named_proof_path(FIBONACCI))
    memory = [dict(cell) for cell in document["public_input"]["public_memory"]]
    memory[-1]["page"] = 1
    with pytest.raises(UnsupportedProof, match="continuous pages"):
        parse_proof(_with_public_input(document, public_memory=memory))


def _rewrite_value(document: dict[str, Any], pattern: str, new_value: int) -> dict[str, Any]:
    """Changes the first prover value matching ``pattern`` in the annotations *and* in
    proof_hex, so that only the verifier replay can notice."""
    lines = list(document["annotations"])
    i = next(k for k, line in enumerate(lines) if re.search(pattern, line))
    match = re.fullmatch(r"P->V\[(\d+):(\d+)\]: (.*)\((0x[0-9a-f]+)\)", lines[i])
    assert match, lines[i]
    start, end = int(match[1]), int(match[2])
    lines[i] = f"P->V[{start}:{end}]: {match[3]}({new_value:#x})"
    encoded = new_value * MONTGOMERY_R % PRIME if "Decommitment" in lines[i] else new_value
    proof = bytearray(bytes.fromhex(document["proof_hex"][2:]))
    proof[start:end] = encoded.to_bytes(end - start, "big")
    return _edited(document, annotations=lines, proof_hex="0x" + proof.hex())


@pytest.mark.parametrize(
    "pattern",
    [
        r"Decommitment/Layer 1: Row \d+, Column \d+: Field Element",  # an FRI sibling
        r"Virtual Oracle/Trace 0: Row \d+, Column 5: Field Element",  # a trace value
        r"Virtual Oracle/Trace 2: Row \d+, Column 1: Field Element",  # a composition value
        r"Proof of Work: POW: Data",  # the nonce
    ],
)
def test_consistently_forged_values_fail_the_replay(pattern: str) -> None:
    """A value changed in both the annotations and the proof bytes passes every format check;
    the verifier replay (proof of work, DEEP values, FRI folding) must still refuse it."""
    with pytest.raises(InvalidProof):
        parse_proof(_rewrite_value(_document(_named_proof_path(FIBONACCI)), pattern, 12345))


def test_strict_memory_verification_refuses_a_different_program_shape() -> None:
    proof = _proof(_named_proof_path(FIBONACCI))
    page = list(proof.public_input.main_page)
    page[1] = MemoryCell(page[1].address, 3)  # declares 3 builtins, the layout has 4
    edited = replace(proof, public_input=replace(proof.public_input, main_page=tuple(page)))
    with pytest.raises(StatementRejected, match="builtins") as caught:
        fact_of(edited)
    assert caught.value.code == "statement_rejected"
    extra = replace(
        proof,
        public_input=replace(
            proof.public_input, main_page=(*proof.public_input.main_page, MemoryCell(10**6, 1))
        ),
    )
    with pytest.raises(StatementRejected, match="after the output"):
        fact_of(extra)


# ---------------------------------------------------------------- FRI folding (no data needed)


def _fold_polynomial(coefficients: list[int], beta: int) -> list[int]:
    """g with g(x^2) = (f(x) + f(-x))/2 + beta (f(x) - f(-x))/(2x)."""
    even, odd = coefficients[0::2], coefficients[1::2]
    odd += [0] * (len(even) - len(odd))
    return [(e + beta * o) % PRIME for e, o in zip(even, odd, strict=True)]


def _evaluate(coefficients: list[int], x: int) -> int:
    return sum(c * pow(x, i, PRIME) for i, c in enumerate(coefficients)) % PRIME


@given(
    log_coset=st.integers(1, 4),
    coefficients=st.lists(st.integers(0, PRIME - 1), min_size=1, max_size=40),
    x=st.integers(1, PRIME - 1),
    beta=st.integers(0, PRIME - 1),
)
def test_fri_formula_folds_a_coset_of_a_polynomial(
    log_coset: int, coefficients: list[int], x: int, beta: int
) -> None:
    """Folding the coset x * FRI_GROUP[:n] (bit-reversed order) of f gives n * F(x**n),
    F being f folded log2(n) times with beta, beta**2, ... (Stone's FRI, without the /2)."""
    size = 2**log_coset
    values = [_evaluate(coefficients, x * FRI_GROUP[j] % PRIME) for j in range(size)]
    folded, power = list(coefficients), beta
    for _ in range(log_coset):
        folded = _fold_polynomial(folded, power)
        power = power * power % PRIME
    expected = size * _evaluate(folded, pow(x, size, PRIME)) % PRIME
    assert fri_formula(values, beta, pow(x, -1, PRIME)) == expected


@given(
    log_coset=st.integers(1, 4),
    indices=st.sets(st.integers(0, 63), min_size=1, max_size=20),
    extra=st.integers(-3, 3),
)
def test_fold_layer_consumes_exactly_the_missing_siblings(
    log_coset: int, indices: set[int], extra: int
) -> None:
    size = 2**log_coset
    queries = [FriLayerQuery(i, i + 1, 5) for i in sorted(indices)]
    cosets = {i // size for i in indices}
    needed = len(cosets) * size - len(indices)
    siblings = list(range(max(needed + extra, 0)))
    if len(siblings) != needed:
        with pytest.raises(InconsistentProof):
            fold_layer(queries, siblings, log_coset, 7)
        return
    folded = fold_layer(queries, siblings, log_coset, 7)
    assert [q.index for q in folded.queries] == sorted(cosets)
    assert len(folded.sibling_positions) == needed
    assert all(coset * size + j not in indices for coset, j in folded.sibling_positions)


# ---------------------------------------------------------------- the guard and the verifier


def test_guard_calls_are_the_verifiers_calls_as_one_span() -> None:
    """The verifier's calldata is the registry's with the configuration (4 short strings)
    replaced by Integrity's VerifierSettings (3 felts); the guard's is that as a span."""
    proof = _proof(_named_proof_path(FIBONACCI))
    registry = split_calldata(proof, 7)
    verifier = verifier_split_calls(proof, 7)
    guard = guard_split_calls(proof, 7)
    assert [c.function for c in verifier] == [c.function for c in guard] == (
        ["verify_proof_initial"] + ["verify_proof_step"] * (len(registry) - 2)
        + ["verify_proof_final"]
    )
    assert verifier[0].calldata == (7, 0, 0, 1, *registry[0].calldata[5:])  # strict, 160, stone6
    assert [v.calldata for v in verifier[1:]] == [r.calldata for r in registry[1:]]
    for g, v in zip(guard, verifier, strict=True):
        assert g.calldata == (len(v.calldata), *v.calldata)
        assert g.transaction_felts == len(v.calldata) + 5
    # The initial (the largest) is the registry's size: 1 + 3 felts replace 4. The others
    # carry one felt more (the span's length).
    sizes = [r.transaction_felts for r in registry]
    assert [g.transaction_felts for g in guard] == [sizes[0], *(n + 1 for n in sizes[1:])]
    plan = guard_split_plan(proof, 7)
    assert plan.calls == tuple(guard)
    assert (plan.constant_hash, plan.variable_hashes) == (
        split_plan(proof, 7).constant_hash, split_plan(proof, 7).variable_hashes
    )
    full = guard_full_call(proof)
    assert full.function == "verify_proof_full"
    assert full.calldata == (len(full.calldata) - 1, 0, 0, 1, *monolith_calldata(proof))


@pytest.mark.parametrize(
    ("memory", "hasher", "stone", "settings_felts"),
    [
        ("strict", "keccak_160_lsb", "stone6", (0, 0, 1)),
        ("relaxed", "keccak_160_lsb", "stone6", (1, 0, 1)),
        ("cairo1", "keccak_248_lsb", "stone5", (2, 1, 0)),
        ("strict", "blake2s_248_lsb", "stone6", (0, 1, 1)),
    ],
)
def test_verifier_settings_follow_integritys_split_settings(
    memory: str, hasher: str, stone: str, settings_felts: tuple[int, int, int]
) -> None:
    config = VerifierConfiguration("small", hasher, stone, memory)
    assert verifier_settings(config) == settings_felts


@pytest.mark.parametrize(
    ("memory", "hasher", "stone"),
    [
        ("loose", "keccak_160_lsb", "stone6"),
        ("strict", "blake2s_160_lsb", "stone6"),  # Integrity reports it as 248 bits
        ("strict", "keccak_160_lsb", "stone7"),
    ],
)
def test_settings_the_guard_cannot_check_are_refused(memory: str, hasher: str, stone: str) -> None:
    with pytest.raises(UnsupportedProof, match="no verifier setting the guard can check"):
        verifier_settings(VerifierConfiguration("small", hasher, stone, memory))
