"""Where the Stone binaries are, what build they are, and installing them.

Stone v3 (stone-prover commit 1414a54) is a C++ program no package registry offers.
``make setup`` installs it into the project's tools directory (``.tools/stone``): from a
directory of prebuilt binaries with their ``SHA256SUMS`` (the checksums are verified
before anything is installed), or from a source build (``scripts/build_stone.py``).
Beside the binaries it writes ``BUILD_INFO.json``: where they came from, their sha256 and
the Stone generation, which is how the keeper names the build it will use.

The order in which every tool finds Stone (the daemon, ``prove``, the demo, the tests):
the config (``prover.stone_prover_path``, or its ``KEEPER_PROVER__STONE_PROVER_PATH``
override), the project's tools directory (``STONE_TOOLS_DIR`` when set), then ``PATH``.
The verifier defaults to the one beside the prover.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import lzma
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from prover.errors import ProverError

STONE_BINARIES = ("cpu_air_prover", "cpu_air_verifier")
STONE_PATH_ENV = ("KEEPER_PROVER__STONE_PROVER_PATH", "KEEPER_PROVER__STONE_VERIFIER_PATH")
PROJECT_ROOT = Path(__file__).resolve().parents[1]
TOOLS_DIR = PROJECT_ROOT / ".tools" / "stone"
TOOLS_DIR_ENV = "STONE_TOOLS_DIR"
BUILD_INFO = "BUILD_INFO.json"
SHA256SUMS = "SHA256SUMS"

# The pinned revision: "Stone v3." (Sept 2024), the first to make stone6 proofs.
STONE_COMMIT = "1414a54"
STONE_V3 = f"Stone v3 (stone-prover {STONE_COMMIT}): stone5 and stone6 proofs"
# sha256 of the prebuilt x86-64 binaries of that revision (../shared/stone/bin), so that a
# copy of them found anywhere is named even without its BUILD_INFO.json.
KNOWN_BUILDS: Mapping[str, str] = {
    "5fa6382565929523111983d491c6cadbd8ff11fdf8690a746286b571b05eae0e": STONE_V3,
    "8b4ae7e40fb9e2e755cca312f2f42fbcd2bb9c186c4e59bafec2c1ab9f8fd32f": STONE_V3,
}
UNKNOWN_GENERATION = "unknown build (its generation shows at the first proof)"

StoneSource = Literal["config", "tools", "PATH"]


class StoneInstallError(ProverError):
    """Installing Stone failed; nothing was installed (the message says why)."""

    code = "stone_install"


# --- finding Stone ------------------------------------------------------------------------


@dataclass(frozen=True)
class StoneBuild:
    """A Stone pair the keeper will run, where it was found and what build it is."""

    prover: Path
    verifier: Path
    source: StoneSource
    generation: str

    def describe(self) -> str:
        return f"{self.prover} ({self.generation}; found in {self.source})"

    def as_json(self) -> dict[str, str]:
        return {
            "prover": str(self.prover),
            "verifier": str(self.verifier),
            "source": self.source,
            "generation": self.generation,
        }


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _pair(prover: Path, verifier: Path | None) -> tuple[Path, Path] | None:
    verifier = verifier or prover.parent / STONE_BINARIES[1]
    if _is_executable(prover) and _is_executable(verifier):
        return prover, verifier
    return None


def find_stone(
    configured_prover: Path | None,
    configured_verifier: Path | None,
    *,
    path_env: str | None,
    tools_dir: Path = TOOLS_DIR,
) -> StoneBuild | None:
    """The Stone pair to use, in the documented order, or None.

    A configured prover is taken as it is (bare names go through ``path_env``), even when
    it is missing: the runner's own error then says what is wrong with the operator's
    path, instead of a silent switch to another build."""
    if configured_prover is not None:
        prover = _on_path(configured_prover, path_env)
        verifier = (
            _on_path(configured_verifier, path_env)
            if configured_verifier is not None
            else prover.parent / STONE_BINARIES[1]
        )
        return StoneBuild(prover, verifier, "config", describe_generation(prover))
    installed = _pair(tools_dir / "bin" / STONE_BINARIES[0], None)
    if installed is not None:
        return StoneBuild(*installed, "tools", describe_generation(installed[0]))
    on_path = shutil.which(STONE_BINARIES[0], path=path_env)
    if on_path is not None:
        found = _pair(Path(on_path), _which(STONE_BINARIES[1], path_env))
        if found is not None:
            return StoneBuild(*found, "PATH", describe_generation(found[0]))
    return None


def _which(name: str, path_env: str | None) -> Path | None:
    found = shutil.which(name, path=path_env)
    return Path(found) if found else None


def _on_path(path: Path, path_env: str | None) -> Path:
    if os.sep not in str(path):
        found = _which(str(path), path_env)
        return found if found is not None else path
    return path.absolute()


def tools_dir_from(environ: Mapping[str, str]) -> Path:
    """Where `make setup` installs Stone: ``STONE_TOOLS_DIR``, else the checkout's
    ``.tools/stone`` (the installer and every reader agree on it)."""
    return Path(environ.get(TOOLS_DIR_ENV) or TOOLS_DIR)


def locate_stone(environ: Mapping[str, str]) -> StoneBuild | None:
    """The Stone a tool outside a keeper config uses (demo, bench, tests): the
    ``KEEPER_PROVER__STONE_*_PATH`` variables, then the tools directory, then PATH; None
    unless a whole pair is there."""
    named = [environ.get(name) for name in STONE_PATH_ENV]
    build = find_stone(
        Path(named[0]) if named[0] else None,
        Path(named[1]) if named[1] else None,
        path_env=environ.get("PATH"),
        tools_dir=tools_dir_from(environ),
    )
    if build is None or _pair(build.prover, build.verifier) is None:
        return None
    return build


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_build_info(tools_dir: Path) -> dict[str, Any] | None:
    try:
        info = json.loads((tools_dir / BUILD_INFO).read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def describe_generation(prover: Path) -> str:
    """What build ``prover`` is: from the BUILD_INFO.json of its install when the binary
    is still the one installed, else from the known prebuilt checksums."""
    try:
        digest = sha256_of(prover)
    except OSError:
        return "missing"
    info = read_build_info(prover.parent.parent)
    if info is not None and info.get("sha256", {}).get(prover.name) == digest:
        return str(info.get("generation") or UNKNOWN_GENERATION)
    return KNOWN_BUILDS.get(digest, UNKNOWN_GENERATION)


# --- installing Stone ---------------------------------------------------------------------


def read_sha256sums(path: Path) -> dict[str, str]:
    """``SHA256SUMS`` (``<hex>  <name>`` lines) for the two binaries."""
    sums: dict[str, str] = {}
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise StoneInstallError(
            f"cannot read {path}: {exc.strerror}; a prebuilt Stone directory needs a "
            "SHA256SUMS file (sha256 of the unpacked binaries)"
        ) from exc
    for line in lines:
        parts = line.split()
        if len(parts) == 2 and len(parts[0]) == 64:
            sums[parts[1].lstrip("*")] = parts[0].lower()
    missing = [name for name in STONE_BINARIES if name not in sums]
    if missing:
        raise StoneInstallError(f"{path} has no checksum for {', '.join(missing)}")
    return sums


def installed_matches(tools_dir: Path) -> bool:
    """True when both binaries are installed and still have the sha256 recorded at install."""
    info = read_build_info(tools_dir)
    if info is None:
        return False
    recorded = info.get("sha256", {})
    for name in STONE_BINARIES:
        binary = tools_dir / "bin" / name
        if not _is_executable(binary) or recorded.get(name) != sha256_of(binary):
            return False
    return True


def _unpack(source: Path, target: Path) -> None:
    try:
        if source.suffix == ".xz":
            with lzma.open(source) as packed, target.open("wb") as out:
                shutil.copyfileobj(packed, out, 1 << 20)
        else:
            shutil.copyfile(source, target)
    except lzma.LZMAError as exc:
        raise StoneInstallError(
            f"{source} is not a valid xz file ({exc}); nothing was installed (get an intact "
            "copy of the prebuilt directory)"
        ) from exc
    except OSError as exc:
        raise StoneInstallError(
            f"cannot unpack {source} into {target.parent}: {exc.strerror}; nothing was installed"
        ) from exc
    target.chmod(0o755)


def _binary_in(dist: Path, name: str) -> Path:
    for candidate in (dist / f"{name}.xz", dist / name):
        if candidate.is_file():
            return candidate
    raise StoneInstallError(f"{dist} has neither {name}.xz nor {name}")


def _smoke_test(binary: Path) -> None:
    """The binary starts on this machine (its loader, glibc and CPU features agree)."""
    try:
        run = subprocess.run(
            [str(binary), "--helpshort"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except OSError as exc:
        raise StoneInstallError(f"{binary} cannot run here: {exc.strerror}") from exc
    except subprocess.TimeoutExpired as exc:
        raise StoneInstallError(f"{binary} --helpshort did not return in 60 s") from exc
    text = run.stdout + run.stderr
    if "-help" not in text and "Flags" not in text:
        raise StoneInstallError(
            f"{binary} does not run on this machine (exit {run.returncode}): "
            f"{text.strip()[-300:] or 'no output'}"
        )


def install_binaries(
    files: Mapping[str, Path],
    tools_dir: Path,
    *,
    origin: str,
    generation: str,
    expected: Mapping[str, str] | None,
    say: Callable[[str], None],
) -> None:
    """Copy (unpack ``.xz``) ``files`` into ``tools_dir/bin`` atomically: every binary is
    unpacked into a staging directory and checked against ``expected`` first; on any
    mismatch nothing is installed and the previous install stays as it was."""
    tools_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=tools_dir))
    try:
        (staging / "bin").mkdir()
        sums: dict[str, str] = {}
        for name in STONE_BINARIES:
            target = staging / "bin" / name
            _unpack(files[name], target)
            sums[name] = sha256_of(target)
            if expected is not None and sums[name] != expected[name]:
                raise StoneInstallError(
                    f"checksum mismatch for {name} from {files[name]}: sha256 "
                    f"{sums[name]}, SHA256SUMS says {expected[name]}; nothing was installed "
                    "(get an intact copy of the prebuilt directory)"
                )
            _smoke_test(target)
        info = {
            "generation": generation,
            "stone_prover_commit": STONE_COMMIT,
            "origin": origin,
            "sha256": sums,
        }
        (staging / BUILD_INFO).write_text(json.dumps(info, indent=2) + "\n")
        old = tools_dir / ".previous"
        shutil.rmtree(old, ignore_errors=True)
        for entry in ("bin", BUILD_INFO):
            if (tools_dir / entry).exists():
                old.mkdir(exist_ok=True)
                os.replace(tools_dir / entry, old / entry)
        os.replace(staging / "bin", tools_dir / "bin")
        os.replace(staging / BUILD_INFO, tools_dir / BUILD_INFO)
        shutil.rmtree(old, ignore_errors=True)
        say(f"stone: installed {generation} into {tools_dir / 'bin'} (from {origin})")
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def install_prebuilt(dist: Path, tools_dir: Path, *, say: Callable[[str], None]) -> bool:
    """Install from a prebuilt directory (``*.xz`` or plain binaries + SHA256SUMS).
    Returns False when the installed binaries already are these (nothing done)."""
    expected = read_sha256sums(dist / SHA256SUMS)
    files = {name: _binary_in(dist, name) for name in STONE_BINARIES}
    info = read_build_info(tools_dir)
    if info is not None and installed_matches(tools_dir) and info.get("sha256") == {
        name: expected[name] for name in STONE_BINARIES
    }:
        say(f"stone: {info.get('generation')} present in {tools_dir / 'bin'} (skipped)")
        return False
    generation = STONE_V3 if all(expected[n] in KNOWN_BUILDS for n in STONE_BINARIES) else (
        f"prebuilt from {dist}"
    )
    install_binaries(
        files,
        tools_dir,
        origin=f"prebuilt {dist}",
        generation=generation,
        expected=expected,
        say=say,
    )
    return True


def remove_partial(tools_dir: Path) -> None:
    """Leftover staging directories of an interrupted install."""
    for leftover in tools_dir.glob(".staging-*"):
        with contextlib.suppress(OSError):
            shutil.rmtree(leftover)
