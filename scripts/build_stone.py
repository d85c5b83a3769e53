"""Build Stone v3 (stone-prover 1414a54) from source without Bazel, then install it.

    .venv/bin/python scripts/install_stone.py --build     (make stone; STONE_SRC=…)

Upstream builds with Bazel 5, which downloads its own LLVM toolchain and third-party
archives: impossible where only the package registries are reachable. Stone's own BUILD
files still say everything a build needs, so this script reads them instead:

1. the source: a directory, or the ``git archive`` tarball unpacked once into the cache;
2. Debian's compiler and libraries for what Bazel would have fetched (clang, gflags, glog,
   elfutils' libdw, and the static archives behind them);
3. every BUILD file is evaluated as Python with stand-ins for the Starlark rules it uses
   (cc_library, cc_binary, glob, load, …); the two binaries' dependency closure gives the
   compile units and their options; the toolchain flags are the ones the WORKSPACE gives
   Bazel's llvm_toolchain;
4. a Makefile compiles them (``make -j``, incremental: a re-run after an interruption
   only compiles what is missing), and links each binary against Debian's static archives
   so that the result needs nothing but glibc;
5. the binaries are installed into the tools directory as a prebuilt install would be
   (``prover.stone_tools.install_binaries``), with a BUILD_INFO.json naming the source.

About 50 minutes on 2 cores (the cpu_air_definition*.cc units dominate). Objects are kept
in $OBSQRA_CACHE_DIR/stone-build (default ~/.cache/obsqra-keeper) for a re-run.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from prover.stone_tools import (  # noqa: E402
    STONE_BINARIES,
    STONE_COMMIT,
    STONE_V3,
    StoneInstallError,
    install_binaries,
)

BINARY_TARGETS = tuple(f"//src/starkware/main/cpu:{name}" for name in STONE_BINARIES)
SOURCE_SUFFIXES = (".cc", ".cpp", ".c", ".S", ".s")
CACHE = Path(
    os.environ.get("OBSQRA_CACHE_DIR")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "obsqra-keeper"
)
# Debian packages standing in for what Bazel fetches (compiler, gflags, glog, libdw) and
# the static archives the binaries are linked with.
DEBIAN_PACKAGES = (
    "clang",
    "make",
    "binutils",
    "libgflags-dev",
    "libgoogle-glog-dev",
    "libdw-dev",
    "libelf-dev",
    "libunwind-dev",
    "liblzma-dev",
    "libbz2-dev",
    "zlib1g-dev",
    "libzstd-dev",
)
# Bazel's external labels -> the libraries they are.
EXTERNAL_LIBS = {
    "@com_github_glog_glog//:glog": ("glog", "unwind"),
    "@com_github_gflags_gflags//:gflags": ("gflags",),
    "@com_github_gtest_gtest//:gtest": (),
    "@com_github_gtest_gtest//:gtest_main": (),
}
# What libdw and glog need in turn when linked statically.
STATIC_COMPANIONS = {"dw": ("elf", "lzma", "bz2", "z", "zstd"), "glog": ("gflags", "unwind")}
# From the WORKSPACE's llvm_toolchain: compile, C++ and optimised-build flags.
COMPILE_FLAGS = (
    "-DUSE_REGISTER_HINT -fno-omit-frame-pointer -fno-strict-aliasing -fPIC -maes -mpclmul "
    "-Wno-mismatched-tags -Wno-unused-command-line-argument"
)
CXX_FLAGS = "-std=c++17 -fconstexpr-steps=20000000"
OPT_FLAGS = "-g0 -O3 -D_FORTIFY_SOURCE=1 -DNDEBUG -ffunction-sections -fdata-sections"


def say(text: str) -> None:
    print(f"build_stone: {text}", flush=True)


# --- the BUILD graph ----------------------------------------------------------------------


@dataclass
class Target:
    label: str
    kind: str
    srcs: list[str] = field(default_factory=list)
    hdrs: list[str] = field(default_factory=list)
    deps: list[str] = field(default_factory=list)
    copts: list[str] = field(default_factory=list)
    linkopts: list[str] = field(default_factory=list)


def normalize(package: str, label: str) -> str:
    """A label as Bazel resolves it inside ``package``: //pkg:name or @repo//…"""
    if label.startswith("@"):
        return label
    if label.startswith("//"):
        return label if ":" in label else f"{label}:{label.rsplit('/', 1)[-1]}"
    return f"//{package}:{label.removeprefix(':')}"


