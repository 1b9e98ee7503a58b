//! When to look at a bucket again. Pure and saturating: no spec value, fleet size or QPS
//! setting can overflow a `Duration` here (kube-runtime's scheduler adds the result to `now`).

use std::time::Duration;

/// The longest wait ever scheduled (well past the longest `resyncInterval`, far from overflow).
pub const MAX_REQUEUE: Duration = Duration::from_secs(7 * 24 * 3600);

/// The resync interval actually used: the configured one, stretched when the fleet is so large
/// that re-reading every bucket that often would take more than half of the OSS QPS budget (the
/// rest stays for changes and retries), and never beyond [`MAX_REQUEUE`].
pub fn resync_interval(configured: Duration, objects: usize, qps: f64) -> Duration {
    let floor_seconds = objects as f64 / (qps * 0.5);
    let floor = if floor_seconds.is_finite() && floor_seconds >= 0.0 {
        Duration::try_from_secs_f64(floor_seconds).unwrap_or(MAX_REQUEUE)
    } else {
        MAX_REQUEUE
    };
    configured.max(floor).min(MAX_REQUEUE)
}

/// `interval` spread by ±10% (`draw` in `[0, 1)`), so a fleet does not resync in lockstep.
pub fn jittered(interval: Duration, draw: f64) -> Duration {
    let draw = if draw.is_finite() {
        draw.clamp(0.0, 1.0)
    } else {
        0.5
    };
    let interval = interval.min(MAX_REQUEUE);
    Duration::try_from_secs_f64(interval.as_secs_f64() * (0.9 + 0.2 * draw)).unwrap_or(interval)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_fleets_stretch_the_resync_interval() {
        let five_minutes = Duration::from_secs(300);
        assert_eq!(resync_interval(five_minutes, 1_000, 10.0), five_minutes);
        assert_eq!(
            resync_interval(five_minutes, 10_000, 10.0),
            Duration::from_secs(2_000)
        );
        assert_eq!(
            resync_interval(Duration::from_secs(30), 10_000, 200.0),
            Duration::from_secs(100)
        );
    }

    #[test]
    fn nothing_overflows() {
        for qps in [0.0, -1.0, f64::NAN, f64::INFINITY, f64::MIN_POSITIVE, 1e-300] {
            for objects in [0, 1, usize::MAX] {
                for configured in [Duration::ZERO, Duration::from_secs(30), Duration::MAX] {
                    let interval = resync_interval(configured, objects, qps);
                    assert!(interval <= MAX_REQUEUE, "{configured:?} {objects} {qps}");
                    for draw in [0.0, 0.999, f64::NAN, -5.0, 7.0] {
                        assert!(jittered(interval, draw) <= MAX_REQUEUE.mul_f64(1.1));
                    }
                }
            }
        }
        assert_eq!(jittered(Duration::MAX, 1.0), MAX_REQUEUE.mul_f64(1.1));
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        for i in 0..100 {
            let d = jittered(Duration::from_secs(100), f64::from(i) / 100.0).as_secs_f64();
            assert!((90.0..=110.0).contains(&d), "{d}");
        }
    }
}
