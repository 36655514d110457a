use crate::DatumType;
use crate::block_quant::*;
use crate::isa::Arch;
use crate::isa::Isa;
use crate::isa::IsaSet;
use crate::mmm::{Query, Suitable};
use crate::mmm_tiers::MmmTier;
use crate::pack::PackedFormat;
use crate::pack::PackedI8K4;
use crate::pack_widened::WidenedF16;

#[cfg(tract_amx_int8)]
use super::amx::PackedAmxA;
#[cfg(tract_amx_bf16)]
use super::amx_bf16::{PackedAmxBf16A, PackedBf16K2};
#[cfg(tract_avx512vnni)]
use super::fma_width::has_dual_avx512_fma;

/// The zmm 16x16 VNNI tile only out-throughputs the ymm 8x8 on cores with two 512-bit FMA
/// ports; elsewhere it is pure tile-padding overhead, so there it must lose every tie to the
/// 8x8. It stays runnable on every VNNI core, so that its tests run there too.
#[cfg(tract_avx512vnni)]
const AVX512VNNI_WIDE_TILE: fn() -> isize = || if has_dual_avx512_fma() { 50 } else { -1 };

/// The AMX bf16 kernel truncates its f32 operands to bf16 (~1/2^8 relative error per multiply),
/// so it is opt-in through TRACT_AMX_BF16 and off by default even where the hardware has it.
/// Being off is a preference, not a capability: the kernel stays runnable wherever the ISA is,
/// so that its tests run there, and instead loses every tie no tier can win back.
#[cfg(tract_amx_bf16)]
const AMX_BF16_OPT_IN: fn() -> isize =
    || if crate::knobs::TRACT_AMX_BF16.get() { 100 } else { crate::isa::NEVER_PREFERRED };

/// One kernel in a dispatcher’s preference table, with its tile geometry
/// and a relative-throughput scale (1.0 = baseline, used to break
/// near-ties between kernels with similar tile waste).
#[derive(Clone, Copy)]
struct KernelChoice {
    mr: usize,
    nr: usize,
    scale: f32,
    name: fn() -> &'static str,
}

/// Fraction of the M-or-N axis covered by useful work after rounding up
/// to the kernel's tile size. 1.0 = exact fit; smaller is worse.
/// Empty axis (d == 0) is treated as "no waste" — no work to misallocate.
fn tile_util(d: usize, tile: usize) -> f32 {
    if d == 0 {
        return 1.0;
    }
    let batches = d.div_ceil(tile);
    d as f32 / (batches * tile) as f32
}

/// Pick the kernel that maximises `scale * m_util * n_util`. Ties are
/// broken first in favour of fewer total tile passes (less loop
/// overhead), then in favour of larger `nr` (more K-loop amortisation
/// per inner iteration). An unknown M or N is treated as
/// "large enough" — its utilisation contribution is 1.0.
fn pick_mmm(choices: &[KernelChoice], m: Option<usize>, n: Option<usize>) -> &'static str {
    let key = |c: &KernelChoice| -> (f32, i32, i32) {
        let m_u = m.map(|m| tile_util(m, c.mr)).unwrap_or(1.0);
        let n_u = n.map(|n| tile_util(n, c.nr)).unwrap_or(1.0);
        let m_b = m.map(|m| m.div_ceil(c.mr)).unwrap_or(1) as i32;
        let n_b = n.map(|n| n.div_ceil(c.nr)).unwrap_or(1) as i32;
        (c.scale * m_u * n_u, -(m_b * n_b), c.nr as i32)
    };
    let best = choices
        .iter()
        .max_by(|a, b| key(a).partial_cmp(&key(b)).unwrap())
        .expect("non-empty kernel pool");
    (best.name)()
}

// AVX-without-FMA f32 tier for pre-Haswell CPUs (Sandy Bridge / Ivy Bridge):
// same tile geometries as their fma_ siblings but the inner loops use
// vmulps+vaddps, and add_unicast avoids the avx2-only vgatherdps.
MMMExternKernel!(x86_64; avx_mmm_f32_8x8 <f32>(8, 8)@(256,4) isa(X86_64Avx));
MMMExternKernel!(x86_64; avx_mmm_f32_16x5<f32>(16,5)@(256,4) isa(X86_64Avx));
MMMExternKernel!(x86_64; avx_mmm_f32_16x6<f32>(16,6)@(256,4) isa(X86_64Avx));
MMMExternKernel!(x86_64; avx_mmm_f32_24x4<f32>(24,4)@(256,4) isa(X86_64Avx));
MMMExternKernel!(x86_64; avx_mmm_f32_32x3<f32>(32,3)@(256,4) isa(X86_64Avx));
MMMExternKernel!(x86_64; avx_mmm_f32_40x2<f32>(40,2)@(256,4) isa(X86_64Avx));
MMMExternKernel!(x86_64; avx_mmm_f32_64x1<f32>(64,1)@(256,4) isa(X86_64Avx));

/// The 256-bit fma f32 kernels are not superseded by the avx512 ones, so they cancel the ladder
/// step between the two and are preferred as peers. Both x86 avx512 cost models score them alongside the
/// avx512 kernels; they cover the small-`n` tiles avx512 has no matching `nr` for (n=2 -> 40x2,
/// n=4 -> 24x4); and avx512 has no 64x1 at all, so a runnable set without them loses the whole r=64
/// packing group, whose 64x3 is the best matrix kernel at small `n`.
const FMA_F32_PEER: fn() -> isize = || crate::isa::peer_of(Isa::X86_64Fma, Isa::X86_64Avx512f);

MMMExternKernel!(x86_64; fma_mmm_f32_8x8 <f32>(8, 8)@(256,4) isa(X86_64Avx, X86_64Fma) boost(FMA_F32_PEER));
MMMExternKernel!(x86_64; fma_mmm_f32_16x6<f32>(16,6)@(256,4) isa(X86_64Avx, X86_64Fma) boost(FMA_F32_PEER));
MMMExternKernel!(x86_64; fma_mmm_f32_16x5<f32>(16,5)@(256,4) isa(X86_64Avx, X86_64Fma) boost(FMA_F32_PEER));
MMMExternKernel!(x86_64; fma_mmm_f32_24x4<f32>(24,4)@(256,4) isa(X86_64Avx, X86_64Fma) boost(FMA_F32_PEER));
MMMExternKernel!(x86_64; fma_mmm_f32_40x2<f32>(40,2)@(256,4) isa(X86_64Avx, X86_64Fma) boost(FMA_F32_PEER));
MMMExternKernel!(x86_64; fma_mmm_f32_64x1<f32>(64,1)@(256,4) isa(X86_64Avx, X86_64Fma) boost(FMA_F32_PEER));

pub fn pq40_r32() -> PackedBlockQuantFormat {
    PackedBlockQuantFormat::new(&Q4_0, 32, 16, false)
}
pub fn pq20t_r32() -> PackedBlockQuantFormat {
    PackedBlockQuantFormat::new(&Q2_0_T, 32, 0, false)
}
MMMExternKernel! { x86_64; fma_mmm_f32_32x1<f32>(32,1)@(256,4) isa(X86_64Avx, X86_64Fma, X86_64F16c)
    packing[1] = q40f32 => |k| k.with_packing_a(pq40_r32());
    packing[2] = q40f16 => |k| k.with_packing(pq40_r32(), f16::packing(1));
    packing[3] = f16f16 => |k| k.with_packing(f16::packing(32), f16::packing(1));
    packing[4] = f16f32 => |k| k.with_packing(f16::packing(32), f32::packing(1));
    packing[5] = f32f16 => |k| k.with_packing(f32::packing(32), f16::packing(1));

    boost(FMA_F32_PEER)
    store(f16)
}
// fma_mmm_f32_32x1's template with its Q4_0 product on 512-bit registers: the GEMV of a
// q4 decode step. Same packings as there for f32 and Q4_0, so weights packed for one run on
// the other; among GEMV kernels of one packing, selection prefers the one written for the
// richer instruction set.
MMMExternKernel! { x86_64; avx512_mmm_f32_32x1<f32>(32,1)@(256,4) isa(X86_64Avx512f)
    packing[1] = q40f32 => |k| k.with_packing_a(pq40_r32());
}
// Glimpse: the same template's Q4_0 product with AVX-512 VNNI, in integers as the 256-bit
// loop computes it (activations taken to i8 per block of 32), four steps of k a vpdpbusd:
// the GEMV of a q4 decode step where the CPU has VNNI. Its boost makes it a peer of the
// AVX-512 kernels, so it never outranks the prefill tile it shares the Q4_0 packing with;
// between the GEMV kernels of that packing its level still decides. Its byte shuffles on
// zmm (vpshufb, vpsrlw) are AVX512BW, which every CPU with AVX-512 VNNI has.
#[cfg(tract_avx512vnni)]
const VNNI_Q4_PEER: fn() -> isize =
    || crate::isa::peer_of(Isa::X86_64Avx512Vnni, Isa::X86_64Avx512f);
