"""docs/operations.md stays in step with the unit, the metrics and the config."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_metrics import SERIES
from test_unit_file import UNIT, one, parse_unit

from keeper.core.config import SECRET_NAMES
from keeper.core.errors import EX_CONFIG, EX_USAGE, StoreError

DOC = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("series", SERIES)
def test_every_metric_is_documented(series: str) -> None:
    assert f"`{series}`" in DOC


@pytest.mark.parametrize("name", sorted(SECRET_NAMES))
def test_every_credential_is_documented(name: str) -> None:
    assert f"`{name}`" in DOC


@pytest.mark.parametrize("code", [0, 1, EX_USAGE, StoreError.exit_code, 75, EX_CONFIG])
def test_every_exit_code_is_documented(code: int) -> None:
    assert f"\n| {code} | " in DOC


def test_the_documented_paths_are_the_units() -> None:
    unit = parse_unit(UNIT.read_text(encoding="utf-8"))
    executable, _run, _flag, config = one(unit, "Service", "ExecStart").split()
    assert executable.removesuffix("/bin/obsqra-keeper") in DOC
    assert config in DOC
    assert one(unit, "Service", "MemoryMax") in DOC
