# Shared by the scripts in this folder (sourced, from the repository root).

# qemu_for BINARY: sets `qemu` (the user-mode emulator with its sysroot), `arch` (the
# counter's arch= argument), `sysroot` and `cross` (the binutils prefix) from the ELF
# header's machine field: 0xb7 aarch64, 0x28 32-bit ARM.
qemu_for() {
  case "$(od -An -tx1 -j18 -N1 "$1" | tr -d ' ')" in
    b7) sysroot=/usr/aarch64-linux-gnu; qemu=(qemu-aarch64 -L "$sysroot"); arch=aarch64; cross=aarch64-linux-gnu- ;;
    28) sysroot=/usr/arm-linux-gnueabihf; qemu=(qemu-arm -L "$sysroot"); arch=arm; cross=arm-linux-gnueabihf- ;;
    *) echo "$1: not an aarch64 or 32-bit ARM executable" >&2; exit 2 ;;
  esac
}

# counter_plugin DIR: builds the instruction counter (insn_count.c) as DIR/insn_count.so.
counter_plugin() {
  gcc -O2 -Wall -shared -fPIC -o "$1/insn_count.so" targets/qemu/insn_count.c
}
