"""``obsqra-keeper prove`` end to end against the stand-in Stone and Atlantic."""

from __future__ import annotations

import json
import sys
from decimal import Decimal
from pathlib import Path

import pytest
import structlog

from keeper.cli.main import main
from keeper.core.config import load_prover_config
from keeper.core.errors import ConfigError
from prover.facts import direct_fact, program_hash
from tests.support.reference import STONE_SAMPLES

FAKES = Path(__file__).resolve().parents[1] / "fakes"
sys.path.insert(0, str(FAKES))
from atlantic_server import FakeAtlantic, atlantic_fact  # noqa: E402

SAMPLES = STONE_SAMPLES
OUTPUTS = (3, 5000, 3000, 2000, 5000)
PROGRAM = json.loads((SAMPLES / "weights_compiled.json").read_text())


@pytest.fixture(autouse=True)
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    structlog.reset_defaults()  # as in a fresh process: the command routes logs off stdout
    for name in (
        "FAKE_STONE_MODE",
        "FAKE_STONE_GENERATION",
        "CREDENTIALS_DIRECTORY",
        "KEEPER_ATLANTIC_API_KEY_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # no real Stone sneaks in
    monkeypatch.setenv("KEEPER_PROVER__STONE_PROVER_PATH", str(FAKES / "stone" / "cpu_air_prover"))
    monkeypatch.setenv(
        "KEEPER_PROVER__STONE_VERIFIER_PATH", str(FAKES / "stone" / "cpu_air_verifier")
    )
    return monkeypatch


def test_prove_with_stone_writes_a_verified_proof(
    trace_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["prove", str(trace_dir), "--prover", "stone", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["prover"] == "stone"
    assert Path(result["proof_path"]) == trace_dir / "proof.json"
    assert json.loads(Path(result["proof_path"]).read_text())["public_input"]["n_steps"] == 4096
    assert int(result["fact_hash"], 16) == direct_fact(program_hash(PROGRAM), OUTPUTS)
    assert result["security_bits"] == 96
    assert result["cost"]["price"] is None
    assert result["cost"]["cpu_seconds"] is not None
    assert result["parameter_set"] == "stone6"
    assert [a["outcome"] for a in result["attempts"]] == ["ok"]


def test_prove_text_output(trace_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prove", str(trace_dir), "--prover", "stone"]) == 0
    out = capsys.readouterr().out
    assert "prover: stone" in out
    assert f"proof_path: {trace_dir / 'proof.json'}" in out
    assert "cost: -, " in out


def test_fri_mismatch_is_one_line_not_a_traceback(
    trace_dir: Path, env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env.setenv("KEEPER_PROVER__FRI_STEP_LIST", "[0,4,4,3]")
    assert main(["prove", str(trace_dir), "--prover", "stone"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "stark degree bound" in err.lower() or "does not match" in err
    assert not (trace_dir / "proof.json").exists()


def test_stone_fri_abort_is_the_parameter_mismatch_class(
    trace_dir: Path, env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env.setattr("prover.stone.check_fri_rule", lambda *a, **k: None)  # let Stone judge
    env.setenv("KEEPER_PROVER__FRI_STEP_LIST", "[0,4,4,3]")
    assert main(["prove", str(trace_dir), "--prover", "stone"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "Stone rejected the FRI parameters" in err
    assert "Traceback" not in err


def test_cmake_build_is_reported(
    trace_dir: Path, env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env.setenv("FAKE_STONE_GENERATION", "cmake")
    assert main(["prove", str(trace_dir), "--prover", "stone"]) == 1
    assert "CMake-era Stone build" in capsys.readouterr().err
    env.setenv("KEEPER_PROVER__PARAMETER_SET", "keccak")
    assert main(["prove", str(trace_dir), "--prover", "stone", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["parameter_set"] == "keccak"


def test_dev_prints_the_fact_without_a_proof(
    trace_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["prove", str(trace_dir), "--prover", "dev", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["prover"] == "dev"
    assert result["proof_path"] is None
    assert int(result["fact_hash"], 16) == direct_fact(program_hash(PROGRAM), OUTPUTS)


def test_atlantic_rerun_reuses_the_query(
    trace_dir: Path,
    tmp_path: Path,
    env: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with FakeAtlantic(outputs=OUTPUTS).running() as server:
        key_file = tmp_path / "atlantic_api_key"
        key_file.write_text(server.api_key + "\n")
        env.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
        env.setenv("KEEPER_PROVER__ATLANTIC_BASE_URL", server.base_url)
        env.setenv("KEEPER_PROVER__ATLANTIC_POLL_INTERVAL_S", "0.01")
        env.setenv("KEEPER_PROVER__ATLANTIC_PRICE_PER_JOB_SIZE", '{"S": "0.25", "M": "1"}')
        for _ in range(2):
            assert main(["prove", str(trace_dir), "--prover", "atlantic", "--json"]) == 0
            result = json.loads(capsys.readouterr().out)
            assert result["prover"] == "atlantic"
            assert int(result["fact_hash"], 16) == atlantic_fact(PROGRAM, OUTPUTS)
            assert result["cost"]["price"] == "0.25"
        assert server.created == 1
        assert server.api_key not in capsys.readouterr().err


def test_auto_falls_back_from_a_crashing_stone_to_atlantic(
    trace_dir: Path,
    tmp_path: Path,
    env: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    env.setenv("FAKE_STONE_MODE", "crash")
    with FakeAtlantic(outputs=OUTPUTS).running() as server:
        key_file = tmp_path / "key"
        key_file.write_text(server.api_key)
        env.setenv("KEEPER_ATLANTIC_API_KEY_FILE", str(key_file))
        env.setenv("KEEPER_PROVER__ATLANTIC_BASE_URL", server.base_url)
        env.setenv("KEEPER_PROVER__ATLANTIC_POLL_INTERVAL_S", "0.01")
        assert main(["prove", str(trace_dir), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["prover"] == "atlantic"
    assert [(a["prover"], a["reason"]) for a in result["attempts"]] == [
        ("stone", "prover_abort"),
        ("atlantic", None),
    ]
    assert result["cost"]["basis"] == "no configured price for Atlantic job size S"


def test_bad_invocations_exit_2(trace_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prove", str(trace_dir / "missing"), "--prover", "stone"]) == 2
    assert "trace directory not found" in capsys.readouterr().err
    assert main(["prove", str(trace_dir), "--config", "missing.toml"]) == 78
    assert "cannot read config file missing.toml" in capsys.readouterr().err


def test_prove_with_the_keepers_config(
    trace_dir: Path, tmp_path: Path, env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("KEEPER_PROVER__STONE_PROVER_PATH", "KEEPER_PROVER__STONE_VERIFIER_PATH"):
        env.delenv(name)
    example = (Path(__file__).resolve().parents[2] / "config" / "keeper.example.toml").read_text()
    config = tmp_path / "keeper.toml"
    config.write_text(
        example.replace("/opt/stone/bin/cpu_air_prover", str(FAKES / "stone" / "cpu_air_prover"))
        .replace("/opt/stone/bin/cpu_air_verifier", str(FAKES / "stone" / "cpu_air_verifier"))
        .replace('parameter_set = "stone6"', 'parameter_set = "keccak"')
    )
    assert (
        main(["prove", str(trace_dir), "--config", str(config), "--prover", "stone", "--json"]) == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert (result["prover"], result["parameter_set"]) == ("stone", "keccak")
    assert result["security_bits"] >= 96


def test_unconfigured_stone_is_one_line(
    trace_dir: Path, env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env.delenv("KEEPER_PROVER__STONE_PROVER_PATH")
    env.delenv("KEEPER_PROVER__STONE_VERIFIER_PATH")
    env.setenv("STONE_TOOLS_DIR", str(trace_dir / "no-tools"))  # not the checkout's install
    env.setenv("PATH", str(trace_dir / "no-bin"))
    assert main(["prove", str(trace_dir), "--prover", "stone"]) == 1
    err = capsys.readouterr().err
    assert "stone_prover_path" in err
    assert len(err.strip().splitlines()) == 1


# --- the [prover] section from the environment alone ---------------------------------


def test_prover_section_from_env(tmp_path: Path) -> None:
    (tmp_path / "atlantic_api_key").write_text("  s3cret-key-value\n")
    section, secrets = load_prover_config(
        {
            "CREDENTIALS_DIRECTORY": str(tmp_path),
            "KEEPER_PROVER__STONE_PROVER_PATH": "/opt/stone/cpu_air_prover",
            "KEEPER_PROVER__ATLANTIC_NETWORK": "MAINNET",
            "KEEPER_PROVER__TIMEOUT_S": "60",
            "KEEPER_PROVER__ATLANTIC_PRICE_PER_JOB_SIZE": '{"S": "0.25", "M": "1.5"}',
        }
    )
    settings = section.runtime(secrets, required_security_bits=100)
    assert "s3cret" not in repr(settings)
    assert "s3cret" not in json.dumps(settings.model_dump(mode="json"))
    assert settings.atlantic_configured
    assert settings.stone_prover_path == Path("/opt/stone/cpu_air_prover")
    assert settings.atlantic_network == "MAINNET"
    assert settings.timeout_s == 60.0
    assert settings.required_security_bits == 100
    assert settings.atlantic_price("M") == Decimal("1.5")
    assert settings.atlantic_price("L") is None


def test_prover_section_from_env_lists_every_problem(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_prover_config(
            {
                "KEEPER_PROVER__POLICY": "sometimes",
                "KEEPER_PROVER__TIMEOUT_S": "soon",
                "KEEPER_PROVER__LOG_N_COSETS": "0",
            }
        )
    problems = info.value.problems
    assert len(problems) == 3
    assert any(p.startswith("prover.policy") for p in problems)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("KEEPER_PROVER__ATLANTIC_API_KEY", "plain-text-key"),
        ("KEEPER_PROVER__REQUIRED_SECURITY_BITS", "40"),
    ],
)
def test_values_that_are_not_the_operators_are_refused(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_prover_config({name: value})
    assert value not in str(info.value)


def test_an_unreadable_key_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_prover_config({"KEEPER_ATLANTIC_API_KEY_FILE": str(tmp_path / "absent")})
    assert "absent" in str(info.value)


def test_prover_section_without_anything_is_the_defaults() -> None:
    section, secrets = load_prover_config(
        {"PATH": "/nonexistent", "STONE_TOOLS_DIR": "/nonexistent"}
    )
    settings = section.runtime(secrets, required_security_bits=96)
    assert settings.stone_prover_path is None
    assert settings.atlantic_api_key is None
    assert settings.policy == "stone_then_atlantic"
    assert settings.parameter_set == "stone6"
