//! The one claims index (DESIGN.md 3.1): bucket → the resources claiming it, fed by the watch
//! caches. It is *complete* only once every cache it draws from has listed; until then nobody
//! writes. Every change of a bucket's claimant set (create, delete, a spec edit, a relist that
//! adds or drops objects) names the other claimants of that bucket, so they are reconciled at
//! once: a same-second senior displaces the current owner, and an heir takes over also when a
//! relist hid the owner's Delete. Ownership itself is `ownership::owner_of` over `claims_on`.
//!
//! With `--tenancy grants` (DESIGN.md 3.5) only a *permitted* resource is a claimant, so one
//! that no grant covers can neither block nor displace a permitted owner. The grants are one
//! more cache the index draws from (it is not complete before they have listed), and a grant
//! created, changed or deleted re-evaluates every resource: those whose verdict changed and the
//! other claimants of buckets whose claimant set changed are re-triggered.
//!
//! [`ClaimsIndex::observe`] and [`ClaimsIndex::observe_grants`] only update maps (no I/O); the
//! controller wiring feeds them watch events and forwards what they return.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use kube::runtime::watcher::Event;
use kube::{Resource, ResourceExt};
use tokio::sync::watch;

use super::context::Guarded;
use super::grants::{self, Grant, Permission, Request, Tenancy};
use super::guard::Guard;
use super::ownership::Claim;
use super::shard::Shard;
use crate::api::grant::BucketEncryptionGrant;
use crate::api::{BucketEncryption, FINALIZER};

/// One resource as the index knows it: the claim it makes when permitted. The claim is shared
/// with the bucket's claimants (one copy of its strings per resource, not two).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    /// Its namespace and name (to trigger it), and its bucket and age (what it claims).
    claim: Arc<Claim>,
    /// `claim_of(resource, true)` is `Some`: it claims `claim` if the grants permit it.
    claims: bool,
    /// It has no `spec.credentials` (so it relies on the operator's own).
    operator_credentials: bool,
}

impl Entry {
    /// What it claims if the grants permit it.
    fn candidate(&self) -> Option<&Arc<Claim>> {
        self.claims.then_some(&self.claim)
    }
}

/// A claim before and after a change (`None`: no claim).
type Move = (Option<Arc<Claim>>, Option<Arc<Claim>>);

/// The grants cache: the valid grants by uid (an invalid grant grants nothing).
#[derive(Default)]
struct GrantSource {
    listed: bool,
    grants: HashMap<String, Grant>,
    relisting: Option<HashMap<String, Grant>>,
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
    tenancy: Tenancy,
    sources: Vec<Source>,
    /// `Some` with tenancy grants.
    grants: Option<GrantSource>,
    /// Claimants by bucket: uid → (source, claim).
    by_bucket: HashMap<String, Claimants>,
    /// Uids of resources that would claim a bucket but are not permitted to.
    not_permitted: HashSet<String>,
}

/// One bucket's claimants by uid, in uid order, as `(uid, source, claim)`. A sorted vector: nearly
/// every bucket has one claimant, and a `BTreeMap`'s first node alone has room for eleven (about
/// 1.4 KiB per bucket, 14 MiB on a fleet of 10,000).
#[derive(Debug, Default)]
struct Claimants(Vec<(String, usize, Arc<Claim>)>);

