"""Config: TOML + env + secret files; every problem reported by field, exit 78."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest
from eth_keyfile.keyfile import create_keyfile_json

from keeper.cli.main import main
from keeper.core.config import load_config
from keeper.core.errors import EX_CONFIG, ConfigError

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "keeper.example.toml"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "keeper.toml"
    path.write_text(text)
    return path


def _example_without(tmp_path: Path, line_prefix: str) -> Path:
    lines = [ln for ln in EXAMPLE.read_text().splitlines() if not ln.startswith(line_prefix)]
    return _write(tmp_path, "\n".join(lines))


@pytest.fixture
def account_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The example's keystore, made real: `config check` loads the key as `run` does."""
    key = (0x2D2F8C7A1B).to_bytes(32, "big")
    keystore = tmp_path / "keystore.json"
    keystore.write_text(
        json.dumps(create_keyfile_json(key, "a password", kdf="scrypt", iterations=2**10))
    )
    password = tmp_path / "keystore_password"
    password.write_text("a password")
    monkeypatch.setenv("KEEPER_CHAIN__KEYSTORE_PATH", str(keystore))
    monkeypatch.setenv("KEEPER_KEYSTORE_PASSWORD_FILE", str(password))


@pytest.mark.usefixtures("account_key")
def test_example_config_is_valid(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "check", "--config", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("config ok: ")
    assert out.count("\n") == 2
    assert out.splitlines()[1].startswith("stone: ")


def test_config_check_names_the_stone_it_will_run(tmp_path: Path) -> None:
    from keeper.cli.commands.config_cmd import stone_line
    from prover.settings import ProverSettings

    assert stone_line(ProverSettings(policy="dev")) == "stone: not used by policy dev"
    none = ProverSettings().with_stone("", tools_dir=tmp_path / "none")
    assert "none found" in stone_line(none) and "make setup" in stone_line(none)
    bin_dir = tmp_path / "tools" / "bin"
    bin_dir.mkdir(parents=True)
    for name in ("cpu_air_prover", "cpu_air_verifier"):
        (bin_dir / name).write_text("#!/bin/sh\n")
        (bin_dir / name).chmod(0o755)
    found = ProverSettings().with_stone("", tools_dir=tmp_path / "tools")
    line = stone_line(found)
    assert line.startswith(f"stone: {bin_dir / 'cpu_air_prover'} (unknown build")
    assert "found in tools" in line and "parameter set stone6" in line
    missing = ProverSettings(stone_prover_path=tmp_path / "gone").with_stone("")
    assert "does not exist" in stone_line(missing)


def test_devnet_config_is_valid() -> None:
    cfg = load_config(ROOT / "config" / "devnet.toml", {})
    assert cfg.prover.policy == "dev"


def test_every_option_of_the_model_is_in_the_example() -> None:
    example = tomllib.loads(EXAMPLE.read_text())
    cfg = load_config(EXAMPLE, {})
    for section, values in cfg.model_dump(exclude={"secrets"}).items():
        documented = set(example.get(section, {})) | _commented_keys(section)
        assert set(values) <= documented, f"[{section}] undocumented: {set(values) - documented}"


def _commented_keys(section: str) -> set[str]:
    text = EXAMPLE.read_text()
    block = text.split(f"[{section}]", 1)[1].split("\n[", 1)[0]
    return set(re.findall(r"^# (\w+) = ", block, flags=re.M))


@pytest.mark.parametrize(
    ("removed", "field"),
    [
        ("rpc_url", "chain.rpc_url"),
        ("router_address", "chain.router_address"),
        ("chain_id", "chain.chain_id"),
    ],
)
def test_missing_field_exits_78_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], removed: str, field: str
) -> None:
    path = _example_without(tmp_path, f"{removed} =")
    assert main(["config", "check", "--config", str(path)]) == EX_CONFIG
    err = capsys.readouterr().err
    assert f"{field}: required but missing" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("old", "new", "field", "allowed"),
    [
        ('source = "rpc"', 'source = "kafka"', "stream.source", "'rpc', 'apibara' or 'dna'"),
        ("chunk_size = 256", 'chunk_size = "many"', "stream.chunk_size", "valid integer"),
        (
            "fee_multiplier = 1.5",
            "fee_multiplier = 9.0",
            "chain.fee_multiplier",
            "less than or equal to 3",
        ),
        (
            'router_address = "0x0123',
            'router_address = "0xZZ23',
            "chain.router_address",
            "not valid hex",
        ),
        (
            "proof_of_work_bits = 21",
            "proof_of_work_bits = 60",
            "prover.proof_of_work_bits",
            "less than 50",
        ),
        ('level = "info"', 'lvl = "info"', "log.lvl", "unknown option"),
    ],
)
def test_mistyped_field_exits_78_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], old: str, new: str, field: str, allowed: str
) -> None:
    text = EXAMPLE.read_text()
    assert old in text
    path = _write(tmp_path, text.replace(old, new, 1))
    assert main(["config", "check", "--config", str(path)]) == EX_CONFIG
    err = capsys.readouterr().err
    line = next(ln for ln in err.splitlines() if field in ln)
    assert allowed in line
    assert "Traceback" not in err