def label_path(label: str) -> str:
    package, name = label[2:].split(":", 1)
    return f"{package}/{name}"


class BuildGraph:
    """The cc targets of every BUILD file under ``src/``."""

    def __init__(self, source: Path) -> None:
        self.source = source
        self.targets: dict[str, Target] = {}
        self._package = ""
        for build_file in sorted(source.glob("src/**/BUILD")):
            self._package = build_file.parent.relative_to(source).as_posix()
            scope = self._rules()
            scope["load"] = lambda label, *symbols, scope=scope: scope.update(
                self._load(label, symbols)
            )
            self._evaluate(build_file, scope)

    # Starlark stand-ins ------------------------------------------------------------------
    def _rule(self, kind: str) -> Callable[..., None]:
        def rule(name: str, **attrs: Any) -> None:
            pkg = self._package
            self.targets[f"//{pkg}:{name}"] = Target(
                label=f"//{pkg}:{name}",
                kind=kind,
                srcs=[normalize(pkg, s) for s in attrs.get("srcs", ())],
                hdrs=[normalize(pkg, s) for s in attrs.get("hdrs", ())],
                deps=[normalize(pkg, d) for d in attrs.get("deps", ())],
                copts=list(attrs.get("copts", ())),
                linkopts=list(attrs.get("linkopts", ())),
            )

        return rule

    def _glob(self, include: Iterable[str], exclude: Iterable[str] = (), **_: Any) -> list[str]:
        base = self.source / self._package
        skipped = {p for pattern in exclude for p in glob.glob(str(base / pattern))}
        found: list[str] = []
        for pattern in include:
            for match in sorted(glob.glob(str(base / pattern), recursive=True)):
                relative = Path(match).relative_to(base).as_posix()
                if match not in skipped and relative not in found:
                    found.append(relative)
        return found

    def _rules(self) -> dict[str, Any]:
        return {
            "cc_library": self._rule("cc_library"),
            "cc_binary": self._rule("cc_binary"),
            "cc_test": self._rule("cc_test"),
            "glob": self._glob,
        }

    def _load(self, label: str, symbols: Iterable[str]) -> dict[str, Any]:
        """The named symbols of a .bzl file, whose macros reach the rules via ``native``."""
        path = self.source / label_path(normalize(self._package, label))
        native = type("native", (), {k: staticmethod(v) for k, v in self._rules().items()})
        scope: dict[str, Any] = {"native": native}
        self._evaluate(path, scope)
        return {symbol: scope[symbol] for symbol in symbols}

    @staticmethod
    def _evaluate(path: Path, scope: dict[str, Any]) -> None:
        """exec the file; any rule we do not build (package, filegroup, py_library…) is a
        no-op, added as the file first names it."""
        code = compile(path.read_text(), str(path), "exec")
        for _ in range(100):
            try:
                exec(code, scope)  # noqa: S102 - Stone's own BUILD files, read as data
                return
            except NameError as exc:
                missing = re.search(r"name '(\w+)' is not defined", str(exc))
                if missing is None or missing.group(1) in scope:
                    raise
                scope[missing.group(1)] = lambda *a, **k: None
        raise StoneInstallError(f"cannot evaluate {path}: too many unknown rules")

    # closure -------------------------------------------------------------------------
    def closure(self, label: str) -> list[str]:
        """``label`` and everything it depends on, in discovery order."""
        order: list[str] = []
        stack = [label]
        while stack:
            current = stack.pop()
            if current in order:
                continue
            order.append(current)
            if current.startswith("@"):
                if current not in EXTERNAL_LIBS:
                    raise StoneInstallError(f"unknown external dependency {current}")
                continue
            target = self.targets.get(current)
            if target is None:
                raise StoneInstallError(f"{current} is not a target of any BUILD file")
            stack.extend(reversed(target.deps))
            stack.extend(s for s in target.srcs + target.hdrs if s in self.targets)
        return order


