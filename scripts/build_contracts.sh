#!/usr/bin/env bash
# Build the Cairo 1 contracts without Scarb, with pinned registry compilers:
#   starknet-compile 2.16.0        (Cairo -> Sierra; crate `starknet-compile`)
#   starknet-sierra-compile 2.17.0 (Sierra -> CASM; the cairo-lang version that
#                                   starknet-devnet 0.8.2 recompiles with, so the
#                                   compiled-class hash we declare is the one it expects)
# and the corelib 2.16.0 shipped inside the crate package cairo-native 0.9.0-rc.5.
#
# Output (contracts/target/, Scarb's file names):
#   obsqra_<Contract>.contract_class.json           Sierra class (declare this)
#   obsqra_<Contract>.compiled_contract_class.json  CASM
# and the ABIs for the keeper's event decoder: keeper/abi/<Contract>.json.
#
# Skips the build when sources, compilers and this script are unchanged (hash stamp).
# Environment: STARKNET_COMPILE, STARKNET_SIERRA_COMPILE (binary paths),
#              OBSQRA_CACHE_DIR (default ~/.cache/obsqra-keeper), FORCE=1 (rebuild).
set -euo pipefail

readonly CAIRO_VERSION="2.16.0"
readonly SIERRA_COMPILER_VERSION="2.17.0"
readonly CORELIB_CRATE="cairo-native"
readonly CORELIB_CRATE_VERSION="0.9.0-rc.5"
readonly PACKAGE="obsqra"
readonly CONTRACTS=(
  "risk_engine::RiskEngine"
  "strategy_router_v2::StrategyRouterV2"
  "dev_fact_registry::DevFactRegistry"
  "integrity_guard::IntegrityGuard"
)

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT
readonly SRC="$ROOT/contracts/src"
readonly OUT="$ROOT/contracts/target"
readonly ABI_DIR="$ROOT/keeper/abi"
readonly CARGO_HOME_DIR="${CARGO_HOME:-$HOME/.cargo}"
readonly CACHE="${OBSQRA_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/obsqra-keeper}"
readonly CORELIB="$CACHE/corelib-$CAIRO_VERSION"

die() {
  echo "build_contracts: error: $*" >&2
  exit 1
}

log() {
  echo "build_contracts: $*" >&2
}

# $1 binary name, $2 env override, $3 wanted version.
find_tool() {
  local name="$1" override="$2" want="$3" path version
  if [[ -n "$override" ]]; then
    path="$override"
  elif command -v "$name" >/dev/null 2>&1; then
    path="$(command -v "$name")"
  elif [[ -x "$CARGO_HOME_DIR/bin/$name" ]]; then
    path="$CARGO_HOME_DIR/bin/$name"
  else
    die "$name not found (PATH, $CARGO_HOME_DIR/bin). Install it with:" \
      "cargo install --locked $name --version $want   (or run: make setup)"
  fi
  [[ -x "$path" ]] || die "$path is not an executable file"
  version="$("$path" --version 2>/dev/null | awk '{print $NF}')" \
    || die "$path --version failed"
  [[ "$version" == "$want" ]] \
    || die "$path is version '$version', need $want: cargo install --locked $name --version $want --force"
  echo "$path"
}

