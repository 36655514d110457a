#!/usr/bin/env bash
# Start-up of a board binary in guest instructions, under qemu-user with the instruction
# counter (insn_count.c), on the bundled model:
#   1. load + first token of `glimpse caption`, with RUST_BACKTRACE=1 in the environment
#      and without it, and their ratio;
#   2. the command of targets/systemd/glimpse-watch.service, its camera replaced by the
#      scene generator, up to its first caption line.
#
#   targets/qemu/startup.sh [BINARY] [--check [REFERENCE]]
#
# --check exits non-zero when RUST_BACKTRACE=1 makes load + first token more than 1.2x as
# long (it did 8.5x with the LLVM libunwind a zig-linked binary carries, before glimpse
# turned error backtraces off; targets/README.md). With a REFERENCE binary (the release
# build of the same target), it also counts REFERENCE's load + first token and exits
# non-zero when BINARY's (a board build) is more than 1.2x that.
set -euo pipefail
cd "$(dirname "$0")/../.."
bin="${1:-${CARGO_TARGET_DIR:-target}/aarch64-unknown-linux-gnu/release/glimpse}"
check="${2:-}"
reference="${3:-}"
source targets/qemu/common.sh
# qemu for a binary, on the core of a Pi 4 or of a Pi 2 (the 32-bit build's NEON baseline)
emulate() {
  qemu_for "$1"
  if [[ "$arch" == aarch64 ]]; then qemu+=(-cpu cortex-a72); else qemu+=(-cpu cortex-a7); fi
}
emulate "$bin"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
counter_plugin "$work"
first_write() { # ENV-ARGS... -- GLIMPSE-ARGS... -> instructions up to the first stdout write
  local envs=()
  while [[ "$1" != "--" ]]; do envs+=("$1"); shift; done
  shift
  env -u RUST_BACKTRACE -u RUST_LIB_BACKTRACE "${envs[@]}" GLIMPSE_MODEL=models/glimpse-default \
    "${qemu[@]}" -plugin "$work/insn_count.so,out=$work/n,arch=$arch" "$bin" "$@" > "$work/out"
  awk '/^write/ { print $2; exit }' "$work/n"
}
caption=(--precision f32 caption examples/scene-1.png)
plain=$(first_write -- "${caption[@]}")
traced=$(first_write RUST_BACKTRACE=1 -- "${caption[@]}")
ratio=$(awk -v a="$traced" -v b="$plain" 'BEGIN { printf "%.3f", a / b }')
echo "$(basename "$bin") ($arch), load + first token of ${caption[*]}:"
awk -v a="$plain" -v b="$traced" -v r="$ratio" 'BEGIN {
  printf "  %8.1f M guest instructions\n  %8.1f M with RUST_BACKTRACE=1 (%sx)\n", a / 1e6, b / 1e6, r }'

# the watch unit's command line, as systemd would start it, with the generator for a camera
exec_start=$(sed -n 's/^ExecStart=//p' targets/systemd/glimpse-watch.service)
read -r -a unit_args <<< "$(sed -e 's|.*/usr/local/bin/glimpse||' -e "s/[>'].*//" <<< "$exec_start")"
args=()
for ((i = 0; i < ${#unit_args[@]}; i++)); do
  if [[ "${unit_args[$i]}" == --camera ]]; then args+=(--synthetic --count 1); i=$((i + 1)); else args+=("${unit_args[$i]}"); fi
done
watch=$(first_write -- "${args[@]}")
grep -q '"caption"' "$work/out" || { echo "glimpse ${args[*]} wrote no caption line" >&2; exit 1; }
awk -v a="$watch" -v c="glimpse ${args[*]}" 'BEGIN {
  printf "watch unit (%s): first caption line after %.1f M guest instructions\n", c, a / 1e6 }'

if [[ "$check" == --check ]] && awk -v r="$ratio" 'BEGIN { exit !(r > 1.2) }'; then
  echo "RUST_BACKTRACE=1 makes load + first token ${ratio}x as long (limit 1.2x)" >&2
  exit 1
fi
if [[ -n "$reference" ]]; then
  board="$bin"
  bin="$reference"
  emulate "$bin"
  ref=$(first_write -- "${caption[@]}")
  vs=$(awk -v a="$plain" -v b="$ref" 'BEGIN { printf "%.3f", a / b }')
  awk -v a="$ref" -v r="$vs" -v b="$board" -v c="$reference" 'BEGIN {
    printf "%s: load + first token %.1f M guest instructions; %s takes %sx that\n", c, a / 1e6, b, r }'
  if awk -v r="$vs" 'BEGIN { exit !(r > 1.2) }'; then
    echo "$board takes ${vs}x the guest instructions of $reference to load and write its first token (limit 1.2x)" >&2
    exit 1
  fi
fi
