//! The emulator's world: buckets and their rules, access keys, STS sessions, request counters,
//! injected faults and its clock. Mutations of buckets are persisted (group commit, see
//! [`super::persist`]) when a file is set.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use crate::oss::xml::RawRule;

/// A bucket as the emulator keeps it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bucket {
    pub region: String,
    /// When the bucket was created, as ListBuckets reports it (`2026-01-01T00:00:00.000Z`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub creation_date: String,
    /// The default encryption rule as stored (wire strings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<StoredRule>,
    /// Access key ids refused with 403 AccessDenied on this bucket.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub denied_access_keys: BTreeMap<String, bool>,
}

/// A rule as stored and as the admin API shows and sets it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredRule {
    pub algorithm: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kms_master_key_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kms_data_encryption: String,
}

impl From<RawRule> for StoredRule {
    fn from(raw: RawRule) -> Self {
        Self {
            algorithm: raw.algorithm,
            kms_master_key_id: raw.kms_master_key_id,
            kms_data_encryption: raw.kms_data_encryption,
        }
    }
}

impl From<&StoredRule> for RawRule {
    fn from(rule: &StoredRule) -> Self {
        Self {
            algorithm: rule.algorithm.clone(),
            kms_master_key_id: rule.kms_master_key_id.clone(),
            kms_data_encryption: rule.kms_data_encryption.clone(),
        }
    }
}

/// Injected faults, applied to OSS and STS requests (never to the admin API).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Faults {
    /// Added to every request before it is answered.
    pub latency_ms: u64,
    /// A further random delay, uniform in `[0, latency_jitter_ms)`, so answers overtake each other.
    pub latency_jitter_ms: u64,
    /// Probability of `500 InternalError`.
    pub internal_error_rate: f64,
    /// Probability of `503 MetaOperationQpsLimitExceeded`.
    pub throttle_rate: f64,
    /// Requests per second above which `503 MetaOperationQpsLimitExceeded` is answered.
    pub qps_limit: Option<u32>,
    /// Probability that the connection is cut before an answer.
    pub reset_rate: f64,
    /// Probability of KMS `503 ServiceUnavailableTemporary`.
    pub kms_error_rate: f64,
    /// Probability of KMS `400 Throttling`.
    pub kms_throttle_rate: f64,
}

/// A KMS key as the emulator keeps it (the fields DescribeKey reports).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct KmsKey {
    pub region: String,
    /// `Enabled`, `Disabled`, `PendingDeletion`, `PendingImport`.
    pub state: String,
    /// `Aliyun_AES_256`, `Aliyun_SM4`, `RSA_2048`, …
    pub spec: String,
    /// `ENCRYPT/DECRYPT` or `SIGN/VERIFY`.
    pub usage: String,
    /// Names such as `alias/my-key`.
    pub aliases: Vec<String>,
    /// The account uid in the ARN.
    pub account: String,
}

impl Default for KmsKey {
    fn default() -> Self {
        Self {
            region: "cn-hangzhou".into(),
            state: "Enabled".into(),
            spec: "Aliyun_AES_256".into(),
            usage: "ENCRYPT/DECRYPT".into(),
            aliases: Vec::new(),
            account: "1540355698840000".into(),
        }
    }
}

/// An STS session the emulator issued.
#[derive(Clone, Debug)]
pub struct StsSession {
    pub secret: String,
    pub token: String,
    pub expiration: Timestamp,
}

/// At most this many STS sessions are held; beyond it the soonest to expire is dropped.
pub const MAX_STS_SESSIONS: usize = 10_000;

/// At most this many entries of [`EmulatorState::oidc_tokens_seen`] are kept (the newest).
pub const MAX_OIDC_TOKENS_SEEN: usize = 1_024;

/// At most this many KMS signature nonces are remembered (the oldest are forgotten first).
pub const MAX_NONCES: usize = 65_536;

/// Counters of answered requests: by API, then by HTTP status.
pub type Counters = BTreeMap<String, BTreeMap<u16, u64>>;

/// How many request arrival times are kept for rate measurements.
const ARRIVALS_KEPT: usize = 65_536;

