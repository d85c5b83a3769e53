"""``[funds]``: defaults, environment overrides, and every bad value named by field."""

from __future__ import annotations

from pathlib import Path

import pytest

from keeper.core.config import load_config
from keeper.core.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "keeper.example.toml"


def _with_funds(tmp_path: Path, funds: str) -> Path:
    text = EXAMPLE.read_text()
    head, tail = text.split("[funds]\n", 1)
    rest = tail[tail.index("\n[store]") :]
    path = tmp_path / "keeper.toml"
    path.write_text(f"{head}[funds]\n{funds}\n{rest}")
    return path


def test_the_defaults_without_a_funds_section(tmp_path: Path) -> None:
    cfg = load_config(_with_funds(tmp_path, ""), {})
    assert cfg.funds.min_rebalances == 10
    assert cfg.funds.poll_interval_s == 120.0
    assert cfg.funds.default_cost_per_allocation_fri == 3 * 10**17
    assert int(cfg.funds.fee_token_address, 16) == int(
        "0x04718f5a0fc34cc1af16a1cdee98ffb20c31f5cd61d6ab07201858f4287c938d", 16
    )


def test_the_environment_overrides_the_file(tmp_path: Path) -> None:
    cfg = load_config(
        _with_funds(tmp_path, "min_rebalances = 3"), {"KEEPER_FUNDS__MIN_REBALANCES": "25"}
    )
    assert cfg.funds.min_rebalances == 25


@pytest.mark.parametrize(
    ("line", "field"),
    [
        ("min_rebalances = -1", "funds.min_rebalances"),
        ("poll_interval_s = 0", "funds.poll_interval_s"),
        ("poll_interval_s = 7200", "funds.poll_interval_s"),
        ("default_cost_per_allocation_fri = 0", "funds.default_cost_per_allocation_fri"),
        ('fee_token_address = "4718f5a"', "funds.fee_token_address"),
        ("margin = 2.0", "funds.margin"),  # the margin is chain.fee_multiplier
    ],
)
def test_a_bad_value_is_named(tmp_path: Path, line: str, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(_with_funds(tmp_path, line), {})
    assert any(problem.startswith(field) for problem in info.value.problems), info.value.problems
