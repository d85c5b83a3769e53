"""The Cairo 0 allocation program against the reference model and Integrity's rules."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from allocation_strategies import allocation_inputs
from hypothesis import HealthCheck, given, settings
from starkware.cairo.lang.compiler.program import Program
from starkware.cairo.lang.vm.cairo_runner import CairoRunner
from starkware.cairo.lang.vm.vm_exceptions import VmException

import prover.program as program_module
from prover.errors import CairoRunError, InfeasibleAllocation
from prover.model import (
    AllocationInputs,
    ProtocolInputs,
    expected_output,
    load_inputs,
    parse_inputs,
)
from prover.program import (
    INTEGRITY_LAYOUTS,
    SOURCE_PATH,
    check_integrity_rules,
    compiled_program,
)
from prover.trace import execute
from tests.support.reference import STONE_SAMPLES

ROOT = Path(__file__).resolve().parents[2]
DEVNET = ROOT / "config" / "devnet_inputs.json"
VECTORS = ROOT / "tests" / "vectors" / "allocation_vectors.json"
SAMPLE_COMPILED = STONE_SAMPLES / "weights_compiled.json"

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return compiled_program(tmp_path_factory.mktemp("cache"))


def _safe(apy: int) -> ProtocolInputs:
    return ProtocolInputs(0, 0, 0, 100, 1000, apy)


# --- compilation, cache and Integrity rules --------------------------------------------


def test_program_passes_integrity_rules_on_small(compiled: dict[str, Any]) -> None:
    assert compiled["builtins"] == ["output", "pedersen", "range_check", "ecdsa"]
    assert check_integrity_rules(compiled, "small") == []


@pytest.mark.parametrize(
    "layout", [lay for lay in INTEGRITY_LAYOUTS if lay not in ("small", "dex")]
)
def test_program_fails_integrity_rules_on_layouts_with_other_builtins(
    compiled: dict[str, Any], layout: str
) -> None:
    problems = check_integrity_rules(compiled, layout)
    assert len(problems) == 1
    assert "needs exactly" in problems[0]


def test_unverified_layout_is_a_problem(compiled: dict[str, Any]) -> None:
    assert "no Integrity verifier" in check_integrity_rules(compiled, "all_solidity")[0]


def test_sample_declaring_two_builtins_fails_integrity_rules() -> None:
    sample = json.loads(SAMPLE_COMPILED.read_text())
    problems = check_integrity_rules(sample, "small")
    assert problems == [
        "program declares builtins ['output', 'range_check'], but strict verification on "
        "'small' needs exactly ['output', 'pedersen', 'range_check', 'ecdsa'] in that order"
    ]


def test_program_without_proof_mode_prologue_fails(compiled: dict[str, Any]) -> None:
    from starkware.cairo.lang.cairo_constants import DEFAULT_PRIME
    from starkware.cairo.lang.compiler.cairo_compile import compile_cairo

    plain = compile_cairo([(SOURCE_PATH.read_text(), "allocation.cairo")], DEFAULT_PRIME)
    problems = check_integrity_rules(Program.Schema().dump(plain), "small")
    assert any("__start__ must be at offset 0" in p for p in problems)
    assert any("__end__ must be at offset 4" in p for p in problems)
    shifted = dict(compiled, data=["0x0", *compiled["data"]])
    assert any("proof-mode prologue" in p for p in check_integrity_rules(shifted, "small"))


def test_in_process_compile_equals_cairo_compile_cli(
    compiled: dict[str, Any], tmp_path: Path
) -> None:
    out = tmp_path / "cli.json"
    subprocess.run(
        [
            str(Path(sys.executable).with_name("cairo-compile")),
            "--proof_mode",
            "--no_debug_info",
            str(SOURCE_PATH),
            "--output",
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    cli = json.loads(out.read_text())
    for key in ("data", "builtins", "hints", "main_scope", "prime", "identifiers"):
        assert compiled[key] == cli[key], key


def test_cache_is_written_and_a_damaged_entry_is_rebuilt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(program_module, "_memo", {})
    first = compiled_program(tmp_path)
    entries = list(tmp_path.glob("allocation-*.json"))
    assert len(entries) == 1
    assert json.loads(entries[0].read_text()) == first
    entries[0].write_text("{broken")
    monkeypatch.setattr(program_module, "_memo", {})
    assert compiled_program(tmp_path) == first
    assert json.loads(entries[0].read_text()) == first
    assert not list(tmp_path.glob(".*.tmp"))


def test_cache_dir_defaults_to_xdg_cache_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(program_module, "_memo", {})
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    compiled_program()
    assert len(list((tmp_path / "obsqra-keeper").glob("allocation-*.json"))) == 1


# --- the program against the reference ---------------------------------------------------


def test_shared_vectors_run_to_the_expected_output(compiled: dict[str, Any]) -> None:
    for vector in json.loads(VECTORS.read_text())["vectors"]:
        inputs = parse_inputs(vector["inputs"])
        result = execute(inputs)
        assert [hex(v) for v in result.output] == vector["output"], vector["name"]


def test_devnet_inputs_stay_under_the_small_floor() -> None:
    # 4096 n_steps on `small` needs <= 4096 executed steps (and <= 512 range checks).
    assert execute(load_inputs(DEVNET)).steps <= 4096


def _cascade(n: int, max_single: int) -> AllocationInputs:
    """APYs halving from one protocol to the next: each cap round caps one more."""
    return AllocationInputs(
        0x1, 1, tuple(_safe(100_000 >> i) for i in range(n)), max_single_bps=max_single
    )


@pytest.mark.parametrize(
    ("inputs", "steps"),
    [
        pytest.param(_cascade(3, 3334), 4096, id="3 protocols, 2 cap rounds"),
        pytest.param(_cascade(4, 2500), 4096, id="4 protocols, 3 cap rounds"),
        pytest.param(_cascade(16, 625), 16384, id="16 protocols, 15 cap rounds"),
    ],
)
def test_cap_cascades_stay_under_their_trace_length(inputs: AllocationInputs, steps: int) -> None:
    # One pass per cap round keeps these at 2,583 / 3,297 / 15,066 steps (the five-pass
    # rounds of the 1,105-word program needed 3,268 / 4,320 / 22,063: n_steps 4,096 /
    # 8,192 / 32,768). Range-check cells stay under steps / 8 (the `small` ratio).
    assert execute(inputs).steps <= steps


def test_program_stays_small(compiled: dict[str, Any]) -> None:
    # Every bytecode word is public memory: ~40 k L2 gas on every verification
    # (docs/verification-cost.md). Growing the program is a decision, not an accident.
    assert len(compiled["data"]) <= 640


# The property test runs the VM in proof mode without trace padding or files (execute),
# reusing the loaded program: ~0.1-0.2 s at n <= 4, ~0.6-2 s at n = 16 (the Python VM runs
# ~8,000 steps/s), so two examples in three keep n <= 4. Measured: 300 examples in ~3.5
# minutes on the shared 2-core box (-m "not slow" skips it while iterating).
@pytest.mark.slow
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(allocation_inputs(mostly_small=True))
def test_program_matches_reference_on_random_inputs(inputs: AllocationInputs) -> None:
    try:
        expected = expected_output(inputs)
    except InfeasibleAllocation:
        with pytest.raises(CairoRunError):
            _run_unchecked(inputs)
        return
    assert execute(inputs).output == expected


# --- the program itself rejects what the model rejects ----------------------------------


def _run_unchecked(inputs: AllocationInputs, compiled: dict[str, Any] | None = None) -> list[int]:
    """Run the program without the reference model's validation in front of it."""
    program = Program.load(data=compiled or compiled_program())
    runner = CairoRunner(program=program, layout="small", proof_mode=True)
    runner.initialize_segments()
    end = runner.initialize_main_entrypoint()
    runner.initialize_zero_segment()
    runner.initialize_vm(hint_locals={"program_input": inputs.program_input()})
    try:
        runner.run_until_pc(end)
    except VmException as exc:
        raise CairoRunError(str(exc).splitlines()[0]) from exc
    runner.end_run(disable_trace_padding=True)
    base = runner.builtin_runners["output_builtin"].base
    size = runner.segments.get_segment_used_size(base.segment_index)
    return [runner.vm_memory[base + i] for i in range(size)]


