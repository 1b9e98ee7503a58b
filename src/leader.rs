//! Leader election with a `coordination.k8s.io/v1` Lease (kube-lease-manager): only the leader
//! reconciles; a replica that loses the lease stops reconciling at once (running reconciles are
//! abandoned, not finished).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

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
    /// Renew this long before the lease runs out.
    pub grace: Duration,
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
    let manager = LeaseManagerBuilder::new(client, &election.lease)
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
    let stop: StopSignal = Box::pin(async move {
        let ended = tokio::select! {
            _ = watch_stop.wait_for(|s| *s) => Ended::Shutdown,
            _ = watch_leading.wait_for(|l| !*l) => Ended::LeadershipLost,
        };
        let _ = ended_tx.send(Some(ended));
        ended
    });
    work(stop).await;
    let ended = ended_rx
        .wait_for(Option::is_some)
        .await
        .ok()
        .and_then(|e| *e)
        .unwrap_or(Ended::Shutdown);
    if ended == Ended::LeadershipLost {
        tracing::warn!(identity = %election.identity, "lost the lease; stopped reconciling");
    }
    // Dropping the receivers releases the lease (if still held) and ends the manager's task.
    drop(leading);
    let _ = task.await;
    Ok(ended)
}
