//! The OSS request rate, shared by every call of a client (and its clones), so a fleet stays
//! within the account's management-API limit however many reconciles or CLI tasks run at once.
//!
//! OSS throttles management APIs per account (503 `MetaOperationQpsLimitExceeded`) and does not
//! publish the limit, so the rate is found, not guessed: in adaptive mode (the default) there is
//! no client-side delay until OSS first throttles; from then on a token bucket whose rate is cut
//! multiplicatively on each throttle and grows back along a cubic curve while calls succeed (the
//! AWS SDKs' adaptive retry mode, [`AdaptiveRate`]). `qps` is a hard ceiling in both modes; in
//! fixed mode it is the operating point.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// How the rate is set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum RateMode {
    /// Find the account's limit from OSS's throttling answers, under the ceiling.
    #[default]
    Adaptive,
    /// Hold the ceiling as a fixed rate.
    Fixed,
}

/// Multiplicative cut on a throttle. The AWS algorithm uses 0.7; the rate averages about
/// `1 - (1 - BETA) / 4` of the limit over a cut-and-regrow cycle, so 0.8 gives 95% instead of
/// 92.5% (simulated at 200/s with 8 callers: 1.06x the floor instead of 1.09x, the same throttles;
/// 0.85 throttles more).
const BETA: f64 = 0.8;
/// Cubic growth scale.
const SCALE: f64 = 0.4;
/// The rate never drops below this (requests per second). The AWS algorithm uses 0.5; an
/// operator under throttles that do not depend on its rate (OSS busy, not the account's limit)
/// would then cut every second down to one request every two seconds and stall its fleet, while
/// every management-API limit OSS grants is far above this.
const MIN_FILL_RATE: f64 = 5.0;
/// Smoothing of the measured sending rate.
const SMOOTH: f64 = 0.8;
/// The longest nap before asking the adaptive bucket again.
const MAX_NAP: f64 = 0.05;
/// Throttles within this many seconds of a cut do not cut again: they answer requests sent at
/// the old rate. (A deviation from the AWS algorithm, which cuts on every one and so collapses
/// to the floor after a single burst of concurrent requests is throttled.)
const COOLDOWN: f64 = 1.0;
/// Once throttled, at most this many seconds' worth of requests go out at once after a pause.
/// (The AWS algorithm saves up a whole second's worth; sent as one burst, a second's worth
/// echoes every second against a per-second limit, and its tail is what gets throttled when
/// the rate probes above the limit.)
const BURST_SECONDS: f64 = 0.1;
/// The window OSS counts requests in (QPS: per second).
const WINDOW: f64 = 1.0;
/// The most times a window keeps (memory bound; far above any account's management-API limit).
const WINDOW_KEPT: usize = 20_000;

/// The adaptive rate's arithmetic, pure: every method takes the time in seconds since an
/// arbitrary origin. Mirrors the CUBIC client rate limiter of the AWS SDKs' adaptive retry mode.
#[derive(Clone, Debug, PartialEq)]
pub struct AdaptiveRate {
    /// The token bucket is used only after the first throttle.
    enabled: bool,
    fill_rate: f64,
    max_capacity: f64,
    capacity: f64,
    last_refill: f64,
    measured_rate: f64,
    last_rate_bucket: f64,
    requests_in_bucket: f64,
    last_max_rate: f64,
    last_throttle: f64,
    time_window: f64,
    /// When requests were let through in the trailing second. OSS counts requests per second,
    /// so once throttled no more than the rate go out in any one-second window, and the sends
    /// that led to the first throttle count against the window after it.
    sent: VecDeque<f64>,
    /// When successful answers came in the trailing second: what the account accepted, the
    /// best estimate of its limit when it throttles.
    accepted: VecDeque<f64>,
}

impl AdaptiveRate {
    pub fn new(now: f64) -> Self {
        Self {
            enabled: false,
            fill_rate: MIN_FILL_RATE,
            max_capacity: 1.0,
            capacity: 1.0,
            last_refill: now,
            measured_rate: 0.0,
            last_rate_bucket: (now * 2.0).floor() / 2.0,
            requests_in_bucket: 0.0,
            last_max_rate: 0.0,
            last_throttle: now,
            time_window: 0.0,
            sent: VecDeque::new(),
            accepted: VecDeque::new(),
        }
    }

