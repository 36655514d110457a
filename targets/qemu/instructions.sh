#!/usr/bin/env bash
# Guest instructions per decoded token (and for load + first token) of the board binary,
# counted under qemu-user with targets/qemu/insn_count.c: the ARM proxy for speed, since
# wall-clock time under emulation means nothing.
#
#   targets/qemu/instructions.sh [TARGET] [BINARY]
#   TARGET: aarch64-unknown-linux-gnu (default) or armv7-unknown-linux-gnueabihf
#
# Each precision captions one example once, streaming: the plugin notes the instruction
# count at every write to stdout (one per decoded token), so the first write gives load
# plus the first token and the median gap between writes the cost of one cached decode
# step. (Differences between two runs would drown in the load's run-to-run variation.)
set -euo pipefail
cd "$(dirname "$0")/../.."
target="${1:-aarch64-unknown-linux-gnu}"
bin="${2:-${CARGO_TARGET_DIR:-target}/$target/release/glimpse}"
# The emulated core decides which kernels tract picks (dot product, fp16, SVE), so each
# board's core is emulated: Pi 4 (A72), Pi 5 (A76); armv7: the A53 of a Pi Zero 2 / Pi 3
# runs 32-bit code as an A7-class core with NEON.
case "$target" in
  aarch64-*) cpus=(cortex-a72 cortex-a76) ;;
  armv7-*|thumbv7neon-*) cpus=(cortex-a7) ;;
  *) echo "unknown target $target" >&2; exit 2 ;;
esac
[ -x "$bin" ] || { echo "no binary at $bin: build it with cargo build --release -p glimpse-runtime --target $target" >&2; exit 2; }
source targets/qemu/common.sh
qemu_for "$bin"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
counter_plugin "$work"
image=examples/scene-1.png
count() { # cpu precision -> "load_and_first_token per_token tokens"
  "${qemu[@]}" -cpu "$1" -plugin "$work/insn_count.so,out=$work/n,arch=$arch" "$bin" \
    --model models/glimpse-default --precision "$2" caption "$image" > /dev/null
  python3 - "$work/n" <<'PY'
import statistics, sys
marks = [int(l.split()[1]) for l in open(sys.argv[1]) if l.startswith("write")]
marks = marks[:-1]  # the closing newline
gaps = [b - a for a, b in zip(marks, marks[1:])]
print(marks[0], statistics.median(gaps), len(marks))
PY
}
echo "guest instructions, $target, $(basename "$bin") on $image"
printf '%-11s %-9s %20s %20s\n' core precision "load + first token" "per decoded token"
for cpu in "${cpus[@]}"; do
  for p in f32 f16 int8 q4; do
    read -r first per tokens < <(count "$cpu" "$p")
    awk -v c="$cpu" -v p="$p" -v a="$first" -v b="$per" \
      'BEGIN { printf "%-11s %-9s %18.1f M %18.2f M\n", c, p, a / 1e6, b / 1e6 }'
  done
done