# The corelib must match the compiler exactly; it ships in cairo-native's crate package.
corelib_crate_file() {
  local f
  for f in "$CARGO_HOME_DIR"/registry/cache/*/"$CORELIB_CRATE-$CORELIB_CRATE_VERSION.crate"; do
    [[ -f "$f" ]] && { echo "$f"; return 0; }
  done
  return 1
}

fetch_corelib_crate() {
  # A throwaway manifest whose only dependency is the pinned crate; `cargo fetch` puts its
  # package into cargo's registry cache (it fetches the dependency tree's packages too).
  local proj="$CACHE/fetch-$CORELIB_CRATE-$CORELIB_CRATE_VERSION"
  command -v cargo >/dev/null 2>&1 || [[ -x "$CARGO_HOME_DIR/bin/cargo" ]] \
    || die "no corelib cached and cargo is missing: install Rust (rustup) or run make setup"
  local cargo_bin
  cargo_bin="$(command -v cargo || echo "$CARGO_HOME_DIR/bin/cargo")"
  mkdir -p "$proj/src"
  cat >"$proj/Cargo.toml" <<EOF
[package]
name = "obsqra-corelib-fetch"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
$CORELIB_CRATE = "=$CORELIB_CRATE_VERSION"
EOF
  : >"$proj/src/lib.rs"
  log "fetching crate $CORELIB_CRATE $CORELIB_CRATE_VERSION (for its corelib) with cargo fetch"
  "$cargo_bin" fetch --manifest-path "$proj/Cargo.toml" >&2 \
    || die "cargo fetch of $CORELIB_CRATE $CORELIB_CRATE_VERSION failed (network? see above)"
}

ensure_corelib() {
  if [[ -f "$CORELIB/src/lib.cairo" ]]; then
    return 0
  fi
  local crate
  crate="$(corelib_crate_file)" || { fetch_corelib_crate; crate="$(corelib_crate_file)"; } \
    || die "crate package $CORELIB_CRATE-$CORELIB_CRATE_VERSION.crate not in $CARGO_HOME_DIR/registry/cache after cargo fetch"
  local tmp
  mkdir -p "$CACHE"
  tmp="$(mktemp -d "$CACHE/.corelib.XXXXXX")"
  tar -xzf "$crate" -C "$tmp" "$CORELIB_CRATE-$CORELIB_CRATE_VERSION/corelib" \
    || { rm -rf "$tmp"; die "$crate has no corelib/ folder"; }
  local extracted="$tmp/$CORELIB_CRATE-$CORELIB_CRATE_VERSION/corelib"
  grep -q "^version = \"$CAIRO_VERSION\"" "$extracted/Scarb.toml" \
    || { rm -rf "$tmp"; die "corelib in $crate is not version $CAIRO_VERSION"; }
  # Atomic: a half-extracted corelib never sits at $CORELIB.
  rm -rf "$CORELIB"
  mv "$extracted" "$CORELIB"
  rm -rf "$tmp"
  log "corelib $CAIRO_VERSION cached in $CORELIB"
}

write_project() {
  # starknet-compile 2.16 always auto-detects its corelib (CARGO_MANIFEST_DIR, then up
  # from its executable, then ./corelib/src) and fails before reading the project when
  # it finds none: so the project dir gets a `corelib` link and the compiler runs there.
  local dir="$1"
  mkdir -p "$dir"
  ln -sfn "$CORELIB" "$dir/corelib"
  cat >"$dir/cairo_project.toml" <<EOF
# Generated by scripts/build_contracts.sh; do not edit.
[crate_roots]
$PACKAGE = "$SRC"

[config.global]
edition = "2024_07"
EOF
}

sources_stamp() {
  {
    echo "starknet-compile $CAIRO_VERSION sierra $SIERRA_COMPILER_VERSION corelib $CORELIB_CRATE-$CORELIB_CRATE_VERSION"
    sha256sum "${BASH_SOURCE[0]}"
    (cd "$SRC" && find . -name '*.cairo' -print0 | sort -z | xargs -0 sha256sum)
  } | sha256sum | awk '{print $1}'
}

outputs_present() {
  local spec name
  for spec in "${CONTRACTS[@]}"; do
    name="${spec##*::}"
    [[ -s "$OUT/${PACKAGE}_${name}.contract_class.json" ]] || return 1
    [[ -s "$OUT/${PACKAGE}_${name}.compiled_contract_class.json" ]] || return 1
    [[ -s "$ABI_DIR/${name}.json" ]] || return 1
  done
}

export_abi() {
  local sierra="$1" abi_out="$2" python
  python="$ROOT/.venv/bin/python"
  [[ -x "$python" ]] || python="$(command -v python3)" || die "python3 needed to export ABIs"
  "$python" - "$sierra" "$abi_out" <<'EOF'
import json, sys
sierra, out = sys.argv[1], sys.argv[2]
abi = json.load(open(sierra))["abi"]
if isinstance(abi, str):
    abi = json.loads(abi)
with open(out + ".tmp", "w") as f:
    json.dump(abi, f, indent=1, sort_keys=True)
    f.write("\n")
import os
os.replace(out + ".tmp", out)
EOF
}

main() {
  [[ -d "$SRC" ]] || die "no contracts/src in $ROOT"
  mkdir -p "$OUT" "$ABI_DIR"
  local stamp_file="$OUT/.build-stamp" stamp
  stamp="$(sources_stamp)"
  if [[ "${FORCE:-0}" != "1" && -f "$stamp_file" && "$(cat "$stamp_file")" == "$stamp" ]] \
    && outputs_present; then
    log "up to date ($OUT)"
    return 0
  fi

  local compiler sierra_compiler
  compiler="$(find_tool starknet-compile "${STARKNET_COMPILE:-}" "$CAIRO_VERSION")"
  sierra_compiler="$(find_tool starknet-sierra-compile "${STARKNET_SIERRA_COMPILE:-}" "$SIERRA_COMPILER_VERSION")"
  ensure_corelib

  local project="$OUT/project"
  write_project "$project"
  rm -f "$stamp_file"
  local spec name sierra casm
  for spec in "${CONTRACTS[@]}"; do
    name="${spec##*::}"
    sierra="$OUT/${PACKAGE}_${name}.contract_class.json"
    casm="$OUT/${PACKAGE}_${name}.compiled_contract_class.json"
    log "compiling $PACKAGE::$spec"
    (cd "$project" && env -u CARGO_MANIFEST_DIR "$compiler" . -c "$PACKAGE::$spec" "$sierra.tmp") \
      || die "starknet-compile failed on $PACKAGE::$spec (diagnostics above)"
    mv "$sierra.tmp" "$sierra"
    "$sierra_compiler" --add-pythonic-hints "$sierra" "$casm.tmp" \
      || die "starknet-sierra-compile failed on $sierra (diagnostics above)"
    mv "$casm.tmp" "$casm"
    export_abi "$sierra" "$ABI_DIR/${name}.json"
  done
  echo "$stamp" >"$stamp_file"
  log "built ${#CONTRACTS[@]} contracts into $OUT (ABIs in $ABI_DIR)"
}

main "$@"
