//! The key pre-flight: DescribeKey answers cached per (identity, region, key) for a short TTL,
//! one call in flight per entry (a fleet sharing a few keys costs a few calls, however many
//! buckets reconcile at once), turned into a verdict by the pure usability rule.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{KeyMetadata, KeyProblem, KmsClient, KmsError, key};
use crate::oss::{Classification, CredentialsProvider};

/// Can OSS use this key for this bucket?
#[derive(Clone, Debug)]
pub enum Verdict {
    /// Yes; the key as KMS described it.
    Usable { key: KeyMetadata, request_id: String },
    /// No, for these reasons (never empty).
    NotUsable {
        key_id: String,
        problems: Vec<KeyProblem>,
        request_id: String,
    },
    /// The check could not run (no permission, KMS unreachable): never a pass.
    CheckFailed(Arc<KmsError>),
}

impl Verdict {
    pub fn is_usable(&self) -> bool {
        matches!(self, Self::Usable { .. })
    }

    /// One line for tables and messages.
    pub fn describe(&self) -> String {
        match self {
            Self::Usable { key, .. } => {
                format!("key {} usable ({}, {})", key.key_id, key.key_state, key.key_spec)
            }
            Self::NotUsable { key_id, problems, .. } => {
                let reasons: Vec<String> = problems.iter().map(ToString::to_string).collect();
                format!("KMS key {key_id} is not usable: {}", reasons.join("; "))
            }
            Self::CheckFailed(error) => format!("KMS key check could not run: {error}"),
        }
    }
}

/// A cached answer (only definite ones are cached: a transient failure is asked again).
type Entry = Arc<tokio::sync::Mutex<Option<(Instant, Verdict)>>>;

/// (access key id, region, key id).
type CacheKey = (String, String, String);

/// Checks keys through a TTL cache. Cheap to clone; clones share the cache.
#[derive(Clone, Debug)]
pub struct KeyChecker {
    client: KmsClient,
    ttl: Duration,
    /// How long a failed check (KMS throttling or erring after the retry ladder) is kept:
    /// zero for the controller (the next reconcile asks again), the whole run for `plan`/`apply`.
    failure_ttl: Duration,
    entries: Arc<Mutex<HashMap<CacheKey, Entry>>>,
}

/// Entries kept before expired ones are swept.
const SWEEP_ABOVE: usize = 4096;

impl KeyChecker {
    pub fn new(client: KmsClient, ttl: Duration) -> Self {
        Self {
            client,
            ttl,
            failure_ttl: Duration::ZERO,
            entries: Arc::default(),
        }
    }

    /// Keeps a failed check for `ttl` too, so every row sharing a key waits for one retry
    /// ladder instead of running its own (the call stays single-flight per key: callers of
    /// other keys never wait on it).
    pub fn with_failure_ttl(mut self, ttl: Duration) -> Self {
        self.failure_ttl = ttl;
        self
    }

    pub fn client(&self) -> &KmsClient {
        &self.client
    }

    /// The verdict for `key_id` used by a bucket in `region`, from the cache when fresh. The
    /// cache is keyed by the caller's access key id too: aliases are per account, and one
    /// tenant's permission must not answer for another's.
    pub async fn check(&self, region: &str, key_id: &str, credentials: &CredentialsProvider) -> Verdict {
        let identity = match credentials.credentials().await {
            Ok(c) => c.access_key_id().to_owned(),
            Err(error) => {
                return Verdict::CheckFailed(Arc::new(KmsError {
                    key_id: key_id.to_owned(),
                    region: region.to_owned(),
                    attempts: 0,
                    kind: error.into(),
                }));
            }
        };
        let entry = self.entry((identity, region.to_owned(), key_id.to_owned()));
        let mut slot = entry.lock().await;
        if let Some((at, verdict)) = slot.as_ref()
            && at.elapsed() < self.ttl_of(verdict)
        {
            return verdict.clone();
        }
        let verdict = match self.client.describe_key(region, key_id, credentials).await {
            Ok(reply) => {
                let problems = key::problems(&reply.value, region);
                if problems.is_empty() {
                    Verdict::Usable {
                        key: reply.value,
                        request_id: reply.request_id,
                    }
                } else {
                    Verdict::NotUsable {
                        key_id: key_id.to_owned(),
                        problems,
                        request_id: reply.request_id,
                    }
                }
            }
            Err(error) if error.is_not_found() => Verdict::NotUsable {
                key_id: key_id.to_owned(),
                problems: vec![KeyProblem::NotFound],
                request_id: error.request_id().unwrap_or_default().to_owned(),
            },
            Err(error) => Verdict::CheckFailed(Arc::new(error)),
        };
        let definite = match &verdict {
            Verdict::CheckFailed(error) => error.classification() == Classification::Terminal,
            _ => true,
        };
        let kept = definite || !self.failure_ttl.is_zero();
        *slot = kept.then(|| (Instant::now(), verdict.clone()));
        verdict
    }

    /// How long `verdict` stays cached.
    fn ttl_of(&self, verdict: &Verdict) -> Duration {
        match verdict {
            Verdict::CheckFailed(error) if error.classification() != Classification::Terminal => {
                self.failure_ttl
            }
            _ => self.ttl,
        }
    }

    fn entry(&self, key: CacheKey) -> Entry {
        let mut entries = self.entries.lock().expect("the key cache lock is never poisoned");
        if entries.len() > SWEEP_ABOVE {
            let ttl = self.ttl;
            let failure_ttl = |v: &Verdict| self.ttl_of(v);
            entries.retain(|_, e| {
                e.try_lock()
                    .map(|slot| {
                        slot.as_ref()
                            .is_some_and(|(at, v)| at.elapsed() < ttl.max(failure_ttl(v)))
                    })
                    .unwrap_or(true)
            });
        }
        entries.entry(key).or_default().clone()
    }
}
