//! Clock-skew correction: the offset between a server's clock and ours, learnt from the `Date`
//! of a clock-skew answer (as the Go SDK's `FeatureCorrectClockSkew` does), kept per endpoint
//! so one endpoint's clock never shifts the signatures sent to another, and bounded: an offset
//! beyond [`MAX_CLOCK_OFFSET`] is not followed but reported ([`ClockSkew`]).

use std::collections::HashMap;
use std::sync::Mutex;

use jiff::{SignedDuration, Timestamp};

/// The largest offset followed. Services refuse requests more than 15 minutes off; a server
/// that claims to be hours away is more likely wrong (or not the service) than our clock.
pub const MAX_CLOCK_OFFSET: SignedDuration = SignedDuration::from_hours(1);

/// At most this many endpoints are remembered (beyond it, the table starts again).
const MAX_ENDPOINTS: usize = 1024;

/// A server whose clock is further from ours than the bound.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "the clock of {endpoint} is {offset:#} away from the local clock (server minus local), more than the {bound:#} followed; check NTP here and the endpoint"
)]
pub struct ClockSkew {
    /// The endpoint's authority (`host[:port]`).
    pub endpoint: String,
    /// Server time minus local time, to the nearest minute (a `Date` has whole seconds).
    pub offset: SignedDuration,
    /// The largest offset followed.
    pub bound: SignedDuration,
}

/// The offset to follow for a server `Date`, or why not (pure).
pub fn judge(
    endpoint: &str,
    server: Timestamp,
    local: Timestamp,
    bound: SignedDuration,
) -> Result<SignedDuration, ClockSkew> {
    let offset = server.duration_since(local);
    if offset.unsigned_abs() > bound.unsigned_abs() {
        return Err(ClockSkew {
            endpoint: endpoint.to_owned(),
            offset: SignedDuration::from_mins((offset.as_secs_f64() / 60.0).round() as i64),
            bound,
        });
    }
    Ok(offset)
}

/// Offsets by endpoint authority; shared by a client's clones.
#[derive(Debug)]
pub struct ClockOffsets {
    bound: SignedDuration,
    offsets: Mutex<HashMap<String, SignedDuration>>,
}

impl Default for ClockOffsets {
    fn default() -> Self {
        Self::new(MAX_CLOCK_OFFSET)
    }
}

impl ClockOffsets {
    pub fn new(bound: SignedDuration) -> Self {
        Self {
            bound,
            offsets: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, SignedDuration>> {
        self.offsets.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The offset learnt for an endpoint (zero when none).
    pub fn offset(&self, endpoint: &str) -> SignedDuration {
        self.lock().get(endpoint).copied().unwrap_or_default()
    }

    /// Now, on the endpoint's clock as far as it is known.
    pub fn now_for(&self, endpoint: &str) -> Timestamp {
        let now = Timestamp::now();
        now.checked_add(self.offset(endpoint)).unwrap_or(now)
    }

    /// Learns an endpoint's offset from its `Date`; beyond the bound the offset is left as it
    /// was and the skew returned.
    pub fn learn(&self, endpoint: &str, server: Timestamp) -> Result<SignedDuration, ClockSkew> {
        let offset = judge(endpoint, server, Timestamp::now(), self.bound)?;
        let mut offsets = self.lock();
        if offsets.len() >= MAX_ENDPOINTS && !offsets.contains_key(endpoint) {
            offsets.clear();
        }
        offsets.insert(endpoint.to_owned(), offset);
        Ok(offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_within_the_bound_are_followed_beyond_it_reported() {
        let local: Timestamp = "2026-12-01T00:00:00Z".parse().unwrap();
        let bound = SignedDuration::from_hours(1);
        let ahead = local.checked_add(SignedDuration::from_mins(30)).unwrap();
        assert_eq!(
            judge("oss", ahead, local, bound),
            Ok(SignedDuration::from_mins(30))
        );
        let behind = local.checked_sub(SignedDuration::from_mins(59)).unwrap();
        assert_eq!(
            judge("oss", behind, local, bound),
            Ok(SignedDuration::from_mins(-59))
        );
        let far = local.checked_sub(SignedDuration::from_hours(240)).unwrap();
        let skew = judge("oss.example:443", far, local, bound).unwrap_err();
        assert_eq!(skew.offset, SignedDuration::from_hours(-240));
        let text = skew.to_string();
        assert!(
            text.contains("oss.example:443") && text.contains("240h"),
            "{text}"
        );
    }

    #[test]
    fn offsets_are_kept_per_endpoint_and_a_refused_one_changes_nothing() {
        let offsets = ClockOffsets::new(SignedDuration::from_hours(1));
        let ahead = Timestamp::now()
            .checked_add(SignedDuration::from_mins(20))
            .unwrap();
        offsets.learn("a:1", ahead).unwrap();
        assert!((offsets.offset("a:1").as_secs() - 1200).abs() <= 2);
        assert_eq!(offsets.offset("b:1"), SignedDuration::ZERO);
        let far = Timestamp::now()
            .checked_add(SignedDuration::from_hours(48))
            .unwrap();
        assert!(offsets.learn("a:1", far).is_err());
        assert!((offsets.offset("a:1").as_secs() - 1200).abs() <= 2);
    }
}
