"""Install Stone v3 into the project's tools directory (``make setup``, ``make stone``).

    install_stone.py            from prebuilt binaries when a prebuilt directory is there
    install_stone.py --build    from source (``make stone``)

Environment:
    KEEPER_PROVER__STONE_PROVER_PATH  a Stone is configured: nothing is installed
    STONE_DIST    prebuilt directory: cpu_air_prover[.xz], cpu_air_verifier[.xz] and
                  SHA256SUMS (sha256 of the unpacked binaries); default ../shared/stone/bin
                  beside the checkout, when it exists
    STONE_SRC     stone-prover source at commit 1414a54: a directory or the .tar.xz from
                  `git archive`; building from it implies --build (default with --build:
                  ../shared/stone/build/stone-prover-1414a54.tar.xz when it exists)
    STONE_TOOLS_DIR  where to install (default .tools/stone); the keeper looks there
    STONE_BUILD_JOBS parallel compile jobs of a source build (default: number of cores)

Idempotent: binaries already installed with the sha256 their BUILD_INFO.json records are
kept as they are. Exit status 0 also when nothing could be installed (the last line says
what the stone policies need); 1 when an install was attempted and refused.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from prover.stone_tools import (  # noqa: E402 - after the path set-up above
    STONE_PATH_ENV,
    StoneInstallError,
    install_prebuilt,
    installed_matches,
    read_build_info,
    remove_partial,
    tools_dir_from,
)

SHARED_STONE = ROOT.parent / "shared" / "stone"


def say(text: str) -> None:
    print(f"setup: {text}", flush=True)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build", action="store_true", help="build from source (make stone)")
    args = parser.parse_args(argv)
    environ = os.environ
    tools_dir = tools_dir_from(environ)
    configured = environ.get(STONE_PATH_ENV[0])
    if configured:
        say(f"stone: configured by {STONE_PATH_ENV[0]}={configured} (nothing installed)")
        return 0
    if tools_dir.is_dir():
        remove_partial(tools_dir)
    try:
        source = environ.get("STONE_SRC")
        if args.build or source:
            return _build(tools_dir, source)
        dist_env = environ.get("STONE_DIST")
        dist = Path(dist_env) if dist_env else SHARED_STONE / "bin"
        if dist_env or dist.is_dir():
            install_prebuilt(dist, tools_dir, say=say)
            return 0
    except StoneInstallError as exc:
        print(f"setup: FAILED: {exc}", file=sys.stderr)
        return 1
    if installed_matches(tools_dir):
        info = read_build_info(tools_dir) or {}
        say(f"stone: {info.get('generation')} present in {tools_dir / 'bin'} (skipped)")
        return 0
    say(
        "stone: not installed. The stone policies (and the real-path tests and demo) need "
        "Stone v3: STONE_DIST=DIR (prebuilt binaries + SHA256SUMS) make setup, or "
        "STONE_SRC=stone-prover-1414a54 make stone (~50 min), or set "
        f"{STONE_PATH_ENV[0]}"
    )
    return 0


def _build(tools_dir: Path, source: str | None) -> int:
    default_tarball = SHARED_STONE / "build" / "stone-prover-1414a54.tar.xz"
    if source is None and default_tarball.is_file():
        source = str(default_tarball)
    if source is None:
        raise StoneInstallError(
            "no Stone source: set STONE_SRC to a checkout of stone-prover at commit 1414a54 "
            "(or its `git archive` .tar.xz)"
        )
    if installed_matches(tools_dir) and not os.environ.get("FORCE"):
        info = read_build_info(tools_dir) or {}
        say(
            f"stone: {info.get('generation')} present in {tools_dir / 'bin'} "
            "(skipped; FORCE=1 rebuilds)"
        )
        return 0
    from scripts.build_stone import build_and_install  # slow path only

    build_and_install(Path(source), tools_dir, say=say)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