#[cfg(tract_avx512vnni)]
MMMExternKernel! { x86_64; avx512vnni_mmm_f32_32x1<f32>(32,1)@(256,4) isa(X86_64Avx512f, X86_64Avx512Vnni)
    packing[1] = q40f32 => |k| k.with_packing_a(pq40_r32());

    boost(VNNI_Q4_PEER)
}
MMMExternKernel!(x86_64; fma_mmm_f32_32x3<f32>(32,3)@(256,4) isa(X86_64Avx, X86_64Fma)
 packing[1] = f32f16 => |k| k.with_packing(f32::packing(32).align(256), f16::packing(3));
 packing[2] = f16f32 => |k| k.with_packing(f16::packing(32).align(256), f32::packing(3));
 packing[3] = f16f16 => |k| k.with_packing(f16::packing(32).align(256), f16::packing(3));

 boost(FMA_F32_PEER)
 store(f16)
);

MMMExternKernel!(x86_64; avx512_mmm_f32_128x1<f32>(128, 1)@(512,4) isa(X86_64Avx512f));
MMMExternKernel!(x86_64; avx512_mmm_f32_16x1 <f32>( 16, 1)@(512,4) isa(X86_64Avx512f));
MMMExternKernel!(x86_64; avx512_mmm_f32_16x12<f32>( 16,12)@(512,4) isa(X86_64Avx512f));
MMMExternKernel!(x86_64; avx512_mmm_f32_16x8 <f32>( 16, 8)@(512,4) isa(X86_64Avx512f));
// Glimpse: packing 1 takes f16 activations widened to f32 as they are packed, and f16
// weights through `packed_32_f16_to_f32_a512`; the loop is packing 0's, and the stores
// write f16 where the product's output is f16.
MMMExternKernel! { x86_64; avx512_mmm_f32_32x6<f32>(32, 6)@(512,4) isa(X86_64Avx512f)
    packing[1] = f32f16w => |k| k.with_packing(f32::packing(32).align(512), WidenedF16::new(f32::packing(6).align(4)));

    store(f16)
}
MMMExternKernel!(x86_64; avx512_mmm_f32_32x5 <f32>( 32, 5)@(512,4) isa(X86_64Avx512f));
MMMExternKernel!(x86_64; avx512_mmm_f32_48x4 <f32>( 48, 4)@(512,4) isa(X86_64Avx512f));
MMMExternKernel!(x86_64; avx512_mmm_f32_64x3 <f32>( 64, 3)@(512,4) isa(X86_64Avx512f));
// Glimpse: the 64x3 tile's packing with twice its columns (24 of the 32 registers hold
// accumulators), so a weight panel read from the cache feeds twice the arithmetic. With
// a symbolic n, einsum pairs it with fma_mmm_f32_64x1 over that packing: a prefill runs
// it, a decode step keeps the 64-row GEMV.
// Its loop also asks for a part of the next weight panel (`prefetch_next_a`): the next row
// of tiles then finds its panel in the cache instead of waiting on memory at its first tile.
MMMExternKernel!(x86_64; avx512_mmm_f32_64x6 <f32>( 64, 6)@(512,4) isa(X86_64Avx512f) prefetch_next_a(true));
MMMExternKernel!(x86_64; avx512_mmm_f32_80x2 <f32>( 80, 2)@(512,4) isa(X86_64Avx512f));

// 128-bit VEX i32 sibling of avx2_mmm_i32_8x8 for the avx-without-avx2 tier:
// same i8i8 widening scheme (i8 products computed in i16 lanes) and the same
// quantization epilogue semantics, on 8x4 xmm column pairs.
MMMExternKernel! { x86_64; avx_mmm_i32_8x4<i32>(8,4)@(256,4) isa(X86_64Avx)
    packing[1] = i8i8 => |k| k.with_packing(PackedFormat::new(DatumType::I8, 8, 256), PackedFormat::new(DatumType::I8, 4, 4));

    store(i8)
}

MMMExternKernel! { x86_64; avx2_mmm_i32_8x8<i32>(8,8)@(256,4) isa(X86_64Avx2)
    packing[1] = i8i8 => |k| k.with_packing(PackedFormat::new(DatumType::I8, 8, 256), PackedFormat::new(DatumType::I8, 8, 4));

    store(i8)
}

// Glimpse: int8 products on CPUs with AVX2 and no VNNI (the AMD Zen 1 and 2 cores, Intel
// before Ice Lake). avx2_mmm_i32_8x8 widens every byte to i16, multiplies one k at a time
// with VPMULLW and widens again to i32: about 1.5 multiply-adds an instruction, and a decode
// step runs it as an 8-column tile with seven columns of padding. These two read the weights
// as PackedI8K4(8) (steps of 4 k-bytes of 8 rows) and multiply with VPMADDWD, two exact i16
// products summed into each i32 lane: the 8x6 for a prefill, the 8x1 for a decode step, on
// the same packing, so einsum pairs them over one copy of the weights (x86_64/fma/i32_8xn_k4.j2).
MMMExternKernel! { x86_64; avx2_mmm_i32_8x6<i32>(8,6)@(32,4) isa(X86_64Avx2)
    packing[1] = i8i8 => |k| k.with_packing(PackedI8K4::new(8), PackedI8K4::new(6));

    store(i8)
}

MMMExternKernel! { x86_64; avx2_mmm_i32_8x1<i32>(8,1)@(32,4) isa(X86_64Avx2)
    packing[1] = i8i8 => |k| k.with_packing(PackedI8K4::new(8), PackedI8K4::new(1));

    store(i8)
}

// AVX-512 VNNI int8 GEMM: same 8x8 column-accumulator tile and quantization
// epilogue as avx2_mmm_i32_8x8, but the i8i8 matmul inner loop uses VPDPBUSD
// (4-way K dot) over the K=4-inner PackedI8K4 layout. VPDPBUSD is u8*s8.
//
// Glimpse: B (the activations) is packed biased, each byte stored as x + 128, VPDPBUSD's
// unsigned operand as it is, and A (the weights) with its lanes' sums, -128 * sum_k A[m]
// after each panel, added to every column after the loop. The i32 accumulators are the
// AVX2 path's, bit for bit, and the loop is eight VPDPBUSD a K block with nothing else
// to compute: it offset A by +128 and summed B's columns in its loop before.
//
// Gated on `tract_avx512vnni` (set by build.rs when the assembler can encode
// `vpdpbusd ymm`; binutils < 2.30 cannot). On old toolchains the kernel is
// omitted entirely and the AVX2 i32 path is used instead.
#[cfg(tract_avx512vnni)]
MMMExternKernel! { x86_64; avx512vnni_mmm_i32_8x8<i32>(8,8)@(256,4) isa(X86_64Avx512f, X86_64Avx512Vnni)
    packing[1] = i8i8 => |k| k.with_packing(PackedI8K4::new(8).with_lane_sums(), PackedI8K4::new(8).biased());

    store(i8)
}

// Glimpse: the one-column partner of the 8x8 VNNI tile, for the cores where that tile runs
// the products (one 512-bit FMA port, or a double-pumped one as on AMD Zen 4): a decode
// step's product reads the same PackedI8K4(8) panels front to back instead of running the
// tile with seven columns of padding. Its loop is avx2_mmm_i32_8x1's (x86_64/fma/
// i32_8xn_k4.j2); declared with the tile's instruction sets so that kernel selection pairs
// them over one packing of the weights.
#[cfg(tract_avx512vnni)]
MMMExternKernel! { x86_64; avx512vnni_mmm_i32_8x1<i32>(8,1)@(32,4) isa(X86_64Avx512f, X86_64Avx512Vnni)
    packing[1] = i8i8 => |k| k.with_packing(PackedI8K4::new(8).with_lane_sums(), PackedI8K4::new(1));

    store(i8)
}