@dataclass(frozen=True)
class BinaryPlan:
    name: str
    own_sources: tuple[tuple[str, tuple[str, ...]], ...]  # (path, copts)
    library_sources: tuple[tuple[str, tuple[str, ...]], ...]
    libraries: tuple[str, ...]  # -l names, in link order


def plan(graph: BuildGraph, label: str) -> BinaryPlan:
    binary = graph.targets[label]
    own: list[tuple[str, tuple[str, ...]]] = []
    library: list[tuple[str, tuple[str, ...]]] = []
    libraries: list[str] = []
    for dep in graph.closure(label):
        if dep.startswith("@"):
            libraries.extend(EXTERNAL_LIBS[dep])
            continue
        target = graph.targets[dep]
        libraries.extend(opt[2:] for opt in target.linkopts if opt.startswith("-l"))
        sources = [
            (label_path(s), tuple(target.copts))
            for s in target.srcs
            if s not in graph.targets and s.endswith(SOURCE_SUFFIXES)
        ]
        (own if dep == label else library).extend(sources)
    return BinaryPlan(
        name=binary.label.rsplit(":", 1)[1],
        own_sources=tuple(dict.fromkeys(own)),
        library_sources=tuple(s for s in dict.fromkeys(library) if s not in own),
        libraries=tuple(dict.fromkeys(libraries)),
    )


# --- the Makefile ------------------------------------------------------------------------


def _archive(name: str) -> str | None:
    for directory in ("/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib"):
        path = Path(directory) / f"lib{name}.a"
        if path.is_file():
            return str(path)
    return None


def link_libraries(names: Iterable[str]) -> list[str]:
    """Static archives where Debian ships them (so only glibc is needed at run time),
    with what they need in turn; ``-l`` for the rest."""
    wanted: list[str] = []
    for name in names:
        for lib in (name, *STATIC_COMPANIONS.get(name, ())):
            if lib not in wanted and lib != "pthread":
                wanted.append(lib)
    flags = []
    for lib in wanted:
        archive = _archive(lib)
        flags.append(archive if archive else f"-l{lib}")
    return [*flags, "-lpthread", "-lm", "-ldl"]


def makefile(source: Path, plans: Iterable[BinaryPlan]) -> str:
    lines = [
        "# Written by scripts/build_stone.py from Stone's BUILD files; rewritten every run.",
        f"SRC := {source}",
        f"COMMON := {COMPILE_FLAGS} -I$(SRC)/src -I$(SRC)",
        f"CXXFLAGS_ALL := {CXX_FLAGS} $(COMMON) {OPT_FLAGS}",
        f"CFLAGS_ALL := $(COMMON) {OPT_FLAGS}",
        "",
    ]
    units: dict[str, tuple[str, ...]] = {}
    binaries = []
    for p in plans:
        for path, copts in (*p.own_sources, *p.library_sources):
            units[path] = copts
        own = " ".join(f"obj/{path}.o" for path, _ in p.own_sources)
        libs = " ".join(f"obj/{path}.o" for path, _ in p.library_sources)
        link = " ".join(link_libraries(p.libraries))
        lines += [
            f"lib/lib{p.name}.a: {libs}",
            "\t@mkdir -p $(dir $@) && rm -f $@ && ar rcs $@ $^",
            f"bin/{p.name}: {own} lib/lib{p.name}.a",
            "\t@mkdir -p $(dir $@)",
            f"\t$(CXX) -no-pie -o $@ {own} lib/lib{p.name}.a -Wl,-z,relro,-z,now "
            f"-Wl,--gc-sections -static-libstdc++ {link}",
            "",
        ]
        binaries.append(f"bin/{p.name}")
    lines += [f"all: {' '.join(binaries)}", ".DEFAULT_GOAL := all", ""]
    for path, copts in sorted(units.items()):
        flags = " ".join(copts)
        cxx = path.endswith((".cc", ".cpp"))
        compiler = "$(CXX) $(CXXFLAGS_ALL)" if cxx else "$(CC) $(CFLAGS_ALL)"
        lines += [
            f"obj/{path}.o: $(SRC)/{path}",
            f"\t@mkdir -p $(dir $@) && {compiler} {flags} -MMD -MP -c $< -o $@",
        ]
    lines += ["", "-include $(shell find obj -name '*.d' 2>/dev/null)", ""]
    return "\n".join(lines)


