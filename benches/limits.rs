//! What this machine allows, so that every speed figure can be stated as a share of it:
//! memory read bandwidth (GB/s) and peak f32 multiply-add throughput (GFLOP/s), on one
//! thread, two, and every core.
//!
//! `cargo bench --bench limits` prints a table; `-- --json` prints the same as JSON. Each
//! figure is the median of five runs.
//!
//! - Bandwidth: each thread sums its own share of a buffer four times the size of any
//!   cache here (256 MiB in all), with sixteen independent accumulators so that the adds
//!   never wait on each other; bytes read ÷ time.
//! - Multiply-add: each thread runs chains of fused multiply-adds on registers (AVX-512
//!   where the CPU has it, else AVX2+FMA, on x86-64 (tract's f32 kernels take the same
//!   widths); NEON on aarch64; `f32::mul_add` elsewhere), twelve independent chains so
//!   that the units stay busy; two FLOPs per lane per instruction ÷ time.

use std::hint::black_box;
use std::time::Instant;

const BUFFER_BYTES: usize = 256 << 20;
const RUNS: usize = 5;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs `work(thread)` on `threads` threads at once and returns the wall time in seconds.
fn timed_on(threads: usize, work: &(dyn Fn(usize) + Sync)) -> f64 {
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            s.spawn(move || work(t));
        }
    });
    start.elapsed().as_secs_f64()
}

fn sum(chunk: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let mut blocks = chunk.chunks_exact(16);
    for b in &mut blocks {
        for (a, x) in acc.iter_mut().zip(b) {
            *a += x;
        }
    }
    acc.iter().sum::<f32>() + blocks.remainder().iter().sum::<f32>()
}

/// Read bandwidth in GB/s with `threads` threads.
fn bandwidth(buffer: &[f32], threads: usize) -> f64 {
    let share = buffer.len() / threads;
    let passes = 4;
    let runs = (0..RUNS)
        .map(|_| {
            let secs = timed_on(threads, &|t| {
                let part = &buffer[t * share..(t + 1) * share];
                for _ in 0..passes {
                    black_box(sum(black_box(part)));
                }
            });
            (share * threads * 4 * passes) as f64 / secs / 1e9
        })
        .collect();
    median(runs)
}

/// FLOPs done by one call of [`fma_chains`].
fn fma_flops(iterations: u64) -> f64 {
    iterations as f64 * 12.0 * lanes() as f64 * 2.0
}

#[cfg(target_arch = "x86_64")]
fn lanes() -> usize {
    if std::is_x86_feature_detected!("avx512f") {
        16
    } else if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        8
    } else {
        1
    }
}

#[cfg(target_arch = "aarch64")]
fn lanes() -> usize {
    4
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn lanes() -> usize {
    1
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fma_chains_avx2(iterations: u64) -> f32 {
    use std::arch::x86_64::*;
    let a = _mm256_set1_ps(0.999_999);
    let b = _mm256_set1_ps(1e-7);
    let mut acc = [_mm256_set1_ps(1.0); 12];
    for _ in 0..iterations {
        for x in acc.iter_mut() {
            *x = _mm256_fmadd_ps(*x, a, b);
        }
    }
    let mut total = _mm256_setzero_ps();
    for x in acc {
        total = _mm256_add_ps(total, x);
    }
    let mut out = [0f32; 8];
    // SAFETY: `out` holds eight f32s, the width of the store
    unsafe { _mm256_storeu_ps(out.as_mut_ptr(), total) };
    out.iter().sum()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn fma_chains_avx512(iterations: u64) -> f32 {
    use std::arch::x86_64::*;
    let a = _mm512_set1_ps(0.999_999);
    let b = _mm512_set1_ps(1e-7);
    let mut acc = [_mm512_set1_ps(1.0); 12];
    for _ in 0..iterations {
        for x in acc.iter_mut() {
            *x = _mm512_fmadd_ps(*x, a, b);
        }
    }
    let mut total = _mm512_setzero_ps();
    for x in acc {
        total = _mm512_add_ps(total, x);
    }
    _mm512_reduce_add_ps(total)
}

#[cfg(target_arch = "aarch64")]
fn fma_chains_neon(iterations: u64) -> f32 {
    use std::arch::aarch64::*;
    // SAFETY: NEON is part of every aarch64 core
    unsafe {
        let a = vdupq_n_f32(0.999_999);
        let b = vdupq_n_f32(1e-7);
        let mut acc = [vdupq_n_f32(1.0); 12];
        for _ in 0..iterations {
            for x in acc.iter_mut() {
                *x = vfmaq_f32(b, *x, a);
            }
        }
        acc.iter().map(|x| vaddvq_f32(*x)).sum()
    }
}

fn fma_chains_scalar(iterations: u64) -> f32 {
    let mut acc = [1f32; 12];
    for _ in 0..iterations {
        for x in acc.iter_mut() {
            *x = x.mul_add(0.999_999, 1e-7);
        }
    }
    acc.iter().sum()
}

/// Twelve independent chains of `iterations` multiply-adds on the widest registers.
fn fma_chains(iterations: u64) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if lanes() == 16 {
        // SAFETY: the CPU has AVX-512F (checked by `lanes`)
        return unsafe { fma_chains_avx512(iterations) };
    }
    #[cfg(target_arch = "x86_64")]
    if lanes() == 8 {
        // SAFETY: the CPU has AVX2 and FMA (checked by `lanes`)
        return unsafe { fma_chains_avx2(iterations) };
    }
    #[cfg(target_arch = "aarch64")]
    return fma_chains_neon(iterations);
    #[allow(unreachable_code)]
    fma_chains_scalar(iterations)
}

/// Multiply-add throughput in GFLOP/s with `threads` threads.
fn flops(threads: usize) -> f64 {
    let iterations = 20_000_000;
    let runs = (0..RUNS)
        .map(|_| {
            let secs = timed_on(threads, &|_| {
                black_box(fma_chains(black_box(iterations)));
            });
            fma_flops(iterations) * threads as f64 / secs / 1e9
        })
        .collect();
    median(runs)
}

fn main() {
    let json = std::env::args().any(|a| a == "--json");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut counts = vec![1, 2, cores];
    counts.sort_unstable();
    counts.dedup();
    // filled with something other than zeros, so no page is shared
    let buffer: Vec<f32> = (0..BUFFER_BYTES / 4).map(|i| (i % 251) as f32).collect();
    let rows: Vec<(usize, f64, f64)> = counts
        .iter()
        .map(|&t| (t, bandwidth(&buffer, t), flops(t)))
        .collect();
    if json {
        let rows: Vec<String> = rows
            .iter()
            .map(|(t, bw, fl)| {
                format!("{{\"threads\": {t}, \"read_gb_s\": {bw:.2}, \"fma_gflop_s\": {fl:.1}}}")
            })
            .collect();
        println!(
            "{{\"cores\": {cores}, \"simd_lanes\": {}, \"limits\": [{}]}}",
            lanes(),
            rows.join(", ")
        );
        return;
    }
    println!("{cores} cores, {} f32 lanes per multiply-add", lanes());
    println!(
        "{:>8} {:>14} {:>20}",
        "threads", "read GB/s", "multiply-add GFLOP/s"
    );
    for (t, bw, fl) in rows {
        println!("{t:>8} {bw:>14.2} {fl:>20.1}");
    }
}