// Glimpse: the int8 products' tile on the cores where the 8x8 above is tract's pick (one
// 512-bit FMA port, or a double-pumped one as on AMD Zen 4): 16 rows by 8 columns in 16
// ymm accumulators, one per row, where the 8x8's eight each waited on their last
// VPDPBUSD. Same packings as the 8x8 at 16 rows: the weights with their lanes' sums, the
// activations biased (x86_64/fma/avx512vnni_mmm_i32_16x8.S.j2). Its partner for a decode
// step is the 16x1b below; einsum pairs the two over one packing of the weights, and ranks
// the pair above the 8x8's by its taller tile.
#[cfg(tract_avx512vnni)]
MMMExternKernel! { x86_64; avx512vnni_mmm_i32_16x8<i32>(16,8)@(64,4) isa(X86_64Avx512f, X86_64Avx512Vnni)
    packing[1] = i8i8 => |k| k.with_packing(PackedI8K4::new(16).with_lane_sums(), PackedI8K4::new(8).biased());

    store(i8)
}

// Glimpse: the one-column partner of the 16x8, over the same packing of the weights
// (x86_64/fma/avx512vnni_mmm_i32_16x1b.S.j2).
#[cfg(tract_avx512vnni)]
MMMExternKernel! { x86_64; avx512vnni_mmm_i32_16x1b<i32>(16,1)@(64,4) isa(X86_64Avx512f, X86_64Avx512Vnni)
    packing[1] = i8i8 => |k| k.with_packing(PackedI8K4::new(16).with_lane_sums(), PackedI8K4::new(1).biased());

    store(i8)
}

// AVX-512 VNNI int8 GEMM, zmm-wide 16x16 sibling of avx512vnni_mmm_i32_8x8.
// Accumulators are ROW-MAJOR (zmm{m} = row m of C, 16 columns per zmm), so one
// VPDPBUSD covers 16 columns x 4 K and the K=4 inner step issues 16 of them
// (one per row) = 1024 mul-adds/block, 2x the 8x8 ymm kernel's work per
// iteration. The same packings as the 8x8 kernel at 16 rows and columns (Glimpse): the
// weights with their lanes' sums, the activations biased. This is the int8
// throughput tier of qmmm_i32 for cores with AVX-512-VNNI but no AMX *and two
// 512-bit FMA ports* (Cascade Lake / Cooper Lake / Ice Lake-SP servers). The
// 2x work/iteration only turns into 2x throughput when the core has two
// 512-bit FMA units to retire two VPDPBUSD/zmm per cycle; single-512-FMA
// client cores (Ice Lake-U / Tiger Lake / Rocket Lake) get no gain and stay on
// the 8x8 ymm kernel -- see `has_dual_avx512_fma()` in `fma_width.rs`.
//
// On dual-FMA cores the boost lifts it above the 8x8 VNNI kernel in the einsum
// kernel-selection scorer for unknown shapes, while staying below the AMX 16x16
// kernels' boost(100) so AMX still wins when both are present; on single-FMA cores
// it goes negative so the 8x8 wins instead.
#[cfg(tract_avx512vnni)]
MMMExternKernel! { x86_64; avx512vnni_mmm_i32_16x16<i32>(16,16)@(64,4) isa(X86_64Avx512f, X86_64Avx512Vnni)
    packing[1] = i8i8 => |k| k.with_packing(PackedI8K4::new(16).with_lane_sums(), PackedI8K4::new(16).biased());

    boost(AVX512VNNI_WIDE_TILE)
    store(i8)
}

// The one-column partner of the 16x16 on CPUs without AMX: a decode step's product, weights by
// one column of activations, read from the same PackedI8K4(16) panels one step (4 k-bytes of
// the 16 rows, 64 bytes) at a time, each multiplied by the column's 4 bytes broadcast, instead
// of a 16-column tile of which 15 columns are padding. Declared with the 16x16's instruction
// sets and boost so that kernel selection keeps both and pairs them over one packing of the
// weights: this one for n = 1, the tile for the rest.
#[cfg(tract_avx512vnni)]
MMMExternKernel! { x86_64; avx512vnni_mmm_i32_16x1<i32>(16,1)@(64,4) isa(X86_64Avx512f, X86_64Avx512Vnni)
    packing[1] = i8i8 => |k| k.with_packing(PackedI8K4::new(16).with_lane_sums(), PackedI8K4::new(1).biased());

    boost(AVX512VNNI_WIDE_TILE)
    store(i8)
}

// AVX-VNNI ymm int8 GEMM: byte-for-byte the same body as avx512vnni_mmm_i32_8x8
// (8x8 ymm accumulators, PackedI8K4 inner-K, +128 bias trick), but the
// VPDPBUSD instructions are forced to the VEX (AVX-VNNI) encoding via the
// `{vex}` prefix. Runs on Atom-class cores (Alder Lake-E, Sierra Forest,
// Clearwater Forest / Darkmont) which have AVX-VNNI but no AVX-512. On big
// cores with both AVX-512-VNNI and AVX-VNNI (Sapphire Rapids+, some Alder
// Lake P-core SKUs) dispatch prefers the EVEX-encoded kernel above.
#[cfg(tract_avxvnni)]
MMMExternKernel! { x86_64; avxvnni_mmm_i32_8x8<i32>(8,8)@(256,4) isa(X86_64Avx2, X86_64AvxVnni)
    packing[1] = i8i8 => |k| k.with_packing(PackedI8K4::new(8), PackedI8K4::new(8));

    store(i8)
}

// Same epilogue as avx512vnni_mmm_i32_8x8 (8x8 ymm accumulators), but the i8i8
// matmul inner loop uses TDPBSSD (16-M x 16-N x 64-K mul-acc per instruction)
// over AMX tiles. A's packing is novel (PackedAmxA, M-major-within-panel,
// K-padded to multiples of 64); B reuses VNNI's K=4-inner PackedI8K4 layout
// unchanged. TDPBSSD is s8 x s8 so no +128 bias trick — accumulators are
// bit-identical to AVX2/VNNI. Gated by `isa(X86_64Avx512f, X86_64AmxInt8)` (= CPUID amx-int8
// AND Linux XSAVE permission via arch_prctl).
#[cfg(tract_amx_int8)]
MMMExternKernel! { x86_64; avx512amx_mmm_i32_8x8<i32>(8,8)@(64,4) isa(X86_64Avx512f, X86_64AmxInt8)
    packing[1] = i8i8 => |k| k.with_packing(PackedAmxA::new(8), PackedI8K4::new(8));

    store(i8)
}

// 16x16 i32 sibling. One tdpbssd does 16*16*64 = 16384 mul-adds (4x the 8x8).
// Same A/B packing (PackedAmxA, PackedI8K4) just with r=16. Row-major
// accumulators (zmm{m} = row m of C) so the hot path (Clear -> AddMatMul ->
// Store) needs no transpose.
//
// boost(100) pushes this kernel above the AMX 8x8 kernel it shares an instruction-set level
// with, and above the AVX-512-VNNI 8x8 a level below it, when einsum picks among the suitable
// kernels. When more than one dim is symbolic the shape-adaptive `qmmm_i32` picker isn't
// invoked, so the boost is what causes the optimizer to prefer the 16x16 tile for
// unknown-shape matmuls.
#[cfg(tract_amx_int8)]
MMMExternKernel! { x86_64; avx512amx_mmm_i32_16x16<i32>(16,16)@(64,4) isa(X86_64Avx512f, X86_64AmxInt8)
    packing[1] = i8i8 => |k| k.with_packing(PackedAmxA::new(16), PackedI8K4::new(16));

    boost(|| 100)
    store(i8)
}

// The one-column partner of the 16x16: a decode step's product, weights by one column of
// activations, read from the same PackedAmxA(16) panels with AVX-512 VNNI (VPDPBUSD over each
// row's 64 k-bytes, the +128 bias trick of the VNNI kernels), instead of a 16-column tile of
// which 15 columns are padding. It is declared with the 16x16's instruction sets and boost so
// that kernel selection keeps both and pairs them over one packing of the weights: this one
// for n = 1, the tile for the rest. Every AMX-int8 CPU has AVX-512 VNNI and BW.
#[cfg(tract_amx_int8)]
MMMExternKernel! { x86_64; avx512amx_mmm_i32_16x1<i32>(16,1)@(64,4) isa(X86_64Avx512f, X86_64AmxInt8)
    packing[1] = i8i8 => |k| k.with_packing(PackedAmxA::new(16), PackedI8K4::new(1));

    boost(|| 100)
    store(i8)
}