# --- source, system packages, build ----------------------------------------------------


def prepare_source(source: Path) -> Path:
    """A source directory: ``source`` itself, or the tarball unpacked once into the cache."""
    if source.is_dir():
        if not (source / "src" / "starkware" / "main" / "cpu" / "BUILD").is_file():
            raise StoneInstallError(f"{source} is not a stone-prover source tree")
        return source.resolve()
    if not source.is_file():
        raise StoneInstallError(f"STONE_SRC {source} does not exist")
    target = CACHE / "stone-src"
    name = source.name.removesuffix(".tar.xz").removesuffix(".tar.gz").removesuffix(".tar")
    unpacked = target / name
    if not (unpacked / "src").is_dir():
        say(f"unpacking {source} into {target}")
        target.mkdir(parents=True, exist_ok=True)
        with tarfile.open(source) as archive:
            archive.extractall(target, filter="data")
    if not (unpacked / "src").is_dir():
        raise StoneInstallError(f"{source} did not unpack into {unpacked}")
    return unpacked


def source_commit(source: Path) -> str | None:
    if (source / ".git").exists():
        run = subprocess.run(
            ["git", "-C", str(source), "rev-parse", "--short=7", "HEAD"],
            capture_output=True, text=True, check=False,
        )
        return run.stdout.strip() or None
    match = re.search(r"\b([0-9a-f]{7,40})\b", source.name)
    return match.group(1)[:7] if match else None


def ensure_packages() -> None:
    missing = [
        p for p in DEBIAN_PACKAGES
        if subprocess.run(["dpkg", "-s", p], capture_output=True, check=False).returncode
    ]
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise StoneInstallError(
            f"building Stone needs the Debian packages {' '.join(missing)}: "
            f"sudo apt-get install {' '.join(missing)}"
        )
    say(f"installing {' '.join(missing)} (apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *missing]):
        if subprocess.run(argv, env=env, check=False).returncode:
            raise StoneInstallError(f"{' '.join(argv)} failed (see its output above)")


def build_and_install(source: Path, tools_dir: Path, *, say: Callable[[str], None]) -> None:
    tree = prepare_source(source)
    commit = source_commit(tree)
    if commit != STONE_COMMIT:
        say(f"warning: {tree} is commit {commit or 'unknown'}, not the pinned {STONE_COMMIT}")
    ensure_packages()
    graph = BuildGraph(tree)
    plans = [plan(graph, label) for label in BINARY_TARGETS]
    build_dir = CACHE / "stone-build" / (commit or "unknown")
    build_dir.mkdir(parents=True, exist_ok=True)
    (build_dir / "Makefile").write_text(makefile(tree, plans))
    units = {s for p in plans for s, _ in (*p.own_sources, *p.library_sources)}
    jobs = os.environ.get("STONE_BUILD_JOBS") or str(os.cpu_count() or 2)
    say(f"compiling {len(units)} units with make -j{jobs} in {build_dir} (~50 min on 2 cores)")
    make = ["make", "-j", jobs, "-C", str(build_dir), "CXX=clang++", "CC=clang"]
    if subprocess.run(make, check=False).returncode:
        raise StoneInstallError(
            f"the Stone build failed (compiler output above); objects are kept in {build_dir}"
        )
    for name in STONE_BINARIES:
        subprocess.run(["strip", str(build_dir / "bin" / name)], check=False)
    install_binaries(
        {name: build_dir / "bin" / name for name in STONE_BINARIES},
        tools_dir,
        origin=f"built from {source}",
        generation=STONE_V3 if commit == STONE_COMMIT else f"built from {tree} ({commit})",
        expected=None,
        say=say,
    )


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: build_stone.py SOURCE TOOLS_DIR  (normally: make stone)")
    build_and_install(Path(sys.argv[1]), Path(sys.argv[2]), say=say)