impl Claimants {
    fn position(&self, uid: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(u, _, _)| u.as_str().cmp(uid))
    }

    fn insert(&mut self, uid: &str, source: usize, claim: Arc<Claim>) {
        match self.position(uid) {
            Ok(at) => (self.0[at].1, self.0[at].2) = (source, claim),
            Err(at) => {
                self.0.reserve_exact(1);
                self.0.insert(at, (uid.to_owned(), source, claim));
            }
        }
    }

    fn remove(&mut self, uid: &str) {
        if let Ok(at) = self.position(uid) {
            self.0.remove(at);
        }
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn iter(&self) -> impl Iterator<Item = &(String, usize, Arc<Claim>)> {
        self.0.iter()
    }
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

/// The claim a resource makes, if it makes one: `permitted` by the grants (3.5), a valid spec,
/// and alive (or being deleted while it still holds the finalizer: its cleanup is under way, so
/// nobody else may write yet).
pub fn claim_of(resource: &BucketEncryption, permitted: bool) -> Option<Claim> {
    let deleting = resource.meta().deletion_timestamp.is_some();
    let finalizing = resource.finalizers().iter().any(|f| f == FINALIZER);
    (permitted && (!deleting || finalizing) && resource.spec.validate().is_ok()).then(|| Claim::of(resource))
}

fn entry_of(object: &Guarded, shard: Shard) -> Option<(String, Entry)> {
    let meta = match &object.0 {
        Ok(resource) => resource.meta(),
        Err(invalid) => &invalid.metadata,
    };
    let uid = meta.uid.clone()?;
    let candidate = object
        .0
        .as_ref()
        .ok()
        .and_then(|r| claim_of(r, true))
        .filter(|claim| shard.owns(&claim.bucket));
    let claims = candidate.is_some();
    let claim = candidate.unwrap_or_else(|| Claim {
        bucket: String::new(),
        created: None,
        namespace: meta.namespace.clone().unwrap_or_default(),
        name: meta.name.clone().unwrap_or_default(),
    });
    Some((
        uid,
        Entry {
            claim: Arc::new(claim),
            claims,
            operator_credentials: object.0.as_ref().is_ok_and(|r| r.spec.credentials.is_none()),
        },
    ))
}

/// A grant's uid and, when it is valid, what it grants.
fn grant_of(object: &Guard<BucketEncryptionGrant>) -> Option<(String, Option<Grant>)> {
    match &object.0 {
        Ok(grant) => Some((grant.metadata.uid.clone()?, Grant::of(grant).ok())),
        Err(invalid) => Some((invalid.metadata.uid.clone()?, None)),
    }
}

impl ClaimsIndex {
    /// An index over `sources` watch caches (and, with tenancy grants, the grants cache),
    /// complete once each has listed.
    pub fn new(sources: usize, tenancy: Tenancy) -> Self {
        let grants = (tenancy == Tenancy::Grants).then(GrantSource::default);
        let inner = Inner {
            tenancy,
            sources: (0..sources).map(|_| Source::default()).collect(),
            grants,
            by_bucket: HashMap::new(),
            not_permitted: HashSet::new(),
        };
        let complete = inner.is_complete();
        Self {
            inner: Mutex::new(inner),
            complete: watch::Sender::new(complete),
            shard: Shard::ALL,
        }
    }

    /// The same index, counting only claims on `shard`'s buckets (the others are other shards'
    /// to decide). Set before any event is observed.
    pub fn with_shard(mut self, shard: Shard) -> Self {
        self.shard = shard;
        self
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
            .map(|claims| claims.iter().map(|(_, _, c)| Claim::clone(c)).collect())
            .unwrap_or_default()
    }

    /// Whether any resource claims `bucket`.
    pub fn is_claimed(&self, bucket: &str) -> bool {
        self.lock().by_bucket.get(bucket).is_some_and(|c| !c.is_empty())
    }

    /// The owner of `bucket`, as `ownership::owner_of` has it over the index's claims.
    pub fn owner_of(&self, bucket: &str) -> Option<Claim> {
        let claims = self.claims_on(bucket);
        super::ownership::owner_of(bucket, &claims).cloned()
    }

    /// Whether the grants permit `resource` (always, with tenancy open).
    pub fn permission(&self, resource: &BucketEncryption) -> Permission {
        self.lock().verdict(Request::of(resource))
    }

    /// Resources that would claim a bucket but are not permitted to.
    pub fn not_permitted(&self) -> usize {
        self.lock().not_permitted.len()
    }

    /// Takes one event of the grants cache into the index (ignored with tenancy open):
    /// re-evaluates every resource against the new grants.
    pub fn observe_grants(&self, event: &Event<Guard<BucketEncryptionGrant>>) -> Changes {
        let mut inner = self.lock();
        let was_complete = inner.is_complete();
        let Some(source) = inner.grants.as_mut() else {
            return Changes::default();
        };
        let before = source.grants.clone();
        match event {
            Event::Init => source.relisting = Some(HashMap::new()),
            Event::InitApply(object) => {
                if let Some((uid, Some(grant))) = grant_of(object) {
                    source
                        .relisting
                        .get_or_insert_with(HashMap::new)
                        .insert(uid, grant);
                }
            }
            Event::InitDone => {
                source.grants = source.relisting.take().unwrap_or_default();
                source.listed = true;
            }
            Event::Apply(object) => match grant_of(object) {
                Some((uid, Some(grant))) => {
                    source.grants.insert(uid, grant);
                }
                Some((uid, None)) => {
                    source.grants.remove(&uid);
                }
                None => {}
            },
            Event::Delete(object) => {
                if let Some((uid, _)) = grant_of(object) {
                    source.grants.remove(&uid);
                }
            }
        }
        let Some(source) = inner.grants.as_ref() else {
            return Changes::default();
        };
        // Before the index is complete nobody has been reconciled yet (every reconcile waits
        // for it), so there is nobody to re-trigger: each listed resource is reconciled anyway.
        let changes = match (source.grants == before, was_complete) {
            (true, _) => Changes::default(),
            (false, true) => inner.regrant(&before),
            (false, false) => {
                inner.regrant(&before);
                Changes::default()
            }
        };
        let complete = inner.is_complete();
        drop(inner);
        if complete && !self.is_complete() {
            self.complete.send_replace(true);
        }
        changes
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
        let complete = inner.is_complete();
        drop(inner);
        if complete && !self.is_complete() {
            self.complete.send_replace(true);
        }
        changes
    }
}

impl Inner {
    fn is_complete(&self) -> bool {
        self.sources.iter().all(|s| s.listed) && self.grants.as_ref().is_none_or(|g| g.listed)
    }

    fn verdict(&self, request: Request<'_>) -> Permission {
        grants::permit(
            self.tenancy,
            self.grants.iter().flat_map(|g| g.grants.values()),
            request,
        )
    }

    fn request(entry: &Entry) -> Option<Request<'_>> {
        entry.candidate().map(|c| Request {
            namespace: &c.namespace,
            bucket: &c.bucket,
            operator_credentials: entry.operator_credentials,
        })
    }

    /// The claim an entry makes under the current grants.
    fn claim(&self, entry: &Entry) -> Option<Arc<Claim>> {
        let request = Self::request(entry)?;
        self.verdict(request)
            .is_permitted()
            .then(|| entry.candidate().cloned())
            .flatten()
    }

    /// After the grants changed from `before`: moves every claim whose permission changed, and
    /// re-triggers each resource whose verdict changed plus the other claimants of the buckets
    /// whose claimant set changed.
    fn regrant(&mut self, before: &HashMap<String, Grant>) -> Changes {
        // (source, uid, claim before, claim after)
        let mut moved: Vec<(usize, String, Move)> = Vec::new();
        let mut retrigger: Vec<(usize, String, String)> = Vec::new();
        for (index, source) in self.sources.iter().enumerate() {
            for (uid, entry) in &source.objects {
                let Some(request) = Self::request(entry) else {
                    continue;
                };
                let old = grants::permit(self.tenancy, before.values(), request);
                let new = self.verdict(request);
                if old == new {
                    continue;
                }
                retrigger.push((index, entry.claim.namespace.clone(), entry.claim.name.clone()));
                if old.is_permitted() != new.is_permitted() {
                    let claim = entry.candidate().cloned();
                    let (was, now) = if new.is_permitted() {
                        (None, claim)
                    } else {
                        (claim, None)
                    };
                    moved.push((index, uid.clone(), (was, now)));
                }
            }
        }
        let mut touched: HashSet<String> = HashSet::new();
        let mut movers: HashSet<String> = HashSet::new();
        for (source, uid, (was, now)) in moved {
            movers.insert(uid.clone());
            self.move_claim(source, &uid, was, now, &mut touched);
        }
        let mut changes = Changes {
            retrigger,
            removed: Vec::new(),
        };
        self.retrigger_claimants(&touched, &movers, &mut changes);
        changes
    }

    /// Moves one uid's claim in `by_bucket` (and the not-permitted set), noting the buckets.
    fn move_claim(
        &mut self,
        source: usize,
        uid: &str,
        old: Option<Arc<Claim>>,
        new: Option<Arc<Claim>>,
        touched: &mut HashSet<String>,
    ) {
        if let Some(old) = old {
            touched.insert(old.bucket.clone());
            if let Some(claims) = self.by_bucket.get_mut(&old.bucket) {
                claims.remove(uid);
                if claims.is_empty() {
                    self.by_bucket.remove(&old.bucket);
                }
            }
        }
        if let Some(new) = new {
            touched.insert(new.bucket.clone());
            self.by_bucket
                .entry(new.bucket.clone())
                .or_default()
                .insert(uid, source, new);
        }
        let blocked = self
            .sources
            .get(source)
            .and_then(|s| s.objects.get(uid))
            .is_some_and(|e| e.claims && self.claim(e).is_none());
        if blocked {
            self.not_permitted.insert(uid.to_owned());
        } else {
            self.not_permitted.remove(uid);
        }
    }

    /// Adds the claimants of `touched` buckets other than `movers` to the re-triggers.
    fn retrigger_claimants(
        &self,
        touched: &HashSet<String>,
        movers: &HashSet<String>,
        changes: &mut Changes,
    ) {
        let mut buckets: Vec<&String> = touched.iter().collect();
        buckets.sort();
        for bucket in buckets {
            for (uid, source, claim) in self.by_bucket.get(bucket).into_iter().flat_map(Claimants::iter) {
                if !movers.contains(uid) {
                    changes
                        .retrigger
                        .push((*source, claim.namespace.clone(), claim.name.clone()));
                }
            }
        }
    }

    /// Applies entry updates of one source (None: the object is gone) and works out which other
    /// claimants of the touched buckets must be reconciled.
    fn apply(&mut self, source: usize, updates: Vec<(String, Option<Entry>)>) -> Changes {
        let mut changes = Changes::default();
        let mut touched: HashSet<String> = HashSet::new();
        let mut movers: HashSet<String> = HashSet::new();
        for (uid, mut entry) in updates {
            let known = self.sources.get(source).and_then(|s| s.objects.get(&uid));
            if let (Some(entry), Some(known)) = (entry.as_mut(), known)
                && entry.claim == known.claim
            {
                // Keep the copy the bucket's claimants share.
                entry.claim = Arc::clone(&known.claim);
            }
            let old_claim = known.and_then(|e| self.claim(e));
            let new_claim = entry.as_ref().and_then(|e| self.claim(e));
            let Some(s) = self.sources.get_mut(source) else {
                break;
            };
            let old = match entry {
                Some(entry) => s.objects.insert(uid.clone(), entry),
                None => s.objects.remove(&uid),
            };
            if !s.objects.contains_key(&uid) && old.is_some() {
                changes.removed.push(uid.clone());
            }
            if old_claim == new_claim {
                // The not-permitted set follows the entry even when no claim moves.
                self.move_claim(source, &uid, None, None, &mut touched);
                continue;
            }
            movers.insert(uid.clone());
            self.move_claim(source, &uid, old_claim, new_claim, &mut touched);
        }
        self.retrigger_claimants(&touched, &movers, &mut changes);
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
        serde_json::from_value::<Guarded>(document).unwrap()
    }

    #[test]
    fn claimants_stay_in_uid_order_and_a_uid_claims_once() {
        let claim = |name: &str| Claim {
            bucket: "b".into(),
            created: None,
            namespace: "ns".into(),
            name: name.into(),
        };
        let mut claimants = Claimants::default();
        claimants.insert("u3", 0, Arc::new(claim("c")));
        claimants.insert("u1", 1, Arc::new(claim("a")));
        claimants.insert("u2", 0, Arc::new(claim("b")));
        claimants.insert("u1", 0, Arc::new(claim("a2")));
        let order = |c: &Claimants| -> Vec<(String, usize, String)> {
            c.iter()
                .map(|(u, s, c)| (u.clone(), *s, c.name.clone()))
                .collect()
        };
        let owned = |u: &str, s: usize, n: &str| (u.to_owned(), s, n.to_owned());
        assert_eq!(
            order(&claimants),
            [owned("u1", 0, "a2"), owned("u2", 0, "b"), owned("u3", 0, "c")]
        );
        claimants.remove("u2");
        claimants.remove("u9");
        assert_eq!(order(&claimants), [owned("u1", 0, "a2"), owned("u3", 0, "c")]);
        claimants.remove("u1");
        claimants.remove("u3");
        assert!(claimants.is_empty());
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
        let index = ClaimsIndex::new(1, Tenancy::Open).with_shard(shard);
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
    fn a_resource_updated_without_moving_its_claim_shares_one_copy_with_its_claimants() {
        let index = ClaimsIndex::new(1, Tenancy::Open);
        listed(&index, 0, &[object("a", "u1", "bkt", T1, json!({}))]);
        let relabelled = object(
            "a",
            "u1",
            "bkt",
            T1,
            json!({"metadata": {"labels": {"team": "x"}}}),
        );
        index.observe(0, &Event::Apply(relabelled));
        let state = index.lock();
        let entry = &state.sources[0].objects["u1"];
        let (_, _, shared) = state.by_bucket["bkt"].iter().next().unwrap();
        assert!(Arc::ptr_eq(&entry.claim, shared), "two copies of one claim");
    }

    #[test]
    fn complete_only_once_every_cache_has_listed() {
        let index = ClaimsIndex::new(2, Tenancy::Open);
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
        assert!(
            ClaimsIndex::new(0, Tenancy::Open).is_complete(),
            "nothing to wait for"
        );
    }

    #[test]
    fn a_first_list_triggers_nobody_twice() {
        let index = ClaimsIndex::new(1, Tenancy::Open);
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
        let index = ClaimsIndex::new(1, Tenancy::Open);
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
        let index = ClaimsIndex::new(1, Tenancy::Open);
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
        let index = ClaimsIndex::new(1, Tenancy::Open);
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
        let index = ClaimsIndex::new(1, Tenancy::Open);
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
        let index = ClaimsIndex::new(1, Tenancy::Open);
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

    fn grant(uid: &str, namespaces: &[&str], buckets: &[&str]) -> Guard<BucketEncryptionGrant> {
        serde_json::from_value(json!({
            "apiVersion": "oss.encryption.dev/v1alpha1", "kind": "BucketEncryptionGrant",
            "metadata": {"name": format!("grant-{uid}"), "uid": uid},
            "spec": {"namespaces": namespaces, "buckets": buckets, "operatorCredentials": "Allow"}
        }))
        .unwrap()
    }

    fn grants_listed(index: &ClaimsIndex, grants: &[Guard<BucketEncryptionGrant>]) -> Changes {
        index.observe_grants(&Event::Init);
        for g in grants {
            index.observe_grants(&Event::InitApply(g.clone()));
        }
        index.observe_grants(&Event::InitDone)
    }

    #[test]
    fn with_tenancy_grants_the_index_waits_for_the_grants_too() {
        let index = ClaimsIndex::new(1, Tenancy::Grants);
        listed(&index, 0, &[object("early", "u1", "bkt", T1, json!({}))]);
        assert!(!index.is_complete(), "grants not listed yet");
        assert!(!index.is_claimed("bkt"), "no grant known yet");
        let changes = grants_listed(&index, &[grant("g1", &["ns"], &["bkt"])]);
        assert!(index.is_complete());
        assert_eq!(names(index.claims_on("bkt")), ["ns/early"]);
        assert_eq!(
            changes,
            Changes::default(),
            "nobody was reconciled before the index was complete: nobody to re-trigger"
        );
    }

    #[test]
    fn an_unpermitted_resource_is_no_claimant_and_a_grant_makes_it_one() {
        let index = ClaimsIndex::new(1, Tenancy::Grants);
        grants_listed(&index, &[grant("g1", &["other"], &["bkt"])]);
        listed(
            &index,
            0,
            &[
                object("stranger", "u1", "bkt", T1, json!({})),
                object("permitted", "u2", "elsewhere", T1, json!({})),
            ],
        );
        assert!(!index.is_claimed("bkt"), "namespace ns has no grant for bkt");
        assert_eq!(index.not_permitted(), 2);
        // A grant for ns on bucket `bkt`: the stranger becomes a claimant and is re-triggered.
        let changes = index.observe_grants(&Event::Apply(grant("g2", &["ns"], &["bk?"])));
        assert_eq!(changes.retrigger, vec![(0, "ns".into(), "stranger".into())]);
        assert_eq!(names(index.claims_on("bkt")), ["ns/stranger"]);
        assert_eq!(index.not_permitted(), 1);
        // An unchanged grant re-evaluates nothing.
        let same = index.observe_grants(&Event::Apply(grant("g2", &["ns"], &["bk?"])));
        assert_eq!(same, Changes::default());
        // Widening it to `*` brings in the other one; the stranger's verdict is unchanged.
        let changes = index.observe_grants(&Event::Apply(grant("g2", &["ns"], &["*"])));
        assert_eq!(changes.retrigger, vec![(0, "ns".into(), "permitted".into())]);
        assert_eq!(index.not_permitted(), 0);
    }

    #[test]
    fn revoking_a_grant_retriggers_the_revoked_and_the_heir() {
        let index = ClaimsIndex::new(1, Tenancy::Grants);
        let g = grant("g1", &["ns"], &["bkt"]);
        grants_listed(&index, std::slice::from_ref(&g));
        listed(
            &index,
            0,
            &[
                object("elder", "u1", "bkt", T1, json!({})),
                object(
                    "heir",
                    "u2",
                    "bkt",
                    T2,
                    json!({"credentials": {"secretRef": {"name": "s"}}}),
                ),
            ],
        );
        assert_eq!(names(index.claims_on("bkt")), ["ns/elder", "ns/heir"]);
        // The grant is narrowed to Deny: the elder relies on the operator's credentials and
        // stops being a claimant; the heir (own Secret) stays and is told.
        let mut denied = g.clone();
        if let Ok(grant) = denied.0.as_mut() {
            grant.spec.operator_credentials = crate::api::grant::OperatorCredentials::Deny;
        }
        let changes = index.observe_grants(&Event::Apply(denied.clone()));
        assert_eq!(
            changes.retrigger,
            vec![(0, "ns".into(), "elder".into()), (0, "ns".into(), "heir".into())]
        );
        assert_eq!(names(index.claims_on("bkt")), ["ns/heir"]);
        let changes = index.observe_grants(&Event::Delete(denied));
        assert_eq!(changes.retrigger.len(), 2, "both verdicts changed: {changes:?}");
        assert!(!index.is_claimed("bkt"));
        assert_eq!(index.not_permitted(), 2);
    }
}
