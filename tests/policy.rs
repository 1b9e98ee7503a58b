//! BucketEncryptionPolicy black-box: the real controller, the Kubernetes API test server and an
//! emulator holding 50 buckets in 3 regions. Observe reports exact counts and the sorted
//! non-compliant list with zero writes; Manage fixes exactly the non-compliant buckets that are
//! neither owned by a resource nor excluded, and never downgrades; a bucket created behind the
//! operator's back shows up at the next resync.

mod support;

use std::collections::BTreeMap;

use oss_encryption_operator::emulator::StoredRule;
use serde_json::json;
use support::operator::{Harness, NAMESPACE};
use support::policy::{create_policy, events, wait_status};

const REGIONS: [&str; 3] = ["cn-hangzhou", "cn-shanghai", "ap-southeast-1"];

fn bucket(i: usize) -> String {
    format!("acct-{i:02}")
}

/// Bucket i's rule: none, AES256, KMS, SM4 by turns.
fn algorithm(i: usize) -> Option<&'static str> {
    [None, Some("AES256"), Some("KMS"), Some("SM4")][i % 4]
}

async fn account() -> Harness {
    let h = Harness::start_with(&[], |settings| {
        settings.policy_secret_namespace = NAMESPACE.into();
    })
    .await;
    for i in 0..50 {
        h.oss.emulator.state().create_bucket(&bucket(i), REGIONS[i % 3]);
        h.oss.emulator.state().set_rule(
            &bucket(i),
            algorithm(i).map(|a| StoredRule {
                algorithm: a.into(),
                ..StoredRule::default()
            }),
        );
    }
    h
}

fn rules(h: &Harness) -> BTreeMap<String, Option<String>> {
    h.oss
        .emulator
        .state()
        .buckets()
        .into_iter()
        .map(|(name, b)| (name, b.rule.map(|r| r.algorithm)))
        .collect()
}

#[tokio::test]
async fn observe_reports_exact_counts_and_writes_nothing() {
    let h = account().await;
    // acct-10 holds KMS and a resource wants exactly that: the resource owns it.
    h.create(
        "owned",
        "acct-10",
        json!({"algorithm": "KMS", "region": REGIONS[10 % 3]}),
    )
    .await;
    h.wait_in_sync("owned").await;
    let before = h.oss.writes();
    create_policy(
        &h,
        "kms-everywhere",
        json!({"selector": {"exclude": ["acct-05"]}, "rule": {"algorithm": "KMS"}, "accept": [{"algorithm": "SM4"}]}),
    )
    .await;
    // Expected, computed from the fixture: compliant = KMS or SM4, except the excluded and owned.
    let ours: Vec<usize> = (0..50).filter(|&i| i != 5 && i != 10).collect();
    let compliant = ours
        .iter()
        .filter(|&&i| matches!(algorithm(i), Some("KMS" | "SM4")))
        .count() as i64;
    let non_compliant: Vec<usize> = ours
        .iter()
        .copied()
        .filter(|&i| !matches!(algorithm(i), Some("KMS" | "SM4")))
        .collect();
    let status = wait_status(&h, "kms-everywhere", "its first pass", |s| {
        s["buckets"]["selected"].as_i64() == Some(49)
    })
    .await;
    assert_eq!(
        status["buckets"],
        json!({"selected": 49, "compliant": compliant, "nonCompliant": non_compliant.len(),
               "managedByResource": 1, "claimedByPolicy": 0, "excluded": 1, "errors": 0})
    );
    let listed: Vec<(String, String, String)> = status["nonCompliant"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["bucket"].as_str().unwrap().into(),
                n["region"].as_str().unwrap().into(),
                n["observed"].as_str().unwrap().into(),
            )
        })
        .collect();
    let expected: Vec<(String, String, String)> = non_compliant
        .iter()
        .map(|&i| {
            (
                bucket(i),
                REGIONS[i % 3].to_owned(),
                algorithm(i).unwrap_or("None").to_owned(),
            )
        })
        .collect();
    assert_eq!(listed, expected, "sorted by name, with region and observed rule");
    // An Observe policy's job is to report: Ready, with the findings in Compliant=False.
    let condition = |type_: &str| {
        let c = status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == type_)
            .unwrap_or_else(|| panic!("no {type_} condition: {status}"));
        (
            c["status"].as_str().unwrap().to_owned(),
            c["reason"].as_str().unwrap().to_owned(),
        )
    };
    assert_eq!(condition("Ready"), ("True".into(), "Observed".into()));
    assert_eq!(condition("Compliant"), ("False".into(), "NonCompliant".into()));
    assert_eq!(condition("Stalled").0, "False");
    assert_eq!(condition("Reconciling").0, "False");
    assert_eq!(h.oss.writes(), before, "Observe never writes");
    let events = events(&h, "kms-everywhere").await;
    assert!(
        events
            .iter()
            .any(|(reason, note)| reason == "NonCompliant" && note.contains("acct-00")),
        "{events:?}"
    );
}

