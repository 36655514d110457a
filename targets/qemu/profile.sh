#!/usr/bin/env bash
# Where a board binary's guest instructions go, per function, under qemu-user: the
# instruction counter (insn_count.c) with profile=, its block addresses resolved against the
# binary's symbols and those of the shared libraries it loaded. The binary must keep its
# symbol table (a zig-linked build needs CARGO_PROFILE_RELEASE_STRIP=none, since zig drops
# every symbol with the debug info).
#
#   targets/qemu/profile.sh BINARY [TOP] -- ARGS...
#   targets/qemu/profile.sh target/aarch64-unknown-linux-gnu/release/glimpse 25 -- info
#
# Prints the total, the share of each object (the binary, libc, ld.so, ...) and the TOP
# functions by instructions executed.
set -euo pipefail
cd "$(dirname "$0")/../.."
bin="${1:?usage: $0 BINARY [TOP] -- ARGS...}"
shift
top=25
if [[ "${1:-}" != "--" && -n "${1:-}" ]]; then top="$1"; shift; fi
[[ "${1:-}" == "--" ]] && shift
source targets/qemu/common.sh
qemu_for "$bin"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
counter_plugin "$work"
"${qemu[@]}" ${QEMU_CPU:+-cpu "$QEMU_CPU"} -d page -D "$work/pages" \
  -plugin "$work/insn_count.so,out=$work/n,profile=$work/blocks,arch=$arch" "$bin" "$@" > /dev/null
# where ld.so put the libraries (qemu-user maps the same way on every run)
"${qemu[@]}" -E LD_TRACE_LOADED_OBJECTS=1 "$bin" > "$work/libs" 2>/dev/null || true
python3 - "$work" "$bin" "$sysroot" "${cross}nm" "$top" <<'PY'
import bisect, collections, re, subprocess, sys
work, binary, sysroot, nm, top = sys.argv[1:6]
objects = []  # (base, path)
pages = open(f"{work}/pages").read()
# the program itself: a PIE is placed at the first mapping qemu reports
with open(binary, "rb") as f:
    e_type = int.from_bytes(f.read(18)[16:18], "little")  # 2: fixed addresses, 3: PIE
base = 0
if e_type == 3:
    first = re.search(r"^([0-9a-f]{8,})-[0-9a-f]+ [0-9a-f]+ r", pages, re.M)
    base = int(first.group(1), 16)
objects.append((base, binary))
for line in open(f"{work}/libs"):
    m = re.search(r"(\S+) \(0x([0-9a-f]+)\)", line)
    if m:
        path = m.group(1)
        objects.append((int(m.group(2), 16), sysroot + path if path.startswith("/") else path))
objects.sort()

def symbols(path):
    out = []
    for flag in ([], ["-D"]):
        res = subprocess.run([nm, "-n", "--defined-only", *flag, path], capture_output=True, text=True)
        for l in res.stdout.splitlines():
            p = l.split(maxsplit=2)
            if len(p) == 3 and p[1] in "tTwWiI":
                out.append((int(p[0], 16), p[2]))
        if out:
            break
    out.sort()
    return [a for a, _ in out], [n for _, n in out]

tables = {path: symbols(path) for _, path in objects}
bases = [b for b, _ in objects]
per_obj, per_fn = collections.Counter(), collections.Counter()
total = 0
for line in open(f"{work}/blocks"):
    addr, n = line.split()
    addr, n = int(addr, 16), int(n)
    total += n
    i = bisect.bisect_right(bases, addr) - 1
    if i < 0:
        per_obj["?"] += n; per_fn["?"] += n; continue
    b, path = objects[i]
    addrs, names = tables[path]
    j = bisect.bisect_right(addrs, addr - b) - 1
    name = names[j] if j >= 0 else "?"
    short = path.rsplit("/", 1)[-1]
    per_obj[short] += n
    per_fn[f"{short}: {name}"] += n
try:
    demangle = subprocess.run(["c++filt"], input="\n".join(f for f, _ in per_fn.most_common(int(top))),
                              capture_output=True, text=True).stdout.splitlines()
except FileNotFoundError:
    demangle = [f for f, _ in per_fn.most_common(int(top))]
print(f"{total / 1e6:.1f} M guest instructions")
for o, n in per_obj.most_common():
    print(f"  {100 * n / total:5.1f} %  {o}")
print(f"top {top} functions:")
for (f, n), d in zip(per_fn.most_common(int(top)), demangle):
    print(f"  {100 * n / total:5.1f} %  {n / 1e6:9.1f} M  {d[:150]}")
PY
