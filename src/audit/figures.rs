//! The audit's figures, pure: the tally of examined objects (counts by kind and by CMK, objects
//! below the rule in the downgrade guard's order, the oldest and newest of them), the uniform
//! sample (reservoir sampling over the listing: memory stays flat) and the 95% Wilson score
//! interval for the share below the rule. The CLI's `audit` and the controller's
//! `spec.objectAudit` both count with these, so their figures cannot differ.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::Serialize;

use crate::oss::EncryptionRule;
use crate::oss::objects::{EncryptionKind, ObjectEncryption};

/// The z value of a two-sided 95% interval.
const Z95: f64 = 1.959_963_984_540_054;

/// An object below the rule, dated.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Dated {
    pub key: String,
    pub last_modified: String,
}

/// What the examined objects of one bucket add up to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Tally {
    pub examined: u64,
    pub below_rule: u64,
    /// Exactly the keys `None`, `AES256`, `SM4`, `KMS`, `KMS+SM4`.
    pub by_encryption: BTreeMap<&'static str, u64>,
    /// KMS objects (with or without SM4) per CMK id as HeadObject reports it.
    pub by_key: BTreeMap<String, u64>,
    pub oldest_below_rule: Option<Dated>,
    pub newest_below_rule: Option<Dated>,
}

impl Tally {
    /// An empty tally with every kind at zero.
    pub fn new() -> Self {
        Self {
            by_encryption: EncryptionKind::ALL.iter().map(|k| (k.as_str(), 0)).collect(),
            ..Self::default()
        }
    }

    /// Counts one examined object (`last_modified` as the listing gives it, ISO 8601).
    pub fn add(
        &mut self,
        key: &str,
        last_modified: &str,
        encryption: &ObjectEncryption,
        desired: Option<&EncryptionRule>,
    ) {
        self.examined += 1;
        *self.by_encryption.entry(encryption.kind().as_str()).or_default() += 1;
        if let Some(id) = encryption.key_id() {
            *self.by_key.entry(id.to_owned()).or_default() += 1;
        }
        if !encryption.is_below(desired) {
            return;
        }
        self.below_rule += 1;
        let dated = Dated {
            key: key.to_owned(),
            last_modified: last_modified.to_owned(),
        };
        let at = |d: &Dated| d.last_modified.parse::<Timestamp>().ok();
        let when = at(&dated);
        // Ties go to the smaller key, so the answer does not depend on the order of answers.
        let earlier = |a: &Dated, b: &Dated| (at(a), &a.key) < (at(b), &b.key);
        if when.is_some() {
            if self
                .oldest_below_rule
                .as_ref()
                .is_none_or(|old| earlier(&dated, old))
            {
                self.oldest_below_rule = Some(dated.clone());
            }
            if self.newest_below_rule.as_ref().is_none_or(|new| {
                (at(new), std::cmp::Reverse(&new.key)) < (when, std::cmp::Reverse(&dated.key))
            }) {
                self.newest_below_rule = Some(dated);
            }
        }
    }
}

/// A uniform sample of a stream of unknown length in `capacity` slots (Algorithm R): after `n`
/// items each has been kept with probability `capacity / n`.
#[derive(Debug)]
pub struct Reservoir<T> {
    capacity: usize,
    seen: u64,
    items: Vec<T>,
}

impl<T> Reservoir<T> {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            seen: 0,
            items: Vec::with_capacity(capacity.min(1 << 16)),
        }
    }

    /// Offers one item; `draw(n)` must return a uniform integer in `0..n`.
    pub fn offer(&mut self, item: T, draw: &mut impl FnMut(u64) -> u64) {
        self.seen += 1;
        if self.items.len() < self.capacity {
            self.items.push(item);
            return;
        }
        let slot = draw(self.seen);
        if slot < self.capacity as u64 {
            self.items[slot as usize] = item;
        }
    }

    /// Items offered so far.
    pub fn seen(&self) -> u64 {
        self.seen
    }

    pub fn into_items(self) -> Vec<T> {
        self.items
    }
}

/// The 95% Wilson score interval for a proportion of `hits` in `n` (`(0, 1)` when `n` is 0).
pub fn wilson_95(hits: u64, n: u64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let (hits, n) = (hits.min(n) as f64, n as f64);
    let p = hits / n;
    let z2 = Z95 * Z95;
    let denominator = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / denominator;
    let half = Z95 * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / denominator;
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// The share below the rule in a sample, with its interval.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Share {
    pub estimate: f64,
    pub low: f64,
    pub high: f64,
    pub method: &'static str,
}