    /// The rate the bucket holds, once a throttle has switched it on.
    pub fn rate(&self) -> Option<f64> {
        self.enabled.then_some(self.fill_rate)
    }

    /// The sending rate measured over recent half-second buckets (smoothed).
    pub fn measured_rate(&self) -> f64 {
        self.measured_rate
    }

    fn refill(&mut self, now: f64) {
        let elapsed = (now - self.last_refill).max(0.0);
        self.capacity = (self.capacity + elapsed * self.fill_rate).min(self.max_capacity);
        self.last_refill = now.max(self.last_refill);
    }

    /// Takes one token at `now` if there is one (always, until the first throttle); otherwise
    /// says how many seconds until there will be one at the current rate. Nothing is reserved:
    /// a caller told to wait asks again, so a rate that grows meanwhile is used at once.
    pub fn try_acquire(&mut self, now: f64) -> Result<(), f64> {
        forget_before(&mut self.sent, now - WINDOW);
        if !self.enabled {
            remember(&mut self.sent, now);
            return Ok(());
        }
        self.refill(now);
        // The one-second window: at most the rate's worth of sends in any second.
        let allowed = (self.fill_rate.floor() as usize).max(1);
        let window_wait = if self.sent.len() >= allowed {
            self.sent[self.sent.len() - allowed] + WINDOW - now
        } else {
            0.0
        };
        // A hair of tolerance: float rounding must not leave a caller waiting for 1e-16 s forever.
        if self.capacity >= 1.0 - 1e-9 && window_wait <= 0.0 {
            self.capacity -= 1.0;
            remember(&mut self.sent, now);
            Ok(())
        } else {
            let bucket_wait = (1.0 - self.capacity).max(0.0) / self.fill_rate;
            Err(bucket_wait.max(window_wait).max(1e-6))
        }
    }

    /// Records the answer to one request at `now`: a throttle cuts the rate, a success lets it
    /// grow (never above twice the measured sending rate, nor above `ceiling`).
    pub fn record(&mut self, throttled: bool, now: f64, ceiling: f64) {
        self.measure(now);
        forget_before(&mut self.accepted, now - WINDOW);
        if !throttled {
            remember(&mut self.accepted, now);
        }
        let rate = if throttled {
            if self.enabled && now - self.last_throttle < COOLDOWN {
                // Answers to requests sent before the last cut: that cut already covers them.
                // (Cutting on each would collapse the rate after one burst.)
                return;
            }
            // The account's limit is about what it accepted in the last second: OSS counts
            // requests per second. Without any success in that second (OSS refuses everything,
            // not our rate) fall back to the sending rate: before the first half-second bucket
            // closes, the rate of the bucket so far.
            let measured = if self.measured_rate > 0.0 {
                self.measured_rate
            } else {
                self.requests_in_bucket / (now - self.last_rate_bucket).max(0.1)
            };
            let sent = if self.enabled {
                measured.min(self.fill_rate)
            } else {
                measured
            };
            let accepted = self.accepted.len() as f64 / WINDOW;
            let base = if accepted > 0.0 { accepted.min(sent) } else { sent };
            self.last_max_rate = base;
            self.update_time_window();
            self.last_throttle = now;
            self.enabled = true;
            base * BETA
        } else {
            if !self.enabled {
                return;
            }
            self.update_time_window();
            let grown = SCALE * (now - self.last_throttle - self.time_window).powi(3) + self.last_max_rate;
            grown.min(2.0 * self.measured_rate)
        };
        self.set_rate(rate.min(ceiling), now);
    }

    fn update_time_window(&mut self) {
        self.time_window = (self.last_max_rate * (1.0 - BETA) / SCALE).cbrt();
    }

    fn set_rate(&mut self, rate: f64, now: f64) {
        self.refill(now);
        let rate = if rate.is_finite() { rate } else { MIN_FILL_RATE };
        self.fill_rate = rate.max(MIN_FILL_RATE);
        self.max_capacity = (rate * BURST_SECONDS).max(1.0);
        self.capacity = self.capacity.min(self.max_capacity);
    }

