//! Secret reads shared for a moment: reconciles that need the same Secret within
//! [`SHARE_WINDOW`] of a read take that read instead of asking the API server again, and those
//! that ask while a read is under way wait for it. A fleet whose resources share one Secret
//! then reads it about once a second instead of once per reconcile; a rotated Secret is seen by
//! every reconcile that starts a window after the change. Only successful reads are shared: a
//! missing or unreadable Secret is asked for again by the next reconcile. Secrets are never
//! listed or watched.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::error::Error;
use crate::oss::Credentials;

/// How long one read of a Secret serves other reconciles.
pub const SHARE_WINDOW: Duration = Duration::from_secs(1);

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

/// A read and when it started (the Secret was at least this fresh).
struct Read {
    started: Instant,
    credentials: Credentials,
}

/// One Secret: its last read, behind a lock held while a read is under way.
type Slot = Arc<tokio::sync::Mutex<Option<Read>>>;

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

impl SecretReads {
    /// Reads shared for `window` (zero: every reconcile reads for itself).
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            slots: Mutex::new(Slots::default()),
        }
    }

    /// The credentials in Secret `namespace/name`: with [`Freshness::Shared`] a read at most a
    /// window old, else what `read` returns now (remembered when it succeeds).
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
            return read().await;
        }
        let slot = self.slot(namespace, name);
        let mut last = slot.lock().await;
        let started = Instant::now();
        if let Some(fresh) = last
            .as_ref()
            .filter(|r| is_fresh(r.started, started, self.window))
        {
            return Ok(fresh.credentials.clone());
        }
        let credentials = read().await?;
        *last = Some(Read {
            started,
            credentials: credentials.clone(),
        });
        Ok(credentials)
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
                    || slot.try_lock().map_or(true, |read| {
                        read.as_ref().is_some_and(|r| is_fresh(r.started, now, window))
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
    async fn a_failed_read_is_not_shared() {
        let shared = SecretReads::default();
        let reads = AtomicUsize::new(0);
        let missing = shared
            .credentials("team", "creds", Freshness::Shared, || async {
                reads.fetch_add(1, Ordering::SeqCst);
                Err(Error::CredentialsNotFound("Secret team/creds not found".into()))
            })
            .await;
        assert!(missing.is_err());
        shared
            .credentials("team", "creds", Freshness::Shared, || counted(&reads, "AK1"))
            .await
            .unwrap();
        assert_eq!(reads.load(Ordering::SeqCst), 2);
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
