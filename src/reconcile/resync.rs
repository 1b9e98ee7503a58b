//! The resync timer: when each resource in sync is next read back from OSS.
//!
//! kube-runtime's scheduler would do this through `Action::requeue`, but it keeps every pending
//! request twice (its delay queue and its dedup map), each with the object's name, namespace,
//! uid and resourceVersion as separate strings: about 770 bytes per resource, 7.7 MB at 10,000.
//! Here one small shared key per resource sits in a map and an ordered queue, and a due resync
//! is sent to its controller as a trigger (`reconcile_on`). Errors still back off through
//! `error_policy` (few objects at a time); a reconcile that starts forgets its pending resync,
//! as the scheduler does, so one resource has at most one timer.
//!
//! The first reconcile of every listed resource goes through the same queue (due at once), and
//! the timer hands the controller only a window of resyncs at a time: a few more than it runs at
//! once, the next as each one starts. Handed all at once, the 10,000 triggers of a first list sat
//! in kube's scheduler, whose tables never shrink (7 MB kept for the life of the process).

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
    /// Resyncs handed to their controller that have not started yet, and when they were.
    sent: HashMap<Arc<Target>, Instant>,
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

    /// Drops `target`'s pending resync, if any, and its place in the window (it started, or
    /// went). Returns whether that freed a place.
    pub fn cancel(&mut self, target: &Target) -> bool {
        if let Some(slot) = self.slots.remove(target) {
            self.order.remove(&slot);
        }
        self.sent.remove(target).is_some()
    }

    /// When the earliest pending resync is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.order.keys().next().map(|(at, _)| *at)
    }

    /// Takes the resyncs due at `now`, earliest first, at most `most` of them.
    pub fn take_due(&mut self, now: Instant, most: usize) -> Vec<Arc<Target>> {
        let mut due = Vec::new();
        while due.len() < most
            && let Some(entry) = self.order.first_entry()
        {
            if entry.key().0 > now {
                break;
            }
            let target = entry.remove();
            self.slots.remove(&target);
            due.push(target);
        }
        due
    }

    /// Takes the resyncs due at `now` that fit in a window of `window` not yet started, earliest
    /// first, and counts them as sent. A sent resync that has not started `expiry` after it was
    /// sent (its resource went, or its controller dropped it) gives up its place.
    pub fn admit(&mut self, now: Instant, window: usize, expiry: Duration) -> Vec<Arc<Target>> {
        self.sent.retain(|_, sent| *sent + expiry > now);
        let room = window.saturating_sub(self.sent.len());
        let due = self.take_due(now, room);
        for target in &due {
            self.sent.insert(target.clone(), now);
        }
        due
    }

    /// When [`Queue::admit`] next has something to take: the next due resync while the window
    /// has room, else the moment the oldest sent one expires.
    pub fn next_admission(&self, window: usize, expiry: Duration) -> Option<Instant> {
        if self.sent.len() < window {
            self.next_due()
        } else {
            self.sent.values().min().map(|sent| *sent + expiry)
        }
    }

    /// Resyncs sent and not started.
    pub fn in_flight(&self) -> usize {
        self.sent.len()
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

/// How long a resync handed to a controller holds its place in the window if it never starts.
const SENT_EXPIRY: Duration = Duration::from_secs(30);

/// The shared timer: reconciles schedule and cancel, [`Resyncs::run`] sends what falls due, at
/// most `window` not yet started at a time.
#[derive(Debug)]
pub struct Resyncs {
    queue: Mutex<Queue>,
    sooner: Notify,
    window: usize,
}

impl Resyncs {
    /// A timer that hands out at most `window` resyncs not yet started (at least one).
    pub fn with_window(window: usize) -> Self {
        Self {
            queue: Mutex::default(),
            sooner: Notify::new(),
            window: window.max(1),
        }
    }

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

    /// Reconcile each of `targets` as soon as the window lets it, in this order (replacing any
    /// pending resync).
    pub fn schedule_now(&self, targets: Vec<Target>) {
        if targets.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut queue = self.lock();
        for target in targets {
            queue.schedule(target, now);
        }
        drop(queue);
        self.sooner.notify_one();
    }

    /// Forget `target`'s pending resync (a reconcile of it has started, or it went): its place
    /// in the window goes to the next.
    pub fn cancel(&self, target: &Target) {
        if self.lock().cancel(target) {
            self.sooner.notify_one();
        }
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
            let next = self.lock().next_admission(self.window, SENT_EXPIRY);
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
            let due = self.lock().admit(Instant::now(), self.window, SENT_EXPIRY);
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

    /// Runs `resyncs`' timer sending to `senders` until the returned sender is used.
    fn start_timer(
        resyncs: &Arc<Resyncs>,
        senders: Vec<mpsc::UnboundedSender<ObjectRef<Guarded>>>,
    ) -> (tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let resyncs = resyncs.clone();
        let timer = tokio::spawn(async move {
            resyncs
                .run(senders, async {
                    let _ = stopped.await;
                })
                .await;
        });
        (stop, timer)
    }

    #[test]
    fn resyncs_fall_due_in_time_order_and_only_once_due() {
        let t0 = Instant::now();
        let mut queue = Queue::default();
        assert!(queue.schedule(target("late"), t0 + Duration::from_secs(30)));
        assert!(queue.schedule(target("early"), t0 + Duration::from_secs(10)));
        assert!(!queue.schedule(target("middle"), t0 + Duration::from_secs(20)));
        assert_eq!(queue.next_due(), Some(t0 + Duration::from_secs(10)));
        assert!(queue.take_due(t0 + Duration::from_secs(9), usize::MAX).is_empty());
        assert_eq!(
            names(&queue.take_due(t0 + Duration::from_secs(20), usize::MAX)),
            ["early", "middle"]
        );
        assert_eq!(queue.len(), 1);
        assert_eq!(
            names(&queue.take_due(t0 + Duration::from_secs(60), usize::MAX)),
            ["late"]
        );
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
        assert_eq!(
            names(&queue.take_due(t0 + Duration::from_secs(12), usize::MAX)),
            ["b"]
        );
        assert_eq!(
            names(&queue.take_due(t0 + Duration::from_secs(15), usize::MAX)),
            ["a"]
        );
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
        assert_eq!(names(&queue.take_due(t0, usize::MAX)), ["b"]);
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
        assert_eq!(queue.take_due(t0, usize::MAX).len(), 3);
    }

    #[test]
    fn the_window_holds_at_most_its_size_not_yet_started_and_a_start_frees_a_place() {
        let t0 = Instant::now();
        let expiry = Duration::from_secs(30);
        let mut queue = Queue::default();
        for name in ["a", "b", "c", "d"] {
            queue.schedule(target(name), t0);
        }
        assert_eq!(names(&queue.admit(t0, 2, expiry)), ["a", "b"]);
        assert!(queue.admit(t0, 2, expiry).is_empty(), "a and b have not started");
        assert_eq!(queue.in_flight(), 2);
        assert!(queue.cancel(&target("a")), "a started: its place is free");
        assert!(!queue.cancel(&target("a")), "only once");
        assert_eq!(names(&queue.admit(t0, 2, expiry)), ["c"]);
        assert_eq!(queue.len(), 1, "d waits for a place");
    }

    #[test]
    fn a_sent_resync_that_never_starts_gives_up_its_place_after_the_expiry() {
        let t0 = Instant::now();
        let expiry = Duration::from_secs(30);
        let mut queue = Queue::default();
        queue.schedule(target("gone"), t0);
        queue.schedule(target("next"), t0);
        assert_eq!(names(&queue.admit(t0, 1, expiry)), ["gone"]);
        assert_eq!(
            queue.next_admission(1, expiry),
            Some(t0 + expiry),
            "full: the expiry is next"
        );
        assert!(queue.admit(t0 + Duration::from_secs(29), 1, expiry).is_empty());
        assert_eq!(names(&queue.admit(t0 + expiry, 1, expiry)), ["next"]);
    }

    #[test]
    fn with_room_in_the_window_the_next_due_resync_is_next() {
        let t0 = Instant::now();
        let expiry = Duration::from_secs(30);
        let mut queue = Queue::default();
        queue.schedule(target("later"), t0 + Duration::from_secs(5));
        assert_eq!(queue.next_admission(1, expiry), Some(t0 + Duration::from_secs(5)));
        assert!(queue.admit(t0, 1, expiry).is_empty(), "not due yet");
    }

    #[tokio::test(start_paused = true)]
    async fn the_timer_hands_out_a_window_at_a_time_and_the_next_as_one_starts() {
        let resyncs = Arc::new(Resyncs::with_window(2));
        let (sender, mut receiver) = mpsc::unbounded_channel();
        let (stop, timer) = start_timer(&resyncs, vec![sender]);
        resyncs.schedule_now(["a", "b", "c"].map(target).to_vec());
        assert_eq!(receiver.recv().await.unwrap().name, "a");
        assert_eq!(receiver.recv().await.unwrap().name, "b");
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(
            receiver.try_recv().is_err(),
            "c waits while a and b have not started"
        );
        resyncs.cancel(&target("b"));
        assert_eq!(receiver.recv().await.unwrap().name, "c");
        assert_eq!(resyncs.pending(), 0);
        let _ = stop.send(());
        timer.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_due_resync_is_sent_to_its_controller_as_a_trigger() {
        let resyncs = Arc::new(Resyncs::with_window(usize::MAX));
        let start = Instant::now();
        let (first, mut first_rx) = mpsc::unbounded_channel();
        let (second, mut second_rx) = mpsc::unbounded_channel();
        let (stop, timer) = start_timer(&resyncs, vec![first, second]);
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
