//! The operator binary end to end on a real API server of its own ([`OwnServer`]): `run` with
//! its own credentials from the environment (there are no Secrets) against the OSS emulator,
//! and what it does checked on the server — status by server-side apply under its field
//! manager, the finalizer only with `deletionPolicy: Delete`, events, deletion with both
//! policies, drift corrected, a policy's counts, the CRD's deletion retaining a Delete-policy
//! bucket's rule — with every Kubernetes write it makes counted from the audit log: the
//! expected writes per object on each change, and none in the steady state. Leader election has
//! its own test: the kit serves Leases as a CRD, which changes what renewals meet.

use std::collections::BTreeMap;
use std::future::Future;
use std::process::{Command, Stdio};
use std::time::Duration;

use kube::api::{Api, DeleteParams, DynamicObject, PostParams};
use oss_encryption_operator::api::{BucketEncryption, FINALIZER};
use oss_encryption_operator::emulator::StoredRule;
use serde_json::{Value, json};

use crate::kit::{OPERATOR_USER, OwnServer, grown};
use crate::support::Child;
use crate::support::oss::{ACCESS_KEY_ID, ACCESS_KEY_SECRET, REGION, TestOss};

const NAMESPACE: &str = "e2e";
const CRD: &str = "bucketencryptions.oss.encryption.dev";

/// Polls `probe` every 100 ms until it gives a value (at most `seconds`), or fails with its
/// last complaint.
async fn eventually<T, F, Fut>(what: &str, seconds: u64, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let mut last = String::new();
    for _ in 0..seconds * 10 {
        match probe().await {
            Ok(value) => return value,
            Err(complaint) => last = complaint,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} not within {seconds} s; last: {last}");
}

/// The operator binary, `run` on the server as its own user, the emulator allowed, the
/// operator's credentials from the environment; output in the server's work dir.
fn spawn_operator(server: &OwnServer, oss: &TestOss, args: &[&str]) -> Child {
    let log = |name: &str| std::fs::File::create(server.dir().join(name)).unwrap();
    Child(
        Command::new(env!("CARGO_BIN_EXE_oss-encryption-operator"))
            .args(["run", "--metrics-addr", "127.0.0.1:0", "--resync-interval", "30s"])
            .arg(format!(
                "--allowed-endpoint-suffixes={}",
                oss.emulator.endpoint().authority()
            ))
            .args(args)
            .env("KUBECONFIG", server.operator_kubeconfig())
            .env("ALIBABA_CLOUD_ACCESS_KEY_ID", ACCESS_KEY_ID)
            .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", ACCESS_KEY_SECRET)
            .env("POD_NAMESPACE", NAMESPACE)
            .env_remove("ALIBABA_CLOUD_ROLE_ARN")
            .env_remove("ALIBABA_CLOUD_OIDC_TOKEN_FILE")
            .stdout(Stdio::from(log("operator.out")))
            .stderr(Stdio::from(log("operator.err")))
            .spawn()
            .expect("the operator binary starts"),
    )
}

fn resource(oss: &TestOss, name: &str, spec: Value) -> BucketEncryption {
    let mut document = json!({
        "apiVersion": "oss.encryption.dev/v1alpha1", "kind": "BucketEncryption",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"bucket": name, "region": REGION, "algorithm": "AES256", "endpoint": oss.emulator.url()}
    });
    for (k, v) in spec.as_object().unwrap() {
        document["spec"][k] = v.clone();
    }
    serde_json::from_value(document).unwrap()
}

