#!/usr/bin/env python3
"""What the bytes of a board binary are: its sections, and its code and data per crate.

    targets/size.py BINARY [--top N]

BINARY must keep its symbol table: build it with CARGO_PROFILE_BOARD_STRIP=none (the
`board` profile strips). Each sized symbol goes to the crate its demangled path starts
with, as cargo-bloat counts it (a generic function goes to the crate that defines it, so
`core::ptr::drop_in_place<tract_onnx::...>` counts for core); tract's assembly kernels, C
and other unmangled symbols have rows of their own. Sizes of the stripped binary: the
loaded sections, since the symbol table itself is what stripping removes.
"""
import argparse
import collections
import re
import subprocess
import sys

KERNEL_PREFIXES = ("arm64simd_", "arm64fp16_", "arm64sve_", "armv7neon_", "armvfpv2_",
                   "fma_", "avx", "sse_", "x86_64_", "generic_")


def tool(binary, name):
    with open(binary, "rb") as f:
        machine = int.from_bytes(f.read(20)[18:20], "little")  # ELF e_machine
    prefix = {0xB7: "aarch64-linux-gnu-", 0x28: "arm-linux-gnueabihf-"}.get(machine, "")
    return prefix + name


def sections(binary):
    out = subprocess.run([tool(binary, "readelf"), "-SW", binary], capture_output=True,
                         text=True, check=True).stdout
    rows = []
    for line in out.splitlines():
        m = re.match(r"\s*\[\s*\d+\]\s+(\S+)\s+\S+\s+([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)\s+\S+\s+(\S*)", line)
        if m and "A" in m.group(4):  # allocated: what stays after strip
            rows.append((m.group(1), int(m.group(3), 16)))
    return rows


def crate_of(name):
    if not re.match(r"^[<_A-Za-z]", name) or "::" not in name:
        if name.startswith(KERNEL_PREFIXES):
            return "[tract-linalg assembly kernels]"
        return "[C, compiler-rt and other unmangled]"
    m = re.search(r"([A-Za-z_][A-Za-z0-9_]*)(\[[0-9a-f]+\])?::", name)
    return m.group(1) if m else "[?]"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("binary")
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    secs = sections(args.binary)
    loaded = sum(s for _, s in secs)
    print(f"{args.binary}: {loaded / 1e6:.2f} MB in allocated sections")
    for name, size in sorted(secs, key=lambda r: -r[1])[:8]:
        print(f"  {size / 1e6:7.2f} MB  {name}")
    nm = subprocess.run([tool(args.binary, "nm"), "-S", "--size-sort", "-C", args.binary],
                        capture_output=True, text=True)
    if not nm.stdout.strip():
        sys.exit(f"{args.binary} has no symbol table: build with CARGO_PROFILE_BOARD_STRIP=none")
    per = collections.Counter()
    for line in nm.stdout.splitlines():
        parts = line.split(" ", 3)
        if len(parts) < 4 or parts[2] not in "tTrRdDbBwWvV":
            continue
        size = int(parts[1], 16)
        per[crate_of(parts[3])] += size
    counted = sum(per.values())
    print(f"sized symbols: {counted / 1e6:.2f} MB ({100 * counted / loaded:.0f} % of the loaded bytes)")
    print(f"{'crate':<40} {'MB':>7} {'share':>6}")
    for crate, size in per.most_common(args.top):
        print(f"{crate:<40} {size / 1e6:7.2f} {100 * size / loaded:5.1f}%")


if __name__ == "__main__":
    main()
