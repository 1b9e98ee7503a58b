//! Bucket-hash shards (DESIGN.md 3.1): `--shard-index i --shard-count n` splits the buckets,
//! not the resources, so every claimant of a bucket lives in one shard and ownership stays a
//! local decision of that shard's claims index. The hash is 64-bit FNV-1a of the bucket name:
//! small, fixed by its published definition, and the same in every build and version, since
//! changing it would move buckets between running shards.

use std::fmt;

/// One shard of `count`; `Shard::ALL` is the unsharded operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    index: u32,
    count: u32,
}

/// Why a shard flag pair is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ShardError {
    #[error("--shard-count must be at least 1")]
    NoShards,
    #[error("--shard-index {index} is out of range: with --shard-count {count} it must be 0..={last}", last = count - 1)]
    OutOfRange { index: u32, count: u32 },
}

impl Shard {
    /// Every bucket: one shard of one.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// Shard `index` of `count` (`0 <= index < count`).
    pub fn new(index: u32, count: u32) -> Result<Self, ShardError> {
        match (index, count) {
            (_, 0) => Err(ShardError::NoShards),
            (index, count) if index >= count => Err(ShardError::OutOfRange { index, count }),
            (index, count) => Ok(Self { index, count }),
        }
    }

    pub fn index(&self) -> u32 {
        self.index
    }

    pub fn count(&self) -> u32 {
        self.count
    }

    /// Whether more than one shard shares the buckets.
    pub fn is_sharded(&self) -> bool {
        self.count > 1
    }

    /// Whether `bucket` belongs to this shard.
    pub fn owns(&self, bucket: &str) -> bool {
        self.count == 1 || fnv1a64(bucket.as_bytes()) % u64::from(self.count) == u64::from(self.index)
    }

    /// Whether this shard reconciles `resource`: by its bucket, or, when its spec could not be
    /// read at all (no bucket to hash), shard 0, so exactly one shard reports it.
    pub fn owns_object(&self, bucket: Option<&str>) -> bool {
        match bucket {
            Some(bucket) => self.owns(bucket),
            None => self.index == 0,
        }
    }

    /// The Lease a shard's replicas elect their leader with: `base` unsharded, else
    /// `base-shard-<i>-of-<n>` (the count is part of the name, so instances of an old and a new
    /// shard layout never share a Lease during a re-shard).
    pub fn lease_name(&self, base: &str) -> String {
        if self.is_sharded() {
            format!("{base}-shard-{}-of-{}", self.index, self.count)
        } else {
            base.to_owned()
        }
    }
}

impl Default for Shard {
    fn default() -> Self {
        Self::ALL
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// 64-bit FNV-1a (offset basis 0xcbf29ce484222325, prime 0x100000001b3).
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_fnv1a_64_by_its_published_vectors() {
        // From the FNV reference test suite (Fowler, Noll, Vo: "FNV-1a 64-bit").
        assert_eq!(fnv1a64(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a64(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x85944171f73967e8);
    }

    #[test]
    fn every_bucket_belongs_to_exactly_one_shard() {
        for count in 1..=5 {
            let shards: Vec<Shard> = (0..count).map(|i| Shard::new(i, count).unwrap()).collect();
            let mut sizes = vec![0usize; count as usize];
            for n in 0..2_000 {
                let bucket = format!("bucket-{n}");
                let owners: Vec<&Shard> = shards.iter().filter(|s| s.owns(&bucket)).collect();
                assert_eq!(owners.len(), 1, "{bucket} in {count} shards");
                sizes[owners[0].index() as usize] += 1;
            }
            // Spread: no shard holds less than half its fair share.
            let fair = 2_000 / count as usize;
            assert!(sizes.iter().all(|s| *s > fair / 2), "{count} shards: {sizes:?}");
        }
    }

    #[test]
    fn unreadable_specs_go_to_shard_zero_only() {
        assert!(Shard::new(0, 3).unwrap().owns_object(None));
        assert!(!Shard::new(1, 3).unwrap().owns_object(None));
        assert!(Shard::ALL.owns_object(None));
    }

    #[test]
    fn flags_out_of_range_are_refused_with_the_range() {
        assert_eq!(Shard::new(0, 0), Err(ShardError::NoShards));
        let error = Shard::new(2, 2).unwrap_err();
        assert_eq!(
            error.to_string(),
            "--shard-index 2 is out of range: with --shard-count 2 it must be 0..=1"
        );
        assert_eq!(Shard::new(1, 2).unwrap().to_string(), "1/2");
    }

    #[test]
    fn each_shard_has_its_own_lease_and_unsharded_keeps_the_name() {
        assert_eq!(Shard::ALL.lease_name("op"), "op");
        assert_eq!(Shard::new(1, 4).unwrap().lease_name("op"), "op-shard-1-of-4");
    }
}