impl Share {
    /// The share of `tally`'s examined objects below the rule, with its 95% Wilson interval.
    pub fn of(tally: &Tally) -> Self {
        let (low, high) = wilson_95(tally.below_rule, tally.examined);
        Self {
            estimate: if tally.examined == 0 {
                0.0
            } else {
                tally.below_rule as f64 / tally.examined as f64
            },
            low,
            high,
            method: "Wilson score interval, 95%",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oss::SseAlgorithm;

    #[test]
    fn the_tally_counts_kinds_keys_and_the_dated_extremes_below_the_rule() {
        let rule = EncryptionRule::kms(Some("k1"), None);
        let kms = |key: &str, sm4| ObjectEncryption::Kms {
            key_id: key.into(),
            sm4,
        };
        let mut tally = Tally::new();
        tally.add(
            "a",
            "2024-03-01T00:00:00.000Z",
            &ObjectEncryption::None,
            Some(&rule),
        );
        tally.add(
            "b",
            "2023-01-01T00:00:00.000Z",
            &ObjectEncryption::Aes256,
            Some(&rule),
        );
        tally.add(
            "c",
            "2025-01-01T00:00:00.000Z",
            &ObjectEncryption::Sm4,
            Some(&rule),
        );
        tally.add("d", "2020-01-01T00:00:00.000Z", &kms("k2", true), Some(&rule));
        tally.add("e", "2026-01-01T00:00:00.000Z", &kms("k1", false), Some(&rule));
        tally.add("f", "2026-01-01T00:00:00.000Z", &kms("k1", false), Some(&rule));
        assert_eq!(tally.examined, 6);
        assert_eq!(tally.below_rule, 3);
        let counts: Vec<(&str, u64)> = tally.by_encryption.iter().map(|(k, v)| (*k, *v)).collect();
        assert_eq!(
            counts,
            [("AES256", 1), ("KMS", 2), ("KMS+SM4", 1), ("None", 1), ("SM4", 1)]
        );
        assert_eq!(tally.by_key, BTreeMap::from([("k1".into(), 2), ("k2".into(), 1)]));
        assert_eq!(tally.oldest_below_rule.as_ref().unwrap().key, "b");
        assert_eq!(tally.newest_below_rule.as_ref().unwrap().key, "c");
        let mut none_rule = Tally::new();
        none_rule.add("a", "x", &ObjectEncryption::None, None);
        assert_eq!(none_rule.below_rule, 0, "nothing is below no rule");
        let mut aes = Tally::new();
        aes.add(
            "a",
            "x",
            &ObjectEncryption::Sm4,
            Some(&EncryptionRule::new(SseAlgorithm::Aes256)),
        );
        assert_eq!(aes.below_rule, 0, "SM4 is lateral to AES256");
    }

    #[test]
    fn the_reservoir_keeps_exactly_its_capacity_and_samples_uniformly() {
        let mut rng = fastrand::Rng::with_seed(7);
        let mut draw = |n: u64| rng.u64(..n);
        let mut hits = [0u32; 10];
        for _ in 0..2000 {
            let mut reservoir = Reservoir::new(3);
            for i in 0..10 {
                reservoir.offer(i, &mut draw);
            }
            assert_eq!(reservoir.seen(), 10);
            let items = reservoir.into_items();
            assert_eq!(items.len(), 3);
            for i in items {
                hits[i] += 1;
            }
        }
        // Each item is kept with probability 3/10: 600 of 2000 runs, within a wide margin.
        for (i, h) in hits.iter().enumerate() {
            assert!((480..=720).contains(h), "item {i} kept {h} times");
        }
        let mut small = Reservoir::new(5);
        for i in 0..2 {
            small.offer(i, &mut draw);
        }
        assert_eq!(small.into_items(), [0, 1], "fewer items than slots: all of them");
    }

    #[test]
    fn the_wilson_interval_matches_published_values() {
        // 0 of 1000: [0, 0.0038]; 50 of 1000: [0.0381, 0.0653]; n = 0: no information. (Values
        // from the formula in Wilson 1927 / Agresti & Coull 1998, computed independently.)
        let (low, high) = wilson_95(0, 1000);
        assert!(
            low.abs() < 1e-12 && (high - 0.003_826_76).abs() < 1e-7,
            "{low} {high}"
        );
        let (low, high) = wilson_95(50, 1000);
        assert!(
            (low - 0.038_130_26).abs() < 1e-7 && (high - 0.065_313_82).abs() < 1e-7,
            "{low} {high}"
        );
        assert_eq!(wilson_95(0, 0), (0.0, 1.0));
        let (low, high) = wilson_95(10, 10);
        assert!(
            (low - 0.722_467_2).abs() < 1e-7 && (high - 1.0).abs() < 1e-12,
            "{low} {high}"
        );
    }
}