    fn measure(&mut self, now: f64) {
        let bucket = (now * 2.0).floor() / 2.0;
        self.requests_in_bucket += 1.0;
        if bucket > self.last_rate_bucket {
            let current = self.requests_in_bucket / (bucket - self.last_rate_bucket);
            self.measured_rate = current * SMOOTH + self.measured_rate * (1.0 - SMOOTH);
            self.requests_in_bucket = 0.0;
            self.last_rate_bucket = bucket;
        }
    }
}

/// Drops the times before `cutoff` from the front of a window.
fn forget_before(window: &mut VecDeque<f64>, cutoff: f64) {
    while window.front().is_some_and(|t| *t <= cutoff) {
        window.pop_front();
    }
}

/// Adds a time to a window, bounded (a second's worth at any rate a client reaches).
fn remember(window: &mut VecDeque<f64>, now: f64) {
    if window.len() == WINDOW_KEPT {
        window.pop_front();
    }
    window.push_back(now);
}

/// The fixed ceiling: `qps` tokens a second, at most `burst` saved up.
#[derive(Debug)]
struct Ceiling {
    tokens: f64,
    updated: f64,
}

/// The shared limiter of one OSS client: the ceiling always, the adaptive rate in adaptive mode.
#[derive(Debug)]
pub struct RateLimiter {
    qps: f64,
    burst: f64,
    mode: RateMode,
    origin: Instant,
    state: Mutex<(Ceiling, AdaptiveRate)>,
    throttles: AtomicU64,
}

impl RateLimiter {
    /// `qps` (the ceiling) must be positive; `burst` is at least 1.
    pub fn new(qps: f64, burst: u32, mode: RateMode) -> Self {
        assert!(
            qps > 0.0 && qps.is_finite(),
            "QPS must be a positive number, got {qps}"
        );
        let burst = f64::from(burst.max(1));
        Self {
            qps,
            burst,
            mode,
            origin: Instant::now(),
            state: Mutex::new((
                Ceiling {
                    tokens: burst,
                    updated: 0.0,
                },
                AdaptiveRate::new(0.0),
            )),
            throttles: AtomicU64::new(0),
        }
    }

    /// The ceiling (`--oss-qps`).
    pub fn qps(&self) -> f64 {
        self.qps
    }

    /// The rate requests may go out at now: the adaptive rate once OSS has throttled, else the
    /// ceiling.
    pub fn current_rate(&self) -> f64 {
        let state = self.lock();
        match (self.mode, state.1.rate()) {
            (RateMode::Adaptive, Some(rate)) => rate.min(self.qps),
            _ => self.qps,
        }
    }

