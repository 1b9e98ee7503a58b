//! `run`: the controller against the cluster of the current kubeconfig context.

use super::args::RunArgs;
use crate::leader::{self, Election, Ended};
use crate::oss::{AllowList, ClientConfig, CredentialsProvider, OssClient};
use crate::reconcile::shard::Shard;
use crate::reconcile::{self, Health, Settings, Shutdown};
use crate::telemetry::{self, Metrics};

/// `run`: the controller, with leader election when asked, until SIGTERM or SIGINT.
pub async fn run(args: RunArgs) -> Result<(), Box<dyn std::error::Error>> {
    let shard = Shard::new(args.shard_index, args.shard_count)?;
    let metrics = std::sync::Arc::new(Metrics::new());
    let client = telemetry::instrumented_client(kube::Config::infer().await?, metrics.clone())?;
    let allow_list = AllowList::new(&args.allowed_endpoint_suffixes);
    let key_checker = args
        .kms
        .checker(allow_list.clone(), Some(metrics.kms_observer()))?;
    let mut config = ClientConfig {
        allow_list,
        observer: Some(metrics.oss_observer()),
        ..ClientConfig::default()
    };
    args.rate.apply_to(&mut config);
    let oss = OssClient::new(config)?;
    metrics.track_rate(&oss);
    let listener = tokio::net::TcpListener::bind(args.metrics_addr)
        .await
        .map_err(|e| format!("cannot listen on --metrics-addr {}: {e}", args.metrics_addr))?;
    let operator_credentials = if args.allow_operator_credentials {
        match CredentialsProvider::from_env(&oss) {
            Ok(provider) => Some(provider),
            Err(error) => {
                tracing::warn!(%error, "no operator credentials: resources must name a Secret");
                None
            }
        }
    } else {
        None
    };
    let settings = Settings {
        namespaces: args.namespaces,
        label_selector: args.label_selector,
        resync_interval: args.resync_interval,
        concurrency: args.concurrency,
        instance: args.instance.clone(),
        deletion_timeout: args.deletion_timeout,
        key_checker,
        policies: args.enable_policies,
        policy_secret_namespace: args.policy_secret_namespace,
        shard,
        policy_election: args.leader_election.then(|| {
            Election::new(
                args.leader_election_namespace.clone(),
                args.policy_lease,
                args.instance.clone(),
            )
        }),
        tenancy: args.tenancy,
        object_audits: crate::reconcile::AuditSettings {
            concurrency: args.audit_concurrency,
            qps: args.audit_qps,
            burst: args.audit_burst,
            ..crate::reconcile::AuditSettings::default()
        },
    };
    tracing::info!(?settings, "starting the controller");
    // One shutdown signal for the HTTP server, the election and the controller.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        crate::shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let health = Health::default();
    let server = tokio::spawn(telemetry::serve(
        listener,
        health.probe(metrics.clone()),
        stopped(),
    ));
    let instance = settings.instance.clone();
    if args.leader_election {
        let election = Election::new(
            args.leader_election_namespace,
            shard.lease_name(&args.leader_election_lease),
            instance,
        );
        let work = |stop: leader::StopSignal| {
            reconcile::run(
                client.clone(),
                oss,
                operator_credentials,
                settings,
                metrics,
                health,
                async move { Shutdown::from(stop.await) },
            )
        };
        let ended = leader::lead(client.clone(), election, work, stopped()).await?;
        if ended == Ended::LeadershipLost {
            return Err("lost the leader lease; exiting so that a fresh start waits for it again".into());
        }
    } else {
        let stop = stopped();
        reconcile::run(
            client,
            oss,
            operator_credentials,
            settings,
            metrics,
            health,
            async move {
                stop.await;
                Shutdown::Graceful
            },
        )
        .await;
    }
    let _ = server.await;
    tracing::info!("stopped");
    Ok(())
}
