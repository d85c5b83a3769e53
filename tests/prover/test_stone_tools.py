"""Finding Stone (config, the project's tools directory, PATH), naming its build, and
installing it from a prebuilt directory (what `make setup` does).

The install tests use the real prebuilt Stone v3 of ../shared/stone/bin (skipped, with
the reason, where that folder is absent)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from prover.settings import ProverSettings
from prover.stone_tools import (
    BUILD_INFO,
    KNOWN_BUILDS,
    STONE_V3,
    UNKNOWN_GENERATION,
    StoneInstallError,
    describe_generation,
    find_stone,
    install_prebuilt,
    installed_matches,
    locate_stone,
    read_sha256sums,
)

ROOT = Path(__file__).resolve().parents[2]
SHARED_STONE_BIN = ROOT.parent / "shared" / "stone" / "bin"


def _binary(directory: Path, name: str, body: str = "#!/bin/sh\n") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(body)
    path.chmod(0o755)
    return path


def _pair(directory: Path) -> tuple[Path, Path]:
    return _binary(directory, "cpu_air_prover"), _binary(directory, "cpu_air_verifier")


# --- finding --------------------------------------------------------------------------


def test_the_order_is_config_then_tools_then_path(tmp_path: Path) -> None:
    configured = _pair(tmp_path / "configured")
    tools = tmp_path / "tools"
    installed = _pair(tools / "bin")
    on_path = _pair(tmp_path / "onpath")
    path_env = str(tmp_path / "onpath")

    build = find_stone(*configured, path_env=path_env, tools_dir=tools)
    assert build is not None
    assert (build.prover, build.verifier, build.source) == (*configured, "config")

    build = find_stone(None, None, path_env=path_env, tools_dir=tools)
    assert build is not None
    assert (build.prover, build.verifier, build.source) == (*installed, "tools")

    build = find_stone(None, None, path_env=path_env, tools_dir=tmp_path / "none")
    assert build is not None
    assert (build.prover, build.verifier, build.source) == (*on_path, "PATH")

    assert find_stone(None, None, path_env=str(tmp_path / "x"), tools_dir=tmp_path / "y") is None


def test_a_configured_prover_is_kept_even_when_missing(tmp_path: Path) -> None:
    # The runner's own error must name the operator's path, not a silent other build.
    tools = tmp_path / "tools"
    _pair(tools / "bin")
    gone = tmp_path / "gone" / "cpu_air_prover"
    build = find_stone(gone, None, path_env=None, tools_dir=tools)
    assert build is not None
    assert build.prover == gone and build.verifier == gone.parent / "cpu_air_verifier"
    assert build.generation == "missing"


def test_locate_needs_a_whole_pair(tmp_path: Path) -> None:
    empty = tmp_path / "no-tools"
    _binary(tmp_path / "half", "cpu_air_prover")
    assert locate_stone({"PATH": str(tmp_path / "half"), "STONE_TOOLS_DIR": str(empty)}) is None
    prover, verifier = _pair(tmp_path / "bin")
    named = {
        "KEEPER_PROVER__STONE_PROVER_PATH": str(prover),
        "PATH": str(tmp_path / "none"),
        "STONE_TOOLS_DIR": str(empty),
    }
    build = locate_stone(named)
    assert build is not None and (build.prover, build.verifier) == (prover, verifier)
    missing = {
        "KEEPER_PROVER__STONE_PROVER_PATH": str(prover),
        "KEEPER_PROVER__STONE_VERIFIER_PATH": str(tmp_path / "gone"),
    }
    assert locate_stone(missing) is None


def test_settings_record_the_stone_they_found(tmp_path: Path) -> None:
    on_path = _pair(tmp_path / "onpath")
    settings = ProverSettings().with_stone(str(tmp_path / "onpath"), tools_dir=tmp_path / "t")
    assert (settings.stone_prover_path, settings.stone_verifier_path) == on_path
    assert settings.stone_build is not None and settings.stone_build.source == "PATH"
    # The record survives the copies the keeper makes at run time.
    again = settings.model_copy(update={"required_security_bits": 100})
    assert again.stone_build == settings.stone_build
    assert ProverSettings().stone_build is None


def test_generation_from_build_info_while_the_binary_is_unchanged(tmp_path: Path) -> None:
    tools = tmp_path / "tools"
    prover, _ = _pair(tools / "bin")
    digest = __import__("hashlib").sha256(prover.read_bytes()).hexdigest()
    (tools / BUILD_INFO).write_text(
        json.dumps({"generation": "my build", "sha256": {"cpu_air_prover": digest}})
    )
    assert describe_generation(prover) == "my build"
    prover.write_text("#!/bin/sh\n# changed\n")
    assert describe_generation(prover) == UNKNOWN_GENERATION


def test_sha256sums_must_name_both_binaries(tmp_path: Path) -> None:
    sums = tmp_path / "SHA256SUMS"
    sums.write_text(f"{'a' * 64}  cpu_air_prover\n")
    with pytest.raises(StoneInstallError, match="no checksum for cpu_air_verifier"):
        read_sha256sums(sums)
    with pytest.raises(StoneInstallError, match="needs a SHA256SUMS file"):
        read_sha256sums(tmp_path / "absent")


# --- installing the real prebuilt Stone --------------------------------------------------

needs_prebuilt = pytest.mark.skipif(
    not (SHARED_STONE_BIN / "SHA256SUMS").is_file(),
    reason=f"no prebuilt Stone at {SHARED_STONE_BIN}",
)


def _unpacked_dist(tmp_path: Path) -> Path:
    """The prebuilt directory with plain (unpacked) binaries, so one byte can be flipped."""
    import lzma

    dist = tmp_path / "dist"
    dist.mkdir()
    for name in ("cpu_air_prover", "cpu_air_verifier"):
        with lzma.open(SHARED_STONE_BIN / f"{name}.xz") as packed:
            (dist / name).write_bytes(packed.read())
    shutil.copyfile(SHARED_STONE_BIN / "SHA256SUMS", dist / "SHA256SUMS")
    return dist


@needs_prebuilt
def test_one_corrupted_byte_is_refused_and_nothing_installed(tmp_path: Path) -> None:
    dist = _unpacked_dist(tmp_path)
    binary = dist / "cpu_air_verifier"
    data = bytearray(binary.read_bytes())
    data[len(data) // 2] ^= 0x01
    binary.write_bytes(bytes(data))
    tools = tmp_path / "tools"
    with pytest.raises(StoneInstallError, match="checksum mismatch for cpu_air_verifier"):
        install_prebuilt(dist, tools, say=lambda _: None)
    assert sorted(p.name for p in tools.iterdir()) == []


@needs_prebuilt
def test_a_corrupted_archive_is_refused(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    shutil.copytree(SHARED_STONE_BIN, dist)
    packed = dist / "cpu_air_prover.xz"
    packed.chmod(0o644)
    data = bytearray(packed.read_bytes())
    data[len(data) // 2] ^= 0xFF
    packed.write_bytes(bytes(data))
    tools = tmp_path / "tools"
    with pytest.raises(StoneInstallError, match="nothing was installed"):
        install_prebuilt(dist, tools, say=lambda _: None)
    assert list(tools.iterdir()) == []


@needs_prebuilt
def test_install_then_a_second_run_does_nothing(tmp_path: Path) -> None:
    tools = tmp_path / "tools"
    said: list[str] = []
    assert install_prebuilt(SHARED_STONE_BIN, tools, say=said.append) is True
    assert installed_matches(tools)
    prover = tools / "bin" / "cpu_air_prover"
    assert describe_generation(prover) == STONE_V3
    assert set(json.loads((tools / BUILD_INFO).read_text())["sha256"].values()) <= set(
        KNOWN_BUILDS
    )
    before = {p.name: p.stat().st_mtime_ns for p in (tools / "bin").iterdir()}
    assert install_prebuilt(SHARED_STONE_BIN, tools, say=said.append) is False
    assert {p.name: p.stat().st_mtime_ns for p in (tools / "bin").iterdir()} == before
    assert "skipped" in said[-1]
    build = locate_stone({"PATH": "", "STONE_TOOLS_DIR": str(tools)})
    assert build is not None and build.source == "tools" and build.generation == STONE_V3


@needs_prebuilt
def test_the_setup_script_installs_and_says_so_once(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KEEPER_", "STONE_"))}
    env["STONE_TOOLS_DIR"] = str(tmp_path / "tools")
    env["STONE_DIST"] = str(SHARED_STONE_BIN)
    script = [sys.executable, str(ROOT / "scripts" / "install_stone.py")]
    first = subprocess.run(script, env=env, capture_output=True, text=True, check=False)
    assert first.returncode == 0, first.stderr
    assert "stone: installed Stone v3" in first.stdout
    second = subprocess.run(script, env=env, capture_output=True, text=True, check=False)
    assert second.returncode == 0 and "(skipped)" in second.stdout
    broken = subprocess.run(
        script, env={**env, "STONE_DIST": str(tmp_path / "nowhere")}, capture_output=True,
        text=True, check=False,
    )
    assert broken.returncode == 1 and "SHA256SUMS" in broken.stderr


def test_without_any_stone_setup_says_what_is_needed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from scripts import install_stone

    monkeypatch.setattr(install_stone, "SHARED_STONE", tmp_path / "no-shared")
    for name in ("STONE_DIST", "STONE_SRC", "KEEPER_PROVER__STONE_PROVER_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("STONE_TOOLS_DIR", str(tmp_path / "tools"))
    assert install_stone.main([]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and "stone: not installed" in lines[0] and "make stone" in lines[0]
    monkeypatch.setenv("KEEPER_PROVER__STONE_PROVER_PATH", "/opt/stone/cpu_air_prover")
    assert install_stone.main([]) == 0
    assert "nothing installed" in capsys.readouterr().out