// AMX bf16 16x16 kernel for f32 matmul: uses TDPBF16PS (bf16 x bf16 -> f32).
// f32 inputs are truncated to bf16 at pack time (round-to-nearest-even, matching
// Intel VCVTNEPS2BF16). One tdpbf16ps consumes 16M x 16N x 32K bf16 = 8192 fma
// per instruction. f32 accumulators differ from a pure-f32 reference by ~1/2^8
// relative per multiply (bf16 = 8 mantissa bits vs f32's 23) -- same precision
// loss profile as oneDNN "fast-math" f32 matmul on AMX, acceptable for
// inference workloads (LLMs, CNNs) that already tolerate bf16.
//
// Default packing[0] (the framework's PackedFormat<f32>) is retained so the
// kernel can still be selected for f32 paths even when the BF16 packer
// isn't a precursor match; packing[1] is the fast bf16-from-f32 path.
// Once opted in, the boost puts this kernel above the AVX-512 f32 and FMA f32 kernels so the
// einsum prefers it, mirroring the i32 16x16 behaviour; see `AMX_BF16_OPT_IN` for the
// default-off half.
#[cfg(tract_amx_bf16)]
MMMExternKernel! { x86_64; avx512amx_mmm_f32_16x16<f32>(16,16)@(64,4) isa(X86_64Avx512f, X86_64AmxBf16)
    packing[1] = f32f32_bf16 => |k| k.with_packing(PackedAmxBf16A::new(16), PackedBf16K2::new(16));

    boost(AMX_BF16_OPT_IN)
}

/// The zmm 16x16 kernel does 2x the work per inner iteration as the ymm 8x8, but that only
/// becomes 2x the *throughput* on cores with two 512-bit FMA ports (Cascade Lake / Cooper Lake /
/// Ice Lake-SP and later Xeons). On a single-512-FMA client core (Ice Lake-U / Tiger Lake /
/// Rocket Lake) one 512-bit VPDPBUSD/cycle delivers the same MAC/s as two 256-bit
/// VPDPBUSD/cycle, so the wider tile is pure overhead (extra A-packing, the 16-column +128 bias
/// correction, a bigger epilogue) and regresses real matmuls -- e.g. -4..-11% on int8 LLM/TDNN
/// prefill on an i9-11900KB. So this tier names the 16x16 only on dual-FMA cores; the einsum
/// scorer is held off it by `AVX512VNNI_WIDE_TILE` going negative elsewhere.
///
/// Where it does name the wide tile the dispatch is shape-adaptive, mirroring the AMX int8 path:
/// the 16x16 is the throughput champion when each of M and N fills at least one tile, and the
/// 8x8 has lower per-call setup and wins on small problems where tile padding dominates. Unknown
/// dims default to the champion. (No K gate: one VPDPBUSD step is only 4 K-bytes, so any K is
/// fine; the choice is about filling the 16-wide M/N tile.)
#[cfg(tract_avx512vnni)]
fn avx512vnni_preferred(
    _isa: &IsaSet,
    dt: DatumType,
    query: &Query,
    _suitable: &[Suitable],
) -> Option<&'static str> {
    let big = |o: Option<usize>, t: usize| o.is_none_or(|v| v >= t);
    match (dt, query.n) {
        (DatumType::I32, Some(1)) => None,
        // Glimpse: the 16x8 where M fills its 16 rows
        (DatumType::I32, _) if !has_dual_avx512_fma() => Some(if big(query.m, 16) {
            avx512vnni_mmm_i32_16x8.name.as_str()
        } else {
            avx512vnni_mmm_i32_8x8.name.as_str()
        }),
        (DatumType::I32, _) => {
            Some(if big(query.m, 16) && big(query.n, 16) {
                avx512vnni_mmm_i32_16x16.name.as_str()
            } else {
                avx512vnni_mmm_i32_8x8.name.as_str()
            })
        }
        _ => None,
    }
}

#[cfg(tract_avx512vnni)]
inventory::submit! {
    MmmTier {
        arch: Some(Arch::X86_64),
        precedence: 6,
        name: "avx512vnni",
        applies: |isa| {
            isa.has(Isa::X86_64Avx2) && isa.has(Isa::X86_64Fma) && isa.has(Isa::X86_64Avx512f)
                && isa.has(Isa::X86_64Avx512Vnni)
        },
        preferred: avx512vnni_preferred,
    }
}

/// On AVX-VNNI-only cores (no AVX-512) this is the int8 throughput champion, over the AVX2
/// emulation below it. Big cores that also have AVX-512-VNNI answer from the higher tier.
#[cfg(tract_avxvnni)]
fn avxvnni_preferred(
    _isa: &IsaSet,
    dt: DatumType,
    query: &Query,
    _suitable: &[Suitable],
) -> Option<&'static str> {
    match (dt, query.n) {
        (DatumType::I32, Some(1)) => None,
        (DatumType::I32, _) => Some(avxvnni_mmm_i32_8x8.name.as_str()),
        _ => None,
    }
}

#[cfg(tract_avxvnni)]
inventory::submit! {
    MmmTier {
        arch: Some(Arch::X86_64),
        precedence: 3,
        name: "avxvnni",
        applies: |isa| isa.has(Isa::X86_64Avx2) && isa.has(Isa::X86_64AvxVnni),
        preferred: avxvnni_preferred,
    }
}

/// The AMX bf16 tile, where it is a good fit: not at small M/N, and not below K 32 — one
/// TDPBF16PS consumes 32 bf16 K-lanes so the panel must have at least one full step. The
/// threshold matches `PackedAmxBf16A::k_alignment()`; below it the AVX-512 / FMA tiers' smaller
/// tiles waste less work, and this tier declines so they answer.
#[cfg(tract_amx_bf16)]
fn amx_bf16_preferred(
    _isa: &IsaSet,
    dt: DatumType,
    query: &Query,
    _suitable: &[Suitable],
) -> Option<&'static str> {
    if dt != DatumType::F32 || query.n == Some(1) {
        return None;
    }
    let big = |o: Option<usize>, t: usize| o.is_none_or(|v| v >= t);
    if big(query.m, 16) && big(query.n, 16) && big(query.k, 32) {
        Some(avx512amx_mmm_f32_16x16.name.as_str())
    } else {
        None
    }
}

#[cfg(tract_amx_bf16)]
inventory::submit! {
    MmmTier {
        arch: Some(Arch::X86_64),
        precedence: 8,
        name: "avx512amx-bf16",
        applies: |isa| {
            crate::knobs::TRACT_AMX_BF16.get()
                && isa.has(Isa::X86_64Avx2)
                && isa.has(Isa::X86_64Fma)
                && isa.has(Isa::X86_64Avx512f)
                && isa.has(Isa::X86_64AmxBf16)
        },
        preferred: amx_bf16_preferred,
    }
}

/// Shape-adaptive AMX int8: the 16x16 hits the full tile (1024 B/tile, 16384 mul-adds per
/// tdpbssd) and is the throughput champion when at least one tile of each dim is fully utilised;
/// the 8x8 has lower per-call setup (1/4 the tile-store scratch, half the prefetch budget,
/// smaller epilogue) and beats it on small problems where tile padding dominates. An unknown dim
/// defaults to the champion. The exact crossover should be re-validated on AMX HW; oneDNN uses
/// similar shape-based MR/NR selection for its BRGEMM ukernel variants.
#[cfg(tract_amx_int8)]
fn amx_int8_preferred(
    _isa: &IsaSet,
    dt: DatumType,
    query: &Query,
    _suitable: &[Suitable],
) -> Option<&'static str> {
    match (dt, query.n) {
        (DatumType::I32, Some(1)) => None,
        (DatumType::I32, _) => {
            let big = |o: Option<usize>, t: usize| o.is_none_or(|v| v >= t);
            Some(if big(query.m, 16) && big(query.n, 16) && big(query.k, 64) {
                avx512amx_mmm_i32_16x16.name.as_str()
            } else {
                avx512amx_mmm_i32_8x8.name.as_str()
            })
        }
        _ => None,
    }
}

#[cfg(tract_amx_int8)]
inventory::submit! {
    MmmTier {
        arch: Some(Arch::X86_64),
        precedence: 7,
        name: "avx512amx-int8",
        applies: |isa| {
            isa.has(Isa::X86_64Avx2)
                && isa.has(Isa::X86_64Fma)
                && isa.has(Isa::X86_64Avx512f)
                && isa.has(Isa::X86_64Avx512Vnni)
                && isa.has(Isa::X86_64AmxInt8)
        },
        preferred: amx_int8_preferred,
    }
}

fn avx2_preferred(
    _isa: &IsaSet,
    dt: DatumType,
    query: &Query,
    _suitable: &[Suitable],
) -> Option<&'static str> {
    match (dt, query.n) {
        (DatumType::I32, Some(1)) => None,
        (DatumType::I32, _) => Some(avx2_mmm_i32_8x6.name.as_str()),
        _ => None,
    }
}

inventory::submit! {
    MmmTier {
        arch: Some(Arch::X86_64),
        precedence: 2,
        name: "avx2",
        applies: |isa| isa.has(Isa::X86_64Avx2),
        preferred: avx2_preferred,
    }
}

