#!/usr/bin/env bash
# Build swiftness (crate `swiftness`, the Rust port of Integrity's Stone verifier) once per
# verifier configuration, for the keeper's local pre-check of proofs (prover/swiftness.py).
#
#   scripts/install_swiftness.sh [LAYOUT:HASHER:STONE_VERSION ...]
#       default: small:keccak_160_lsb:stone6   (the keeper's default proofs)
#
# One binary per configuration, because layout, hasher and Stone version are cargo features:
#   $SWIFTNESS_ROOT/<layout>-<hasher>-<version>/bin/swiftness  (+ BUILD_INFO stamp)
# SWIFTNESS_ROOT defaults to ${XDG_CACHE_HOME:-~/.cache}/obsqra-keeper/swiftness (the path
# prover/swiftness.py looks in). Idempotent: a configuration whose binary and stamp are
# present is skipped. Compiled dependencies are kept in $SWIFTNESS_ROOT/target so further
# configurations build in ~20 s instead of ~3 min (safe to delete).
#
# `cargo install --locked` builds with the crate's own Cargo.lock, which pins
# starknet-types-core 0.1.7: 0.1.8+ pulls size-of 0.1.5, which rustc 1.95 rejects (E0570).
set -euo pipefail

SWIFTNESS_VERSION=1.0.0
CARGO_BIN="${CARGO_HOME:-$HOME/.cargo}/bin"
export PATH="$CARGO_BIN:$PATH"
ROOT="${SWIFTNESS_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/obsqra-keeper/swiftness}"
JOBS="${SWIFTNESS_BUILD_JOBS:-2}"

LAYOUTS="dex recursive recursive_with_poseidon small starknet starknet_with_keccak"
HASHERS="keccak_160_lsb keccak_248_lsb blake2s_160_lsb blake2s_248_lsb"
VERSIONS="stone5 stone6"

say() { printf 'install_swiftness: %s\n' "$*"; }
die() { printf 'install_swiftness: FAILED: %s\n' "$*" >&2; exit 1; }
one_of() { case " $2 " in *" $1 "*) return 0;; *) return 1;; esac; }

command -v cargo >/dev/null 2>&1 \
  || die "cargo not found: install Rust with rustup (https://rustup.rs); swiftness is built from crates.io"
command -v cc >/dev/null 2>&1 \
  || die "cc not found: rustc needs a C linker (Debian: apt-get install build-essential)"

install_one() { # layout hasher version
  local layout=$1 hasher=$2 version=$3
  local name="$layout-$hasher-$version"
  local dir="$ROOT/$name" bin="$ROOT/$name/bin/swiftness" stamp="$ROOT/$name/BUILD_INFO"
  local info="swiftness=$SWIFTNESS_VERSION layout=$layout hasher=$hasher stone_version=$version"
  if [ -x "$bin" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$info" ]; then
    say "swiftness $SWIFTNESS_VERSION $name: present (skipped)"
    return 0
  fi
  say "swiftness $SWIFTNESS_VERSION $name: building (cargo install --locked, -j $JOBS; first build ~3 min)"
  rm -f "$stamp"
  mkdir -p "$dir"
  CARGO_TARGET_DIR="$ROOT/target" cargo install --locked --quiet --force \
      swiftness --version "$SWIFTNESS_VERSION" \
      --no-default-features --features "$layout,$hasher,$version" \
      --root "$dir" -j "$JOBS" \
    || die "cargo install swiftness $SWIFTNESS_VERSION ($layout,$hasher,$version) failed (see the compiler output above)"
  local have
  have=$("$bin" --version 2>/dev/null || true)
  [ "$have" = "swiftness $SWIFTNESS_VERSION" ] \
    || die "$bin --version printed '$have', expected 'swiftness $SWIFTNESS_VERSION'"
  printf '%s\n' "$info" > "$stamp.tmp" && mv "$stamp.tmp" "$stamp"
  say "swiftness $SWIFTNESS_VERSION $name: installed at $bin"
}

[ "$#" -gt 0 ] || set -- small:keccak_160_lsb:stone6
for spec in "$@"; do
  IFS=: read -r layout hasher version extra <<<"$spec"
  [ -z "${extra:-}" ] && [ -n "${version:-}" ] \
    || die "bad configuration '$spec': expected LAYOUT:HASHER:STONE_VERSION, e.g. small:keccak_160_lsb:stone6"
  one_of "$layout" "$LAYOUTS" || die "unknown layout '$layout' in '$spec' (one of: $LAYOUTS)"
  one_of "$hasher" "$HASHERS" || die "unknown hasher '$hasher' in '$spec' (one of: $HASHERS)"
  one_of "$version" "$VERSIONS" || die "unknown Stone version '$version' in '$spec' (one of: $VERSIONS)"
  install_one "$layout" "$hasher" "$version"
done
