//! Secret reads shared for a moment: reconciles that need the same Secret within
//! [`SHARE_WINDOW`] of a read take that read instead of asking the API server again, and those
//! that ask while a read is under way wait for it and take its answer, success or failure. A
//! fleet whose resources share one Secret then reads it about once a second instead of once per
//! reconcile; a rotated Secret is seen by every reconcile that starts a window after the change.
//! A failure serves only those who waited on it: the next reconcile asks again. A read gets
//! [`READ_LIMIT`] to answer (the Kubernetes client sets no response timeout), so a hung API
//! server fails the reconciles waiting on it instead of stalling them. Secrets are never listed
//! or watched.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::error::Error;
use crate::oss::Credentials;

/// How long one read of a Secret serves other reconciles.
pub const SHARE_WINDOW: Duration = Duration::from_secs(1);

/// How long a Secret read may take before it counts as failed.
pub const READ_LIMIT: Duration = Duration::from_secs(10);

/// Whether a reconcile may take another's recent read of a Secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Freshness {
    /// A read at most a window old serves (keeping a rule in place).
    Shared,
    /// Read from the API server now: before a deletion acts, a Secret deleted a moment ago
    /// (as namespace deletion does) must count as gone.
    Now,
}

/// `namespace`, `name`.
type Key = (String, String);

/// How the last read of a Secret ended.
enum Outcome {
    /// It answered; the Secret was at least as fresh as `started`.
    Read {
        started: Instant,
        credentials: Credentials,
    },
    /// It failed at `finished`: the answer of every reconcile that asked before then.
    Failed { finished: Instant, error: Error },
}

impl Outcome {
    /// What this outcome answers a reconcile that asked at `asked`, if it may serve it.
    fn answer(&self, asked: Instant, window: Duration) -> Option<Result<Credentials, Error>> {
        match self {
            Self::Read { started, credentials } => {
                is_fresh(*started, asked, window).then(|| Ok(credentials.clone()))
            }
            Self::Failed { finished, error } => {
                (asked < *finished).then(|| error.for_waiter().map(Err)).flatten()
            }
        }
    }

    /// Whether this outcome can still serve anyone at `now`.
    fn serves_at(&self, now: Instant, window: Duration) -> bool {
        matches!(self, Self::Read { started, .. } if is_fresh(*started, now, window))
    }
}

/// One Secret: how its last read ended, behind a lock held while a read is under way.
type Slot = Arc<tokio::sync::Mutex<Option<Outcome>>>;

#[derive(Default)]
struct Slots {
    by_key: HashMap<Key, Slot>,
    swept: Option<Instant>,
}

/// The Secret reads of every reconcile of this instance.
pub struct SecretReads {
    window: Duration,
    slots: Mutex<Slots>,
}

impl std::fmt::Debug for SecretReads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretReads")
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

impl Default for SecretReads {
    fn default() -> Self {
        Self::new(SHARE_WINDOW)
    }
}

/// Whether a read that started at `started` may still serve a reconcile at `now`.
fn is_fresh(started: Instant, now: Instant, window: Duration) -> bool {
    now.saturating_duration_since(started) < window
}

/// `read`, failed as a Kubernetes error once it has taken [`READ_LIMIT`].
async fn within_limit(
    namespace: &str,
    name: &str,
    read: impl Future<Output = Result<Credentials, Error>>,
) -> Result<Credentials, Error> {
    tokio::time::timeout(READ_LIMIT, read).await.unwrap_or_else(|_| {
        Err(Error::kube(
            format!("reading Secret {namespace}/{name}"),
            kube::Error::Service(format!("no answer within {}s", READ_LIMIT.as_secs()).into()),
        ))
    })
}