const AVX_CHOICES: &[KernelChoice] = &[
    KernelChoice { mr: 16, nr: 6, scale: 1.0, name: || avx_mmm_f32_16x6.name.as_str() },
    KernelChoice { mr: 16, nr: 5, scale: 0.98, name: || avx_mmm_f32_16x5.name.as_str() },
    KernelChoice { mr: 24, nr: 4, scale: 0.95, name: || avx_mmm_f32_24x4.name.as_str() },
    KernelChoice { mr: 32, nr: 3, scale: 0.93, name: || avx_mmm_f32_32x3.name.as_str() },
    KernelChoice { mr: 40, nr: 2, scale: 0.90, name: || avx_mmm_f32_40x2.name.as_str() },
    KernelChoice { mr: 8, nr: 8, scale: 0.80, name: || avx_mmm_f32_8x8.name.as_str() },
];

/// f32 and i32 kernels for AVX-capable CPUs that can't run the fma tier (Sandy/Ivy Bridge
/// without fma; AMD Bulldozer-family with fma but no avx2). It sits at the bottom of the x86
/// ladder, so wherever the fma tier can answer it does, and this one is only reached when it
/// cannot.
fn avx_preferred(
    _isa: &IsaSet,
    dt: DatumType,
    query: &Query,
    _suitable: &[Suitable],
) -> Option<&'static str> {
    match (dt, query.n) {
        (DatumType::I32, Some(1)) => None,
        (DatumType::I32, _) => Some(avx_mmm_i32_8x4.name.as_str()),
        (DatumType::F32, _) => match query.n {
            None => Some(avx_mmm_f32_16x6.name.as_str()),
            Some(1) => Some(avx_mmm_f32_64x1.name.as_str()),
            Some(2) => Some(avx_mmm_f32_40x2.name.as_str()),
            Some(3) => Some(avx_mmm_f32_32x3.name.as_str()),
            Some(4) => Some(avx_mmm_f32_24x4.name.as_str()),
            Some(5) => Some(avx_mmm_f32_16x5.name.as_str()),
            Some(6) => Some(avx_mmm_f32_16x6.name.as_str()),
            Some(8) => Some(avx_mmm_f32_8x8.name.as_str()),
            Some(_) => Some(pick_mmm(AVX_CHOICES, query.m, query.n)),
        },
        _ => None,
    }
}

inventory::submit! {
    MmmTier {
        arch: Some(Arch::X86_64),
        precedence: 1,
        name: "avx",
        applies: |isa| isa.has(Isa::X86_64Avx),
        preferred: avx_preferred,
    }
}

/// Fallback for non-Intel/AMD x86: hand-tuned low-N choices, then a generic (M, N)-aware
/// tile-utilisation picker over the same kernels.
const FMA_CHOICES: &[KernelChoice] = &[
    KernelChoice { mr: 8, nr: 8, scale: 44.0 / 60.0, name: || fma_mmm_f32_8x8.name.as_str() },
    KernelChoice { mr: 16, nr: 6, scale: 54.0 / 60.0, name: || fma_mmm_f32_16x6.name.as_str() },
    KernelChoice { mr: 16, nr: 5, scale: 54.0 / 60.0, name: || fma_mmm_f32_16x5.name.as_str() },
    KernelChoice { mr: 24, nr: 4, scale: 54.0 / 60.0, name: || fma_mmm_f32_24x4.name.as_str() },
    KernelChoice { mr: 32, nr: 3, scale: 54.0 / 60.0, name: || fma_mmm_f32_32x3.name.as_str() },
    KernelChoice { mr: 40, nr: 2, scale: 54.0 / 60.0, name: || fma_mmm_f32_40x2.name.as_str() },
];

fn fma_mmm_f32(suitable: &[Suitable], query: &Query) -> Option<&'static str> {
    match super::vendor() {
        super::Vendor::Intel => {
            super::intel_fma_linear::linear_model().preferred(suitable, query.m, query.k, query.n)
        }
        super::Vendor::Amd => {
            super::amd_fma_linear::linear_model().preferred(suitable, query.m, query.k, query.n)
        }
        super::Vendor::Other => match query.n {
            None => Some(fma_mmm_f32_16x6.name.as_str()),
            Some(1) => unreachable!("n == 1 answered above"),
            Some(2) => Some(fma_mmm_f32_40x2.name.as_str()),
            Some(3) => Some(fma_mmm_f32_32x3.name.as_str()),
            Some(4) => Some(fma_mmm_f32_24x4.name.as_str()),
            Some(5) => Some(fma_mmm_f32_16x5.name.as_str()),
            Some(6) => Some(fma_mmm_f32_16x6.name.as_str()),
            Some(8) => Some(fma_mmm_f32_8x8.name.as_str()),
            Some(_) => Some(pick_mmm(FMA_CHOICES, query.m, query.n)),
        },
    }
}

fn fma_preferred(
    _isa: &IsaSet,
    dt: DatumType,
    query: &Query,
    suitable: &[Suitable],
) -> Option<&'static str> {
    match (dt, query.n) {
        // n == 1 has no dedicated n=1-calibrated model on the fma-only path yet; keep the
        // fixed matvec kernel. Routing n==1 through the n>=2-fit mmm model mispicks (matvec
        // kernels are only ever run at n==1, so their mmm coeffs are unrepresentative).
        (DatumType::F32, Some(1)) => Some(fma_mmm_f32_64x1.name.as_str()),
        (DatumType::F32, _) => fma_mmm_f32(suitable, query),
        _ => None,
    }
}

inventory::submit! {
    MmmTier {
        arch: Some(Arch::X86_64),
        precedence: 4,
        name: "fma",
        applies: |isa| isa.has(Isa::X86_64Avx2) && isa.has(Isa::X86_64Fma),
        preferred: fma_preferred,
    }
}

/// The choices span both instruction sets: on avx512 hardware the 256-bit FMA kernels reach
/// comparable f32 throughput and win the small-N tiles the avx512 kernels have no matching `nr`
/// for (e.g. n=2 -> 40x2, n=4 -> 24x4). `scale` is relative throughput at full tile fill,
/// measured together with `tract hwbench 3840,256,120,f32` (M,N divide every mr/nr) and
/// normalised to the fastest kernel.
const X86_F32_CHOICES: &[KernelChoice] = &[
    KernelChoice { mr: 16, nr: 12, scale: 1.000, name: || avx512_mmm_f32_16x12.name.as_str() },
    KernelChoice { mr: 16, nr: 8, scale: 0.995, name: || avx512_mmm_f32_16x8.name.as_str() },
    KernelChoice { mr: 32, nr: 5, scale: 0.992, name: || avx512_mmm_f32_32x5.name.as_str() },
    KernelChoice { mr: 32, nr: 6, scale: 0.990, name: || avx512_mmm_f32_32x6.name.as_str() },
    KernelChoice { mr: 48, nr: 4, scale: 0.978, name: || avx512_mmm_f32_48x4.name.as_str() },
    KernelChoice { mr: 16, nr: 6, scale: 0.964, name: || fma_mmm_f32_16x6.name.as_str() },
    KernelChoice { mr: 24, nr: 4, scale: 0.948, name: || fma_mmm_f32_24x4.name.as_str() },
    KernelChoice { mr: 16, nr: 5, scale: 0.935, name: || fma_mmm_f32_16x5.name.as_str() },
    KernelChoice { mr: 32, nr: 3, scale: 0.919, name: || fma_mmm_f32_32x3.name.as_str() },
    KernelChoice { mr: 64, nr: 3, scale: 0.895, name: || avx512_mmm_f32_64x3.name.as_str() },
    KernelChoice { mr: 40, nr: 2, scale: 0.842, name: || fma_mmm_f32_40x2.name.as_str() },
    KernelChoice { mr: 8, nr: 8, scale: 0.788, name: || fma_mmm_f32_8x8.name.as_str() },
    KernelChoice { mr: 80, nr: 2, scale: 0.766, name: || avx512_mmm_f32_80x2.name.as_str() },
    KernelChoice { mr: 128, nr: 1, scale: 0.378, name: || avx512_mmm_f32_128x1.name.as_str() },
];

/// n==1: below the widest matvec kernel's mr (128) the cost model picks a better-fitting kernel
/// (16x1/32x1); at or above it the 128x1 is already optimal, so keep it. AMD has no
/// n=1-calibrated mmv model yet, and keeps the fixed matvec dispatch.
fn avx512_mmv_f32(suitable: &[Suitable], query: &Query) -> Option<&'static str> {
    match super::vendor() {
        super::Vendor::Intel => match query.m {
            Some(m) if m < 128 => super::intel_avx512_mmv_linear::linear_model().preferred(
                suitable,
                Some(m),
                query.k,
                Some(1),
            ),
            _ => Some(avx512_mmm_f32_128x1.name.as_str()),
        },
        _ => match query.m {
            Some(m) if m < 31 => Some(avx512_mmm_f32_16x1.name.as_str()),
            _ => Some(avx512_mmm_f32_128x1.name.as_str()),
        },
    }
}