#[derive(Debug, Default)]
struct Inner {
    buckets: BTreeMap<String, Bucket>,
    access_keys: HashMap<String, String>,
    sts_sessions: HashMap<String, StsSession>,
    accepted_oidc_tokens: HashSet<String>,
    oidc_tokens_seen: VecDeque<String>,
    counters: Counters,
    bucket_requests: HashMap<String, u64>,
    arrivals: VecDeque<Instant>,
    recent: VecDeque<Instant>,
    faults: Faults,
    clock_offset: SignedDuration,
    sts_duration_override: Option<Duration>,
    kms_keys: BTreeMap<String, KmsKey>,
    kms_denied_access_keys: HashSet<String>,
    list_denied_access_keys: HashSet<String>,
    request_seq: u64,
    /// KMS signature nonces seen within the replay window, oldest first.
    nonces: VecDeque<(Timestamp, String)>,
    nonces_seen: HashSet<String>,
    in_flight: usize,
    peak_in_flight: usize,
}

/// Shared, lock-protected emulator state. All methods are cheap and never hold the lock across
/// I/O: persisted writes are queued under it and made durable by the store's flusher.
#[derive(Debug)]
pub struct EmulatorState {
    inner: Arc<Mutex<Inner>>,
    /// Objects (not persisted), under a lock of their own so listings do not hold up the rest.
    objects: Mutex<super::objects::ObjectStore>,
    store: Option<super::persist::Store>,
    started: Instant,
}

