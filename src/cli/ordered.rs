//! Concurrency for row streams: up to `limit` jobs running at once, results yielded in job
//! order. Unlike `buffered(limit)`, a finished job waiting for a slow one before it is not
//! counted against the limit, so one slow resource never drops the run to one at a time.

use std::collections::BTreeMap;
use std::future::Future;

use futures_util::stream::{FuturesUnordered, Stream, StreamExt};

/// Runs `jobs` with at most `limit` (at least 1) running at once and yields their outputs in
/// the order of `jobs`. Finished outputs wait in a reorder buffer (one row each), not in a slot.
pub fn in_order<F>(jobs: impl IntoIterator<Item = F>, limit: usize) -> impl Stream<Item = F::Output>
where
    F: Future,
{
    let limit = limit.max(1);
    let state = (
        jobs.into_iter().enumerate(),
        FuturesUnordered::new(),
        BTreeMap::new(),
        0usize,
    );
    futures_util::stream::unfold(
        state,
        move |(mut jobs, mut running, mut ready, next)| async move {
            loop {
                if let Some(output) = ready.remove(&next) {
                    return Some((output, (jobs, running, ready, next + 1)));
                }
                while running.len() < limit {
                    let Some((index, job)) = jobs.next() else { break };
                    running.push(async move { (index, job.await) });
                }
                let (index, output) = running.next().await?;
                ready.insert(index, output);
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn a_slow_job_does_not_hold_back_the_ones_after_it() {
        let started = AtomicUsize::new(0);
        let jobs = (0..10).map(|i| {
            let started = &started;
            async move {
                started.fetch_add(1, Ordering::SeqCst);
                if i == 0 {
                    std::future::pending::<()>().await; // the slow one: never finishes here
                }
                i
            }
        });
        let mut stream = std::pin::pin!(in_order(jobs, 2));
        assert_eq!(
            stream.next().now_or_never(),
            None,
            "job 0 comes first and is not done"
        );
        assert_eq!(
            started.load(Ordering::SeqCst),
            10,
            "every other job ran while job 0 was slow (finished rows do not hold slots)"
        );
    }

    #[test]
    fn outputs_come_in_job_order() {
        let jobs = (0..20u64).map(|i| async move {
            for _ in 0..(20 - i) % 7 {
                tokio::task::yield_now().await;
            }
            i
        });
        let out: Vec<u64> = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(in_order(jobs, 4).collect());
        assert_eq!(out, (0..20).collect::<Vec<_>>());
    }
}
