//! The one claims index (DESIGN.md 3.1): bucket → the resources claiming it, fed by the watch
//! caches. It is *complete* only once every cache it draws from has listed; until then nobody
//! writes. Every change of a bucket's claimant set (create, delete, a spec edit, a relist that
//! adds or drops objects) names the other claimants of that bucket, so they are reconciled at
//! once: a same-second senior displaces the current owner, and an heir takes over also when a
//! relist hid the owner's Delete. Ownership itself is `ownership::owner_of` over `claims_on`.
//!
//! [`ClaimsIndex::observe`] only updates maps (no I/O); the controller wiring feeds it watch
//! events and forwards what it returns.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

use kube::runtime::watcher::Event;
use kube::{Resource, ResourceExt};
use tokio::sync::watch;

use super::context::Guarded;
use super::ownership::Claim;
use super::shard::Shard;
use crate::api::{BucketEncryption, FINALIZER};

/// One resource as the index knows it: its claim, when it is a claimant.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    /// `namespace/name`, to trigger it.
    namespace: String,
    name: String,
    claim: Option<Claim>,
}

/// The objects of one watch cache.
#[derive(Default)]
struct Source {
    /// Has finished a first list.
    listed: bool,
    objects: HashMap<String, Entry>,
    /// A relist under way: what it has listed so far (swapped in at its end).
    relisting: Option<HashMap<String, Entry>>,
}

/// What one watch event changed: resources to reconcile now, and uids gone for good.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Claimants of a bucket whose claimant set changed, other than the resources whose own
    /// event changed it (their event triggers them already): `(source, namespace, name)`.
    pub retrigger: Vec<(usize, String, String)>,
    /// Objects no longer in the cache (their per-object state can go).
    pub removed: Vec<String>,
}

#[derive(Default)]
struct Inner {
    sources: Vec<Source>,
    /// Claimants by bucket: uid → (source, claim).
    by_bucket: HashMap<String, BTreeMap<String, (usize, Claim)>>,
}

/// The claims index shared by every actor of one instance.
pub struct ClaimsIndex {
    inner: Mutex<Inner>,
    complete: watch::Sender<bool>,
    /// Only claims on this shard's buckets count (the others are another shard's to decide).
    shard: Shard,
}

impl std::fmt::Debug for ClaimsIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClaimsIndex")
            .field("complete", &self.is_complete())
            .finish_non_exhaustive()
    }
}

/// The claim a resource makes, if it makes one: a valid spec, and alive (or being deleted while
/// it still holds the finalizer: its cleanup is under way, so nobody else may write yet).
pub fn claim_of(resource: &BucketEncryption) -> Option<Claim> {
    let deleting = resource.meta().deletion_timestamp.is_some();
    let finalizing = resource.finalizers().iter().any(|f| f == FINALIZER);
    ((!deleting || finalizing) && resource.spec.validate().is_ok()).then(|| Claim::of(resource))
}

fn entry_of(object: &Guarded, shard: Shard) -> Option<(String, Entry)> {
    let meta = match &object.0 {
        Ok(resource) => resource.meta(),
        Err(invalid) => &invalid.metadata,
    };
    let uid = meta.uid.clone()?;
    Some((
        uid,
        Entry {
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            claim: object
                .0
                .as_ref()
                .ok()
                .and_then(claim_of)
                .filter(|claim| shard.owns(&claim.bucket)),
        },
    ))
}

impl ClaimsIndex {
    /// An index over `sources` watch caches, complete once each has listed.
    pub fn new(sources: usize) -> Self {
        Self::for_shard(sources, Shard::ALL)
    }

