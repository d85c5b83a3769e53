#!/usr/bin/env bash
# One-command setup of obsqra-keeper's real toolchain (`make setup`).
# Idempotent: every step checks what is there and skips it when it already matches the pin.
# Prints what it installed or skipped; fails loudly naming the missing piece.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
PY=${PYTHON:-python3.11}
VENV="$ROOT/.venv"
CARGO_BIN="${CARGO_HOME:-$HOME/.cargo}/bin"
export PATH="$CARGO_BIN:$PATH"

# Pins. starknet-devnet 0.8.2 serves the RPC spec starknet-py 0.30 expects (FACTS §7) and
# embeds cairo-lang 2.17.0; the CASM compiler must be that same version so the compiled
# class hash we declare equals the one devnet recomputes.
DEVNET_VERSION=0.8.2
SIERRA_COMPILE_VERSION=2.17.0
# Sierra compiler = the corelib we can get from the crate registry (cairo-native ships it).
STARKNET_COMPILE_VERSION=2.16.0

say() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: FAILED: %s\n' "$*" >&2; exit 1; }

need() {
  command -v "$1" >/dev/null 2>&1 || die "$1 not found: $2"
}

need "$PY" "install Python 3.11 (Debian: apt-get install python3.11 python3.11-venv) or set PYTHON=/path/to/python3.11"
"$PY" -c 'import sys; assert sys.version_info[:2] == (3, 11)' \
  || die "$PY is not Python 3.11 (set PYTHON=/path/to/python3.11)"
need cargo "install Rust with rustup (https://rustup.rs): cargo builds starknet-devnet and the Cairo compilers"
need git "apt-get install git"

# --- 1. Python virtualenv with pinned dependencies ---------------------------------------
stamp="$VENV/.obsqra-lock.sha256"
want=$(cat requirements.lock pyproject.toml | sha256sum | cut -d' ' -f1)
if [ -x "$VENV/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  say "python venv: up to date (skipped)"
else
  say "python venv: installing pinned dependencies into .venv"
  [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV" || die "cannot create venv (Debian: apt-get install python3.11-venv)"
  "$VENV/bin/pip" install --quiet --upgrade pip
  "$VENV/bin/pip" install --quiet -r requirements.lock || die "pip install -r requirements.lock"
  "$VENV/bin/pip" install --quiet --no-deps -e . || die "pip install -e ."
  echo "$want" > "$stamp"
  say "python venv: installed"
fi

# --- 2. cairo-lang 0.14.0.1 on Python 3.11 (FACTS §2) --------------------------------------
# cairo-run crashes at import with "mutable default ... CpuInstanceDef"; the upstream fix
# (cairo-lang#195) is this one line. Applying it twice is a no-op.
instances=$("$VENV/bin/python" - <<'PY'
import importlib.util, pathlib
spec = importlib.util.find_spec("starkware")
print(pathlib.Path(list(spec.submodule_search_locations)[0]) / "cairo" / "lang" / "instances.py")
PY
)
if grep -q 'field(default=CpuInstanceDef())' "$instances"; then
  sed -i 's/field(default=CpuInstanceDef())/field(default_factory=CpuInstanceDef)/' "$instances"
  say "cairo-lang: patched instances.py for Python 3.11"
else
  say "cairo-lang: instances.py already patched (skipped)"
fi
"$VENV/bin/cairo-run" --help >/dev/null 2>&1 || die "cairo-run --help still fails after the patch: check $instances"
say "cairo-lang: cairo-run --help works"

# --- 3. Rust tools from the crate registry (built once, skipped when the pin is there) -----
# starknet-devnet links OpenSSL (openssl-sys) and builds C code (zstd, aws-lc): a fresh
# Debian machine needs a C toolchain, pkg-config and the OpenSSL headers first.
native_deps_checked=""
ensure_native_build_deps() {
  [ -n "$native_deps_checked" ] && return 0
  native_deps_checked=1
  if command -v cc >/dev/null 2>&1 && command -v pkg-config >/dev/null 2>&1 \
      && pkg-config --exists openssl 2>/dev/null; then
    return 0
  fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "native build deps: installing build-essential pkg-config libssl-dev (apt-get)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      build-essential pkg-config libssl-dev >/dev/null \
      || die "apt-get install build-essential pkg-config libssl-dev"
  else
    die "a C compiler, pkg-config and OpenSSL headers are needed to build starknet-devnet: sudo apt-get install build-essential pkg-config libssl-dev"
  fi
}

install_crate() { # crate version binary
  local crate=$1 version=$2 bin=$3 have=""
  if [ -x "$CARGO_BIN/$bin" ]; then have=$("$CARGO_BIN/$bin" --version 2>/dev/null | head -1 || true); fi
  case "$have" in
    *"$version"*) say "$crate $version: present (skipped)";;
    *)
      ensure_native_build_deps
      say "$crate $version: building with cargo install --locked (first time: several minutes)"
      cargo install --locked --quiet "$crate" --version "$version" \
        || die "cargo install $crate $version failed (see the compiler output above)"
      say "$crate $version: installed into $CARGO_BIN";;
  esac
}
install_crate starknet-devnet "$DEVNET_VERSION" starknet-devnet
install_crate starknet-sierra-compile "$SIERRA_COMPILE_VERSION" starknet-sierra-compile
install_crate starknet-compile "$STARKNET_COMPILE_VERSION" starknet-compile

# --- 4. swiftness: the local pre-check of Stone proofs by Integrity's rules ---------------
# One binary per verifier configuration the keeper proves for (layout, hasher, version).
scripts/install_swiftness.sh small:keccak_160_lsb:stone6 \
  || die "installing swiftness (see the messages above)"

# --- 5. Stone v3, the local prover (no registry offers it) -----------------------------------
# From prebuilt binaries (STONE_DIST, default ../shared/stone/bin) after checking their
# sha256; a source build is `make stone`. Skipped when a Stone is configured or when the
# installed binaries still have their recorded sha256; says in one line what is missing.
"$VENV/bin/python" scripts/install_stone.py || die "installing Stone (see the message above)"

# --- 6. Contracts (Sierra + CASM into contracts/target/) ----------------------------------
if [ -x scripts/build_contracts.sh ]; then
  scripts/build_contracts.sh || die "building the contracts (see the messages above)"
fi

say "done. Next: make test"
