//! Reading request bodies so that slow or greedy clients cannot hold the emulator's memory:
//! a deadline for the whole body, a cap per request, and a budget shared by all bodies being
//! read. Each chunk is copied out of the connection's read buffer, so a body trickled one byte
//! at a time holds its bytes, not one connection buffer per byte.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::{Body, Bytes};
use futures_util::StreamExt as _;
use tokio::sync::Semaphore;

/// The first bytes of every body that do not draw on the shared budget, so small requests
/// (an encryption rule is ~300 bytes) are read even while large ones have used it up. A
/// connection's own read buffer costs more than this already.
pub const FREE_BYTES: usize = 4 * 1024;

/// Why a body was not read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyError {
    /// More than the per-request cap.
    TooLarge,
    /// Not complete within the deadline.
    TimedOut,
    /// The bodies being read hold the whole shared budget.
    OverBudget,
    /// The connection failed mid-body.
    Broken,
}

/// Limits for request bodies, shared by every connection of one emulator.
#[derive(Debug)]
pub struct BodyReader {
    max_body: usize,
    deadline: Duration,
    budget_bytes: usize,
    budget: Semaphore,
    reading: AtomicUsize,
}

impl BodyReader {
    /// `max_body` per request, `deadline` for a whole body, `budget` bytes for all bodies
    /// being read at once (beyond [`FREE_BYTES`] each).
    pub fn new(max_body: usize, deadline: Duration, budget: usize) -> Arc<Self> {
        let budget = budget.min(Semaphore::MAX_PERMITS);
        Arc::new(Self {
            max_body,
            deadline,
            budget_bytes: budget,
            budget: Semaphore::new(budget),
            reading: AtomicUsize::new(0),
        })
    }

    /// How many bodies are being read right now.
    pub fn reading(&self) -> usize {
        self.reading.load(Ordering::SeqCst)
    }

    /// Bytes of the shared budget in use right now.
    pub fn budget_in_use(&self) -> usize {
        self.budget_bytes - self.budget.available_permits()
    }

    /// Reads a whole body within the limits. The budget is returned when this returns: the
    /// caller then holds one contiguous copy, at most `max_body` bytes.
    pub async fn read(&self, body: Body) -> Result<Bytes, BodyError> {
        self.reading.fetch_add(1, Ordering::SeqCst);
        let _reading = Reading(&self.reading);
        let mut held = Vec::new();
        let mut permits = None::<tokio::sync::SemaphorePermit<'_>>;
        let mut body = body.into_data_stream();
        let read = async {
            while let Some(data) = body.next().await {
                let data = data.map_err(|_| BodyError::Broken)?;
                let total = held.len() + data.len();
                if total > self.max_body {
                    return Err(BodyError::TooLarge);
                }
                let charged = total.saturating_sub(FREE_BYTES);
                let already = permits.as_ref().map_or(0, |p| p.num_permits());
                if charged > already {
                    let more = u32::try_from(charged - already).map_err(|_| BodyError::TooLarge)?;
                    let extra = self
                        .budget
                        .try_acquire_many(more)
                        .map_err(|_| BodyError::OverBudget)?;
                    match permits.as_mut() {
                        Some(p) => p.merge(extra),
                        None => permits = Some(extra),
                    }
                }
                if held.capacity() < total {
                    // Grow to what is needed, never past the cap (no doubling beyond it).
                    held.reserve_exact((total * 2).min(self.max_body) - held.len());
                }
                held.extend_from_slice(&data);
            }
            Ok(())
        };
        let outcome = tokio::time::timeout(self.deadline, read).await;
        match outcome {
            Ok(Ok(())) => Ok(Bytes::from(held)),
            Ok(Err(error)) => Err(error),
            Err(_) => Err(BodyError::TimedOut),
        }
    }
}

struct Reading<'a>(&'a AtomicUsize);

impl Drop for Reading<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(parts: Vec<&'static [u8]>) -> Body {
        let stream = futures_util::stream::iter(
            parts
                .into_iter()
                .map(|p| Ok::<_, std::io::Error>(Bytes::from_static(p))),
        );
        Body::from_stream(stream)
    }

    #[tokio::test]
    async fn a_body_within_the_limits_is_read_whole_and_the_budget_returned() {
        let reader = BodyReader::new(64, Duration::from_secs(5), 8);
        let got = reader.read(chunks(vec![b"abc", b"def"])).await.unwrap();
        assert_eq!(&got[..], b"abcdef");
        assert_eq!((reader.reading(), reader.budget_in_use()), (0, 0));
    }

    #[tokio::test]
    async fn over_the_cap_is_too_large() {
        let reader = BodyReader::new(4, Duration::from_secs(5), 8);
        let got = reader.read(chunks(vec![b"abc", b"def"])).await;
        assert_eq!(got, Err(BodyError::TooLarge));
    }

    #[tokio::test]
    async fn beyond_the_free_bytes_a_body_needs_the_budget() {
        static BIG: [u8; FREE_BYTES + 10] = [b'x'; FREE_BYTES + 10];
        let reader = BodyReader::new(1 << 20, Duration::from_secs(5), 9);
        assert_eq!(reader.read(chunks(vec![&BIG])).await, Err(BodyError::OverBudget));
        let reader = BodyReader::new(1 << 20, Duration::from_secs(5), 10);
        assert_eq!(reader.read(chunks(vec![&BIG])).await.unwrap().len(), BIG.len());
        assert_eq!(reader.budget_in_use(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_never_ends_times_out() {
        let reader = BodyReader::new(64, Duration::from_secs(5), 8);
        let stream = futures_util::stream::once(async { Ok::<_, std::io::Error>(Bytes::from_static(b"a")) })
            .chain(futures_util::stream::pending());
        let got = reader.read(Body::from_stream(stream)).await;
        assert_eq!(got, Err(BodyError::TimedOut));
        assert_eq!(reader.reading(), 0);
    }
}