def test_all_problems_reported_at_once(tmp_path: Path) -> None:
    text = (
        EXAMPLE.read_text()
        .replace('source = "rpc"', 'source = "x"')
        .replace("chunk_size = 256", "chunk_size = 0")
    )
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, text), {})
    assert len(info.value.problems) == 2


@pytest.mark.parametrize(
    "inline",
    [
        '[chain]\nprivate_key = "0x1234567890abcdef"',
        '[prover]\natlantic_api_key = "abcdefghijkl"',
        '[chain]\nkeystore_password = "hunter2hunter2"',
    ],
)
def test_inline_secret_in_toml_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], inline: str
) -> None:
    section, line = inline.split("\n")
    text = EXAMPLE.read_text().replace(section, f"{section}\n{line}", 1)
    path = _write(tmp_path, text)
    assert main(["config", "check", "--config", str(path)]) == EX_CONFIG
    err = capsys.readouterr().err
    assert "secrets are not accepted in the config file" in err
    assert "_FILE=" in err
    assert "LoadCredential" in err
    secret_value = line.split('"')[1]
    assert secret_value not in err


def test_inline_secret_in_environment_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(EXAMPLE, {"KEEPER_ATLANTIC_API_KEY": "abcdefghijkl"})
    assert "not accepted inline in the environment" in str(info.value)
    assert "abcdefghijkl" not in str(info.value)


def test_secrets_from_file_and_credentials_directory(tmp_path: Path) -> None:
    key_file = tmp_path / "pk"
    key_file.write_text("0xdeadbeefdeadbeef\n")
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "atlantic_api_key").write_text("atl-key-123456")
    cfg = load_config(
        EXAMPLE,
        {"KEEPER_ACCOUNT_PRIVATE_KEY_FILE": str(key_file), "CREDENTIALS_DIRECTORY": str(creds)},
    )
    assert cfg.secrets.account_private_key is not None
    assert cfg.secrets.account_private_key.get_secret_value() == "0xdeadbeefdeadbeef"
    assert cfg.secrets.atlantic_api_key is not None
    assert sorted(cfg.secrets.values()) == ["0xdeadbeefdeadbeef", "atl-key-123456"]
    shown = str(cfg.redacted()) + repr(cfg)
    assert "deadbeef" not in shown and "atl-key" not in shown


def test_unreadable_or_short_secret_file_is_a_config_error(tmp_path: Path) -> None:
    short = tmp_path / "short"
    short.write_text("abc")
    with pytest.raises(ConfigError) as info:
        load_config(
            EXAMPLE,
            {
                "KEEPER_KEYSTORE_PASSWORD_FILE": str(tmp_path / "missing"),
                "KEEPER_ATLANTIC_API_KEY_FILE": str(short),
            },
        )
    text = str(info.value)
    assert "keystore_password: cannot read" in text
    assert "atlantic_api_key" in text and "at least 8" in text


