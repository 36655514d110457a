//! How many threads tract's matrix products run on. One by default: the board profiles
//! leave the other cores to capture, the console and the system. More with
//! [`set_threads`] (`glimpse --threads N`), for large models on a machine to spare.

use crate::error::{Error, Result};

/// Runs the matrix products of every graph this process runs on `n` threads: a pool of
/// `n` workers that tract splits each product's tiles over (products too small to gain
/// stay on one), or on the calling thread for `n = 1`. More than one thread needs the
/// `threads` feature (in the default features; board builds leave it out).
pub fn set_threads(n: usize) -> Result<()> {
    if n == 0 {
        return Err(Error::Usage("--threads: must be at least 1".into()));
    }
    executor::set(n)?;
    keep_attention_on_threads();
    Ok(())
}

/// tract's fused attention spreads its heads over rayon's global pool (every core)
/// whenever it has several: on one thread it must stay on the calling one. Called by
/// [`set_threads`] and before a decoder first runs.
pub(crate) fn keep_attention_on_threads() {
    tract_transformers::ops::flash_sdpa::TRACT_FLASH_SDPA_ST.set(threads() == 1);
}

/// Runs `f` on every `len`-value chunk of `out` with its index, split over the
/// [`set_threads`] pool when there is one, else in turn on the calling thread.
pub(crate) fn for_each_chunk<F>(out: &mut [f32], len: usize, f: F)
where
    F: Fn((usize, &mut [f32])) + Send + Sync,
{
    executor::for_each_chunk(out, len, f)
}

/// The threads [`set_threads`] last set (1 until then).
pub fn threads() -> usize {
    executor::current()
}

#[cfg(feature = "threads")]
mod executor {
    use std::sync::Arc;

    use tract_linalg::multithread::{Executor, set_default_executor, set_threading_mac_threshold};

    use crate::error::{Error, Result};

    pub(super) fn set(n: usize) -> Result<()> {
        let executor = if n == 1 {
            Executor::SingleThread
        } else {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .thread_name(|i| format!("glimpse-mm-{i}"))
                .build()
                .map_err(|e| {
                    Error::Usage(format!("--threads {n}: cannot start the threads: {e}"))
                })?;
            Executor::MultiThread(Arc::new(pool))
        };
        set_default_executor(executor);
        // A one-token product is split over the threads from 2^18 multiply-adds on, not
        // tract's 2^21: the 512 x 2048 layers of a 0.1 B model decode 13-30 % faster on
        // two threads, and 1 B models (all above both) are unchanged (README, "At full
        // size").
        set_threading_mac_threshold(1 << 18);
        Ok(())
    }

    pub(super) fn current() -> usize {
        match tract_linalg::multithread::current_tract_executor() {
            Executor::MultiThread(pool) => pool.current_num_threads(),
            _ => 1,
        }
    }

    pub(super) fn for_each_chunk<F>(out: &mut [f32], len: usize, f: F)
    where
        F: Fn((usize, &mut [f32])) + Send + Sync,
    {
        match tract_linalg::multithread::current_tract_executor() {
            Executor::MultiThread(pool) => {
                use rayon::prelude::*;
                pool.install(|| out.par_chunks_mut(len).enumerate().for_each(f))
            }
            _ => out.chunks_mut(len).enumerate().for_each(f),
        }
    }
}

#[cfg(not(feature = "threads"))]
mod executor {
    use crate::error::{Error, Result};

    pub(super) fn set(n: usize) -> Result<()> {
        if n == 1 {
            return Ok(());
        }
        Err(Error::Usage(format!(
            "--threads {n}: this build runs on one thread (built without the `threads` feature)"
        )))
    }

    pub(super) fn current() -> usize {
        1
    }

    pub(super) fn for_each_chunk<F>(out: &mut [f32], len: usize, f: F)
    where
        F: Fn((usize, &mut [f32])) + Send + Sync,
    {
        out.chunks_mut(len).enumerate().for_each(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_threads_is_refused_by_name() {
        let e = set_threads(0).unwrap_err().to_string();
        assert!(e.contains("--threads"), "{e}");
    }

    #[cfg(feature = "threads")]
    #[test]
    fn products_on_two_threads_give_the_same_numbers() {
        use tract_onnx::prelude::*;
        // a product large enough for tract to split over threads
        let (m, k, n) = (512usize, 256usize, 192usize);
        let a: Vec<f32> = (0..m * k)
            .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
            .collect();
        let b: Vec<f32> = (0..k * n)
            .map(|i| ((i * 104_729) % 997) as f32 / 997.0 - 0.5)
            .collect();
        let run = || -> Vec<f32> {
            let mut model = TypedModel::default();
            let x = model.add_source("x", f32::fact([m, k])).unwrap();
            let w = model
                .add_const("w", tensor1(&b).into_shape(&[k, n]).unwrap())
                .unwrap();
            let y = model
                .wire_node(
                    "mm",
                    tract_core::ops::einsum::EinSum::new(
                        "mk,kn->mn".parse().unwrap(),
                        f32::datum_type(),
                    ),
                    &[x, w],
                )
                .unwrap();
            model.select_output_outlets(&y).unwrap();
            let plan = model.into_optimized().unwrap().into_runnable().unwrap();
            let input = tensor1(&a).into_shape(&[m, k]).unwrap();
            let out = plan.run(tvec!(input.into_tvalue())).unwrap();
            out[0]
                .to_plain_array_view::<f32>()
                .unwrap()
                .iter()
                .copied()
                .collect()
        };
        set_threads(1).unwrap();
        let one = run();
        set_threads(2).unwrap();
        assert_eq!(threads(), 2);
        let two = run();
        set_threads(1).unwrap();
        assert_eq!(one.len(), m * n);
        assert_eq!(one, two);
    }
}
