"""Fixtures shared by the proving tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.support.reference import STONE_SAMPLES


@pytest.fixture
def trace_dir(tmp_path: Path) -> Path:
    """A trace directory as `obsqra-keeper trace` writes it, from the real Stone samples."""
    trace = tmp_path / "trace"
    trace.mkdir()
    for name in ("trace.bin", "memory.bin", "public_input.json", "private_input.json"):
        shutil.copyfile(STONE_SAMPLES / name, trace / name)
    shutil.copyfile(STONE_SAMPLES / "weights_compiled.json", trace / "program.json")
    shutil.copyfile(STONE_SAMPLES / "input.json", trace / "program_input.json")
    return trace