fn avx512_mmm_f32(suitable: &[Suitable], query: &Query) -> Option<&'static str> {
    match super::vendor() {
        super::Vendor::Intel => super::intel_avx512_linear::linear_model()
            .preferred(suitable, query.m, query.k, query.n),
        super::Vendor::Amd => {
            super::amd_avx512_linear::linear_model().preferred(suitable, query.m, query.k, query.n)
        }
        super::Vendor::Other => {
            if let Some(1) = query.n {
                unreachable!("n == 1 answered above");
            }
            Some(pick_mmm(X86_F32_CHOICES, query.m, query.n))
        }
    }
}

fn avx512f_preferred(
    _isa: &IsaSet,
    dt: DatumType,
    query: &Query,
    suitable: &[Suitable],
) -> Option<&'static str> {
    match (dt, query.n) {
        (DatumType::F32, Some(1)) => avx512_mmv_f32(suitable, query),
        (DatumType::F32, _) => avx512_mmm_f32(suitable, query),
        _ => None,
    }
}

inventory::submit! {
    MmmTier {
        arch: Some(Arch::X86_64),
        precedence: 5,
        name: "avx512f",
        applies: |isa| isa.has(Isa::X86_64Avx2) && isa.has(Isa::X86_64Fma) && isa.has(Isa::X86_64Avx512f),
        preferred: avx512f_preferred,
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;
    use crate::frame::mmm::{AsInputValue, FusedSpec};
    use tract_data::internal::*;

    #[test]
    fn avx512_128x1_add_unicast_with_strided_c() -> TractResult<()> {
        if !is_x86_feature_detected!("avx512f") {
            return Ok(());
        }
        let (m, k_each, n) = (1000usize, 256usize, 13usize);
        let a0: Vec<f32> = (0..m * k_each).map(|i| ((i % 17) as f32 - 8.0) / 16.0).collect();
        let a1: Vec<f32> = (0..m * k_each).map(|i| ((i % 19) as f32 - 9.0) / 18.0).collect();
        let b0: Vec<f32> = (0..k_each * n).map(|i| ((i % 13) as f32 - 6.0) / 13.0).collect();
        let b1: Vec<f32> = (0..k_each * n).map(|i| ((i % 11) as f32 - 5.0) / 10.0).collect();

        let mut expected = vec![0.0f32; m * n];
        for r in 0..m {
            for c in 0..n {
                let mut acc = 0.0f32;
                for kk in 0..k_each {
                    acc += a0[r * k_each + kk] * b0[kk * n + c];
                    acc += a1[r * k_each + kk] * b1[kk * n + c];
                }
                expected[r * n + c] = acc;
            }
        }

        let ker = avx512_mmm_f32_128x1.mmm();
        let (pack_a, pack_b) = &ker.packings()[0];
        let pack_one =
            |buf: Vec<f32>, rows, cols, m_axis, k_axis, pack: &dyn crate::mmm::MMMInputFormat| {
                let t =
                    tract_ndarray::Array2::from_shape_vec((rows, cols), buf).unwrap().into_tensor();
                pack.prepare_one(&t, k_axis, m_axis).unwrap()
            };
        let pa0 = pack_one(a0, m, k_each, 0, 1, &**pack_a);
        let pa1 = pack_one(a1, m, k_each, 0, 1, &**pack_a);
        let pb0 = pack_one(b0, k_each, n, 1, 0, &**pack_b);
        let pb1 = pack_one(b1, k_each, n, 1, 0, &**pack_b);

        // C-buffer layout with row stride > nr*sizeof, matching squeezenet conv10's
        // (M=1000, spatial=13, N=13) view: M-stride is 169 floats, not nr=1.
        let spatial = 13usize;
        let mut c_backing = Tensor::zero::<f32>(&[m, spatial, n])?;
        let c_spec = unsafe { ker.c_from_data_and_strides(4, (spatial * n) as isize, 1) };

        unsafe {
            let c_view = c_backing.view_mut();
            let c = c_spec.wrap(&c_view);
            let ops: TVec<FusedSpec> = tvec!(
                FusedSpec::AddMatMul {
                    a: AsInputValue::Borrowed(&*pa0),
                    b: AsInputValue::Borrowed(&*pb0),
                    packing: 0,
                },
                FusedSpec::Store(c),
            );
            ker.run(m, n, &ops)?;
        }

        unsafe {
            let c_view = c_backing.view_mut();
            let c_for_unicast = c_spec.wrap(&c_view);
            let c_for_store = c_spec.wrap(&c_view);
            let ops: TVec<FusedSpec> = tvec!(
                FusedSpec::AddMatMul {
                    a: AsInputValue::Borrowed(&*pa1),
                    b: AsInputValue::Borrowed(&*pb1),
                    packing: 0,
                },
                FusedSpec::AddUnicast(c_for_unicast),
                FusedSpec::Store(c_for_store),
            );
            ker.run(m, n, &ops)?;
        }

        let c_slice = c_backing.to_plain_array_view::<f32>()?;
        let mut max_err = 0.0f32;
        let mut wrong_cells = 0;
        for r in 0..m {
            for cc in 0..n {
                let got = c_slice[[r, 0, cc]];
                let exp = expected[r * n + cc];
                let e = (got - exp).abs();
                if e > 1e-3 {
                    wrong_cells += 1;
                }
                max_err = max_err.max(e);
            }
        }
        assert!(
            max_err < 1e-3,
            "avx512_mmm_f32_128x1 wrong output at squeezenet shape: \
             max_err={max_err}, {wrong_cells}/{} cells off",
            m * n,
        );
        Ok(())
    }

    static WIDENED_PANELS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    unsafe fn counting_f16_to_f32_a512(input: *const u8, output: *mut u8, k: usize) {
        WIDENED_PANELS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        unsafe { (super::super::panel_extract::packed_32_f16_to_f32_a512.kernel)(input, output, k) }
    }

    /// An f16 model's many-column product: f16 weights widened panel by panel by an
    /// extractor, f16 activations widened at packing (`WidenedF16`). The extractor's work
    /// is the product's overhead over an f32 one, so each weight panel must be widened
    /// once, not once per column of tiles.
    #[test]
    fn f16_weight_panels_are_widened_once_per_product() -> TractResult<()> {
        use crate::frame::mmm::{MMMInputFormat, MMMInputValue, PanelExtractInput, PanelExtractor};
        use crate::pack::PackedFormat;
        let extractor = &*super::super::panel_extract::packed_32_f16_to_f32_a512;
        let ker = avx512_mmm_f32_32x6.mmm();
        if !extractor.runnable() || !ker.runnable() {
            return Ok(());
        }
        // four weight panels, 97 tokens: seventeen columns of 6-wide tiles
        let (m, k, n) = (128usize, 64usize, 97usize);
        let a: Vec<f32> = (0..m * k).map(|i| ((i * 7 % 23) as f32 - 11.0) / 8.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| ((i * 5 % 19) as f32 - 9.0) / 4.0).collect();
        let half = |v: &[f32], shape: (usize, usize)| {
            tract_ndarray::Array2::from_shape_vec(shape, v.to_vec())
                .unwrap()
                .into_tensor()
                .cast_to::<f16>()
                .unwrap()
                .into_owned()
        };
        let from = PackedFormat::new(f16::datum_type(), 32, 32);
        let packed_a = from.prepare_one(&half(&a, (m, k)), 1, 0)?;
        let counting = PanelExtractor {
            name: "counting".into(),
            kernel: counting_f16_to_f32_a512,
            ..extractor.clone()
        };
        let data = packed_a.downcast_ref::<crate::mmm::EagerPackedInput>().unwrap().clone();
        let pa = PanelExtractInput { format: counting, data };
        let (pack_a, pack_b) = &ker.packings()[1];
        assert!(pack_a.dyn_eq(pa.format()), "{pack_a} takes the extractor's panels");
        let pb = pack_b.prepare_one(&half(&b, (k, n)), 0, 1)?;

        let mut c = Tensor::zero::<f32>(&[m, n])?;
        WIDENED_PANELS.store(0, std::sync::atomic::Ordering::Relaxed);
        unsafe {
            let c_view = c.view_mut();
            let store = ker.c_view(Some(0), Some(1)).wrap(&c_view);
            let ops: TVec<FusedSpec> = tvec!(
                FusedSpec::AddMatMul {
                    a: AsInputValue::Borrowed(&pa),
                    b: AsInputValue::Borrowed(&*pb),
                    packing: 1,
                },
                FusedSpec::Store(store),
            );
            ker.run(m, n, &ops)?;
        }
        assert_eq!(WIDENED_PANELS.load(std::sync::atomic::Ordering::Relaxed), m / 32);

        // the values are exact in f16, and so are their products and sums in f32
        let c = c.to_plain_array_view::<f32>()?;
        for r in 0..m {
            for col in 0..n {
                let want: f32 = (0..k).map(|kk| a[r * k + kk] * b[kk * n + col]).sum();
                assert_eq!(c[[r, col]], want, "row {r} column {col}");
            }
        }
        Ok(())
    }
}

/// The 64x6 tile's loop with its prefetch of the next weight panel (four steps of k and
/// a line at a time, then the steps left over), through the frame as a model runs it: the
/// weights packed ahead, several panels, many columns of tiles; and, for a k whose panels
/// pass a quarter of any L2, the walk a block of k at a time, without and with a fused
/// bias. Integer values, so every sum is exact and must equal the plain one.
#[cfg(all(test, target_arch = "x86_64"))]
mod mmm_f32_64x6_tests {
    use super::*;
    use crate::frame::mmm::{AsInputValue, FusedSpec, MatMatMulKer};
    use tract_data::internal::*;

    #[test]
    fn prefetching_the_next_panel_leaves_every_product_exact() -> TractResult<()> {
        let ker = avx512_mmm_f32_64x6.mmm();
        if !ker.runnable() {
            return Ok(());
        }
        assert!(avx512_mmm_f32_64x6.prefetches_next_a());
        for (m, k, n) in [
            (256usize, 1usize, 13usize),
            (256, 3, 97),
            (200, 4, 6),
            (256, 5, 97),
            (192, 64, 25),
            (256, 130, 97),
            (64, 9, 7),
            // past a quarter of any L2, a block of k at a time (ScratchSpaceImpl::run_k_blocked),
            // with border tiles both ways
            (200, 8200, 13),
            (128, 8195, 97),
        ] {
            let a: Vec<f32> = (0..m * k).map(|i| ((i * 7 % 23) as f32) - 11.0).collect();
            let b: Vec<f32> = (0..k * n).map(|i| ((i * 5 % 19) as f32) - 9.0).collect();
            let at = tract_ndarray::Array2::from_shape_vec((m, k), a.clone())?.into_tensor();
            let bt = tract_ndarray::Array2::from_shape_vec((k, n), b.clone())?.into_tensor();
            let (pack_a, pack_b) = &ker.packings()[0];
            let pa = pack_a.prepare_one(&at, 1, 0)?;
            let pb = pack_b.prepare_one(&bt, 0, 1)?;
            // plain, then with a bias per row fused (applied once, after the last block)
            let bias: Vec<f32> = (0..m).map(|r| (r % 13) as f32 - 6.0).collect();
            let bias = tensor1(&bias);
            for with_bias in [false, true] {
                let mut c = Tensor::zero::<f32>(&[m, n])?;
                unsafe {
                    let c_view = c.view_mut();
                    let store = ker.c_view(Some(0), Some(1)).wrap(&c_view);
                    let mut ops: TVec<FusedSpec> = tvec!(FusedSpec::AddMatMul {
                        a: AsInputValue::Borrowed(&*pa),
                        b: AsInputValue::Borrowed(&*pb),
                        packing: 0,
                    });
                    if with_bias {
                        ops.push(FusedSpec::BinPerRow(bias.view(), crate::BinOp::Add));
                    }
                    ops.push(FusedSpec::Store(store));
                    ker.run(m, n, &ops)?;
                }
                let c = c.to_plain_array_view::<f32>()?;
                for r in 0..m {
                    for col in 0..n {
                        let mut want: f32 = (0..k).map(|kk| a[r * k + kk] * b[kk * n + col]).sum();
                        if with_bias {
                            want += (r % 13) as f32 - 6.0;
                        }
                        assert_eq!(
                            c[[r, col]],
                            want,
                            "{m}x{k}x{n}, bias {with_bias}: row {r} column {col}"
                        );
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod mmm_i32_every_k_tests {
    use super::*;
    use crate::frame::mmm::{DynKernel, FusedKerSpec, MatMatMulKer, OutputStoreKer};
    use tract_data::prelude::*;

    /// tract's kernel tests pad k to the packing's 64 before packing, so they never reach
    /// the last, partial step a product whose k is not a multiple of 64 takes (its bytes of
    /// B read under a mask), nor, for the VNNI one, k not a multiple of the 4 of a step or
    /// of its four-step turns. This packs the true k, around those edges and at decode
    /// sizes, over the whole i8 range.
    #[cfg(tract_amx_int8)]
    #[test]
    fn amx_packed_every_k_reads_whole_steps_then_its_last_bytes() -> TractResult<()> {
        every_k(&avx512amx_mmm_i32_16x1)
    }

    #[cfg(tract_avx512vnni)]
    #[test]
    fn k4_packed_every_k_reads_whole_steps_then_its_last_bytes() -> TractResult<()> {
        every_k(&avx512vnni_mmm_i32_16x1)
    }

    #[cfg(tract_avx512vnni)]
    #[test]
    fn vnni_8x1_every_k_reads_whole_steps_then_its_last_bytes() -> TractResult<()> {
        every_k(&avx512vnni_mmm_i32_8x1)
    }

    /// The VNNI kernels over the weights with their lanes' sums and the biased activations,
    /// all of their rows and columns: the lane sums are read right after the last step,
    /// wherever k leaves it.
    #[cfg(tract_avx512vnni)]
    #[test]
    fn vnni_8x8_every_k_takes_the_lane_sums_after_its_last_step() -> TractResult<()> {
        every_k(&avx512vnni_mmm_i32_8x8)
    }

    #[cfg(tract_avx512vnni)]
    #[test]
    fn vnni_16x8_every_k_takes_the_lane_sums_after_its_last_step() -> TractResult<()> {
        every_k(&avx512vnni_mmm_i32_16x8)
    }

    #[cfg(tract_avx512vnni)]
    #[test]
    fn vnni_16x1b_every_k_takes_the_lane_sums_after_its_last_step() -> TractResult<()> {
        every_k(&avx512vnni_mmm_i32_16x1b)
    }

    #[cfg(tract_avx512vnni)]
    #[test]
    fn vnni_16x16_every_k_takes_the_lane_sums_after_its_last_step() -> TractResult<()> {
        every_k(&avx512vnni_mmm_i32_16x16)
    }

    /// The same for the AMX 16x16 tile kernel, all sixteen columns: the generic frame tests
    /// draw k under 40, one 64-byte step, and the products of a model run to thousands.
    #[cfg(tract_amx_int8)]
    #[test]
    fn amx_16x16_every_k_accumulates_every_step() -> TractResult<()> {
        every_k(&avx512amx_mmm_i32_16x16)
    }

    /// The AVX2 pair over PackedI8K4(8): odd and even numbers of steps (the 8x1 takes two a
    /// turn), k not a multiple of 4, and the whole i8 range, -128 x -128 included.
    #[test]
    fn avx2_k4_8x1_every_k_accumulates_every_step() -> TractResult<()> {
        every_k(&avx2_mmm_i32_8x1)
    }

    #[test]
    fn avx2_k4_8x6_every_k_accumulates_every_step() -> TractResult<()> {
        every_k(&avx2_mmm_i32_8x6)
    }

    /// A product whose sums do not start at zero (a bias added first, or a second product
    /// into the same tile) keeps them: the AVX2 k4 kernels spread C's columns into halves
    /// of pairs on entry and fold them back on exit.
    #[test]
    fn avx2_k4_products_add_to_what_the_tile_holds() -> TractResult<()> {
        fn twice<const NR: usize>(ker: &DynKernel<8, NR, i32>) -> TractResult<()> {
            if !ker.runnable() {
                return Ok(());
            }
            let k = 37;
            let a: Vec<i8> = (0..8 * k).map(|i| ((i * 53 + 3) % 256) as u8 as i8).collect();
            let b: Vec<i8> = (0..k * NR).map(|i| ((i * 29 + 100) % 256) as u8 as i8).collect();
            let pa = ker.packings()[1].0.prepare_one(&tensor1(&a).into_shape(&[8, k])?, 1, 0)?;
            let pb = ker.packings()[1].1.prepare_one(&tensor1(&b).into_shape(&[k, NR])?, 0, 1)?;
            let mut c = vec![0i32; 8 * NR];
            let store = OutputStoreKer {
                ptr: c.as_mut_ptr() as *mut u8,
                row_byte_stride: 4 * NR as isize,
                col_byte_stride: 4,
                item_size: 4,
            };
            let bias: Vec<i32> = (0..8).map(|r| r * 1_000_003 - 4_000_000).collect();
            let mm = FusedKerSpec::AddMatMul {
                k,
                pa: pa.panel_bytes(0, None)?,
                pb: pb.panel_bytes(0, None)?,
                packing: 1,
            };
            let ops = [
                FusedKerSpec::Clear,
                FusedKerSpec::PerRowAdd(bias.as_ptr()),
                mm,
                mm,
                FusedKerSpec::Store(store),
                FusedKerSpec::Done,
            ];
            assert_eq!(ker.kernel(&ops), 0);
            for m in 0..8 {
                for n in 0..NR {
                    let dot: i32 = (0..k).map(|j| a[m * k + j] as i32 * b[j * NR + n] as i32).sum();
                    assert_eq!(
                        c[m * NR + n],
                        bias[m] + 2 * dot,
                        "{}: row {m}, column {n}",
                        ker.name()
                    );
                }
            }
            Ok(())
        }
        twice(&avx2_mmm_i32_8x1)?;
        twice(&avx2_mmm_i32_8x6)
    }

    /// The corners of the i8 range, where a narrower product would saturate: every byte
    /// -128 (each pair of products 32768, one past i16), and -128 against 127.
    #[test]
    fn avx2_k4_products_are_exact_at_the_ends_of_the_i8_range() -> TractResult<()> {
        fn ends<const NR: usize>(ker: &DynKernel<8, NR, i32>) -> TractResult<()> {
            if !ker.runnable() {
                return Ok(());
            }
            let k = 4099;
            for (x, y) in [(-128i8, -128i8), (-128, 127), (127, 127)] {
                let a = vec![x; 8 * k];
                let b = vec![y; k * NR];
                let pa =
                    ker.packings()[1].0.prepare_one(&tensor1(&a).into_shape(&[8, k])?, 1, 0)?;
                let pb =
                    ker.packings()[1].1.prepare_one(&tensor1(&b).into_shape(&[k, NR])?, 0, 1)?;
                let mut c = vec![0i32; 8 * NR];
                let store = OutputStoreKer {
                    ptr: c.as_mut_ptr() as *mut u8,
                    row_byte_stride: 4 * NR as isize,
                    col_byte_stride: 4,
                    item_size: 4,
                };
                let ops = [
                    FusedKerSpec::Clear,
                    FusedKerSpec::AddMatMul {
                        k,
                        pa: pa.panel_bytes(0, None)?,
                        pb: pb.panel_bytes(0, None)?,
                        packing: 1,
                    },
                    FusedKerSpec::Store(store),
                    FusedKerSpec::Done,
                ];
                assert_eq!(ker.kernel(&ops), 0);
                let want = x as i32 * y as i32 * k as i32;
                assert!(
                    c.iter().all(|&v| v == want),
                    "{}: {x} x {y}: {c:?}, want {want}",
                    ker.name()
                );
            }
            Ok(())
        }
        ends(&avx2_mmm_i32_8x1)?;
        ends(&avx2_mmm_i32_8x6)
    }

    fn every_k<const MR: usize, const NR: usize>(ker: &DynKernel<MR, NR, i32>) -> TractResult<()> {
        if !ker.runnable() {
            return Ok(());
        }
        for k in
            [1usize, 2, 3, 4, 5, 7, 8, 9, 12, 16, 17, 63, 64, 65, 68, 130, 200, 2047, 2048, 5000]
        {
            let a: Vec<i8> = (0..MR * k).map(|i| ((i * 37 + 11) % 256) as u8 as i8).collect();
            let b: Vec<i8> = (0..k * NR).map(|i| ((i * 91 + 5) % 256) as u8 as i8).collect();
            let at = tensor1(&a).into_shape(&[MR, k])?;
            let bt = tensor1(&b).into_shape(&[k, NR])?;
            let (pack_a, pack_b) = &ker.packings()[1];
            let pa = pack_a.prepare_one(&at, 1, 0)?;
            let pb = pack_b.prepare_one(&bt, 0, 1)?;
            let mut c = vec![0i32; MR * NR];
            let store = OutputStoreKer {
                ptr: c.as_mut_ptr() as *mut u8,
                row_byte_stride: 4 * NR as isize,
                col_byte_stride: 4,
                item_size: 4,
            };
            let ops = [
                FusedKerSpec::Clear,
                FusedKerSpec::AddMatMul {
                    k,
                    pa: pa.panel_bytes(0, None)?,
                    pb: pb.panel_bytes(0, None)?,
                    packing: 1,
                },
                FusedKerSpec::Store(store),
                FusedKerSpec::Done,
            ];
            assert_eq!(ker.kernel(&ops), 0);
            for m in 0..MR {
                for n in 0..NR {
                    let want: i32 =
                        (0..k).map(|j| a[m * k + j] as i32 * b[j * NR + n] as i32).sum();
                    assert_eq!(c[m * NR + n], want, "k {k}, row {m}, column {n}");
                }
            }
        }
        Ok(())
    }
}

#[cfg(all(test, tract_avx512vnni))]
mod q40_vnni_tests {
    use super::*;
    use crate::frame::mmm::{DynKernel, FusedKerSpec, MatMatMulKer, OutputStoreKer};
    use tract_data::prelude::*;

    /// One 32-row panel of Q4_0 weights times one column of f32 activations, on packing 1.
    fn q40_product(ker: &DynKernel<32, 1, f32>, w: &[f32], b: &[f32]) -> TractResult<Vec<f32>> {
        let k = b.len();
        let at = tensor1(w).into_shape(&[32, k])?;
        let bt = tensor1(b).into_shape(&[k, 1])?;
        let (pack_a, pack_b) = &ker.packings()[1];
        let pa = pack_a.prepare_one(&at, 1, 0)?;
        let pb = pack_b.prepare_one(&bt, 0, 1)?;
        let mut c = vec![f32::NAN; 32];
        let store = OutputStoreKer {
            ptr: c.as_mut_ptr() as *mut u8,
            row_byte_stride: 4,
            col_byte_stride: 4,
            item_size: 4,
        };
        let ops = [
            FusedKerSpec::Clear,
            FusedKerSpec::AddMatMul {
                k,
                pa: pa.panel_bytes(0, None)?,
                pb: pb.panel_bytes(0, None)?,
                packing: 1,
            },
            FusedKerSpec::Store(store),
            FusedKerSpec::Done,
        ];
        assert_eq!(ker.kernel(&ops), 0);
        Ok(c)
    }

    /// The VNNI Q4_0 loop computes what the 256-bit integer loop computes: the same i8
    /// activations, the same exact i32 sums, the same f32 steps per row, so the outputs
    /// are bit for bit the same, over one block and many, with activations over six orders
    /// of magnitude, a block of zeros, the i8 extremes and every nibble.
    #[test]
    fn vnni_q40_loop_gives_the_avx2_loop_s_outputs_bit_for_bit() -> TractResult<()> {
        if !avx512vnni_mmm_f32_32x1.runnable() || !fma_mmm_f32_32x1.runnable() {
            return Ok(());
        }
        for k in [32usize, 64, 96, 1024, 4096] {
            let w: Vec<f32> = (0..32 * k)
                .map(|i| {
                    let x = ((i * 2654435761) % 1000003) as f32 / 1000003.0 - 0.5;
                    x * (1 + i / 32 % 5) as f32
                })
                .collect();
            let b: Vec<f32> = (0..k)
                .map(|i| {
                    let x = ((i * 40503 + 17) % 65537) as f32 / 65537.0 - 0.5;
                    if i / 32 % 7 == 3 {
                        0.0
                    } else {
                        x * 10f32.powi((i / 32 % 6) as i32 - 3)
                    }
                })
                .collect();
            let vnni = q40_product(&avx512vnni_mmm_f32_32x1, &w, &b)?;
            let avx2 = q40_product(&fma_mmm_f32_32x1, &w, &b)?;
            assert!(vnni.iter().all(|v| v.is_finite()), "k {k}: {vnni:?}");
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&vnni), bits(&avx2), "k {k}: {vnni:?} against {avx2:?}");
            // and the products are not all zero: the weights' sign and size reach them
            assert!(vnni.iter().filter(|v| v.abs() > 1e-6).count() > 16, "k {k}: {vnni:?}");
        }
        Ok(())
    }
}