fn lock_inner(inner: &Mutex<Inner>) -> std::sync::MutexGuard<'_, Inner> {
    inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl EmulatorState {
    /// Fresh state; with a persistence file, buckets are loaded from it when it exists (every
    /// bucket name, region and rule checked), and the file is written once at once, so a path
    /// that cannot be written refuses to start instead of acknowledging writes it never saves.
    pub fn new(persist_path: Option<PathBuf>) -> std::io::Result<Self> {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let store = match &persist_path {
            None => None,
            Some(path) => {
                let named = |e: &dyn std::fmt::Display| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("state file {}: {e}", path.display()),
                    )
                };
                let (buckets, generation) = super::persist::load(path).map_err(|e| named(&e))?;
                check_buckets(&buckets).map_err(|e| named(&e))?;
                lock_inner(&inner).buckets = buckets.clone();
                let current = {
                    let inner = inner.clone();
                    Box::new(move || lock_inner(&inner).buckets.clone())
                };
                let rollback = {
                    let inner = inner.clone();
                    Box::new(move |changes: &[super::persist::Change]| {
                        let mut inner = lock_inner(&inner);
                        for change in changes {
                            // Undo only what no later change has overwritten.
                            if inner.buckets.get(&change.bucket) == change.after.as_ref() {
                                match &change.before {
                                    Some(b) => inner.buckets.insert(change.bucket.clone(), b.clone()),
                                    None => inner.buckets.remove(&change.bucket),
                                };
                            }
                        }
                    })
                };
                let store = super::persist::Store::start(path, &buckets, generation, current, rollback)
                    .map_err(|e| named(&format!("cannot be written: {e}")))?;
                Some(store)
            }
        };
        Ok(Self {
            inner,
            objects: Mutex::default(),
            store,
            started: Instant::now(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        lock_inner(&self.inner)
    }

    /// Applies a change to one bucket (`None`: absent) in memory and, with a state file, queues
    /// it; the ticket resolves when it is durable (or was refused and undone).
    fn change_bucket<T>(
        &self,
        name: &str,
        blocking: bool,
        change: impl FnOnce(&mut Option<Bucket>) -> T,
    ) -> (T, Option<super::persist::Ticket>) {
        let mut inner = self.lock();
        let before = inner.buckets.get(name).cloned();
        let mut after = before.clone();
        let result = change(&mut after);
        match &after {
            Some(bucket) => inner.buckets.insert(name.to_owned(), bucket.clone()),
            None => inner.buckets.remove(name),
        };
        // Queued even when nothing changed: the answer then also waits for earlier writes.
        let ticket = self.store.as_ref().map(|store| {
            let change = super::persist::Change {
                bucket: name.to_owned(),
                before,
                after,
            };
            store.submit(change, blocking)
        });
        (result, ticket)
    }

    /// A mutation from a test or the admin API, waited for; a persistence failure is logged
    /// loudly (by the store) and the change undone.
    fn mutate_bucket<T: Default>(&self, name: &str, change: impl FnOnce(&mut Option<Bucket>) -> T) -> T {
        let (result, ticket) = self.change_bucket(name, true, change);
        match ticket.map(super::persist::Ticket::wait) {
            Some(Err(_)) => T::default(),
            _ => result,
        }
    }

    /// The emulator's notion of now (real time plus the configured skew).
    pub fn now(&self) -> Timestamp {
        let offset = self.lock().clock_offset;
        Timestamp::now()
            .checked_add(offset)
            .unwrap_or_else(|_| Timestamp::now())
    }

    /// Makes the emulator's clock run ahead (or behind) real time, to provoke skew.
    pub fn set_clock_offset(&self, offset: SignedDuration) {
        self.lock().clock_offset = offset;
    }

    pub fn add_access_key(&self, id: &str, secret: &str) {
        self.lock().access_keys.insert(id.to_owned(), secret.to_owned());
    }

    pub fn remove_access_key(&self, id: &str) {
        self.lock().access_keys.remove(id);
    }

    /// The secret (and, for STS sessions, the token and expiry) of an access key id.
    pub fn lookup_key(&self, id: &str) -> Option<(String, Option<StsSession>)> {
        let inner = self.lock();
        if let Some(secret) = inner.access_keys.get(id) {
            return Some((secret.clone(), None));
        }
        inner
            .sts_sessions
            .get(id)
            .map(|s| (s.secret.clone(), Some(s.clone())))
    }

    /// Creates (or moves to a region) many buckets, made durable together.
    pub fn create_buckets(&self, buckets: &[(String, String)]) {
        let now = self.now().strftime("%Y-%m-%dT%H:%M:%S.000Z").to_string();
        let tickets: Vec<_> = buckets
            .iter()
            .filter_map(|(name, region)| {
                self.change_bucket(name, true, |slot| create_in(slot, region, &now))
                    .1
            })
            .collect();
        for ticket in tickets {
            if ticket.wait().is_err() {
                break; // logged by the store; the changes were undone
            }
        }
    }

    pub fn create_bucket(&self, name: &str, region: &str) {
        let now = self.now().strftime("%Y-%m-%dT%H:%M:%S.000Z").to_string();
        self.mutate_bucket(name, |slot| create_in(slot, region, &now));
    }

    /// One ListBuckets page: names with the prefix, strictly after the marker, ascending.
    pub fn list_page(&self, request: &crate::oss::list::ListRequest) -> crate::oss::list::BucketPage {
        let inner = self.lock();
        let limit = request.max_keys.max(1) as usize;
        let mut matching = inner
            .buckets
            .iter()
            .filter(|(name, _)| name.starts_with(&request.prefix) && name.as_str() > request.marker.as_str());
        let buckets: Vec<crate::oss::list::BucketSummary> = matching
            .by_ref()
            .take(limit)
            .map(|(name, bucket)| crate::oss::list::BucketSummary {
                name: name.clone(),
                region: bucket.region.clone(),
                location: format!("oss-{}", bucket.region),
                creation_date: if bucket.creation_date.is_empty() {
                    "2026-01-01T00:00:00.000Z".to_owned()
                } else {
                    bucket.creation_date.clone()
                },
                storage_class: "Standard".to_owned(),
                extranet_endpoint: format!("oss-{}.aliyuncs.com", bucket.region),
                intranet_endpoint: format!("oss-{}-internal.aliyuncs.com", bucket.region),
            })
            .collect();
        let is_truncated = matching.next().is_some();
        crate::oss::list::BucketPage {
            next_marker: if is_truncated {
                buckets.last().map(|b| b.name.clone()).unwrap_or_default()
            } else {
                String::new()
            },
            buckets,
            is_truncated,
            owner: "1540355698840000".to_owned(),
        }
    }

    /// Makes ListBuckets answer 403 AccessDenied to an access key (or lifts that).
    pub fn set_list_denied(&self, access_key_id: &str, denied: bool) {
        let mut inner = self.lock();
        if denied {
            inner.list_denied_access_keys.insert(access_key_id.to_owned());
        } else {
            inner.list_denied_access_keys.remove(access_key_id);
        }
    }

    pub fn list_denied(&self, access_key_id: &str) -> bool {
        self.lock().list_denied_access_keys.contains(access_key_id)
    }

    pub fn delete_bucket(&self, name: &str) -> bool {
        self.objects().remove_bucket(name);
        self.mutate_bucket(name, |slot| slot.take().is_some())
    }

    /// The objects of every bucket.
    pub fn objects(&self) -> std::sync::MutexGuard<'_, super::objects::ObjectStore> {
        self.objects
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds many objects to an existing bucket at once (see [`super::objects::Seed`]).
    pub fn seed_objects(&self, bucket: &str, seed: super::objects::Seed) -> Result<(), String> {
        if self.bucket(bucket).is_none() {
            return Err(format!("no bucket {bucket}"));
        }
        self.objects().seed(bucket, seed)
    }

    pub fn bucket(&self, name: &str) -> Option<Bucket> {
        self.lock().buckets.get(name).cloned()
    }

    pub fn buckets(&self) -> BTreeMap<String, Bucket> {
        self.lock().buckets.clone()
    }

    /// Sets (or with `None` clears) a bucket's rule; `false` if the bucket does not exist.
    pub fn set_rule(&self, bucket: &str, rule: Option<StoredRule>) -> bool {
        self.mutate_bucket(bucket, |slot| set_rule_in(slot, rule))
    }

    /// [`Self::set_rule`] for an OSS request: resolves once the write is durable, failing (and
    /// changing nothing) when it cannot be persisted.
    pub async fn try_set_rule(&self, bucket: &str, rule: Option<StoredRule>) -> std::io::Result<bool> {
        let (found, ticket) = self.change_bucket(bucket, false, |slot| set_rule_in(slot, rule));
        if let Some(ticket) = ticket {
            ticket.durable().await?;
        }
        Ok(found)
    }

    /// Makes a bucket answer 403 AccessDenied to an access key (or lifts that).
    pub fn set_access_denied(&self, bucket: &str, access_key_id: &str, denied: bool) -> bool {
        self.mutate_bucket(bucket, |slot| match slot {
            Some(b) => {
                if denied {
                    b.denied_access_keys.insert(access_key_id.to_owned(), true);
                } else {
                    b.denied_access_keys.remove(access_key_id);
                }
                true
            }
            None => false,
        })
    }

    pub fn faults(&self) -> Faults {
        self.lock().faults.clone()
    }

    pub fn set_faults(&self, faults: Faults) {
        self.lock().faults = faults;
    }

    /// Records one request's arrival; true when it exceeds the configured QPS cap.
    pub fn arrive(&self) -> bool {
        let mut inner = self.lock();
        let now = Instant::now();
        if inner.arrivals.len() == ARRIVALS_KEPT {
            inner.arrivals.pop_front();
        }
        inner.arrivals.push_back(now);
        let Some(limit) = inner.faults.qps_limit else {
            return false;
        };
        while inner
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
        {
            inner.recent.pop_front();
        }
        if inner.recent.len() >= limit as usize {
            return true;
        }
        inner.recent.push_back(now);
        false
    }

    /// Arrival times (since start) of the most recent requests, oldest first.
    pub fn arrivals(&self) -> Vec<Duration> {
        let inner = self.lock();
        inner
            .arrivals
            .iter()
            .map(|t| t.duration_since(self.started))
            .collect()
    }

    /// A fresh request id: 24 upper-case hex characters, like OSS's.
    pub fn next_request_id(&self) -> String {
        let mut inner = self.lock();
        inner.request_seq += 1;
        format!("{:08X}{:016X}", fastrand::u32(..), inner.request_seq)
    }

    pub fn count(&self, api: &str, status: u16) {
        *self
            .lock()
            .counters
            .entry(api.to_owned())
            .or_default()
            .entry(status)
            .or_default() += 1;
    }

    pub fn counters(&self) -> Counters {
        self.lock().counters.clone()
    }

    /// Counts one request addressed to a bucket, if the bucket exists: a flood of made-up
    /// names must not grow the state.
    pub fn count_bucket(&self, bucket: &str) {
        let mut inner = self.lock();
        if inner.buckets.contains_key(bucket) {
            *inner.bucket_requests.entry(bucket.to_owned()).or_default() += 1;
        }
    }

    /// Requests per bucket (any API, any status) since the last reset.
    pub fn bucket_requests(&self) -> HashMap<String, u64> {
        self.lock().bucket_requests.clone()
    }

    /// Requests answered for one API (any status).
    pub fn total(&self, api: &str) -> u64 {
        self.lock()
            .counters
            .get(api)
            .map(|m| m.values().sum())
            .unwrap_or(0)
    }

    pub fn reset_counters(&self) {
        let mut inner = self.lock();
        inner.counters.clear();
        inner.bucket_requests.clear();
        inner.arrivals.clear();
        inner.peak_in_flight = inner.in_flight;
    }

    /// Marks an OSS request as being served (until the guard drops), for [`Self::peak_in_flight`].
    pub fn serving(self: &std::sync::Arc<Self>) -> InFlight {
        let mut inner = self.lock();
        inner.in_flight += 1;
        inner.peak_in_flight = inner.peak_in_flight.max(inner.in_flight);
        InFlight(self.clone())
    }

    /// The most OSS requests served at once since the last counter reset.
    pub fn peak_in_flight(&self) -> usize {
        self.lock().peak_in_flight
    }

    /// Records a KMS signature nonce; `false` when it was used within the replay window (two
    /// skew windows: a request dated up to 15 minutes ahead stays acceptable 15 minutes later).
    pub fn use_nonce(&self, nonce: &str) -> bool {
        let now = self.now();
        let window = SignedDuration::try_from(super::auth::MAX_SKEW * 2).unwrap_or(SignedDuration::MAX);
        let mut inner = self.lock();
        let inner = &mut *inner;
        while let Some((at, old)) = inner.nonces.front()
            && (now.duration_since(*at) > window || inner.nonces.len() >= MAX_NONCES)
        {
            inner.nonces_seen.remove(old);
            inner.nonces.pop_front();
        }
        if !inner.nonces_seen.insert(nonce.to_owned()) {
            return false;
        }
        inner.nonces.push_back((now, nonce.to_owned()));
        true
    }

    pub fn accept_oidc_token(&self, token: &str) {
        self.lock().accepted_oidc_tokens.insert(token.to_owned());
    }

    /// Whether a presented OIDC token is accepted; accepted ones are remembered (rejected ones
    /// leave nothing behind, so a flood of bad tokens cannot grow the state).
    pub fn check_oidc_token(&self, token: &str) -> bool {
        let mut inner = self.lock();
        let accepted = inner.accepted_oidc_tokens.contains(token);
        let seen = &mut inner.oidc_tokens_seen;
        if accepted && seen.back().is_none_or(|last| last != token) {
            if seen.len() >= MAX_OIDC_TOKENS_SEEN {
                seen.pop_front();
            }
            seen.push_back(token.to_owned());
        }
        accepted
    }

    /// Accepted OIDC tokens presented to STS, in order, a token repeated in a row counted once
    /// (the newest [`MAX_OIDC_TOKENS_SEEN`]).
    pub fn oidc_tokens_seen(&self) -> Vec<String> {
        self.lock().oidc_tokens_seen.iter().cloned().collect()
    }

    /// Makes STS issue credentials with this lifetime whatever was asked.
    pub fn set_sts_duration_override(&self, duration: Option<Duration>) {
        self.lock().sts_duration_override = duration;
    }

    pub fn sts_duration_override(&self) -> Option<Duration> {
        self.lock().sts_duration_override
    }

    /// Holds a new STS session. When [`MAX_STS_SESSIONS`] are held, expired ones are dropped
    /// first, then the one soonest to expire, so a flood of exchanges cannot grow the state.
    pub fn add_sts_session(&self, access_key_id: String, session: StsSession) {
        let now = self.now();
        let mut inner = self.lock();
        let sessions = &mut inner.sts_sessions;
        if sessions.len() >= MAX_STS_SESSIONS {
            sessions.retain(|_, s| s.expiration > now);
        }
        if sessions.len() >= MAX_STS_SESSIONS
            && let Some(soonest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.expiration)
                .map(|(id, _)| id.clone())
        {
            sessions.remove(&soonest);
        }
        sessions.insert(access_key_id, session);
    }

    /// How many STS sessions are held.
    pub fn sts_session_count(&self) -> usize {
        self.lock().sts_sessions.len()
    }
}

impl EmulatorState {
    /// Creates or replaces a KMS key.
    pub fn put_kms_key(&self, id: &str, key: KmsKey) {
        self.lock().kms_keys.insert(id.to_owned(), key);
    }

    pub fn kms_key(&self, id: &str) -> Option<KmsKey> {
        self.lock().kms_keys.get(id).cloned()
    }

    pub fn kms_keys(&self) -> BTreeMap<String, KmsKey> {
        self.lock().kms_keys.clone()
    }

    pub fn delete_kms_key(&self, id: &str) -> bool {
        self.lock().kms_keys.remove(id).is_some()
    }

    /// Finds a key by id, `alias/…` or ARN (`acs:kms:<region>:<account>:key/<id>`).
    pub fn find_kms_key(&self, key_id: &str) -> Option<(String, KmsKey)> {
        let inner = self.lock();
        let id = key_id
            .strip_prefix("acs:kms:")
            .and_then(|arn| arn.split_once(":key/"))
            .map_or(key_id, |(_, id)| id);
        if let Some(key) = inner.kms_keys.get(id) {
            return Some((id.to_owned(), key.clone()));
        }
        inner
            .kms_keys
            .iter()
            .find(|(_, key)| key.aliases.iter().any(|a| a == key_id))
            .map(|(id, key)| (id.clone(), key.clone()))
    }

    /// Makes KMS answer 403 `Forbidden.NoPermission` to an access key (or lifts that).
    pub fn set_kms_denied(&self, access_key_id: &str, denied: bool) {
        let mut inner = self.lock();
        if denied {
            inner.kms_denied_access_keys.insert(access_key_id.to_owned());
        } else {
            inner.kms_denied_access_keys.remove(access_key_id);
        }
    }

    pub fn kms_denied(&self, access_key_id: &str) -> bool {
        self.lock().kms_denied_access_keys.contains(access_key_id)
    }
}

/// An OSS request being served; counted out when dropped.
pub struct InFlight(std::sync::Arc<EmulatorState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut inner = self.0.lock();
        inner.in_flight = inner.in_flight.saturating_sub(1);
    }
}

