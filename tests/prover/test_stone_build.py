"""The Bazel-free Stone build (scripts/build_stone.py, `make stone`): Stone's BUILD files
read into a compile plan and a Makefile. The compile itself (~50 min) is not run here."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from scripts.build_stone import (
    BINARY_TARGETS,
    BuildGraph,
    label_path,
    makefile,
    normalize,
    plan,
    prepare_source,
    source_commit,
)

ROOT = Path(__file__).resolve().parents[2]
TARBALL = ROOT.parent / "shared" / "stone" / "build" / "stone-prover-1414a54.tar.xz"


def test_labels_resolve_as_bazel_resolves_them() -> None:
    pkg = "src/starkware/air"
    assert normalize(pkg, ":air_lib") == "//src/starkware/air:air_lib"
    assert normalize(pkg, "air.h") == "//src/starkware/air:air.h"
    assert normalize(pkg, "//src/starkware/fri") == "//src/starkware/fri:fri"
    assert normalize(pkg, "//src/starkware/fri:fri_prover") == "//src/starkware/fri:fri_prover"
    assert normalize(pkg, "@com_github_glog_glog//:glog") == "@com_github_glog_glog//:glog"
    assert label_path("//src/starkware/air:air.h") == "src/starkware/air/air.h"


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not TARBALL.is_file():
        pytest.skip(f"no Stone source tarball at {TARBALL}")
    target = tmp_path_factory.mktemp("stone-src")
    with tarfile.open(TARBALL) as archive:
        archive.extractall(target, filter="data")
    return target / "stone-prover-1414a54"


def test_the_plan_covers_both_binaries_from_their_build_files(source: Path) -> None:
    assert source_commit(source) == "1414a54"
    assert prepare_source(source) == source.resolve()
    graph = BuildGraph(source)
    prover, verifier = (plan(graph, label) for label in BINARY_TARGETS)
    assert prover.own_sources == (("src/starkware/main/cpu/cpu_air_prover_main.cc", ()),)
    assert verifier.own_sources == (("src/starkware/main/cpu/cpu_air_verifier_main.cc", ()),)
    units = {path for path, _ in prover.library_sources}
    # The 13 split units of the CPU AIR come from a macro in a .bzl file (load + native).
    assert {f"src/starkware/air/cpu/board/cpu_air_definition{i}.cc" for i in range(13)} <= units
    assert "src/starkware/stark/stark.cc" in units and "src/starkware/fri/fri_prover.cc" in units
    assert not [p for p in units if p.endswith("_test.cc")]  # cc_test targets stay out
    assert {"glog", "gflags", "dw"} <= set(prover.libraries)
    text = makefile(source, [prover, verifier])
    assert "bin/cpu_air_prover:" in text and "bin/cpu_air_verifier:" in text
    assert "-fconstexpr-steps=20000000" in text and "-maes -mpclmul" in text
    assert text.count("obj/src/starkware/air/cpu/board/cpu_air_definition0.cc.o:") == 1


def test_a_tree_that_is_not_stone_is_refused(tmp_path: Path) -> None:
    from prover.stone_tools import StoneInstallError

    with pytest.raises(StoneInstallError, match="not a stone-prover source tree"):
        prepare_source(tmp_path)
    with pytest.raises(StoneInstallError, match="does not exist"):
        prepare_source(tmp_path / "absent.tar.xz")
