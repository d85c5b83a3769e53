"""Finding a Stone build for the tools that run outside the daemon (demo, bench, tests)."""

from __future__ import annotations

from pathlib import Path

from prover.stone import locate_stone


def _binary(directory: Path, name: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


def test_paths_named_in_the_environment_win(tmp_path: Path) -> None:
    prover = _binary(tmp_path / "a", "cpu_air_prover")
    verifier = _binary(tmp_path / "b", "cpu_air_verifier")
    _binary(tmp_path / "onpath", "cpu_air_prover")
    _binary(tmp_path / "onpath", "cpu_air_verifier")
    environ = {
        "KEEPER_PROVER__STONE_PROVER_PATH": str(prover),
        "KEEPER_PROVER__STONE_VERIFIER_PATH": str(verifier),
        "PATH": str(tmp_path / "onpath"),
    }
    assert locate_stone(environ) == (prover, verifier)


def test_path_search_and_the_verifier_beside_the_prover(tmp_path: Path) -> None:
    prover = _binary(tmp_path / "bin", "cpu_air_prover")
    verifier = _binary(tmp_path / "bin", "cpu_air_verifier")
    assert locate_stone({"PATH": str(tmp_path / "bin")}) == (prover, verifier)
    named = {"KEEPER_PROVER__STONE_PROVER_PATH": str(prover), "PATH": str(tmp_path / "none")}
    assert locate_stone(named) == (prover, verifier)


def test_nothing_found_or_only_half_a_pair(tmp_path: Path) -> None:
    assert locate_stone({"PATH": str(tmp_path)}) is None
    prover = _binary(tmp_path / "bin", "cpu_air_prover")
    assert locate_stone({"PATH": str(tmp_path / "bin")}) is None
    missing = {
        "KEEPER_PROVER__STONE_PROVER_PATH": str(prover),
        "KEEPER_PROVER__STONE_VERIFIER_PATH": str(tmp_path / "gone"),
    }
    assert locate_stone(missing) is None
