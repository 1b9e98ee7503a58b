//! A short fault soak: 30% of OSS calls fail (500 / 503 throttling) with 100 ms added latency,
//! watch streams are dropped every 2 s, 5% of Kubernetes writes fail (409 / 500), and the
//! controller is stopped and restarted mid-run. Every object must still converge, Observe
//! objects must never be written, Ready must not flap after converging, and the request count
//! must stay bounded. (`cargo bench --bench fleet` measures cost at scale.)

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use oss_encryption_operator::emulator::{Faults, StoredRule};
use serde_json::json;
use support::kube::KubeFaults;
use support::operator::{Harness, condition};

const OBJECTS: usize = 24;

fn name(i: usize) -> String {
    format!("soak-{i:02}")
}

/// Every fourth object is Observe-only (its bucket starts with SM4 and must keep it).
fn observe(i: usize) -> bool {
    i % 4 == 3
}

fn spec(i: usize) -> serde_json::Value {
    match i % 4 {
        0 => json!({"algorithm": "AES256", "deletionPolicy": "Delete"}),
        1 => json!({"algorithm": "KMS", "kmsMasterKeyId": format!("cmk-{i}")}),
        // Its bucket starts with AES256: removing that is a downgrade, allowed explicitly.
        2 => json!({"algorithm": "None", "allowDowngrade": true}),
        _ => json!({"algorithm": "AES256", "managementPolicy": "Observe"}),
    }
}

fn expected(i: usize) -> Option<(String, String, String)> {
    match i % 4 {
        0 => Some(("AES256".into(), String::new(), String::new())),
        1 => Some(("KMS".into(), format!("cmk-{i}"), String::new())),
        2 => None,
        _ => Some(("SM4".into(), String::new(), String::new())),
    }
}

/// Ready status of every object (None while it has none).
async fn ready_states(h: &Harness) -> BTreeMap<String, Option<String>> {
    let mut states = BTreeMap::new();
    for i in 0..OBJECTS {
        let object = h.api.get(&name(i)).await.ok();
        states.insert(
            name(i),
            object
                .as_ref()
                .and_then(|o| condition(o, "Ready"))
                .map(|(s, _)| s),
        );
    }
    states
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_converges_under_faults_and_a_restart() {
    let names: Vec<String> = (0..OBJECTS).map(name).collect();
    let buckets: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut h = Harness::start(&buckets).await;
    for i in 0..OBJECTS {
        let start = match i % 4 {
            2 => Some("AES256"),
            3 => Some("SM4"),
            _ => None,
        };
        h.oss.emulator.state().set_rule(
            &name(i),
            start.map(|a| StoredRule {
                algorithm: a.into(),
                ..StoredRule::default()
            }),
        );
    }
    h.oss.emulator.state().set_faults(Faults {
        latency_ms: 100,
        internal_error_rate: 0.15,
        throttle_rate: 0.15,
        ..Faults::default()
    });
    h.kube.set_faults(KubeFaults {
        fail_rate: 0.05,
        fail_with: vec![409, 500],
        writes_only: true,
        drop_watches_every: Some(Duration::from_secs(2)),
        ..KubeFaults::default()
    });
    let started = Instant::now();
    for i in 0..OBJECTS {
        // Creates go through the same faults; retry until the object exists.
        loop {
            let resource = h.resource(&name(i), &name(i), spec(i));
            match h.api.create(&Default::default(), &resource).await {
                Ok(_) => break,
                Err(kube::Error::Api(s))
                    if s.code == 409 && h.api.get_opt(&name(i)).await.unwrap().is_some() =>
                {
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        if i == OBJECTS / 2 {
            // The controller process dies mid-run and comes back.
            h.stop_controller().await;
            h.start_controller();
        }
    }

    // Converged: every object Ready=True (Observe ones report their drift in InSync).
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let states = ready_states(&h).await;
        let done = (0..OBJECTS).all(|i| states[&name(i)].as_deref() == Some("True"));
        if done {
            break;
        }
        assert!(Instant::now() < deadline, "not converged after 90 s: {states:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let converged = started.elapsed();
    for i in 0..OBJECTS {
        assert_eq!(h.oss_rule(&name(i)), expected(i), "bucket {}", name(i));
    }

    // No flapping afterwards, while the faults go on.
    let settled = ready_states(&h).await;
    let mut flips = 0;
    for _ in 0..15 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = ready_states(&h).await;
        flips += now.iter().filter(|(k, v)| settled[*k] != **v).count();
    }
    assert_eq!(flips, 0, "Ready changed after converging");
    for i in (0..OBJECTS).filter(|&i| observe(i)) {
        assert_eq!(
            h.oss_rule(&name(i)),
            expected(i),
            "Observe object {} was written",
            name(i)
        );
        let object = h.api.get(&name(i)).await.unwrap();
        assert_eq!(
            condition(&object, "InSync"),
            Some(("False".into(), "Drifted".into())),
            "Observe object {} reports its drift",
            name(i)
        );
    }

    let counters = h.oss.emulator.state().counters();
    let total: u64 = counters.values().flat_map(|m| m.values()).sum();
    let per_object = total as f64 / OBJECTS as f64;
    let resyncs = started.elapsed().as_secs_f64() / h.settings.resync_interval.as_secs_f64();
    println!(
        "soak: converged in {converged:?}; {total} OSS requests ({per_object:.1} per object over ~{resyncs:.0} resync intervals); {counters:?}"
    );
    // Each object reads once per resync plus retries; a hot loop would be orders of magnitude more.
    assert!(
        per_object <= resyncs * 3.0 + 20.0,
        "{per_object:.1} OSS requests per object"
    );
}
