#!/usr/bin/env bash
# Builds the board binary for a profile in targets/boards/:  targets/build.sh pi4
# Uses the cross linker from .cargo/config.toml and the slim `board` cargo profile; the
# result is target/<triple>/board/glimpse.
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
cargo build --profile board -p glimpse-runtime --features "$FEATURES" --target "$TARGET"
bin="target/$TARGET/board/glimpse"
echo "built $bin ($(du -h "$bin" | cut -f1)); for $board: --every $WATCH_EVERY, precision $PRECISION, $THREADS thread(s), canvas $CANVAS"