def _with(inputs: AllocationInputs, index: int, **changes: int) -> AllocationInputs:
    protocols = list(inputs.protocols)
    protocols[index] = dataclasses.replace(protocols[index], **changes)
    return dataclasses.replace(inputs, protocols=tuple(protocols))


DEVNET_INPUTS = load_inputs(DEVNET)


@pytest.mark.parametrize(
    "inputs",
    [
        pytest.param(_with(DEVNET_INPUTS, 0, utilization_bps=10001), id="util>10000"),
        pytest.param(_with(DEVNET_INPUTS, 1, volatility_bps=10001), id="vol>10000"),
        pytest.param(_with(DEVNET_INPUTS, 2, liquidity_tier=4), id="liq=4"),
        pytest.param(_with(DEVNET_INPUTS, 0, audit_score=101), id="audit>100"),
        pytest.param(_with(DEVNET_INPUTS, 0, age_days=100001), id="age>100000"),
        pytest.param(_with(DEVNET_INPUTS, 0, apy_bps=100001), id="apy>100000"),
        pytest.param(_with(DEVNET_INPUTS, 0, apy_bps=-1), id="apy<0"),
        pytest.param(
            dataclasses.replace(
                DEVNET_INPUTS, params=dataclasses.replace(DEVNET_INPUTS.params, audit_den=0)
            ),
            id="audit_den=0",
        ),
        pytest.param(
            dataclasses.replace(
                DEVNET_INPUTS, params=dataclasses.replace(DEVNET_INPUTS.params, risk_ceiling=4)
            ),
            id="ceiling<floor",
        ),
        pytest.param(dataclasses.replace(DEVNET_INPUTS, max_single_bps=0), id="max_single=0"),
        pytest.param(dataclasses.replace(DEVNET_INPUTS, min_diversification=17), id="min_div=17"),
        pytest.param(
            dataclasses.replace(DEVNET_INPUTS, protocols=DEVNET_INPUTS.protocols * 6),
            id="18 protocols",
        ),
        pytest.param(
            AllocationInputs(0x1, 1, (_safe(500), _safe(400), _safe(100)), max_single_bps=3333),
            id="infeasible max_single",
        ),
        pytest.param(
            AllocationInputs(0x1, 1, (_safe(5000), _safe(10), _safe(10)), min_diversification=2),
            id="infeasible diversification",
        ),
    ],
)
def test_program_fails_on_invalid_or_infeasible_inputs(inputs: AllocationInputs) -> None:
    with pytest.raises(CairoRunError):
        _run_unchecked(inputs)


