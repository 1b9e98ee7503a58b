//! The resync timer: when each resource in sync is next read back from OSS.
//!
//! kube-runtime's scheduler would do this through `Action::requeue`, but it keeps every pending
//! request twice (its delay queue and its dedup map), each with the object's name, namespace,
//! uid and resourceVersion as separate strings: about 770 bytes per resource, 7.7 MB at 10,000.
//! Here one small shared key per resource sits in a map and an ordered queue, and a due resync
//! is sent to its controller as a trigger (`reconcile_on`). Errors still back off through
//! `error_policy` (few objects at a time); a reconcile that starts forgets its pending resync,
//! as the scheduler does, so one resource has at most one timer.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::runtime::reflector::ObjectRef;
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

use super::Guarded;

/// One resource, as its controller is triggered: the controller it belongs to (the claims
/// source, one per watched namespace) and its namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Target {
    pub source: usize,
    pub namespace: Box<str>,
    pub name: Box<str>,
}

/// Pending resyncs, ordered by when they are due; pure (times are passed in).
#[derive(Debug, Default)]
pub struct Queue {
    /// Each resource's pending slot: when it is due and its tie-breaking sequence number.
    slots: HashMap<Arc<Target>, (Instant, u64)>,
    /// The same resources by slot, earliest first.
    order: BTreeMap<(Instant, u64), Arc<Target>>,
    next_seq: u64,
}

impl Queue {
    /// Sets `target`'s resync to `at`, replacing any pending one. Returns whether it is now the
    /// earliest (the timer must wake sooner).
    pub fn schedule(&mut self, target: Target, at: Instant) -> bool {
        let key = match self.slots.get_key_value(&target) {
            Some((key, slot)) => {
                let key = key.clone();
                let slot = *slot;
                self.order.remove(&slot);
                key
            }
            None => Arc::new(target),
        };
        let slot = (at, self.next_seq);
        self.next_seq += 1;
        self.slots.insert(key.clone(), slot);
        self.order.insert(slot, key);
        self.order.keys().next() == Some(&slot)
    }

    /// Drops `target`'s pending resync, if any.
    pub fn cancel(&mut self, target: &Target) {
        if let Some(slot) = self.slots.remove(target) {
            self.order.remove(&slot);
        }
    }

    /// When the earliest pending resync is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.order.keys().next().map(|(at, _)| *at)
    }

    /// Takes every resync due at `now`, earliest first.
    pub fn take_due(&mut self, now: Instant) -> Vec<Arc<Target>> {
        let mut due = Vec::new();
        while let Some(entry) = self.order.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let target = entry.remove();
            self.slots.remove(&target);
            due.push(target);
        }
        due
    }

    /// Pending resyncs.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// No resync pending.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

/// The shared timer: reconciles schedule and cancel, [`Resyncs::run`] sends what falls due.
#[derive(Debug, Default)]
pub struct Resyncs {
    queue: Mutex<Queue>,
    sooner: Notify,
}

impl Resyncs {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reconcile `target` again `after` from now (replacing a pending resync).
    pub fn schedule(&self, target: Target, after: Duration) {
        let at = Instant::now() + after;
        if self.lock().schedule(target, at) {
            self.sooner.notify_one();
        }
    }

    /// Forget `target`'s pending resync (a reconcile of it has started).
    pub fn cancel(&self, target: &Target) {
        self.lock().cancel(target);
    }

    /// Pending resyncs.
    pub fn pending(&self) -> usize {
        self.lock().len()
    }