fn create_in(slot: &mut Option<Bucket>, region: &str, now: &str) {
    let bucket = slot.get_or_insert_with(Bucket::default);
    bucket.region = region.to_owned();
    if bucket.creation_date.is_empty() {
        bucket.creation_date = now.to_owned();
    }
}

fn set_rule_in(slot: &mut Option<Bucket>, rule: Option<StoredRule>) -> bool {
    match slot {
        Some(b) => {
            b.rule = rule;
            true
        }
        None => false,
    }
}

/// Every bucket of a loaded state file must be one OSS could hold.
fn check_buckets(buckets: &BTreeMap<String, Bucket>) -> Result<(), String> {
    for (name, bucket) in buckets {
        crate::oss::endpoint::validate_bucket_name(name).map_err(|e| format!("bucket {name:?}: {e}"))?;
        crate::oss::endpoint::validate_region(&bucket.region)
            .map_err(|e| format!("bucket {name:?}: region {:?}: {e}", bucket.region))?;
        if let Some(rule) = &bucket.rule {
            crate::oss::EncryptionRule::from_wire(
                &rule.algorithm,
                &rule.kms_master_key_id,
                &rule.kms_data_encryption,
            )
            .map_err(|e| format!("bucket {name:?}: rule {:?}: {e}", rule.algorithm))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(expiration: Timestamp) -> StsSession {
        StsSession {
            secret: "s".into(),
            token: "t".into(),
            expiration,
        }
    }

    #[test]
    fn expired_sts_sessions_are_dropped_and_live_ones_capped() {
        let state = EmulatorState::new(None).unwrap();
        let past = state.now().checked_sub(SignedDuration::from_secs(60)).unwrap();
        for i in 0..MAX_STS_SESSIONS {
            state.add_sts_session(format!("STS.old{i}"), session(past));
        }
        let future = state.now().checked_add(SignedDuration::from_hours(1)).unwrap();
        state.add_sts_session("STS.live".into(), session(future));
        assert_eq!(state.sts_session_count(), 1, "expired sessions are gone");
        assert!(state.lookup_key("STS.live").is_some());

        for i in 0..MAX_STS_SESSIONS + 500 {
            let expiration = future.checked_add(SignedDuration::from_secs(i as i64)).unwrap();
            state.add_sts_session(format!("STS.new{i}"), session(expiration));
        }
        assert_eq!(state.sts_session_count(), MAX_STS_SESSIONS);
        let newest = format!("STS.new{}", MAX_STS_SESSIONS + 499);
        assert!(state.lookup_key(&newest).is_some(), "the newest session is kept");
        assert!(
            state.lookup_key("STS.live").is_none(),
            "the soonest to expire is evicted"
        );
    }

    #[test]
    fn repeated_oidc_exchanges_do_not_grow_the_seen_tokens() {
        let state = EmulatorState::new(None).unwrap();
        state.accept_oidc_token("a");
        state.accept_oidc_token("b");
        for _ in 0..10_000 {
            assert!(state.check_oidc_token("a"));
        }
        assert!(state.check_oidc_token("b"));
        assert!(state.check_oidc_token("a"));
        assert_eq!(state.oidc_tokens_seen(), ["a", "b", "a"]);
        for _ in 0..MAX_OIDC_TOKENS_SEEN {
            state.check_oidc_token("a");
            state.check_oidc_token("b");
        }
        assert_eq!(state.oidc_tokens_seen().len(), MAX_OIDC_TOKENS_SEEN);
    }

    #[test]
    fn persisted_buckets_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let state = EmulatorState::new(Some(path.clone())).unwrap();
        state.create_bucket("logs", "cn-hangzhou");
        state.set_rule(
            "logs",
            Some(StoredRule {
                algorithm: "KMS".into(),
                kms_master_key_id: "k".into(),
                kms_data_encryption: "SM4".into(),
            }),
        );
        state.set_access_denied("logs", "bad", true);
        drop(state);
        assert!(
            !dir.path().join("state.tmp").exists(),
            "temporary file left behind"
        );
        let again = EmulatorState::new(Some(path)).unwrap();
        let bucket = again.bucket("logs").unwrap();
        assert_eq!(bucket.region, "cn-hangzhou");
        assert_eq!(bucket.rule.unwrap().kms_master_key_id, "k");
        assert!(bucket.denied_access_keys.contains_key("bad"));
    }

    #[test]
    fn a_corrupt_state_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(&path, "{not json").unwrap();
        let err = EmulatorState::new(Some(path)).unwrap_err();
        assert!(err.to_string().contains("state.json"), "{err}");
    }

    #[test]
    fn requests_are_counted_per_bucket() {
        let state = EmulatorState::new(None).unwrap();
        state.create_bucket("a", "cn-hangzhou");
        state.create_bucket("b", "cn-hangzhou");
        state.count_bucket("a");
        state.count_bucket("a");
        state.count_bucket("b");
        state.count_bucket("unknown");
        assert_eq!(state.bucket_requests()["a"], 2);
        assert!(!state.bucket_requests().contains_key("unknown"));
        state.reset_counters();
        assert!(state.bucket_requests().is_empty());
    }

    #[test]
    fn qps_cap_counts_a_sliding_second() {
        let state = EmulatorState::new(None).unwrap();
        state.set_faults(Faults {
            qps_limit: Some(3),
            ..Faults::default()
        });
        let refused: Vec<bool> = (0..5).map(|_| state.arrive()).collect();
        assert_eq!(refused, [false, false, false, true, true]);
        assert_eq!(state.arrivals().len(), 5);
    }

    #[test]
    fn request_ids_are_unique_and_oss_shaped() {
        let state = EmulatorState::new(None).unwrap();
        let a = state.next_request_id();
        let b = state.next_request_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 24);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase())
        );
    }
}
