#!/usr/bin/env bash
# Builds the board binary for a profile in targets/boards/:  targets/build.sh pi4
# With the slim `board` cargo profile; the result is target/<triple>/board/glimpse.
# Linked by zig for glibc $GLIBC (default 2.31: Raspberry Pi OS bullseye, JetPack 5) when
# cargo-zigbuild is installed (pip install cargo-zigbuild ziglang); otherwise by the cross
# gcc from .cargo/config.toml, whose binary needs that toolchain's (newer) glibc.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
board="${1:-}"
profile="$here/boards/$board.env"
if [[ -z "$board" || ! -f "$profile" ]]; then
    echo "usage: $0 <board>   where <board> is one of:" >&2
    ls "$here/boards" | sed -n 's/\.env$//p' | sed 's/^/  /' >&2
    exit 2
fi
# shellcheck source=/dev/null
source "$profile"
cd "$here/.."
rustup target add "$TARGET" >/dev/null
glibc="${GLIBC:-2.31}"
# Smaller board binaries (targets/README.md, "Size"): a position-dependent executable has
# no table of 1.2 MB of load-time relocations (the aarch64 build: 13.5 -> 12.3 MB). Set for
# this target in this build only.
rustflags_var="CARGO_TARGET_$(tr 'a-z-' 'A-Z_' <<< "$TARGET")_RUSTFLAGS"
export "$rustflags_var"="${!rustflags_var:-} -C relocation-model=static"
if command -v cargo-zigbuild >/dev/null; then
    cargo-zigbuild zigbuild --profile board -p glimpse-runtime --no-default-features --features "$FEATURES" --target "$TARGET.$glibc"
else
    echo "cargo-zigbuild not found: linking with the cross gcc (the binary needs its glibc, not $glibc)" >&2
    cargo build --profile board -p glimpse-runtime --no-default-features --features "$FEATURES" --target "$TARGET"
fi
bin="${CARGO_TARGET_DIR:-target}/$TARGET/board/glimpse"
echo "built $bin ($(du -h "$bin" | cut -f1)); for $board: --every $WATCH_EVERY, precision $PRECISION, $THREADS thread(s), canvas $CANVAS"