/// (status, reason) of a condition.
fn condition(object: &BucketEncryption, type_: &str) -> Option<(String, String)> {
    object
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

async fn wait_ready(api: &Api<BucketEncryption>, name: &str, reason: &str) -> BucketEncryption {
    eventually(&format!("{name} Ready=True/{reason}"), 30, || async {
        let object = api.get(name).await.map_err(|e| e.to_string())?;
        match condition(&object, "Ready") {
            Some((status, r)) if status == "True" && r == reason => Ok(object),
            other => Err(format!("Ready {other:?}, status {:?}", object.status)),
        }
    })
    .await
}

/// The rule the emulator holds for a bucket, as its algorithm.
fn rule(oss: &TestOss, bucket: &str) -> Option<String> {
    oss.emulator
        .state()
        .bucket(bucket)
        .and_then(|b| b.rule)
        .map(|r| r.algorithm)
}

fn requests(oss: &TestOss, bucket: &str) -> u64 {
    oss.emulator
        .state()
        .bucket_requests()
        .get(bucket)
        .copied()
        .unwrap_or(0)
}

/// Waits until every bucket has had `more` requests beyond `base` (each resync reads its bucket
/// once: once the next one has started, every reconcile before it has finished).
async fn resyncs(oss: &TestOss, base: &BTreeMap<String, u64>, more: u64) {
    eventually(&format!("{more} resync(s) of {:?}", base.keys()), 120, || async {
        let behind: Vec<_> = base
            .iter()
            .filter(|(bucket, n)| requests(oss, bucket) < *n + more)
            .map(|(bucket, _)| bucket.clone())
            .collect();
        if behind.is_empty() {
            Ok(())
        } else {
            Err(format!("not yet resynced: {behind:?}"))
        }
    })
    .await
}

fn base(oss: &TestOss, buckets: &[&str]) -> BTreeMap<String, u64> {
    buckets
        .iter()
        .map(|b| (b.to_string(), requests(oss, b)))
        .collect()
}

/// Waits until the operator's writes beyond `before` are exactly `expected` (they come in
/// over a few requests), then returns the counts.
async fn writes_reach(
    server: &OwnServer,
    before: &BTreeMap<String, u64>,
    expected: &[(&str, u64)],
) -> BTreeMap<String, u64> {
    let expected: BTreeMap<String, u64> = expected.iter().map(|(k, n)| (k.to_string(), *n)).collect();
    eventually("the operator's writes", 30, || async {
        let now = server.operator_writes();
        let made = grown(before, &now);
        if made == expected {
            Ok(now)
        } else {
            Err(format!("{made:#?}, expected {expected:#?}"))
        }
    })
    .await
}

fn events_about(events: &[DynamicObject], name: &str) -> Vec<String> {
    events
        .iter()
        .filter(|e| e.data["regarding"]["name"] == name)
        .map(|e| e.data["reason"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn the_operator_binary_reconciles_on_the_real_server() {
    let server = OwnServer::start().await;
    let client = server.admin.client.clone();
    let oss = TestOss::start(&[
        "gt-delete",
        "gt-retain",
        "gt-kept",
        "pol-aes",
        "pol-none",
        "pol-sm4",
    ])
    .await;
    let state = oss.emulator.state();
    let stored = |algorithm: &str| {
        Some(StoredRule {
            algorithm: algorithm.into(),
            ..StoredRule::default()
        })
    };
    state.set_rule("pol-aes", stored("AES256"));
    state.set_rule("pol-sm4", stored("SM4"));
    let _operator = spawn_operator(&server, &oss, &[]);

    let api: Api<BucketEncryption> = Api::namespaced(client.clone(), NAMESPACE);
    let post = PostParams::default();
    api.create(
        &post,
        &resource(
            &oss,
            "gt-delete",
            json!({"algorithm": "SM4", "deletionPolicy": "Delete"}),
        ),
    )
    .await
    .unwrap();
    api.create(&post, &resource(&oss, "gt-retain", json!({})))
        .await
        .unwrap();
    let policies: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &kube::api::ApiResource::erase::<oss_encryption_operator::api::policy::BucketEncryptionPolicy>(&()),
    );
    let policy = serde_json::from_value(json!({
        "apiVersion": "oss.encryption.dev/v1alpha1", "kind": "BucketEncryptionPolicy",
        "metadata": {"name": "pol"},
        "spec": {"selector": {"regions": [REGION], "namePrefix": "pol-"}, "rule": {"algorithm": "AES256"},
            "endpoint": oss.emulator.url(), "resyncInterval": "30s"}
    }))
    .unwrap();
    policies.create(&post, &policy).await.unwrap();

    // Status by server-side apply under the operator's field manager; the finalizer only with
    // deletionPolicy Delete; OSS holds the rules.
    let deleting = wait_ready(&api, "gt-delete", "Applied").await;
    let retaining = wait_ready(&api, "gt-retain", "Applied").await;
    assert_eq!(rule(&oss, "gt-delete").as_deref(), Some("SM4"));
    assert_eq!(rule(&oss, "gt-retain").as_deref(), Some("AES256"));
    assert_eq!(
        deleting.metadata.finalizers.as_deref(),
        Some(&[FINALIZER.to_owned()][..])
    );
    assert_eq!(retaining.metadata.finalizers, None, "no finalizer with Retain");
    for object in [&deleting, &retaining] {
        let status_managers: Vec<_> = object
            .metadata
            .managed_fields
            .iter()
            .flatten()
            .filter(|m| m.subresource.as_deref() == Some("status"))
            .map(|m| (m.manager.clone(), m.operation.clone()))
            .collect();
        assert_eq!(
            status_managers,
            [(Some("oss-encryption-operator".into()), Some("Apply".into()))],
            "the status is the operator's, by server-side apply"
        );
    }
    let policy_status = eventually("the policy's counts", 30, || async {
        let object = policies.get("pol").await.map_err(|e| e.to_string())?;
        let status = object.data["status"].clone();
        if status["buckets"]["selected"] == 3 {
            Ok(status)
        } else {
            Err(status.to_string())
        }
    })
    .await;
    assert_eq!(
        policy_status["buckets"],
        json!({"selected": 3, "compliant": 1, "nonCompliant": 2, "managedByResource": 0,
            "claimedByPolicy": 0, "excluded": 0, "errors": 0}),
        "{policy_status:#}"
    );

    // Writes on creation: per object one status write (and the finalizer, and the event).
    let none = BTreeMap::new();
    let created = writes_reach(
        &server,
        &none,
        &[
            ("patch bucketencryptions gt-delete", 1),
            ("patch bucketencryptions/status gt-delete", 1),
            ("patch bucketencryptions/status gt-retain", 1),
            ("create events gt-delete", 1),
            ("create events gt-retain", 1),
            ("patch bucketencryptionpolicies/status pol", 1),
            ("create events pol", 1),
        ],
    )
    .await;
    let events: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &kube::api::ApiResource::erase::<k8s_openapi::api::events::v1::Event>(&()),
    );
    let listed = events.list(&Default::default()).await.unwrap().items;
    assert_eq!(events_about(&listed, "gt-delete"), ["Applied"]);
    assert_eq!(events_about(&listed, "gt-retain"), ["Applied"]);

    // The steady state: two resyncs of every bucket (the first one confirms the writes) and
    // not one Kubernetes write.
    let buckets = ["gt-delete", "gt-retain", "pol-aes"];
    resyncs(&oss, &base(&oss, &buckets), 2).await;
    let steady = server.operator_writes();
    assert_eq!(
        grown(&created, &steady),
        BTreeMap::new(),
        "no write in the steady state"
    );

    // Drift is corrected at the next resync: one status write and one event, then quiet again.
    state.set_rule("gt-retain", stored("SM4"));
    eventually("the drift corrected", 60, || async {
        let object = api.get("gt-retain").await.map_err(|e| e.to_string())?;
        let corrections = object.status.as_ref().map(|s| s.drift_corrections);
        if corrections == Some(1) {
            Ok(())
        } else {
            Err(format!("{corrections:?}"))
        }
    })
    .await;
    assert_eq!(rule(&oss, "gt-retain").as_deref(), Some("AES256"));
    let corrected = writes_reach(
        &server,
        &steady,
        &[
            ("patch bucketencryptions/status gt-retain", 1),
            ("create events gt-retain", 1),
        ],
    )
    .await;
    resyncs(&oss, &base(&oss, &buckets), 1).await;
    assert_eq!(
        grown(&corrected, &server.operator_writes()),
        BTreeMap::new(),
        "the resync after a correction writes nothing"
    );

    // Deletion: Delete removes the rule, Retain keeps it; both resources go.
    let before = server.operator_writes();
    for name in ["gt-delete", "gt-retain"] {
        api.delete(name, &DeleteParams::default()).await.unwrap();
    }
    for name in ["gt-delete", "gt-retain"] {
        eventually(&format!("{name} gone"), 30, || async {
            match api.get_opt(name).await.map_err(|e| e.to_string())? {
                None => Ok(()),
                Some(o) => Err(format!("still there: {:?}", o.metadata.finalizers)),
            }
        })
        .await;
    }
    assert_eq!(rule(&oss, "gt-delete"), None, "Delete removed the rule");
    assert_eq!(
        rule(&oss, "gt-retain").as_deref(),
        Some("AES256"),
        "Retain kept it"
    );
    writes_reach(
        &server,
        &before,
        &[
            ("patch bucketencryptions gt-delete", 1),
            ("create events gt-delete", 1),
        ],
    )
    .await;

    // Deleting the CRD deletes every instance; a Delete-policy bucket keeps its rule.
    api.create(
        &post,
        &resource(
            &oss,
            "gt-kept",
            json!({"algorithm": "SM4", "deletionPolicy": "Delete"}),
        ),
    )
    .await
    .unwrap();
    wait_ready(&api, "gt-kept", "Applied").await;
    let deletes = state.total("DeleteBucketEncryption");
    let crds: Api<DynamicObject> = Api::all_with(client.clone(), &crate::target::crd_resource());
    crds.delete(CRD, &DeleteParams::default()).await.unwrap();
    eventually("the CRD gone", 60, || async {
        match crds.get_opt(CRD).await.map_err(|e| e.to_string())? {
            None => Ok(()),
            Some(o) => Err(format!("still there: {:?}", o.data["status"]["conditions"])),
        }
    })
    .await;
    assert_eq!(
        rule(&oss, "gt-kept").as_deref(),
        Some("SM4"),
        "the rule is retained"
    );
    assert_eq!(
        state.total("DeleteBucketEncryption"),
        deletes,
        "no DeleteBucketEncryption"
    );
    let listed = events.list(&Default::default()).await.unwrap().items;
    assert!(
        events_about(&listed, "gt-kept").contains(&"RuleRetained".to_owned()),
        "{:?}",
        events_about(&listed, "gt-kept")
    );
    let foreign: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.user == OPERATOR_USER && r.is_write() && r.code >= 400)
        .collect();
    assert_eq!(foreign, [], "every write of the operator succeeded");
}

/// `--leader-election` as deploy/ runs it: the binary takes the Lease and reconciles as the
/// leader. Renewals are strategic-merge patches (kube-lease-manager), which the kit's Lease (a
/// CRD stand-in: custom resources take no strategic merge patch) refuses with 415; a real
/// cluster's built-in Lease takes them. So here the binary shows its fencing on a real server:
/// with no renewal of its own it steps down and exits before the Lease could pass to another
/// replica, its last write inside the lease it held. Should renewals be accepted (a kit serving
/// the built-in type), the test checks that the lease stays held past its duration instead.
#[tokio::test]
async fn leader_election_on_the_real_server_holds_the_lease_and_fences() {
    let server = OwnServer::start().await;
    let client = server.admin.client.clone();
    let oss = TestOss::start(&["gt-led"]).await;
    let mut operator = spawn_operator(&server, &oss, &["--leader-election", "--instance", "gt-leader"]);
    let api: Api<BucketEncryption> = Api::namespaced(client.clone(), NAMESPACE);
    api.create(&PostParams::default(), &resource(&oss, "gt-led", json!({})))
        .await
        .unwrap();
    wait_ready(&api, "gt-led", "Applied").await;
    assert_eq!(rule(&oss, "gt-led").as_deref(), Some("AES256"));

    let leases: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        NAMESPACE,
        &kube::api::ApiResource::erase::<k8s_openapi::api::coordination::v1::Lease>(&()),
    );
    let lease = leases.get("oss-encryption-operator").await.unwrap();
    assert_eq!(lease.data["spec"]["holderIdentity"], "gt-leader", "{lease:?}");
    assert_eq!(lease.data["spec"]["leaseDurationSeconds"], 15);
    let acquired: jiff::Timestamp = lease.data["spec"]["renewTime"]
        .as_str()
        .expect("a renewTime")
        .parse()
        .unwrap();

    // The lease is taken by a server-side apply (the first patch that succeeds); the patches
    // after it are renewals, the first due 2 s later.
    let patches = || {
        server
            .requests()
            .into_iter()
            .filter(|r| {
                r.user == OPERATOR_USER
                    && r.resource == "leases"
                    && r.name == "oss-encryption-operator"
                    && r.verb == "patch"
            })
            .collect::<Vec<_>>()
    };
    let taken = patches()
        .into_iter()
        .find(|r| r.code == 200)
        .expect("the lease was taken by a patch")
        .time;
    let renewals = || {
        patches()
            .into_iter()
            .filter(|r| r.time > taken)
            .collect::<Vec<_>>()
    };
    let first = eventually("a renewal", 20, || async {
        renewals().first().cloned().ok_or_else(|| "none yet".to_owned())
    })
    .await;
    if first.code == 415 {
        let mut status = None;
        for _ in 0..300 {
            status = operator.0.try_wait().unwrap();
            if status.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let status = status.expect("the binary steps down within 30 s");
        let stderr = std::fs::read_to_string(server.dir().join("operator.err")).unwrap();
        assert!(!status.success(), "stepping down exits non-zero: {status}");
        assert!(
            stderr.contains("the lease was not renewed within the renew deadline")
                && stderr.contains("lost the leader lease"),
            "{stderr}"
        );
        assert!(renewals().iter().all(|r| r.code == 415), "{:?}", renewals());
        let expiry = acquired + jiff::SignedDuration::from_secs(15);
        let last_write = server
            .requests()
            .into_iter()
            .filter(|r| r.user == OPERATOR_USER && r.is_write() && r.resource != "leases")
            .map(|r| r.time)
            .max()
            .expect("the operator wrote");
        assert!(
            last_write < expiry,
            "its last write ({last_write}) falls inside the lease it held (until {expiry})"
        );
    } else {
        assert_eq!(first.code, 200, "{first:?}");
        // Renewals every 2 s: eight of them outlast the 15 s lease.
        eventually("eight renewals", 60, || async {
            let made = renewals();
            if made.len() >= 8 {
                Ok(())
            } else {
                Err(format!("{made:?}"))
            }
        })
        .await;
        assert!(renewals().iter().all(|r| r.code == 200), "{:?}", renewals());
        assert!(
            operator.0.try_wait().unwrap().is_none(),
            "the leader keeps running"
        );
        let lease = leases.get("oss-encryption-operator").await.unwrap();
        assert_eq!(lease.data["spec"]["holderIdentity"], "gt-leader");
        assert_eq!(lease.data["spec"]["leaseTransitions"], 0, "{lease:?}");
    }
}