#[tokio::test]
async fn manage_fixes_exactly_the_non_compliant_unowned_unexcluded_buckets_and_never_downgrades() {
    let h = account().await;
    // acct-04 has no rule and a resource wants none: the policy must not touch it.
    h.create(
        "owned",
        "acct-04",
        json!({"algorithm": "None", "region": REGIONS[4 % 3]}),
    )
    .await;
    h.wait_in_sync("owned").await;
    let before = rules(&h);
    let writes_before = h.oss.writes();
    create_policy(
        &h,
        "aes-everywhere",
        json!({"selector": {"exclude": ["acct-08"]}, "rule": {"algorithm": "AES256"}, "managementPolicy": "Manage"}),
    )
    .await;
    // Fixed: no rule or SM4 (lateral); left: KMS (a downgrade), AES256 (compliant), owned, excluded.
    let fixable: Vec<usize> = (0..50)
        .filter(|&i| i != 4 && i != 8 && matches!(algorithm(i), None | Some("SM4")))
        .collect();
    let kms: Vec<usize> = (0..50).filter(|&i| algorithm(i) == Some("KMS")).collect();
    let status = wait_status(&h, "aes-everywhere", "its first pass", |s| {
        s["buckets"]["selected"].as_i64().is_some()
    })
    .await;
    let after = rules(&h);
    for i in 0..50 {
        let name = bucket(i);
        let expected = if fixable.contains(&i) {
            Some("AES256".to_owned())
        } else {
            before[&name].clone()
        };
        assert_eq!(after[&name], expected, "{name}");
    }
    assert_eq!(
        h.oss.writes() - writes_before,
        fixable.len() as u64,
        "one write per fixed bucket, nothing else"
    );
    assert_eq!(
        status["buckets"]["nonCompliant"],
        kms.len() as i64,
        "KMS buckets stay: {status:#}"
    );
    assert_eq!(status["buckets"]["managedByResource"], 1);
    assert_eq!(status["buckets"]["excluded"], 1);
    assert_eq!(status["buckets"]["compliant"], (49 - 1 - kms.len()) as i64);
    let events = events(&h, "aes-everywhere").await;
    let corrected = events
        .iter()
        .find(|(reason, _)| reason == "BucketsCorrected")
        .map(|(_, note)| note.clone());
    let note = corrected.unwrap_or_else(|| panic!("{events:?}"));
    assert!(
        note.starts_with(&format!("corrected {} bucket(s) to AES256: ", fixable.len())),
        "{note}"
    );
    for &i in &fixable {
        assert!(
            note.contains(&format!("{} (was {})", bucket(i), algorithm(i).unwrap_or("None"))),
            "{note}"
        );
    }

    // The next passes find nothing more to write.
    let settled = h.oss.writes();
    h.start_clock().await;
    h.ticks(3).await;
    assert_eq!(h.oss.writes(), settled + 1, "only the clock's own first write");
}

#[tokio::test]
async fn a_bucket_created_behind_the_operators_back_is_picked_up_at_the_next_resync() {
    let h = account().await;
    create_policy(&h, "audit", json!({"rule": {"algorithm": "KMS"}})).await;
    wait_status(&h, "audit", "50 buckets", |s| {
        s["buckets"]["selected"].as_i64() == Some(50)
    })
    .await;
    h.oss.emulator.state().create_bucket("zz-shadow", "cn-beijing");
    let status = wait_status(&h, "audit", "51 buckets", |s| {
        s["buckets"]["selected"].as_i64() == Some(51)
    })
    .await;
    let last = status["nonCompliant"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        last,
        json!({"bucket": "zz-shadow", "region": "cn-beijing", "observed": "None"})
    );
    assert_eq!(h.oss.emulator.state().total("PutBucketEncryption"), 0);
}

#[tokio::test]
async fn an_invalid_pattern_or_a_secret_elsewhere_is_reported() {
    let h = account().await;
    create_policy(
        &h,
        "bad-pattern",
        json!({"rule": {"algorithm": "KMS"}, "selector": {"namePattern": "(unclosed"}}),
    )
    .await;
    let status = wait_status(&h, "bad-pattern", "InvalidSpec", |s| {
        s["conditions"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["reason"] == "InvalidSpec"))
    })
    .await;
    assert!(status.to_string().contains("namePattern"), "{status}");
    // The operator reads policy Secrets only in its own namespace.
    create_policy(
        &h,
        "elsewhere",
        json!({"rule": {"algorithm": "KMS"}, "credentials": {"secretRef": {"name": "not-here"}}}),
    )
    .await;
    wait_status(&h, "elsewhere", "CredentialsNotFound", |s| {
        s["conditions"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["reason"] == "CredentialsNotFound"))
    })
    .await;
    assert_eq!(
        h.oss.emulator.state().total("ListBuckets"),
        0,
        "nothing listed without a valid spec and key"
    );
}
