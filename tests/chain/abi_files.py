"""Point keeper.chain.abi at another ABI directory for one test (tests only)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from keeper.chain import abi, views

SHIPPED = abi.ABI_DIR


def clear_caches() -> None:
    abi.contract_abi.cache_clear()
    views._layout.cache_clear()
    # The stream's event layouts are bound to the same ABIs.
    from keeper.stream import events

    events._layouts.cache_clear()


@contextmanager
def abi_dir(directory: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """keeper/abi/ copied to ``directory`` and used instead, caches cleared around."""
    for path in SHIPPED.glob("*.json"):
        shutil.copy(path, directory / path.name)
    monkeypatch.setattr(abi, "ABI_DIR", directory)
    clear_caches()
    try:
        yield directory
    finally:
        monkeypatch.setattr(abi, "ABI_DIR", SHIPPED)
        clear_caches()


def load(directory: Path, contract: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = json.loads((directory / f"{contract}.json").read_text())
    return entries


def save(directory: Path, contract: str, entries: list[dict[str, Any]]) -> None:
    (directory / f"{contract}.json").write_text(json.dumps(entries))


def entry(entries: list[dict[str, Any]], kind: str, name_suffix: str) -> dict[str, Any]:
    """The one ABI entry of ``kind`` whose name ends with ``name_suffix``."""
    (found,) = [e for e in entries if e["type"] == kind and e["name"].endswith(name_suffix)]
    return found
