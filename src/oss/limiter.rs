//! A token bucket shared by every OSS call of a client, so a fleet stays under the account's
//! management-API QPS limit however many reconciles run at once.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Token bucket: `qps` tokens a second, at most `burst` saved up. Waiters queue in arrival order
/// (each reserves its slot before sleeping).
#[derive(Debug)]
pub struct RateLimiter {
    qps: f64,
    burst: f64,
    state: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl RateLimiter {
    /// `qps` must be positive; `burst` is at least 1.
    pub fn new(qps: f64, burst: u32) -> Self {
        assert!(
            qps > 0.0 && qps.is_finite(),
            "QPS must be a positive number, got {qps}"
        );
        let burst = f64::from(burst.max(1));
        Self {
            qps,
            burst,
            state: Mutex::new(Bucket {
                tokens: burst,
                updated: Instant::now(),
            }),
        }
    }

    pub fn qps(&self) -> f64 {
        self.qps
    }

    /// How long the caller must wait for its token (reserving it now).
    fn reserve(&self) -> Duration {
        let mut bucket = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.qps).min(self.burst);
        bucket.updated = now;
        bucket.tokens -= 1.0;
        if bucket.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-bucket.tokens / self.qps)
        }
    }

    /// Waits until a request may be sent.
    pub async fn acquire(&self) {
        let wait = self.reserve();
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test(start_paused = true)]
    async fn holds_the_rate_after_the_burst() {
        let limiter = Arc::new(RateLimiter::new(10.0, 5));
        let start = Instant::now();
        let tasks: Vec<_> = (0..55)
            .map(|_| {
                let limiter = limiter.clone();
                tokio::spawn(async move {
                    limiter.acquire().await;
                    Instant::now()
                })
            })
            .collect();
        let mut times = Vec::new();
        for task in tasks {
            times.push(task.await.unwrap() - start);
        }
        times.sort();
        // 5 immediately, then one every 100 ms: the 55th at 5.0 s.
        assert_eq!(times.iter().filter(|t| t.is_zero()).count(), 5);
        let last = times.last().unwrap().as_secs_f64();
        assert!((last - 5.0).abs() < 0.01, "last token at {last}s");
    }

    #[tokio::test(start_paused = true)]
    async fn idle_time_refills_only_up_to_the_burst() {
        let limiter = RateLimiter::new(2.0, 3);
        tokio::time::sleep(Duration::from_secs(100)).await;
        let start = Instant::now();
        for _ in 0..4 {
            limiter.acquire().await;
        }
        let elapsed = (Instant::now() - start).as_secs_f64();
        assert!((elapsed - 0.5).abs() < 0.01, "fourth token after {elapsed}s");
    }
}
