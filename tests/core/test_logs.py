"""Logging: JSON lines off a terminal, context binding, and no secret ever printed."""

from __future__ import annotations

import io
import json
import logging
import string
from pathlib import Path

import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

from keeper.core.config import load_config
from keeper.core.logs import REDACTED, bind_job, configure_logging, get_logger

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "keeper.example.toml"


@pytest.fixture
def log_output() -> io.StringIO:
    out = io.StringIO()
    yield out
    structlog.reset_defaults()
    logging.getLogger().handlers.clear()


def _lines(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]


def test_json_lines_with_bound_job_context(log_output: io.StringIO) -> None:
    configure_logging(fmt="auto", stream=log_output)  # StringIO is not a terminal
    log = get_logger("t")
    with bind_job(job_id="0xr:7", epoch=7):
        log.info("job.traced", n_steps=4096)
    log.info("idle")
    first, second = _lines(log_output)
    assert first["event"] == "job.traced"
    assert (first["job_id"], first["epoch"], first["n_steps"]) == ("0xr:7", 7, 4096)
    assert "job_id" not in second
    assert first["level"] == "info" and "timestamp" in first


def test_level_filter(log_output: io.StringIO) -> None:
    configure_logging(level="warning", fmt="json", stream=log_output)
    get_logger().info("hidden")
    get_logger().warning("shown")
    assert [line["event"] for line in _lines(log_output)] == ["shown"]


def test_configured_secrets_never_reach_the_output(tmp_path: Path, log_output: io.StringIO) -> None:
    pk, api, pw = (
        "0x4f3edf983ac636a65a842ce7c78d9aa706d3b113bce036f8",
        "atl_live_9f8e7d6c5b4a",
        "correct horse battery",
    )
    files = {}
    for name, value in [
        ("ACCOUNT_PRIVATE_KEY", pk),
        ("ATLANTIC_API_KEY", api),
        ("KEYSTORE_PASSWORD", pw),
    ]:
        path = tmp_path / name
        path.write_text(value)
        files[f"KEEPER_{name}_FILE"] = str(path)
    cfg = load_config(EXAMPLE, files)
    configure_logging(fmt="json", secrets=cfg.secrets.values(), stream=log_output)
    log = get_logger("t")
    # Every way a secret could sneak in: message, field, nested, bytes, object repr,
    # exception text with traceback, a library logger, and context binding.
    log.info(f"key is {pk}", header={"api-key": api, "list": [pw, 1]}, raw=api.encode())
    log.warning(
        "request",
        url=f"https://x/atlantic-query?apiKey={api}",
        obj=type("K", (), {"__repr__": lambda s: pw})(),
    )
    try:
        raise RuntimeError(f"auth failed for {api} with {pw}")
    except RuntimeError:
        log.exception("failed")
    logging.getLogger("httpx").warning("GET https://x/?apiKey=%s", api)
    with bind_job(secret_ctx=pk):
        log.info("ctx")
    text = log_output.getvalue()
    for secret in (pk, api, pw):
        assert secret not in text
    assert text.count(REDACTED) >= 8
    assert len(_lines(log_output)) == 5


@settings(max_examples=200, deadline=None)
@given(
    # Real secrets are key-like; a "secret" such as "REDACTED" would survive in the marker.
    secret=st.text(
        alphabet=string.ascii_letters + string.digits + "_-+/=", min_size=8, max_size=40
    ).filter(lambda s: s not in f"[{REDACTED}]"),
    prefix=st.text(max_size=20),
    suffix=st.text(max_size=20),
)
def test_redaction_is_total_for_any_secret(secret: str, prefix: str, suffix: str) -> None:
    out = io.StringIO()
    configure_logging(fmt="json", secrets=[secret], stream=out)
    get_logger().info(prefix + secret + suffix, field=[suffix + secret])
    rendered = json.loads(out.getvalue())
    assert secret not in rendered["event"]
    assert secret not in rendered["field"][0]
    structlog.reset_defaults()