# A prover that changes what a hint proposes must make the run fail, not change the output.
# (fragment of the hint's code, its replacement): each changes a proposed quotient,
# comparison bit, remainder index or weight.
TAMPERED_HINTS = [
    (
        "q, r = divmod(ids.num, ids.den)",
        "q, r = divmod(ids.num, ids.den); q += 1; r -= ids.den",
    ),
    (
        "q, r = divmod(ids.num, ids.den)",
        "q, r = divmod(ids.num, ids.den); q -= 1; r += ids.den",
    ),
    ("ids.bit = 1 if ids.a < ids.b else 0", "ids.bit = 0 if ids.a < ids.b else 1"),
    ("ids.bit = 1 if ids.a < ids.b else 0", "ids.bit = 2 if ids.a < ids.b else 0"),
    ("ids.is_k = 1 if ids.before == 1 and ids.w == ids.wk else 0", "ids.is_k = 0"),
    (
        "ids.is_k = 1 if ids.before == 1 and ids.w == ids.wk else 0",
        "ids.is_k = 1 if ids.before == 1 else 0",
    ),
    ("ids.wk = max(", "ids.wk = 1 + max("),
    ("ids.x % 0x8000, ids.x // 0x8000", "ids.x % 0x8000 + 1, ids.x // 0x8000"),
]


def test_remainder_goes_to_the_lowest_index_among_equal_weights(
    compiled: dict[str, Any],
) -> None:
    # Equal scores: 3 x 3333 bps and a remainder of 1 for protocol 0 (spec section 3). A
    # hint that marks protocol 1 (n = 2 protocols left) instead must make the run fail.
    inputs = AllocationInputs(0x1, 1, (_safe(100), _safe(100), _safe(100)))
    assert expected_output(inputs)[6:9] == [3334, 3333, 3333]
    assert _run_unchecked(inputs, compiled) == expected_output(inputs)
    hints = json.loads(json.dumps(compiled["hints"]))
    original = "ids.is_k = 1 if ids.before == 1 and ids.w == ids.wk else 0"
    found = 0
    for entries in hints.values():
        for entry in entries:
            if entry["code"] == original:
                entry["code"] = original.replace(
                    "ids.w == ids.wk", "ids.w == ids.wk and ids.n == 2"
                )
                found += 1
    assert found == 1
    with pytest.raises(CairoRunError):
        _run_unchecked(inputs, dict(compiled, hints=hints))


@pytest.mark.parametrize(("original", "tampered"), TAMPERED_HINTS)
def test_tampered_hints_make_the_run_fail(
    compiled: dict[str, Any], original: str, tampered: str
) -> None:
    hints = json.loads(json.dumps(compiled["hints"]))
    found = 0
    for entries in hints.values():
        for entry in entries:
            if original in entry["code"]:
                entry["code"] = entry["code"].replace(original, tampered)
                found += 1
    assert found >= 1, original
    # Exercises every hint: three cap rounds (the remainder goes to the first uncapped
    # protocol, then to a later one), young and old protocols, risk at the floor and in
    # range, allocations above and below 1000 bps.
    risky = ProtocolInputs(9000, 100, 2, 40, 10, 900)
    inputs = AllocationInputs(
        0x1,
        1,
        (_safe(7000), _safe(1500), risky, _safe(100), _safe(0)),
        max_single_bps=3000,
        min_diversification=1,
    )
    assert expected_output(inputs)[6:11] == [3000, 3000, 1814, 2186, 0]
    assert _run_unchecked(inputs, compiled) == expected_output(inputs)  # untampered sanity
    with pytest.raises(CairoRunError):
        _run_unchecked(inputs, dict(compiled, hints=hints))
