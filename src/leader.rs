//! Leader election with a `coordination.k8s.io/v1` Lease (kube-lease-manager): only the leader
//! reconciles; a replica that loses the lease stops reconciling at once (running reconciles are
//! abandoned, not finished).
//!
//! Fencing (DESIGN.md 3.1): kube-lease-manager only logs a failed renewal and keeps saying
//! "leading", so the leader also watches its own Lease. Once it has not seen a renewal of its
//! own for the renew deadline (shorter than the lease duration), it stops every write and steps
//! down, before the Lease can expire and a standby take over: two instances never write at once.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures_util::FutureExt;
use kube_lease_manager::{LeaseManagerBuilder, LeaseManagerError};
use tokio::sync::watch;

/// Which Lease, and who we are.
#[derive(Clone, Debug)]
pub struct Election {
    pub namespace: String,
    pub lease: String,
    /// Unique per replica (the pod name).
    pub identity: String,
    /// How long a lease lasts without renewal.
    pub duration: Duration,
    /// Renew this long before the lease runs out (so renewals come every `duration - grace`).
    pub grace: Duration,
    /// Step down when no renewal of our own has been seen for this long (< `duration`).
    pub renew_deadline: Duration,
}

impl Election {
    /// controller-runtime's defaults: a 15 s lease renewed every 2 s, given up after 10 s
    /// without a renewal.
    pub fn new(namespace: String, lease: String, identity: String) -> Self {
        Self {
            namespace,
            lease,
            identity,
            duration: Duration::from_secs(15),
            grace: Duration::from_secs(13),
            renew_deadline: Duration::from_secs(10),
        }
    }
}

/// Pure: whether a leader that last saw its own renewal `since_renewal` ago must step down.
pub fn fenced(since_renewal: Duration, renew_deadline: Duration) -> bool {
    since_renewal >= renew_deadline
}

/// Resolves once the Lease has gone un-renewed by `identity` for the renew deadline: it reads
/// the Lease twice per renewal period (at most every second) and counts from the last time its `renewTime` moved with us as the
/// holder (a failed read counts as no renewal).
async fn renewals_stopped(client: kube::Client, election: Election) {
    use k8s_openapi::api::coordination::v1::Lease;
    let api: kube::Api<Lease> = kube::Api::namespaced(client, &election.namespace);
    let mut last_renewal = tokio::time::Instant::now();
    let mut last_seen = None;
    let period = election.duration.saturating_sub(election.grace) / 2;
    let mut tick = tokio::time::interval(period.clamp(Duration::from_millis(100), Duration::from_secs(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Ok(lease) = api.get(&election.lease).await
            && let Some(spec) = lease.spec
            && spec.holder_identity.as_deref() == Some(election.identity.as_str())
        {
            let renewed = spec.renew_time.map(|t| t.0);
            if renewed.is_some() && renewed != last_seen {
                last_seen = renewed;
                last_renewal = tokio::time::Instant::now();
            }
        }
        if fenced(last_renewal.elapsed(), election.renew_deadline) {
            return;
        }
    }
}

/// Why leading ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// Shutdown was asked for; the lease was released for the next replica.
    Shutdown,
    /// Another replica holds the lease now.
    LeadershipLost,
}

/// A future that resolves when the work must stop, saying why.
pub type StopSignal = Pin<Box<dyn Future<Output = Ended> + Send + Sync>>;

impl From<Ended> for crate::reconcile::Shutdown {
    /// A lost lease stops at once (another replica leads now); a shutdown lets work finish.
    fn from(ended: Ended) -> Self {
        match ended {
            Ended::Shutdown => Self::Graceful,
            Ended::LeadershipLost => Self::Immediate,
        }
    }
}

/// Waits to hold the lease, then runs `work` until shutdown or until the lease is lost.
pub async fn lead<W, F>(
    client: kube::Client,
    election: Election,
    work: W,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Ended, LeaseManagerError>
where
    W: FnOnce(StopSignal) -> F,
    F: Future<Output = ()>,
{
    let manager = LeaseManagerBuilder::new(client.clone(), &election.lease)
        .with_namespace(&election.namespace)
        .with_identity(&election.identity)
        .with_duration(election.duration.as_secs().max(2))
        .with_grace(election.grace.as_secs().max(1))
        .with_field_manager(format!("oss-encryption-operator-{}", election.identity))
        .build()
        .await?;
    let (mut leading, task) = manager.watch().await;

    let (stop_tx, mut stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });

    tracing::info!(lease = %election.lease, identity = %election.identity, "waiting to become the leader");
    let became_leader = tokio::select! {
        _ = stop_rx.wait_for(|s| *s) => false,
        became = leading.wait_for(|l| *l) => became.is_ok(),
    };
    if !became_leader {
        drop(leading);
        let _ = task.await;
        return Ok(Ended::Shutdown);
    }
    tracing::info!(identity = %election.identity, "became the leader");

    let (ended_tx, mut ended_rx) = watch::channel(None::<Ended>);
    let mut watch_leading = leading.clone();
    let mut watch_stop = stop_rx.clone();
    let (fence_tx, mut fence_rx) = watch::channel(false);
    let fence = tokio::spawn(renewals_stopped(client, election.clone()).map(move |()| {
        let _ = fence_tx.send(true);
    }));
    let identity = election.identity.clone();
    let stop: StopSignal = Box::pin(async move {
        let ended = tokio::select! {
            _ = watch_stop.wait_for(|s| *s) => Ended::Shutdown,
            _ = watch_leading.wait_for(|l| !*l) => Ended::LeadershipLost,
            _ = fence_rx.wait_for(|f| *f) => {
                tracing::error!(%identity, "the lease was not renewed within the renew deadline; stopping every write and stepping down");
                Ended::LeadershipLost
            }
        };
        let _ = ended_tx.send(Some(ended));
        ended
    });
    work(stop).await;
    fence.abort();
    let ended = ended_rx
        .wait_for(Option::is_some)
        .await
        .ok()
        .and_then(|e| *e)
        .unwrap_or(Ended::Shutdown);
    if ended == Ended::LeadershipLost {
        tracing::warn!(identity = %election.identity, "lost the lease; stopped reconciling");
    }
    // Dropping the receivers releases the lease (if still held) and ends the manager's task. A
    // leader that lost or could not renew its lease has nothing to release, and its API server
    // may not answer: it leaves at once.
    drop(leading);
    if ended == Ended::LeadershipLost {
        task.abort();
    }
    let _ = task.await;
    Ok(ended)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_renew_deadline_fences_before_the_lease_can_expire() {
        let election = Election::new("ns".into(), "lease".into(), "me".into());
        assert!(
            election.renew_deadline < election.duration,
            "step down before expiry"
        );
        assert!(election.grace < election.duration);
        assert_eq!(
            election.duration - election.grace,
            Duration::from_secs(2),
            "renewed every 2 s"
        );
        assert!(!fenced(Duration::from_millis(9_999), election.renew_deadline));
        assert!(fenced(Duration::from_secs(10), election.renew_deadline));
    }
}
