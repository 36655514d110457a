//! Work spread over a few threads, each result taken in on the calling thread as it
//! arrives (so the caller alone changes the model, and frees what each result replaces).

use std::sync::{Mutex, mpsc};

use tract_onnx::prelude::*;

/// Runs `work` on every job, on up to 4 threads, and hands each result to `take` on this
/// thread in the order they finish. The first error (from either) ends the run.
pub(crate) fn on_a_few_threads<J: Send, R: Send>(
    jobs: Vec<J>,
    work: impl Fn(J) -> TractResult<R> + Sync,
    mut take: impl FnMut(R) -> TractResult<()>,
) -> TractResult<()> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 4)
        .min(jobs.len());
    let queue = Mutex::new(jobs.into_iter());
    let (send, receive) = mpsc::channel::<TractResult<R>>();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            let (send, queue, work) = (send.clone(), &queue, &work);
            scope.spawn(move || {
                while let Some(job) = queue.lock().ok().and_then(|mut q| q.next()) {
                    let result = work(job);
                    let failed = result.is_err();
                    if send.send(result).is_err() || failed {
                        return;
                    }
                }
            });
        }
        drop(send);
        // leaving early drops the receiver: the threads stop after their current job
        receive.into_iter().try_for_each(|result| take(result?))
    })
}
