//! tract's matrix kernels alone, on the products of a 1.3 B decoder layer (d_model 1536,
//! MLP 6144), so that a kernel or a kernel pick can be judged apart from the rest of a
//! model's run.
//!
//! `cargo bench --bench kernels -- [--n N] [--int8 | --q4] [KERNEL ...]` runs each kernel
//! (by tract's name; default: the f32 tiles, AVX-512 and AVX2, the int8 tiles with
//! `--int8`, or with `--q4` the one-column kernels that take Q4_0 weights, best run with
//! `--n 1`; a kernel this CPU lacks is reported as such) on `[m, k] × [k, N]` for the
//! four shapes of a layer (fused QKV 4608 × 1536, attention out 1536 × 1536, MLP up
//! 6144 × 1536, MLP down 1536 × 6144), N 97 by default (a 300×300 frame's prefill; 1 for a
//! decode step, with a one-column kernel such as `fma_mmm_f32_32x1` or
//! `avx2_mmm_i32_8x1`). Each product runs on its kernel's own packing of
//! the weights, with the activations packed beforehand as a graph does in its own operator,
//! and the weights rotated over eight copies so that they come from memory, not the cache,
//! as in a model of gigabytes. Prints the median of 17 runs: milliseconds, GFLOP/s (or
//! G int8 multiply-adds ×2) and the weights' bytes read per second.

use std::io::Write;
use std::time::Instant;

use tract_core::internal::*;
use tract_linalg::mmm::{AsInputValue, FusedSpec, MatMatMul, MmmDispatch};

const SHAPES: [(&str, usize, usize); 4] = [
    ("qkv", 4608, 1536),
    ("out", 1536, 1536),
    ("up", 6144, 1536),
    ("down", 1536, 6144),
];
const COPIES: usize = 8;
const RUNS: usize = 17;

const F32_TILES: &[&str] = &[
    "avx512_mmm_f32_64x6",
    "avx512_mmm_f32_64x3",
    "avx512_mmm_f32_48x4",
    "avx512_mmm_f32_32x6",
    "avx512_mmm_f32_32x5",
    "avx512_mmm_f32_16x12",
    "fma_mmm_f32_32x3",
];
const Q4_GEMVS: &[&str] = &[
    "avx512vnni_mmm_f32_32x1",
    "avx512_mmm_f32_32x1",
    "fma_mmm_f32_32x1",
];
const INT8_TILES: &[&str] = &[
    "avx512amx_mmm_i32_16x16",
    "avx512vnni_mmm_i32_16x16",
    "avx512vnni_mmm_i32_16x8",
    "avx512vnni_mmm_i32_8x8",
    "avx2_mmm_i32_8x6",
];

/// What the weights are: f32, int8 (i8 by i8 into i32), or Q4_0 blocks by f32 activations.
#[derive(Clone, Copy, PartialEq)]
enum Weights {
    F32,
    Int8,
    Q4,
}

fn main() -> TractResult<()> {
    let mut n = 97;
    let mut weights = Weights::F32;
    let mut names = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--n" => n = args.next().context("--n needs a number")?.parse()?,
            "--int8" => weights = Weights::Int8,
            "--q4" => weights = Weights::Q4,
            "--bench" => {}
            name => names.push(name.to_string()),
        }
    }
    if names.is_empty() {
        let tiles = match weights {
            Weights::F32 => F32_TILES,
            Weights::Int8 => INT8_TILES,
            Weights::Q4 => Q4_GEMVS,
        };
        names = tiles.iter().map(|s| s.to_string()).collect();
    }
    let runnable = MmmDispatch::native().runnable();
    // a closed stdout (the table piped into `head`) ends the run with an error, not a panic
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "product                  kernel                        ms   GFLOP/s  weights GB/s"
    )?;
    for (label, m, k) in SHAPES {
        let shape = format!("{m}x{k}x{n}");
        for name in &names {
            let Some(ker) = runnable.iter().find(|ker| ker.name() == name) else {
                writeln!(
                    out,
                    "{label:<4} {shape:<18} {name:<28} not runnable on this CPU"
                )?;
                continue;
            };
            let secs = time(&**ker, m, k, n, weights)?;
            let weight_bytes = match weights {
                Weights::F32 => 4.0 * (m * k) as f64,
                Weights::Int8 => (m * k) as f64,
                // a block of 32 weights: an f16 scale and 16 bytes of nibbles
                Weights::Q4 => (m * k) as f64 * 18.0 / 32.0,
            };
            writeln!(
                out,
                "{label:<4} {shape:<18} {name:<28} {:7.3} {:8.1} {:12.1}",
                secs * 1e3,
                2.0 * (m * k * n) as f64 / secs / 1e9,
                weight_bytes / secs / 1e9
            )?;
        }
    }
    Ok(())
}

/// The median time of one `[m, k] × [k, n]` product on `ker`.
fn time(ker: &dyn MatMatMul, m: usize, k: usize, n: usize, weights: Weights) -> TractResult<f64> {
    let int8 = weights == Weights::Int8;
    let values = |len: usize, step: usize| -> Vec<f32> {
        (0..len)
            .map(|i| ((i * step % 23) as f32 - 11.0) / 8.0)
            .collect()
    };
    let mut a = Tensor::from_shape(&[m, k], &values(m * k, 7))?;
    let mut b = Tensor::from_shape(&[n, k], &values(n * k, 5))?;
    if int8 {
        a = a.cast_to::<i8>()?.into_owned();
        b = b.cast_to::<i8>()?.into_owned();
    }
    // packing 0 of an int8 tile takes i32 operands; its i8 packing is the next one. An f32
    // one-column kernel's packing 1 is Q4_0 weights (quantized here from the f32 values)
    // by f32 activations.
    let packing = if weights == Weights::F32 { 0 } else { 1 };
    let (pack_a, pack_b) = &ker.packings()[packing];
    let weights = (0..COPIES)
        .map(|_| pack_a.prepare_one(&a, 1, 0))
        .collect::<TractResult<Vec<_>>>()?;
    let pb = pack_b.prepare_one(&b, 1, 0)?;
    let mut c = if int8 {
        Tensor::zero::<i32>(&[n, m])?
    } else {
        Tensor::zero::<f32>(&[n, m])?
    };
    let mut times = Vec::with_capacity(RUNS);
    for run in 0..RUNS {
        let start = Instant::now();
        // SAFETY: `c` is an [n, m] tensor of the kernel's output type, and the store view
        // names its axes: m along axis 1, n along axis 0.
        unsafe {
            let c_view = c.view_mut();
            let store = ker.c_view(Some(1), Some(0)).wrap(&c_view);
            let ops: TVec<FusedSpec> = tvec!(
                FusedSpec::AddMatMul {
                    a: AsInputValue::Borrowed(&*weights[run % COPIES]),
                    b: AsInputValue::Borrowed(&*pb),
                    packing,
                },
                FusedSpec::Store(store),
            );
            ker.run(m, n, &ops)?;
        }
        times.push(start.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok(times[RUNS / 2])
}
