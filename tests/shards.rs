//! Bucket-hash shards (DESIGN.md 3.1): two controller instances, `--shard-index 0/1
//! --shard-count 2`, on one cluster and one account. Every bucket is written by exactly one
//! shard, ownership between claimants of one bucket is decided inside that shard, and policies
//! run once (one instance holds the policy Lease) while seeing every shard's resources.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use oss_encryption_operator::leader::Election;
use oss_encryption_operator::reconcile::shard::Shard;
use oss_encryption_operator::reconcile::{Health, Settings};
use oss_encryption_operator::telemetry::Metrics;
use serde_json::json;
use support::operator::{Harness, NAMESPACE, condition};
use support::policy::{create_policy, wait_status};

const RESOURCES: usize = 200;
/// Buckets that no resource names: the policy's to fix.
const LOOSE: usize = 20;
/// Resources naming an already-claimed bucket, created later: they must get Conflict.
const JUNIORS: usize = 6;

fn settings_of(base: &Settings, index: u32) -> Settings {
    let identity = format!("shard-{index}");
    Settings {
        // No resyncs during the test: 200 objects resynced every 400 ms would keep a loaded
        // machine's controllers busy with GETs, and nothing here needs them.
        resync_interval: Duration::from_secs(600),
        shard: Shard::new(index, 2).unwrap(),
        instance: identity.clone(),
        policies: true,
        policy_secret_namespace: NAMESPACE.into(),
        policy_election: Some(Election {
            namespace: NAMESPACE.into(),
            lease: "oss-encryption-operator-policies".into(),
            identity,
            duration: Duration::from_secs(3),
            grace: Duration::from_secs(2),
            renew_deadline: Duration::from_millis(2500),
        }),
        ..base.clone()
    }
}

/// Requests of one OSS API that an instance made, from its own metrics.
fn requests(metrics: &Metrics, api: &str) -> u64 {
    let prefix = format!("oss_encryption_operator_oss_requests_total{{api=\"{api}\",");
    metrics
        .encode()
        .lines()
        .filter(|line| line.starts_with(&prefix))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_bucket_hash_shards_write_each_bucket_once_and_run_the_policy_once() {
    let fleet: Vec<String> = (0..RESOURCES).map(|n| format!("fleet-{n:03}")).collect();
    let loose: Vec<String> = (0..LOOSE).map(|n| format!("loose-{n:02}")).collect();
    let names: Vec<&str> = fleet.iter().chain(&loose).map(String::as_str).collect();
    let mut h = Harness::start_with(&names, |s| s.policies = false).await;
    h.stop_controller().await;
    let metrics = [Arc::new(Metrics::new()), Arc::new(Metrics::new())];
    let _shards: Vec<_> = (0..2)
        .map(|i| {
            h.spawn_controller(
                settings_of(&h.settings, i),
                metrics[i as usize].clone(),
                Health::default(),
            )
        })
        .collect();

    for bucket in &fleet {
        h.create(bucket, bucket, json!({})).await;
    }
    for bucket in &fleet {
        h.wait_for(bucket, "Ready=True", |o| {
            condition(o, "Ready").is_some_and(|(s, _)| s == "True")
        })
        .await;
    }
    for (n, bucket) in fleet.iter().take(JUNIORS).enumerate() {
        let junior = format!("junior-{n}");
        h.create(&junior, bucket, json!({"algorithm": "SM4"})).await;
        h.wait_ready(&junior, "False", "Conflict").await;
    }
    create_policy(
        &h,
        "everything",
        json!({"selector": {"namePrefix": ""}, "rule": {"algorithm": "KMS"}, "managementPolicy": "Manage"}),
    )
    .await;
    let status = wait_status(&h, "everything", "a pass over every bucket", |s| {
        s["buckets"]["selected"] == (RESOURCES + LOOSE) && s["buckets"]["errors"] == 0
    })
    .await;

    // Each resource was acted on by one instance only, and juniors by their owner's instance.
    let mut writer_of: BTreeMap<String, String> = BTreeMap::new();
    for name in fleet
        .iter()
        .cloned()
        .chain((0..JUNIORS).map(|n| format!("junior-{n}")))
    {
        let instances: BTreeSet<String> = h
            .event_list(&name)
            .await
            .into_iter()
            .filter_map(|e| e.reporting_instance)
            .collect();
        assert_eq!(instances.len(), 1, "{name}: events from {instances:?}");
        writer_of.insert(name, instances.into_iter().next().unwrap());
    }
    for n in 0..JUNIORS {
        assert_eq!(
            writer_of[&format!("junior-{n}")],
            writer_of[&fleet[n]],
            "a bucket's claimants are judged in the bucket's shard"
        );
    }
    let per_shard: Vec<usize> = ["shard-0", "shard-1"]
        .iter()
        .map(|s| fleet.iter().filter(|b| writer_of[*b] == *s).count())
        .collect();
    assert!(
        per_shard.iter().all(|n| *n > RESOURCES / 4),
        "both shards work: {per_shard:?}"
    );

    // Every resource's bucket kept its rule and was written once; the policy fixed only the rest.
    for bucket in &fleet {
        assert_eq!(
            h.oss_rule(bucket).map(|r| r.0).as_deref(),
            Some("AES256"),
            "{bucket}"
        );
    }
    for bucket in &loose {
        assert_eq!(
            h.oss_rule(bucket).map(|r| r.0).as_deref(),
            Some("KMS"),
            "{bucket}"
        );
    }
    let puts: Vec<u64> = metrics
        .iter()
        .map(|m| requests(m, "PutBucketEncryption"))
        .collect();
    assert_eq!(
        puts.iter().sum::<u64>(),
        (RESOURCES + LOOSE) as u64,
        "one write per bucket across both shards: {puts:?}"
    );

    // The policy ran on one instance, and saw both shards' resources.
    let lists: Vec<u64> = metrics.iter().map(|m| requests(m, "ListBuckets")).collect();
    assert_eq!(
        lists.iter().filter(|n| **n > 0).count(),
        1,
        "ListBuckets by instance: {lists:?}"
    );
    assert_eq!(status["buckets"]["managedByResource"], RESOURCES, "{status:#}");
    assert_eq!(status["buckets"]["nonCompliant"], 0, "{status:#}");
}