impl SecretReads {
    /// Reads shared for `window` (zero: every reconcile reads for itself).
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            slots: Mutex::new(Slots::default()),
        }
    }

    /// The credentials in Secret `namespace/name`: with [`Freshness::Shared`] the answer of a
    /// read at most a window old, or of the read under way when this was asked; with
    /// [`Freshness::Now`] what `read` returns now (neither shared nor remembered).
    pub async fn credentials<F, Fut>(
        &self,
        namespace: &str,
        name: &str,
        freshness: Freshness,
        read: F,
    ) -> Result<Credentials, Error>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Credentials, Error>>,
    {
        if self.window.is_zero() || freshness == Freshness::Now {
            return within_limit(namespace, name, read()).await;
        }
        let asked = Instant::now();
        let slot = self.slot(namespace, name);
        let mut last = slot.lock().await;
        if let Some(answer) = last.as_ref().and_then(|o| o.answer(asked, self.window)) {
            return answer;
        }
        let started = Instant::now();
        let result = within_limit(namespace, name, read()).await;
        *last = match &result {
            Ok(credentials) => Some(Outcome::Read {
                started,
                credentials: credentials.clone(),
            }),
            Err(error) => error.for_waiter().map(|error| Outcome::Failed {
                finished: Instant::now(),
                error,
            }),
        };
        result
    }

    /// The slot of a Secret; at most once a window, slots nobody uses and whose read has
    /// expired are dropped (so the map holds about a window's worth of Secrets).
    fn slot(&self, namespace: &str, name: &str) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if slots.swept.is_none_or(|at| !is_fresh(at, now, self.window)) {
            slots.swept = Some(now);
            let window = self.window;
            slots.by_key.retain(|_, slot| {
                Arc::strong_count(slot) > 1
                    || slot.try_lock().map_or(true, |last| {
                        last.as_ref().is_some_and(|o| o.serves_at(now, window))
                    })
            });
        }
        slots
            .by_key
            .entry((namespace.to_owned(), name.to_owned()))
            .or_default()
            .clone()
    }

    /// Secrets with a slot (for tests).
    #[cfg(test)]
    fn held(&self) -> usize {
        self.slots.lock().unwrap().by_key.len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn credentials(id: &str) -> Credentials {
        Credentials::from_fields(|key| match key {
            "accessKeyId" => Some(id.to_owned()),
            "accessKeySecret" => Some("secret".to_owned()),
            _ => None,
        })
        .unwrap()
    }

    /// A read that counts itself and answers `id`.
    async fn counted(reads: &AtomicUsize, id: &str) -> Result<Credentials, Error> {
        reads.fetch_add(1, Ordering::SeqCst);
        tokio::task::yield_now().await;
        Ok(credentials(id))
    }

    #[tokio::test(start_paused = true)]
    async fn a_read_serves_its_window_then_the_secret_is_read_again() {
        let shared = SecretReads::default();
        let reads = AtomicUsize::new(0);
        let first = shared
            .credentials("team", "creds", Freshness::Shared, || counted(&reads, "AK1"))
            .await
            .unwrap();
        tokio::time::advance(SHARE_WINDOW / 2).await;
        let again = shared
            .credentials("team", "creds", Freshness::Shared, || counted(&reads, "AK2"))
            .await
            .unwrap();
        assert_eq!((reads.load(Ordering::SeqCst), &again), (1, &first));
        tokio::time::advance(SHARE_WINDOW).await;
        let rotated = shared
            .credentials("team", "creds", Freshness::Shared, || counted(&reads, "AK2"))
            .await
            .unwrap();
        assert_eq!((reads.load(Ordering::SeqCst), rotated), (2, credentials("AK2")));
    }

    #[tokio::test(start_paused = true)]
    async fn reconciles_asking_at_once_share_one_read() {
        let shared = SecretReads::default();
        let reads = AtomicUsize::new(0);
        let asks =
            (0..8).map(|_| shared.credentials("team", "creds", Freshness::Shared, || counted(&reads, "AK1")));
        let answers = futures_util::future::join_all(asks).await;
        assert!(
            answers
                .iter()
                .all(|a| a.as_ref().ok() == Some(&credentials("AK1")))
        );
        assert_eq!(reads.load(Ordering::SeqCst), 1);
    }

    /// A read that counts itself, takes `takes` and answers `id`.
    async fn slow(reads: &AtomicUsize, takes: Duration, id: &str) -> Result<Credentials, Error> {
        reads.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(takes).await;
        Ok(credentials(id))
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_read_serves_everyone_who_asked_while_it_ran() {
        let shared = SecretReads::default();
        let reads = AtomicUsize::new(0);
        let asks = (0..8).map(|_| {
            shared.credentials("team", "creds", Freshness::Shared, || {
                slow(&reads, SHARE_WINDOW * 3, "AK1")
            })
        });
        let answers = futures_util::future::join_all(asks).await;
        assert!(
            answers
                .iter()
                .all(|a| a.as_ref().ok() == Some(&credentials("AK1")))
        );
        assert_eq!(reads.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_read_fails_those_waiting_on_it_and_the_next_reconcile_asks_again() {
        let shared = SecretReads::default();
        let reads = AtomicUsize::new(0);
        let missing = || async {
            reads.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(200)).await;
            Err(Error::CredentialsNotFound("Secret team/creds not found".into()))
        };
        let asks = (0..4).map(|_| shared.credentials("team", "creds", Freshness::Shared, missing));
        let answers = futures_util::future::join_all(asks).await;
        assert!(answers.iter().all(|a| matches!(
            a,
            Err(Error::CredentialsNotFound(m)) if m == "Secret team/creds not found"
        )));
        assert_eq!(reads.load(Ordering::SeqCst), 1);
        tokio::time::advance(Duration::from_millis(1)).await;
        shared
            .credentials("team", "creds", Freshness::Shared, || counted(&reads, "AK1"))
            .await
            .unwrap();
        assert_eq!(reads.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_read_that_never_answers_fails_it_and_its_waiters_in_bounded_time() {
        let shared = SecretReads::default();
        let reads = AtomicUsize::new(0);
        let hung = || async {
            reads.fetch_add(1, Ordering::SeqCst);
            std::future::pending::<Result<Credentials, Error>>().await
        };
        let asks = (0..4).map(|_| shared.credentials("team", "creds", Freshness::Shared, hung));
        let answers = tokio::time::timeout(Duration::from_secs(60), futures_util::future::join_all(asks))
            .await
            .expect("every reconcile waiting on a hung Secret read gets an answer");
        assert!(answers.iter().all(|a| matches!(
            a,
            Err(e @ Error::Kube { .. }) if e.to_string().contains("reading Secret team/creds")
        )));
        assert_eq!(reads.load(Ordering::SeqCst), 1);
        let now = tokio::time::timeout(
            Duration::from_secs(60),
            shared.credentials("team", "creds", Freshness::Now, hung),
        )
        .await;
        assert!(matches!(now, Ok(Err(Error::Kube { .. }))));
    }

    #[tokio::test(start_paused = true)]
    async fn secrets_are_told_apart_by_namespace_and_name() {
        let shared = SecretReads::default();
        let reads = AtomicUsize::new(0);
        for (namespace, name) in [("a", "creds"), ("b", "creds"), ("a", "other"), ("a", "creds")] {
            shared
                .credentials(namespace, name, Freshness::Shared, || counted(&reads, namespace))
                .await
                .unwrap();
        }
        assert_eq!(reads.load(Ordering::SeqCst), 3);
        let b = shared
            .credentials("b", "creds", Freshness::Shared, || counted(&reads, "x"))
            .await
            .unwrap();
        assert_eq!(b, credentials("b"));
    }

    #[tokio::test(start_paused = true)]
    async fn expired_reads_are_dropped_and_a_zero_window_shares_nothing() {
        let shared = SecretReads::default();
        let reads = AtomicUsize::new(0);
        for i in 0..50 {
            shared
                .credentials("team", &format!("s{i}"), Freshness::Shared, || {
                    counted(&reads, "AK")
                })
                .await
                .unwrap();
        }
        assert_eq!(shared.held(), 50);
        tokio::time::advance(SHARE_WINDOW * 2).await;
        shared
            .credentials("team", "late", Freshness::Shared, || counted(&reads, "AK"))
            .await
            .unwrap();
        assert_eq!(shared.held(), 1);

        let unshared = SecretReads::new(Duration::ZERO);
        let reads = AtomicUsize::new(0);
        for _ in 0..3 {
            unshared
                .credentials("team", "creds", Freshness::Shared, || counted(&reads, "AK"))
                .await
                .unwrap();
        }
        assert_eq!(reads.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_read_for_now_asks_the_api_server_whatever_is_shared() {
        let shared = SecretReads::default();
        let reads = AtomicUsize::new(0);
        shared
            .credentials("team", "creds", Freshness::Shared, || counted(&reads, "AK1"))
            .await
            .unwrap();
        let now = shared
            .credentials("team", "creds", Freshness::Now, || counted(&reads, "AK2"))
            .await
            .unwrap();
        assert_eq!((reads.load(Ordering::SeqCst), now), (2, credentials("AK2")));
    }
}