def test_environment_overrides_toml(tmp_path: Path) -> None:
    cfg = load_config(EXAMPLE, {"KEEPER_STREAM__SOURCE": "apibara", "KEEPER_HEALTH__PORT": "9999"})
    assert cfg.stream.source == "apibara"
    assert cfg.health.port == 9999
    with pytest.raises(ConfigError) as info:
        load_config(EXAMPLE, {"KEEPER_HEALTH__PORT": "seventy"})
    assert "health.port" in str(info.value)


@pytest.mark.usefixtures("account_key")
def test_config_path_from_environment(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KEEPER_CONFIG", str(EXAMPLE))
    assert main(["config", "check"]) == 0
    assert str(EXAMPLE) in capsys.readouterr().out


@pytest.mark.parametrize(
    ("content", "expected"),
    [(None, "cannot read config file"), ("[chain\nrpc_url=", "not valid TOML")],
)
def test_unreadable_or_broken_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, expected: str
) -> None:
    path = tmp_path / "k.toml"
    if content is not None:
        path.write_text(content)
    assert main(["config", "check", "--config", str(path)]) == EX_CONFIG
    assert expected in capsys.readouterr().err


def test_show_redacts_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    key_file = tmp_path / "pk"
    key_file.write_text("0xsupersecretvalue")
    monkeypatch.setenv("KEEPER_ACCOUNT_PRIVATE_KEY_FILE", str(key_file))
    assert main(["config", "show", "--config", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out
    assert "supersecretvalue" not in out
    assert '"account_private_key": "<set>"' in out


def _without_keystore(tmp_path: Path) -> Path:
    return _example_without(tmp_path, "keystore_path")


def test_check_refuses_a_config_without_any_account_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("KEEPER_ACCOUNT_PRIVATE_KEY_FILE", "KEEPER_KEYSTORE_PASSWORD_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    assert main(["config", "check", "--config", str(_without_keystore(tmp_path))]) == EX_CONFIG
    captured = capsys.readouterr()
    assert "config ok" not in captured.out
    assert captured.err.count("\n") == 1
    assert "no account key configured" in captured.err


def test_check_refuses_a_key_file_that_is_no_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    key_file = tmp_path / "account_private_key"
    key_file.write_text("z" * 64)
    monkeypatch.setenv("KEEPER_ACCOUNT_PRIVATE_KEY_FILE", str(key_file))
    assert main(["config", "check", "--config", str(_without_keystore(tmp_path))]) == EX_CONFIG
    captured = capsys.readouterr()
    assert "config ok" not in captured.out
    assert "account_private_key secret is not a hex number" in captured.err
    assert "zzzz" not in captured.err


def test_check_refuses_a_keystore_that_does_not_exist(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    password = tmp_path / "keystore_password"
    password.write_text("a password")
    monkeypatch.setenv("KEEPER_KEYSTORE_PASSWORD_FILE", str(password))
    monkeypatch.setenv("KEEPER_CHAIN__KEYSTORE_PATH", str(tmp_path / "missing.json"))
    assert main(["config", "check", "--config", str(EXAMPLE)]) == EX_CONFIG
    assert "cannot read keystore" in capsys.readouterr().err


def test_check_loads_a_private_key_secret(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    key_file = tmp_path / "account_private_key"
    key_file.write_text("0x2d2f8c7a1b\n")
    monkeypatch.setenv("KEEPER_ACCOUNT_PRIVATE_KEY_FILE", str(key_file))
    assert main(["config", "check", "--config", str(_without_keystore(tmp_path))]) == 0
    out = capsys.readouterr().out
    assert out.startswith("config ok: ") and "account key loaded" in out
    assert "2d2f8c7a1b" not in out
