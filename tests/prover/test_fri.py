"""FRI / security parameters (prover.fri) and the `fri-params` CLI."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keeper.cli.main import main
from prover import fri
from prover.errors import FriParameterError
from prover.fri import FriParameters
from tests.support.reference import STONE_SAMPLES

SAMPLES = STONE_SAMPLES


def _stark(name: str) -> dict[str, Any]:
    stark: dict[str, Any] = json.loads((SAMPLES / name).read_text())["stark"]
    return stark


def _params(**changes: Any) -> FriParameters:
    base: dict[str, Any] = {
        "fri_step_list": (0, 4, 4, 2),
        "last_layer_degree_bound": 64,
        "n_queries": 18,
        "proof_of_work_bits": 24,
        "log_n_cosets": 4,
    }
    return FriParameters(**{**base, **changes})


# --- the split and Stone's rule --------------------------------------------------------


@pytest.mark.parametrize("log_n_steps", range(9, 25))
def test_default_split_meets_both_rule_sets_for_every_supported_trace(log_n_steps: int) -> None:
    n_steps = 2**log_n_steps
    params = fri.fri_parameters(n_steps, required_bits=96)
    steps = params.fri_step_list
    assert 6 + sum(steps) == log_n_steps + 4
    assert steps[0] == 0
    assert all(1 <= s <= 4 for s in steps[1:])
    fri.check_fri_rule(n_steps, params)


@given(
    log_n_steps=st.integers(0, 40),
    log_last=st.integers(0, 15),
)
def test_split_meets_stones_rule_whenever_possible(log_n_steps: int, log_last: int) -> None:
    n_steps, last = 2**log_n_steps, 2**log_last
    if log_last > log_n_steps + 4:
        with pytest.raises(FriParameterError, match="larger than the STARK degree bound"):
            fri.fri_step_list(n_steps, last)
        return
    steps = fri.fri_step_list(n_steps, last)
    assert log_last + sum(steps) == log_n_steps + 4
    assert steps[0] == 0
    assert all(1 <= s <= 4 for s in steps[1:])
    fri.check_fri_rule(
        n_steps, _params(fri_step_list=steps, last_layer_degree_bound=last), for_integrity=False
    )


def test_table_of_measured_splits() -> None:
    # FACTS §1 measurement table (last layer 64).
    assert fri.fri_step_list(512) == (0, 4, 3)
    assert fri.fri_step_list(1024) == (0, 4, 4)
    assert fri.fri_step_list(2048) == (0, 4, 4, 1)
    assert fri.fri_step_list(16384) == (0, 4, 4, 4)
    assert fri.fri_step_list(32768) == (0, 4, 4, 4, 1)


def test_sample_parameters_are_reproduced() -> None:
    params = fri.fri_parameters(4096, required_bits=96)
    assert params == FriParameters.from_stone_stark(_stark("params.json"))
    assert params.to_stone_stark() == _stark("params.json")
    assert params.security_bits() == 96


def test_sample_bad_params_rejected_with_degree_bound_message() -> None:
    bad = FriParameters.from_stone_stark(_stark("params_bad_fri.json"))
    for for_integrity in (True, False):
        with pytest.raises(FriParameterError, match="degree bound") as info:
            fri.check_fri_rule(4096, bad, for_integrity=for_integrity)
        assert "sum(fri_step_list [0, 4, 4, 3])" in str(info.value)
        assert "must sum to 10" in str(info.value)


# --- tiny traces -----------------------------------------------------------------------


def test_tiny_traces_with_default_last_layer() -> None:
    assert fri.fri_step_list(8) == (0, 1)
    fri.fri_parameters(8, required_bits=96)  # smallest trace Integrity accepts with 64
    assert fri.fri_step_list(4) == (0,)  # Stone accepts one layer ...
    fri.check_fri_rule(4, _params(fri_step_list=(0,)), for_integrity=False)
    with pytest.raises(FriParameterError, match=r"2\.\.15 FRI layers"):  # ... Integrity does not
        fri.fri_parameters(4, required_bits=96)
    for n_steps in (1, 2):
        with pytest.raises(FriParameterError, match="larger than the STARK degree bound"):
            fri.fri_parameters(n_steps, required_bits=96)
    assert fri.fri_parameters(4, required_bits=96, last_layer_degree_bound=32).fri_step_list == (
        0,
        1,
    )


# --- Integrity's limits ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"fri_step_list": (1, 4, 4, 1)}, "first FRI step to be 0"),
        ({"fri_step_list": (0, 5, 5)}, "in 1..4, got [5, 5]"),
        ({"fri_step_list": (0, 4, 0, 4, 2)}, "in 1..4, got [0]"),
        ({"fri_step_list": (0, *([1] * 15)), "last_layer_degree_bound": 2}, "got 16"),
        ({"fri_step_list": (0, 1), "last_layer_degree_bound": 2**15 * 2}, "<= 2**15"),
        ({"proof_of_work_bits": 19}, "in 20..49, got 19"),
        ({"proof_of_work_bits": 50}, "in 20..49, got 50"),
        ({"n_queries": 49}, "at most 48"),
        ({"log_n_cosets": 17}, "at most 16"),
    ],
)
def test_integrity_limits(changes: dict[str, Any], fragment: str) -> None:
    params = _params(**changes)
    # Adjust the trace so Stone's own rule holds and only the limit under test fails.
    log_sum = params.last_layer_degree_bound.bit_length() - 1 + sum(params.fri_step_list)
    n_steps = 2 ** (log_sum - 4)
    fri.check_fri_rule(n_steps, params, for_integrity=False)
    with pytest.raises(FriParameterError) as info:
        fri.check_fri_rule(n_steps, params)
    assert fragment in str(info.value)


def test_all_violations_are_reported_together() -> None:
    params = _params(fri_step_list=(1, 4, 4, 3), proof_of_work_bits=8)
    with pytest.raises(FriParameterError) as info:
        fri.check_fri_rule(4096, params)
    message = str(info.value)
    assert "degree bound" in message
    assert "first FRI step" in message
    assert "proof_of_work_bits" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("n_steps", "changes", "fragment"),
    [
        (4000, {}, "n_steps must be a power of two"),
        (4096, {"last_layer_degree_bound": 48}, "last_layer_degree_bound must be a power of two"),
        (4096, {"n_queries": 0}, "n_queries must be >= 1"),
        (4096, {"log_n_cosets": 0}, "log_n_cosets must be >= 1"),
        (4096, {"fri_step_list": ()}, "fri_step_list must be non-empty"),
    ],
)
def test_stone_rules(n_steps: int, changes: dict[str, Any], fragment: str) -> None:
    with pytest.raises(FriParameterError, match=fragment):
        fri.check_fri_rule(n_steps, _params(**changes), for_integrity=False)


# --- security bits and queries ---------------------------------------------------------


def test_security_bits_arithmetic() -> None:
    assert fri.security_bits(18, 4, 24) == 96
    assert fri.security_bits(38, 2, 20) == 96
    assert fri.security_bits(19, 4, 20) == 96
    assert _params(n_queries=12, log_n_cosets=6, proof_of_work_bits=0).security_bits() == 72
    with pytest.raises(FriParameterError, match="n_queries"):
        fri.security_bits(-1, 4, 24)


@given(
    required=st.integers(1, 200),
    log_n_cosets=st.integers(1, 16),
    pow_bits=st.integers(20, 49),
)
def test_choose_queries_is_the_smallest_reaching_the_target(
    required: int, log_n_cosets: int, pow_bits: int
) -> None:
    if 48 * log_n_cosets + pow_bits < required:
        with pytest.raises(FriParameterError, match="unreachable"):
            fri.choose_queries(required, log_n_cosets, pow_bits)
        return
    n_queries = fri.choose_queries(required, log_n_cosets, pow_bits)
    assert 1 <= n_queries <= 48
    assert fri.security_bits(n_queries, log_n_cosets, pow_bits) >= required
    if n_queries > 1:
        assert fri.security_bits(n_queries - 1, log_n_cosets, pow_bits) < required


def test_fri_parameter_errors() -> None:
    with pytest.raises(FriParameterError, match=r"n_steps must be a power of two.*4000"):
        fri.fri_parameters(4000, required_bits=96)
    with pytest.raises(FriParameterError, match="last_layer_degree_bound must be a power of two"):
        fri.fri_parameters(4096, required_bits=96, last_layer_degree_bound=100)
    with pytest.raises(FriParameterError, match=r"proof_of_work_bits must be in 20..49.*got 10"):
        fri.fri_parameters(4096, required_bits=96, proof_of_work_bits=10)
    with pytest.raises(FriParameterError, match="log_n_cosets must be >= 1"):
        fri.fri_parameters(4096, required_bits=96, log_n_cosets=0)
    with pytest.raises(FriParameterError, match=r"unreachable.*needs 76 queries") as info:
        fri.fri_parameters(4096, required_bits=96, log_n_cosets=1, proof_of_work_bits=20)
    assert info.value.exit_code == 2


def test_from_stone_stark_rejects_malformed_sections() -> None:
    with pytest.raises(FriParameterError, match='"fri" object'):
        FriParameters.from_stone_stark({"log_n_cosets": 4})
    stark = _stark("params.json")
    stark["fri"]["n_queries"] = "18"
    with pytest.raises(FriParameterError, match="'n_queries' must be an integer"):
        FriParameters.from_stone_stark(stark)


# --- CLI -------------------------------------------------------------------------------


def test_cli_fri_params_json(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "fri-params",
            "--n-steps",
            "4096",
            "--log-n-cosets",
            "4",
            "--pow-bits",
            "24",
            "--last-layer-degree-bound",
            "64",
            "--json",
        ]
    )
    out, err = capsys.readouterr()
    assert (code, err) == (0, "")
    result = json.loads(out)
    assert result == {"n_steps": 4096, "security_bits": 96, "stark": _stark("params.json")}


def test_cli_fri_params_defaults_are_the_keepers(capsys: pytest.CaptureFixture[str]) -> None:
    from prover.settings import ProverSettings

    assert main(["fri-params", "--n-steps", "4096", "--json"]) == 0
    stark = json.loads(capsys.readouterr().out)["stark"]
    keeper = ProverSettings()
    assert stark["log_n_cosets"] == keeper.log_n_cosets
    assert stark["fri"]["proof_of_work_bits"] == keeper.proof_of_work_bits
    assert stark["fri"]["last_layer_degree_bound"] == keeper.last_layer_degree_bound


def test_cli_fri_params_text(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "fri-params",
            "--n-steps",
            "16384",
            "--required-bits",
            "72",
            "--log-n-cosets",
            "2",
            "--pow-bits",
            "20",
            "--last-layer-degree-bound",
            "64",
        ]
    )
    out, _ = capsys.readouterr()
    assert code == 0
    lines = dict(line.split(": ", 1) for line in out.splitlines())
    assert lines["fri_step_list"] == "[0, 4, 4, 4]"
    assert lines["n_queries"] == "26"
    assert lines["security_bits"] == "72"


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--n-steps", "1000"], "n_steps must be a power of two"),
        (["--n-steps", "4096", "--pow-bits", "60"], "proof_of_work_bits must be in 20..49"),
        (["--n-steps", "4096", "--last-layer-degree-bound", "65536"], "2**15"),
    ],
)
def test_cli_fri_params_errors_exit_2(
    argv: list[str], fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["fri-params", *argv])
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    assert fragment in err
    assert len(err.strip().splitlines()) == 1
