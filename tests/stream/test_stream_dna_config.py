"""``stream.source = "dna"``: its options, the dna_token credential, and build_source."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest
import structlog

from keeper.core.config import load_config
from keeper.core.errors import ConfigError
from keeper.core.logs import configure_logging, get_logger
from keeper.store.db import Store
from keeper.stream import build_source, open_event_log
from keeper.stream.dna_source import DnaSource
from tests.stream.payloads import RISK_ENGINE, ROUTER

TOKEN = "starkstream-token-abcdef0123456789"


def config_file(tmp_path: Path, stream: str) -> Path:
    path = tmp_path / "keeper.toml"
    path.write_text(
        f"""
[chain]
rpc_url = "http://127.0.0.1:5050"
chain_id = "SN_SEPOLIA"
router_address = "{hex(ROUTER)}"
risk_engine_address = "{hex(RISK_ENGINE)}"
account_address = "0x1"

[stream]
{stream}

[store]
path = "{tmp_path / "keeper.sqlite3"}"
"""
    )
    return path


def token_env(tmp_path: Path) -> dict[str, str]:
    token_file = tmp_path / "dna_token"
    token_file.write_text(TOKEN + "\n")
    return {"KEEPER_DNA_TOKEN_FILE": str(token_file)}


def test_dna_source_with_a_token_file(tmp_path: Path, store: Store) -> None:
    stream = """source = "dna"
dna_url = "https://mainnet.starkstream.io"
dna_finality = "finalized"
dna_heartbeat_interval_s = 20"""
    cfg = load_config(config_file(tmp_path, stream), token_env(tmp_path))
    assert cfg.secrets.dna_token is not None
    assert cfg.secrets.dna_token.get_secret_value() == TOKEN
    assert TOKEN not in repr(cfg) and TOKEN not in str(cfg.redacted())
    assert cfg.redacted()["secrets"]["dna_token"] == "<set>"
    source = build_source(cfg, open_event_log(store, cfg))
    assert isinstance(source, DnaSource)
    assert source.url == "https://mainnet.starkstream.io:443"


def test_the_token_from_the_credentials_directory(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "dna_token").write_text(TOKEN)
    stream = 'source = "dna"\ndna_url = "https://testnet.starkstream.io"'
    cfg = load_config(config_file(tmp_path, stream), {"CREDENTIALS_DIRECTORY": str(creds)})
    assert cfg.secrets.dna_token is not None


def test_the_token_is_redacted_from_every_log_line(tmp_path: Path) -> None:
    stream = 'source = "dna"\ndna_url = "https://mainnet.starkstream.io"'
    cfg = load_config(config_file(tmp_path, stream), token_env(tmp_path))
    assert TOKEN in cfg.secrets.values()
    out = io.StringIO()
    configure_logging(fmt="json", secrets=cfg.secrets.values(), stream=out)
    try:
        get_logger("test").warning("oops", detail=f"Bearer {TOKEN}")
    finally:
        structlog.reset_defaults()
        logging.getLogger().handlers.clear()
    assert "oops" in out.getvalue()  # the line is there, its secret is not
    assert TOKEN not in out.getvalue()


@pytest.mark.parametrize(
    ("stream", "expected"),
    [
        ('source = "dna"', "needs stream.dna_url"),
        ('source = "dna"\ndna_url = "mainnet.starkstream.io:443"', "https://host[:port]"),
        ('source = "dna"\ndna_url = "https://x.io/v2?token=abc"', "no path, query"),
        ('source = "dna"\ndna_url = "https://x.io"\ndna_finality = "pending"', "dna_finality"),
        ('source = "dna"\ndna_url = "https://x.io"\ndna_heartbeat_interval_s = 5', "10"),
        ('source = "dna"\ndna_url = "https://x.io"\ndna_heartbeat_interval_s = 61', "60"),
        (
            'source = "dna"\ndna_url = "https://x.io"\nstall_deadline_s = 30.0\n'
            "dna_heartbeat_interval_s = 30",
            "stall_deadline_s must be longer than dna_heartbeat_interval_s",
        ),
        ('dna_token = "abc"', "secrets are not accepted in the config file"),
    ],
)
def test_bad_dna_options_are_config_errors(tmp_path: Path, stream: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(config_file(tmp_path, stream), {})
    assert expected in "\n".join(info.value.problems)


def test_a_token_is_never_sent_in_clear_to_another_host(tmp_path: Path) -> None:
    stream = 'source = "dna"\ndna_url = "http://dna.example.org:7171"'
    with pytest.raises(ConfigError) as info:
        load_config(config_file(tmp_path, stream), token_env(tmp_path))
    assert "in clear; use https://" in "\n".join(info.value.problems)
    local = 'source = "dna"\ndna_url = "http://127.0.0.1:7171"'
    assert load_config(config_file(tmp_path, local), token_env(tmp_path)).secrets.dna_token


def test_the_token_inline_in_the_environment_is_refused(tmp_path: Path) -> None:
    stream = 'source = "dna"\ndna_url = "https://x.io"'
    with pytest.raises(ConfigError) as info:
        load_config(config_file(tmp_path, stream), {"KEEPER_DNA_TOKEN": TOKEN})
    assert "KEEPER_DNA_TOKEN_FILE" in "\n".join(info.value.problems)