    /// An index of the claims on `shard`'s buckets.
    pub fn for_shard(sources: usize, shard: Shard) -> Self {
        let inner = Inner {
            sources: (0..sources).map(|_| Source::default()).collect(),
            by_bucket: HashMap::new(),
        };
        Self {
            inner: Mutex::new(inner),
            complete: watch::Sender::new(sources == 0),
            shard,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether every cache has listed (until then no claim can be ruled out).
    pub fn is_complete(&self) -> bool {
        *self.complete.borrow()
    }

    /// Waits until the index is complete.
    pub async fn until_complete(&self) {
        let mut complete = self.complete.subscribe();
        let _ = complete.wait_for(|c| *c).await;
    }

    /// The claims on `bucket`.
    pub fn claims_on(&self, bucket: &str) -> Vec<Claim> {
        self.lock()
            .by_bucket
            .get(bucket)
            .map(|claims| claims.values().map(|(_, c)| c.clone()).collect())
            .unwrap_or_default()
    }

    /// Whether any resource claims `bucket`.
    pub fn is_claimed(&self, bucket: &str) -> bool {
        self.lock().by_bucket.get(bucket).is_some_and(|c| !c.is_empty())
    }

    /// Takes one event of cache `source` into the index.
    pub fn observe(&self, source: usize, event: &Event<Guarded>) -> Changes {
        let mut inner = self.lock();
        let mut updates: Vec<(String, Option<Entry>)> = Vec::new();
        match event {
            Event::Init => {
                if let Some(s) = inner.sources.get_mut(source) {
                    s.relisting = Some(HashMap::new());
                }
            }
            Event::InitApply(object) => {
                if let (Some(s), Some((uid, entry))) =
                    (inner.sources.get_mut(source), entry_of(object, self.shard))
                {
                    s.relisting.get_or_insert_with(HashMap::new).insert(uid, entry);
                }
            }
            Event::InitDone => {
                let Some(s) = inner.sources.get_mut(source) else {
                    return Changes::default();
                };
                let listed = s.relisting.take().unwrap_or_default();
                for uid in s.objects.keys() {
                    if !listed.contains_key(uid) {
                        updates.push((uid.clone(), None));
                    }
                }
                for (uid, entry) in listed {
                    if s.objects.get(&uid) != Some(&entry) {
                        updates.push((uid, Some(entry)));
                    }
                }
                s.listed = true;
            }
            Event::Apply(object) => {
                if let Some((uid, entry)) = entry_of(object, self.shard) {
                    updates.push((uid, Some(entry)));
                }
            }
            Event::Delete(object) => {
                if let Some((uid, _)) = entry_of(object, self.shard) {
                    updates.push((uid, None));
                }
            }
        }
        let changes = inner.apply(source, updates);
        let complete = inner.sources.iter().all(|s| s.listed);
        drop(inner);
        if complete && !self.is_complete() {
            self.complete.send_replace(true);
        }
        changes
    }
}

impl Inner {
    /// Applies entry updates of one source (None: the object is gone) and works out which other
    /// claimants of the touched buckets must be reconciled.
    fn apply(&mut self, source: usize, updates: Vec<(String, Option<Entry>)>) -> Changes {
        let mut changes = Changes::default();
        let mut touched: HashSet<String> = HashSet::new();
        let mut movers: HashSet<String> = HashSet::new();
        for (uid, entry) in updates {
            let Some(s) = self.sources.get_mut(source) else {
                break;
            };
            let old = match &entry {
                Some(entry) => s.objects.insert(uid.clone(), entry.clone()),
                None => s.objects.remove(&uid),
            };
            if entry.is_none() && old.is_some() {
                changes.removed.push(uid.clone());
            }
            let old_claim = old.and_then(|e| e.claim);
            let new_claim = entry.and_then(|e| e.claim);
            if old_claim == new_claim {
                continue;
            }
            movers.insert(uid.clone());
            if let Some(old) = old_claim {
                touched.insert(old.bucket.clone());
                if let Some(claims) = self.by_bucket.get_mut(&old.bucket) {
                    claims.remove(&uid);
                    if claims.is_empty() {
                        self.by_bucket.remove(&old.bucket);
                    }
                }
            }
            if let Some(new) = new_claim {
                touched.insert(new.bucket.clone());
                self.by_bucket
                    .entry(new.bucket.clone())
                    .or_default()
                    .insert(uid, (source, new));
            }
        }
        let mut buckets: Vec<&String> = touched.iter().collect();
        buckets.sort();
        for bucket in buckets {
            for (uid, (source, claim)) in self.by_bucket.get(bucket).into_iter().flatten() {
                if !movers.contains(uid) {
                    changes
                        .retrigger
                        .push((*source, claim.namespace.clone(), claim.name.clone()));
                }
            }
        }
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::DeserializeGuard;
    use serde_json::json;

    fn object(name: &str, uid: &str, bucket: &str, created: &str, extra: serde_json::Value) -> Guarded {
        let mut document = json!({
            "apiVersion": "oss.encryption.dev/v1alpha1", "kind": "BucketEncryption",
            "metadata": {"name": name, "namespace": "ns", "uid": uid, "creationTimestamp": created},
            "spec": {"bucket": bucket, "region": "cn-hangzhou", "algorithm": "AES256"}
        });
        for (k, v) in extra.as_object().unwrap() {
            match k.as_str() {
                "metadata" => {
                    for (mk, mv) in v.as_object().unwrap() {
                        document["metadata"][mk] = mv.clone();
                    }
                }
                _ => document["spec"][k] = v.clone(),
            }
        }
        serde_json::from_value::<DeserializeGuard<BucketEncryption>>(document).unwrap()
    }

    fn listed(index: &ClaimsIndex, source: usize, objects: &[Guarded]) -> Changes {
        index.observe(source, &Event::Init);
        for o in objects {
            index.observe(source, &Event::InitApply(o.clone()));
        }
        index.observe(source, &Event::InitDone)
    }

    fn names(claims: Vec<Claim>) -> Vec<String> {
        let mut names: Vec<String> = claims.iter().map(Claim::resource).collect();
        names.sort();
        names
    }

    const T1: &str = "2026-01-01T00:00:01Z";
    const T2: &str = "2026-01-01T00:00:02Z";

    #[test]
    fn a_shard_indexes_only_its_own_buckets_and_triggers_only_their_claimants() {
        let shard = Shard::new(0, 2).unwrap();
        let (mine, theirs): (Vec<String>, Vec<String>) = (0..40)
            .map(|n| format!("bucket-{n}"))
            .partition(|b| shard.owns(b));
        let (mine, theirs) = (&mine[0], &theirs[0]);
        let index = ClaimsIndex::for_shard(1, shard);
        listed(
            &index,
            0,
            &[
                object("a", "u1", mine, T1, json!({})),
                object("b", "u2", theirs, T1, json!({})),
            ],
        );
        assert_eq!(names(index.claims_on(mine)), ["ns/a"]);
        assert!(!index.is_claimed(theirs), "another shard's bucket");
        let changes = index.observe(0, &Event::Apply(object("c", "u3", theirs, T2, json!({}))));
        assert!(changes.retrigger.is_empty(), "{changes:?}");
        let changes = index.observe(0, &Event::Apply(object("d", "u4", mine, T2, json!({}))));
        assert_eq!(changes.retrigger, [(0, "ns".to_owned(), "a".to_owned())]);
    }

    #[test]
    fn complete_only_once_every_cache_has_listed() {
        let index = ClaimsIndex::new(2);
        assert!(!index.is_complete());
        listed(&index, 0, &[object("a", "u1", "bkt", T1, json!({}))]);
        assert!(!index.is_complete(), "one of two caches listed");
        index.observe(1, &Event::Apply(object("x", "u9", "other", T1, json!({}))));
        assert!(
            !index.is_complete(),
            "an event before its list does not complete it"
        );
        listed(&index, 1, &[]);
        assert!(index.is_complete());
        assert!(ClaimsIndex::new(0).is_complete(), "nothing to wait for");
    }

    #[test]
    fn a_first_list_triggers_nobody_twice() {
        let index = ClaimsIndex::new(1);
        let changes = listed(
            &index,
            0,
            &[
                object("a", "u1", "bkt", T1, json!({})),
                object("c", "u2", "bkt", T2, json!({})),
            ],
        );
        assert_eq!(
            changes,
            Changes::default(),
            "every listed object is reconciled anyway"
        );
        assert_eq!(names(index.claims_on("bkt")), ["ns/a", "ns/c"]);
    }

    #[test]
    fn a_newcomer_retriggers_the_other_claimants_of_its_bucket_only() {
        let index = ClaimsIndex::new(1);
        listed(
            &index,
            0,
            &[
                object("owner", "u1", "bkt", T1, json!({})),
                object("alone", "u3", "elsewhere", T1, json!({})),
            ],
        );
        let changes = index.observe(0, &Event::Apply(object("senior", "u2", "bkt", T1, json!({}))));
        assert_eq!(changes.retrigger, vec![(0, "ns".into(), "owner".into())]);
        let unchanged = index.observe(0, &Event::Apply(object("senior", "u2", "bkt", T1, json!({}))));
        assert_eq!(
            unchanged,
            Changes::default(),
            "a status-only change moves no claim"
        );
    }

    #[test]
    fn a_relist_that_hid_a_delete_retriggers_the_heir_and_drops_the_uid() {
        let index = ClaimsIndex::new(1);
        listed(
            &index,
            0,
            &[
                object("elder", "u1", "bkt", T1, json!({})),
                object("heir", "u2", "bkt", T2, json!({})),
            ],
        );
        let changes = listed(&index, 0, &[object("heir", "u2", "bkt", T2, json!({}))]);
        assert_eq!(changes.retrigger, vec![(0, "ns".into(), "heir".into())]);
        assert_eq!(changes.removed, vec!["u1".to_owned()]);
        assert_eq!(names(index.claims_on("bkt")), ["ns/heir"]);
    }

    #[test]
    fn a_delete_event_retriggers_the_heir() {
        let index = ClaimsIndex::new(1);
        let elder = object("elder", "u1", "bkt", T1, json!({}));
        listed(
            &index,
            0,
            &[elder.clone(), object("heir", "u2", "bkt", T2, json!({}))],
        );
        let changes = index.observe(0, &Event::Delete(elder));
        assert_eq!(changes.retrigger, vec![(0, "ns".into(), "heir".into())]);
        assert_eq!(changes.removed, vec!["u1".to_owned()]);
    }

    #[test]
    fn who_claims() {
        let deleting = json!({"metadata": {"deletionTimestamp": T2}});
        let finalizing = json!({"metadata": {"deletionTimestamp": T2, "finalizers": [FINALIZER]}});
        let index = ClaimsIndex::new(1);
        listed(
            &index,
            0,
            &[
                object("live", "u1", "bkt", T1, json!({})),
                object("invalid", "u2", "bkt", T1, json!({"kmsMasterKeyId": "k"})),
                object("going", "u3", "bkt", T1, deleting),
                object("cleaning", "u4", "bkt", T1, finalizing),
            ],
        );
        assert_eq!(names(index.claims_on("bkt")), ["ns/cleaning", "ns/live"]);
        assert!(index.is_claimed("bkt"));
        assert!(!index.is_claimed("nobody"));
    }

    #[test]
    fn losing_the_finalizer_while_deleting_retriggers_the_rest() {
        let index = ClaimsIndex::new(1);
        let finalizing = json!({"metadata": {"deletionTimestamp": T2, "finalizers": [FINALIZER]}});
        listed(
            &index,
            0,
            &[
                object("elder", "u1", "bkt", T1, finalizing),
                object("heir", "u2", "bkt", T2, json!({})),
            ],
        );
        let released = json!({"metadata": {"deletionTimestamp": T2, "finalizers": []}});
        let changes = index.observe(0, &Event::Apply(object("elder", "u1", "bkt", T1, released)));
        assert_eq!(changes.retrigger, vec![(0, "ns".into(), "heir".into())]);
        assert!(changes.removed.is_empty(), "still in the cache");
    }
}
