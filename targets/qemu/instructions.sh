#!/usr/bin/env bash
# Guest instructions per decoded token (and for load + first token) of the board binary,
# counted under qemu-user with targets/qemu/insn_count.c: the ARM proxy for speed, since
# wall-clock time under emulation means nothing.
#
#   targets/qemu/instructions.sh [TARGET] [BINARY]
#   TARGET: aarch64-unknown-linux-gnu (default) or armv7-unknown-linux-gnueabihf
#
# Each precision captions one example twice, stopping after 1 and after 9 tokens; the
# difference divided by 8 is the cost of one cached decode step (load, vision and prefill
# cancel out).
set -euo pipefail
cd "$(dirname "$0")/../.."
target="${1:-aarch64-unknown-linux-gnu}"
bin="${2:-${CARGO_TARGET_DIR:-target}/$target/release/glimpse}"
# The emulated core decides which kernels tract picks (dot product, fp16, SVE), so each
# board's core is emulated: Pi 4 (A72), Pi 5 (A76); armv7: the A53 of a Pi Zero 2 / Pi 3
# runs 32-bit code as an A7-class core with NEON.
case "$target" in
  aarch64-*) qemu=(qemu-aarch64 -L /usr/aarch64-linux-gnu); cpus=(cortex-a72 cortex-a76) ;;
  armv7-*) qemu=(qemu-arm -L /usr/arm-linux-gnueabihf); cpus=(cortex-a7) ;;
  *) echo "unknown target $target" >&2; exit 2 ;;
esac
[ -x "$bin" ] || { echo "no binary at $bin: build it with cargo build --release -p glimpse-runtime --target $target" >&2; exit 2; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
gcc -O2 -Wall -shared -fPIC -o "$work/insn_count.so" targets/qemu/insn_count.c
image=examples/scene-1.png
count() { # cpu precision max_tokens -> "instructions tokens"
  local cpu="$1"; shift
  "${qemu[@]}" -cpu "$cpu" -plugin "$work/insn_count.so,out=$work/n" "$bin" --model models/glimpse-default \
    --precision "$1" --max-tokens "$2" --json caption "$image" > "$work/out.json"
  echo "$(cat "$work/n") $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["tokens"])' "$work/out.json")"
}
echo "guest instructions, $target, $(basename "$bin") on $image"
printf '%-11s %-9s %20s %20s\n' core precision "load + first token" "per decoded token"
for cpu in "${cpus[@]}"; do
  for p in f32 f16 int8 q4; do
    read -r a ta < <(count "$cpu" "$p" 1)
    read -r b tb < <(count "$cpu" "$p" 9)
    if [ "$tb" -le "$ta" ]; then echo "$p: the caption ended before 9 tokens" >&2; exit 1; fi
    awk -v c="$cpu" -v p="$p" -v a="$a" -v b="$b" -v ta="$ta" -v tb="$tb" \
      'BEGIN { printf "%-11s %-9s %18.1f M %18.2f M\n", c, p, a / 1e6, (b - a) / (tb - ta) / 1e6 }'
  done
done
