//! Which watch events trigger a reconcile: a resource seen for the first time, or seen with a
//! generation it did not have (a spec edit, the start of a deletion). The controller's own
//! status and finalizer writes leave the generation alone, so they never feed back.
//!
//! kube's `predicate_filter` does the same keyed by three cloned strings per resource (name,
//! namespace, uid: ~170 bytes each at 10,000 resources); here the key is the uid's 128 bits.
//! Deletions forget their resource, and so does a relist that no longer lists it (a watch
//! that expired can hide a Delete), so the map holds what the cache holds.

use std::collections::{HashMap, HashSet};

use kube::ResourceExt;
use kube::runtime::watcher::Event;

/// A resource's identity: its uid, as 128 bits when it is a UUID (what API servers issue).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    Uuid(u128),
    Other(Box<str>),
}

impl Key {
    /// The canonical 8-4-4-4-12 hex form becomes its bits; anything else stays text.
    fn of(uid: &str) -> Self {
        let bytes = uid.as_bytes();
        let mut bits: u128 = 0;
        let canonical = bytes.len() == 36
            && bytes.iter().enumerate().all(|(i, b)| {
                if matches!(i, 8 | 13 | 18 | 23) {
                    return *b == b'-';
                }
                match (*b as char).to_digit(16) {
                    Some(digit) => {
                        bits = (bits << 4) | u128::from(digit);
                        true
                    }
                    None => false,
                }
            });
        if canonical {
            Key::Uuid(bits)
        } else {
            Key::Other(uid.into())
        }
    }
}

/// The generation each known resource was last triggered at.
#[derive(Debug, Default)]
pub struct Generations {
    seen: HashMap<Key, Option<i64>>,
    /// The resources listed so far by a relist in progress.
    relisted: Option<HashSet<Key>>,
}

impl Generations {
    /// The object `event` should trigger a reconcile of, if any. `wanted` says whether this
    /// controller reconciles an object at all (its shard); unwanted ones are not remembered, so
    /// one that moves here later triggers when it arrives.
    pub fn trigger<K: ResourceExt>(&mut self, event: Event<K>, wanted: impl Fn(&K) -> bool) -> Option<K> {
        match event {
            Event::Init => {
                self.relisted = Some(HashSet::new());
                None
            }
            Event::InitDone => {
                if let Some(listed) = self.relisted.take() {
                    self.seen.retain(|key, _| listed.contains(key));
                }
                None
            }
            Event::Delete(object) => {
                if let Some(uid) = object.uid() {
                    self.seen.remove(&Key::of(&uid));
                }
                None
            }
            Event::InitApply(object) => {
                if let (Some(listed), Some(uid)) = (&mut self.relisted, object.uid()) {
                    listed.insert(Key::of(&uid));
                }
                self.applied(object, wanted)
            }
            Event::Apply(object) => self.applied(object, wanted),
        }
    }

    fn applied<K: ResourceExt>(&mut self, object: K, wanted: impl Fn(&K) -> bool) -> Option<K> {
        if !wanted(&object) {
            return None;
        }
        let generation = object.meta().generation;
        let Some(uid) = object.uid() else {
            return Some(object);
        };
        // Without a generation there is nothing to compare: every event triggers.
        let changed = generation.is_none() || self.seen.insert(Key::of(&uid), generation) != Some(generation);
        changed.then_some(object)
    }

    /// Resources remembered.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// None remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;

    fn object(uid: &str, generation: Option<i64>) -> ConfigMap {
        let mut object = ConfigMap::default();
        object.metadata.name = Some(format!("n-{uid}"));
        object.metadata.namespace = Some("ns".into());
        object.metadata.uid = Some(uid.into());
        object.metadata.generation = generation;
        object
    }

    const A: &str = "0f8e2a1c-5b7d-4e3f-9a6b-1c2d3e4f5a6b";
    const B: &str = "7a6b5c4d-3e2f-4a1b-8c9d-0e1f2a3b4c5d";

    fn fires(generations: &mut Generations, event: Event<ConfigMap>) -> bool {
        generations.trigger(event, |_| true).is_some()
    }

    #[test]
    fn a_new_resource_and_a_new_generation_trigger_and_nothing_else_does() {
        let mut g = Generations::default();
        assert!(fires(&mut g, Event::Apply(object(A, Some(1)))));
        // A status or finalizer write: same generation.
        assert!(!fires(&mut g, Event::Apply(object(A, Some(1)))));
        assert!(fires(&mut g, Event::Apply(object(A, Some(2)))));
        assert!(
            fires(&mut g, Event::Apply(object(B, Some(2)))),
            "another uid is another resource"
        );
        assert_eq!(g.len(), 2);
    }

    #[test]
    fn without_a_generation_every_event_triggers() {
        let mut g = Generations::default();
        assert!(fires(&mut g, Event::Apply(object(A, None))));
        assert!(fires(&mut g, Event::Apply(object(A, None))));
    }

    #[test]
    fn a_deleted_resource_is_forgotten_and_one_recreated_under_its_name_triggers() {
        let mut g = Generations::default();
        assert!(fires(&mut g, Event::Apply(object(A, Some(1)))));
        assert!(!fires(&mut g, Event::Delete(object(A, Some(1)))));
        assert!(g.is_empty());
        assert!(fires(&mut g, Event::Apply(object(A, Some(1)))));
    }

    #[test]
    fn a_relist_triggers_only_what_changed_and_forgets_what_it_no_longer_lists() {
        let mut g = Generations::default();
        fires(&mut g, Event::Apply(object(A, Some(1))));
        fires(&mut g, Event::Apply(object(B, Some(1))));
        assert!(!fires(&mut g, Event::Init));
        // A is unchanged (no trigger); B's Delete was lost with the expired watch.
        assert!(!fires(&mut g, Event::InitApply(object(A, Some(1)))));
        assert!(!fires(&mut g, Event::InitDone));
        assert_eq!(g.len(), 1);
        assert!(fires(&mut g, Event::Apply(object(B, Some(1)))), "B is new again");
    }

    #[test]
    fn an_unwanted_resource_is_not_remembered_so_it_triggers_once_it_is_wanted() {
        let mut g = Generations::default();
        assert!(g.trigger(Event::Apply(object(A, Some(1))), |_| false).is_none());
        assert!(g.is_empty());
        assert!(fires(&mut g, Event::Apply(object(A, Some(1)))));
    }

    #[test]
    fn uids_that_are_not_uuids_are_keys_all_the_same() {
        assert_eq!(Key::of(A), Key::of(A));
        assert_ne!(Key::of(A), Key::of(B));
        assert_eq!(Key::of("not-a-uuid"), Key::Other("not-a-uuid".into()));
        // 32 hex digits without the dashes is not the canonical form: kept as text.
        assert!(matches!(Key::of(&A.replace('-', "")), Key::Other(_)));
        let moved_dash = format!("{}-{}", &A[..7], A[7..].replacen('-', "", 1));
        assert_eq!(moved_dash.len(), 36);
        assert!(matches!(Key::of(&moved_dash), Key::Other(_)));
        assert_eq!(Key::of("00000000-0000-0000-0000-00000000000f"), Key::Uuid(15));
        let mut g = Generations::default();
        assert!(fires(&mut g, Event::Apply(object("plain", Some(1)))));
        assert!(!fires(&mut g, Event::Apply(object("plain", Some(1)))));
    }
}