    /// Throttling answers seen so far.
    pub fn throttles(&self) -> u64 {
        self.throttles.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (Ceiling, AdaptiveRate)> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn now(&self) -> f64 {
        Instant::now()
            .saturating_duration_since(self.origin)
            .as_secs_f64()
    }

    /// How long the caller must wait for its ceiling token (reserving it now: the ceiling does
    /// not move, so queueing on it is exact and fair).
    fn reserve_ceiling(&self) -> Duration {
        let now = self.now();
        let mut state = self.lock();
        let ceiling = &mut state.0;
        let elapsed = (now - ceiling.updated).max(0.0);
        ceiling.tokens = (ceiling.tokens + elapsed * self.qps).min(self.burst);
        ceiling.updated = now;
        ceiling.tokens -= 1.0;
        let wait = if ceiling.tokens >= 0.0 {
            0.0
        } else {
            -ceiling.tokens / self.qps
        };
        Duration::try_from_secs_f64(wait).unwrap_or(Duration::from_secs(60))
    }

    /// Waits until a request may be sent: an adaptive token (asked for again after short naps,
    /// so a growing rate is used as soon as it grows), then a ceiling token.
    pub async fn acquire(&self) {
        if self.mode == RateMode::Adaptive {
            loop {
                let now = self.now();
                let verdict = self.lock().1.try_acquire(now);
                match verdict {
                    Ok(()) => break,
                    Err(wait) => {
                        let nap = Duration::try_from_secs_f64(wait.clamp(0.001, MAX_NAP))
                            .unwrap_or(Duration::from_millis(50));
                        tokio::time::sleep(nap).await;
                    }
                }
            }
        }
        let wait = self.reserve_ceiling();
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// Tells the limiter how OSS answered a request (throttled or not).
    pub fn record(&self, throttled: bool) {
        if throttled {
            self.throttles.fetch_add(1, Ordering::Relaxed);
        }
        if self.mode == RateMode::Adaptive {
            let now = self.now();
            self.lock().1.record(throttled, now, self.qps);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Sends `rate` requests a second from `from` to `to`, all answered as `throttled` says.
    /// Sends at `rate` a second from `from` to `to` (or slower, when the bucket says wait), all
    /// answered as `throttled` says; returns the seconds spent waiting.
    fn send(state: &mut AdaptiveRate, rate: f64, from: f64, to: f64, throttled: impl Fn(f64) -> bool) -> f64 {
        let mut t = from;
        let mut waited = 0.0;
        while t < to {
            if let Err(wait) = state.try_acquire(t) {
                waited += wait;
                t += wait;
                continue;
            }
            state.record(throttled(t), t, 1_000.0);
            t += 1.0 / rate;
        }
        waited
    }

    /// How an account limits requests in the simulation.
    #[derive(Clone, Copy, Debug)]
    enum Account {
        Unlimited,
        /// At most this many accepted requests in any one-second window (the emulator's cap).
        SlidingWindow(usize),
        /// A token bucket of this rate whose burst is one second's worth.
        TokenBucket(f64),
    }

    /// What a simulated job came to: simulated seconds and answers by kind.
    #[derive(Debug)]
    struct Simulated {
        seconds: f64,
        requests: u64,
        throttled: u64,
    }

    /// A deterministic, discrete-event run of `jobs` requests by `workers` concurrent callers
    /// through one `AdaptiveRate` (plus the client's throttle retries: full jitter from a 1 s
    /// base, doubling) against `account`, with `latency` seconds per request. Simulated time,
    /// not wall-clock: the numbers are the algorithm's, whatever the machine.
    fn simulate(account: Account, workers: usize, latency: f64, jobs: usize) -> Simulated {
        use std::cmp::Reverse;
        use std::collections::{BinaryHeap, VecDeque};
        /// A simulated time, ordered (times are never NaN).
        #[derive(PartialEq)]
        struct At(f64);
        impl Eq for At {}
        impl PartialOrd for At {
            fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(other))
            }
        }
        impl Ord for At {
            fn cmp(&self, other: &Self) -> std::cmp::Ordering {
                self.0.total_cmp(&other.0)
            }
        }
        /// (time, sequence, worker, Some(throttled) for an answer / None for a try to send)
        type Due = Reverse<(At, u64, usize, Option<bool>)>;
        let mut events: BinaryHeap<Due> = BinaryHeap::new();
        let mut rng = fastrand::Rng::with_seed(7);
        let mut state = AdaptiveRate::new(0.0);
        let mut accepted: VecDeque<f64> = VecDeque::new();
        let (mut tokens, mut refilled) = (0.0_f64, 0.0_f64);
        let mut attempts = vec![0u32; workers];
        let (mut started, mut done, mut seq) = (0usize, 0usize, 0u64);
        let mut result = Simulated {
            seconds: 0.0,
            requests: 0,
            throttled: 0,
        };
        for worker in 0..workers.min(jobs) {
            started += 1;
            events.push(Reverse((At(0.0), worker as u64, worker, None)));
        }
        while let Some(Reverse((At(t), _, worker, answer))) = events.pop() {
            seq += 1;
            match answer {
                None => match state.try_acquire(t) {
                    Err(wait) => {
                        events.push(Reverse((At(t + wait.clamp(0.001, MAX_NAP)), seq, worker, None)))
                    }
                    Ok(()) => {
                        result.requests += 1;
                        let throttled = match account {
                            Account::Unlimited => false,
                            Account::SlidingWindow(cap) => {
                                while accepted.front().is_some_and(|a| t - a >= 1.0) {
                                    accepted.pop_front();
                                }
                                let full = accepted.len() >= cap;
                                if !full {
                                    accepted.push_back(t);
                                }
                                full
                            }
                            Account::TokenBucket(rate) => {
                                tokens = (tokens + (t - refilled) * rate).min(rate);
                                if refilled == 0.0 && t == 0.0 {
                                    tokens = rate;
                                }
                                refilled = t;
                                let full = tokens < 1.0;
                                if !full {
                                    tokens -= 1.0;
                                }
                                full
                            }
                        };
                        events.push(Reverse((At(t + latency), seq, worker, Some(throttled))));
                    }
                },
                Some(throttled) => {
                    state.record(throttled, t, 1_000.0);
                    if throttled && attempts[worker] < 5 {
                        result.throttled += 1;
                        attempts[worker] += 1;
                        let backoff = rng.f64() * 2f64.powi(attempts[worker] as i32 - 1);
                        events.push(Reverse((At(t + backoff), seq, worker, None)));
                        continue;
                    }
                    result.throttled += u64::from(throttled);
                    done += 1;
                    attempts[worker] = 0;
                    result.seconds = result.seconds.max(t);
                    if started < jobs {
                        started += 1;
                        events.push(Reverse((At(t), seq, worker, None)));
                    }
                }
            }
        }
        assert_eq!(done, jobs);
        result
    }

    #[test]
    fn on_a_capped_account_it_settles_near_the_cap_with_few_throttles() {
        // The CLI's defaults (16 at once), 20 ms requests, 2,000 requests (1,000 manifests); and
        // the controller's (8 at once) over the fleet benchmark's 10,000 objects at 200/s.
        for (account, workers, jobs) in [
            (Account::SlidingWindow(100), 16, 2_000),
            (Account::TokenBucket(100.0), 16, 2_000),
            (Account::SlidingWindow(400), 16, 2_000),
            (Account::SlidingWindow(200), 8, 20_000),
        ] {
            let cap = match account {
                Account::SlidingWindow(cap) => cap as f64,
                Account::TokenBucket(rate) => rate,
                Account::Unlimited => unreachable!(),
            };
            let run = simulate(account, workers, 0.02, jobs);
            let accepted = run.requests - run.throttled;
            let floor = accepted as f64 / cap;
            let share = run.throttled as f64 / run.requests as f64;
            println!(
                "{account:?}: {:.2} s, floor {floor:.2} s, ratio {:.2}, throttled {} of {} ({:.1}%)",
                run.seconds,
                run.seconds / floor,
                run.throttled,
                run.requests,
                100.0 * share
            );
            assert!(
                run.seconds / floor <= 1.2,
                "{account:?}: {run:?} (floor {floor:.2} s)"
            );
            // Most throttles are the requests already in flight when the first one is answered
            // (the limiter sends freely until then); a bucket that absorbs a second's burst
            // first lets more go out before that answer.
            let most = match account {
                Account::TokenBucket(_) => 0.015,
                _ => 0.01,
            };
            assert!(share <= most, "{account:?}: {run:?}");
        }
    }

    #[test]
    fn without_a_cap_it_never_slows_down() {
        let run = simulate(Account::Unlimited, 16, 0.02, 2_000);
        let floor = 2_000.0 * 0.02 / 16.0;
        assert_eq!(run.throttled, 0);
        assert!((run.seconds - floor).abs() < 1e-6, "{run:?} vs {floor}");
    }

    #[test]
    fn no_delay_before_the_first_throttle() {
        let mut state = AdaptiveRate::new(0.0);
        assert_eq!(send(&mut state, 400.0, 0.0, 5.0, |_| false), 0.0);
        assert_eq!(state.rate(), None, "the bucket is off until OSS throttles");
        assert!(
            (state.measured_rate() - 400.0).abs() < 20.0,
            "{}",
            state.measured_rate()
        );
    }

    #[test]
    fn a_throttle_cuts_the_rate_to_eighty_percent_of_what_was_sent() {
        let mut state = AdaptiveRate::new(0.0);
        send(&mut state, 100.0, 0.0, 3.0, |_| false);
        state.record(true, 3.0, 1_000.0);
        // The throttled request itself is counted in the measured rate (about 100/s here).
        let measured = state.measured_rate();
        assert!((measured - 100.0).abs() < 10.0, "{measured}");
        let rate = state.rate().expect("on after a throttle");
        assert!((rate - measured * 0.8).abs() < 1e-9, "{rate} vs {measured}");
        // Throttles right after the cut answer requests sent before it: no second cut.
        state.record(true, 3.01, 1_000.0);
        assert_eq!(state.rate().unwrap(), rate);
        // A throttle after the cooldown cuts again, from the lower of measured and current rates.
        state.record(true, 4.5, 1_000.0);
        assert!(state.rate().unwrap() < rate);
    }

    #[test]
    fn the_rate_grows_back_along_the_cubic_and_reaches_the_old_maximum_after_the_window() {
        let mut state = AdaptiveRate::new(0.0);
        send(&mut state, 100.0, 0.0, 3.0, |_| false);
        state.record(true, 3.0, 1_000.0);
        let max = state.last_max_rate;
        let window = (max * (1.0 - BETA) / SCALE).cbrt();
        // Successes keep the measured rate high enough for growth (twice the measured rate caps it).
        send(&mut state, 200.0, 3.0, 3.0 + window, |_| false);
        let at_window = state.rate().unwrap();
        assert!((at_window - max).abs() / max < 0.05, "{at_window} vs {max}");
        send(&mut state, 200.0, 3.0 + window, 3.0 + window + 3.0, |_| false);
        assert!(state.rate().unwrap() > max, "keeps probing above the old maximum");
    }

    #[test]
    fn the_ceiling_caps_the_rate_and_the_bucket_spaces_requests() {
        let mut state = AdaptiveRate::new(0.0);
        send(&mut state, 500.0, 0.0, 2.0, |_| false);
        state.record(true, 2.0, 50.0);
        assert_eq!(
            state.rate(),
            Some(50.0),
            "cut to 400, capped by the ceiling of 50"
        );
        // Requests as fast as allowed after the cut. The ~1,000 sent in the second before it
        // count against the one-second window, so nothing goes out until they have aged out;
        // after that, requests are spread at 50/s.
        let count = |state: &mut AdaptiveRate, from: f64, to: f64| {
            let (mut t, mut sent) = (from, 0);
            while t < to {
                match state.try_acquire(t) {
                    Ok(()) => sent += 1,
                    Err(wait) => t += wait,
                }
            }
            sent
        };
        let during = count(&mut state, 2.0, 2.9);
        assert_eq!(during, 0, "the window still holds the second before the throttle");
        let after = count(&mut state, 3.0, 5.0);
        assert!((99..=102).contains(&after), "{after} sent in 2 s at 50/s");
    }

    #[test]
    fn the_rate_never_falls_below_the_floor() {
        let mut state = AdaptiveRate::new(0.0);
        for i in 0..100 {
            state.record(true, f64::from(i) * 1.5, 1_000.0);
        }
        assert_eq!(state.rate(), Some(MIN_FILL_RATE));
    }

    #[tokio::test(start_paused = true)]
    async fn holds_the_ceiling_after_the_burst() {
        let limiter = Arc::new(RateLimiter::new(10.0, 5, RateMode::Fixed));
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
        let limiter = RateLimiter::new(2.0, 3, RateMode::Fixed);
        tokio::time::sleep(Duration::from_secs(100)).await;
        let start = Instant::now();
        for _ in 0..4 {
            limiter.acquire().await;
        }
        let elapsed = (Instant::now() - start).as_secs_f64();
        assert!((elapsed - 0.5).abs() < 0.01, "fourth token after {elapsed}s");
    }

    #[tokio::test(start_paused = true)]
    async fn the_shared_limiter_slows_down_after_throttles_and_counts_them() {
        let limiter = RateLimiter::new(1_000.0, 1_000, RateMode::Adaptive);
        for _ in 0..400 {
            limiter.acquire().await;
            limiter.record(false);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(limiter.current_rate(), 1_000.0, "no throttle yet: the ceiling");
        limiter.record(true);
        assert_eq!(limiter.throttles(), 1);
        let rate = limiter.current_rate();
        assert!(rate < 200.0 && rate > 100.0, "cut from ~200/s: {rate}");
    }
}