    /// Sends each resync as it falls due to its controller (`senders`, by source) until
    /// `stop` resolves.
    pub async fn run(
        &self,
        senders: Vec<mpsc::UnboundedSender<ObjectRef<Guarded>>>,
        stop: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(stop);
        loop {
            let next = self.lock().next_due();
            let wait = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = &mut stop => return,
                () = self.sooner.notified() => continue,
                () = wait => {}
            }
            let due = self.lock().take_due(Instant::now());
            for target in due {
                if let Some(sender) = senders.get(target.source) {
                    let _ = sender.send(ObjectRef::new(&target.name).within(&target.namespace));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(name: &str) -> Target {
        Target {
            source: 0,
            namespace: "ns".into(),
            name: name.into(),
        }
    }

    fn names(due: &[Arc<Target>]) -> Vec<&str> {
        due.iter().map(|t| &*t.name).collect()
    }

    #[test]
    fn resyncs_fall_due_in_time_order_and_only_once_due() {
        let t0 = Instant::now();
        let mut queue = Queue::default();
        assert!(queue.schedule(target("late"), t0 + Duration::from_secs(30)));
        assert!(queue.schedule(target("early"), t0 + Duration::from_secs(10)));
        assert!(!queue.schedule(target("middle"), t0 + Duration::from_secs(20)));
        assert_eq!(queue.next_due(), Some(t0 + Duration::from_secs(10)));
        assert!(queue.take_due(t0 + Duration::from_secs(9)).is_empty());
        assert_eq!(
            names(&queue.take_due(t0 + Duration::from_secs(20))),
            ["early", "middle"]
        );
        assert_eq!(queue.len(), 1);
        assert_eq!(names(&queue.take_due(t0 + Duration::from_secs(60))), ["late"]);
        assert!(queue.is_empty());
        assert_eq!(queue.next_due(), None);
    }

    #[test]
    fn a_resource_has_one_pending_resync_the_last_scheduled() {
        let t0 = Instant::now();
        let mut queue = Queue::default();
        queue.schedule(target("a"), t0 + Duration::from_secs(5));
        queue.schedule(target("b"), t0 + Duration::from_secs(10));
        // Rescheduled later: its earlier slot goes, so it does not fire twice.
        assert!(!queue.schedule(target("a"), t0 + Duration::from_secs(15)));
        assert_eq!(queue.len(), 2);
        assert_eq!(names(&queue.take_due(t0 + Duration::from_secs(12))), ["b"]);
        assert_eq!(names(&queue.take_due(t0 + Duration::from_secs(15))), ["a"]);
        assert!(queue.is_empty());
    }

    #[test]
    fn a_cancelled_resync_never_falls_due() {
        let t0 = Instant::now();
        let mut queue = Queue::default();
        queue.schedule(target("a"), t0);
        queue.schedule(target("b"), t0);
        queue.cancel(&target("a"));
        queue.cancel(&target("never scheduled"));
        assert_eq!(names(&queue.take_due(t0)), ["b"]);
        assert!(queue.is_empty());
    }

    #[test]
    fn the_same_name_in_another_namespace_or_controller_is_another_resource() {
        let t0 = Instant::now();
        let mut queue = Queue::default();
        queue.schedule(target("a"), t0);
        queue.schedule(
            Target {
                namespace: "other".into(),
                ..target("a")
            },
            t0,
        );
        queue.schedule(
            Target {
                source: 1,
                ..target("a")
            },
            t0,
        );
        assert_eq!(queue.take_due(t0).len(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_due_resync_is_sent_to_its_controller_as_a_trigger() {
        let resyncs = Arc::new(Resyncs::default());
        let start = Instant::now();
        let (first, mut first_rx) = mpsc::unbounded_channel();
        let (second, mut second_rx) = mpsc::unbounded_channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let timer = {
            let resyncs = resyncs.clone();
            tokio::spawn(async move {
                resyncs
                    .run(vec![first, second], async {
                        let _ = stopped.await;
                    })
                    .await;
            })
        };
        resyncs.schedule(target("a"), Duration::from_secs(60));
        resyncs.schedule(
            Target {
                source: 1,
                ..target("b")
            },
            Duration::from_secs(30),
        );
        tokio::time::sleep(Duration::from_secs(29)).await;
        assert!(first_rx.try_recv().is_err() && second_rx.try_recv().is_err());
        let b = second_rx.recv().await.unwrap();
        assert_eq!((b.name.as_str(), b.namespace.as_deref()), ("b", Some("ns")));
        assert!(first_rx.try_recv().is_err(), "a is due only at 60 s");
        // A sooner resync scheduled while the timer sleeps towards a later one wakes it.
        resyncs.schedule(target("c"), Duration::from_secs(1));
        let c = first_rx.recv().await.unwrap();
        assert_eq!(c.name, "c");
        assert!(start.elapsed() < Duration::from_secs(60), "{:?}", start.elapsed());
        let a = first_rx.recv().await.unwrap();
        assert_eq!(a.name, "a");
        assert_eq!(resyncs.pending(), 0);
        let _ = stop.send(());
        timer.await.unwrap();
    }
}
