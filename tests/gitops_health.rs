//! What GitOps tools conclude from the status the operator writes, for every reason: kstatus's
//! verdict (Flux, `kstatus`-based tools) and Argo CD's health, the latter by running the
//! project's own health Lua (`deploy/argocd/health.lua`, shown in the README) in the real
//! `lua5.4` interpreter. The samples are the operator's own status documents, built by
//! `next_status` (BucketEncryption) and the policy verdict (BucketEncryptionPolicy).

use std::io::Write;
use std::process::{Command, Stdio};

use oss_encryption_operator::api::Condition;
use oss_encryption_operator::api::policy::BucketCounts;
use oss_encryption_operator::oss::{EncryptionRule, SseAlgorithm};
use oss_encryption_operator::reconcile::policy::classify;
use oss_encryption_operator::reconcile::status::{
    ConditionState, Reason, Report, Wanted, next_status, set_condition, set_progress,
};
use serde_json::{Value, json};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kstatus {
    InProgress,
    Failed,
    Current,
    Terminating,
}

/// kstatus's verdict for a custom resource without type-specific rules, as
/// sigs.k8s.io/cli-utils `pkg/kstatus/status` computes it (`Compute` → `checkGenericProperties`
/// → `checkGeneration`, then `Current` for a type it has no rules for):
/// 1. `metadata.deletionTimestamp` set → Terminating;
/// 2. `status.observedGeneration` present and different from `metadata.generation` → InProgress
///    (reason `LatestGenerationNotObserved`);
/// 3. the conditions in list order: the first `Reconciling=True` → InProgress, the first
///    `Stalled=True` → Failed;
/// 4. otherwise Current (kstatus itself never reads `Ready`).
fn kstatus(object: &Value) -> Kstatus {
    if object["metadata"]["deletionTimestamp"].is_string() {
        return Kstatus::Terminating;
    }
    let observed = &object["status"]["observedGeneration"];
    if !observed.is_null() && *observed != object["metadata"]["generation"] {
        return Kstatus::InProgress;
    }
    for c in object["status"]["conditions"].as_array().into_iter().flatten() {
        match (c["type"].as_str(), c["status"].as_str()) {
            (Some("Reconciling"), Some("True")) => return Kstatus::InProgress,
            (Some("Stalled"), Some("True")) => return Kstatus::Failed,
            _ => {}
        }
    }
    Kstatus::Current
}

/// A JSON value as a Lua table constructor (what Argo CD hands the script as `obj`).
fn lua_literal(value: &Value) -> String {
    match value {
        Value::Null => "nil".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        // Rust's escapes (\", \\, \n, \u{..}) are Lua 5.4's.
        Value::String(s) => format!("{s:?}"),
        Value::Array(items) => format!(
            "{{{}}}",
            items.iter().map(lua_literal).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(fields) => format!(
            "{{{}}}",
            fields
                .iter()
                .map(|(k, v)| format!("[{k:?}] = {}", lua_literal(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Runs the health script over `object` with `lua5.4`: `(status, message)`.
fn argocd_health(object: &Value) -> (String, String) {
    let script = format!(
        "obj = {}\nlocal hs = dofile({:?})\nio.write(hs.status, \"\\t\", hs.message)\n",
        lua_literal(object),
        format!("{ROOT}/deploy/argocd/health.lua")
    );
    let mut child = Command::new("lua5.4")
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("lua5.4 runs (Debian package lua5.4)");
    child.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let (status, message) = text.split_once('\t').expect("status\tmessage");
    (status.to_owned(), message.to_owned())
}

fn object(kind: &str, generation: i64, status: Value) -> Value {
    json!({
        "apiVersion": "oss.encryption.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": "sample", "namespace": "ns", "generation": generation},
        "status": status,
    })
}

fn in_sync() -> Report {
    Report {
        ready: ConditionState::new(true, Reason::InSync, "bucket has AES256"),
        settled: true,
        synced: ConditionState::new(true, Reason::ReconcileSuccess, ""),
        in_sync: Some(ConditionState::new(true, Reason::InSync, "bucket has AES256")),
        observed: Some(Some(EncryptionRule::new(SseAlgorithm::Aes256))),
        request_id: Some("R1".into()),
        drift_corrected: false,
    }
}

/// The BucketEncryption status for a reason, as the operator reaches it at generation 1.
fn bucket_encryption(reason: Reason) -> Value {
    let report = match reason {
        Reason::InSync => in_sync(),
        Reason::Applied => Report {
            ready: ConditionState::new(
                true,
                Reason::Applied,
                "PutBucketEncryption AES256 (request id R1)",
            ),
            ..in_sync()
        },
        Reason::Observed => Report {
            ready: ConditionState::new(true, Reason::Observed, "Observe mode: bucket has SM4"),
            in_sync: Some(ConditionState::new(
                false,
                Reason::Drifted,
                "bucket has SM4, spec wants AES256 (Observe mode: not corrected)",
            )),
            ..in_sync()
        },
        // Transient failures keep a stored Ready; with none stored (the first reconcile) the
        // generation stays unsettled.
        Reason::Throttled | Reason::OssError => Report {
            settled: false,
            ..Report::failed(reason, format!("{reason} (request id R1)"), Some("R1".into()))
        },
        other => Report::failed(other, format!("{other}: why (request id R1)"), Some("R1".into())),
    };
    let status = next_status(None, Some(1), &report, "2026-01-01T00:00:00Z").unwrap();
    let mut object = object("BucketEncryption", 1, serde_json::to_value(status).unwrap());
    if reason == Reason::Deleting {
        object["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    }
    object
}

#[test]
fn every_bucket_encryption_reason_reads_right_in_kstatus_and_argo_cd() {
    use Kstatus::*;
    use Reason::*;
    // Written out by hand from DESIGN section 2 and 3.6, not derived from the code.
    let expected = [
        (InSync, Current, "Healthy"),
        (Applied, Current, "Healthy"),
        (Observed, Current, "Healthy"),
        (InvalidSpec, Failed, "Degraded"),
        (AccessDenied, Failed, "Degraded"),
        (BucketNotFound, Failed, "Degraded"),
        (EndpointNotAllowed, Failed, "Degraded"),
        (Conflict, Failed, "Degraded"),
        (NotPermitted, Failed, "Degraded"),
        (DowngradeBlocked, Failed, "Degraded"),
        (KeyNotUsable, Failed, "Degraded"),
        (CredentialsNotFound, InProgress, "Progressing"),
        (KeyCheckFailed, InProgress, "Progressing"),
        (KubernetesError, InProgress, "Progressing"),
        (Throttled, InProgress, "Progressing"),
        (OssError, InProgress, "Progressing"),
        (Deleting, Terminating, "Progressing"),
    ];
    let covered: Vec<Reason> = expected.iter().map(|e| e.0).collect();
    for reason in Reason::ALL {
        // Drifted is InSync's reason and ReconcileSuccess Synced's: never a Ready verdict.
        assert!(
            covered.contains(&reason) || matches!(reason, Drifted | ReconcileSuccess),
            "{reason} has no expected verdict"
        );
    }
    for (reason, verdict, health) in expected {
        let sample = bucket_encryption(reason);
        assert_eq!(kstatus(&sample), verdict, "{reason}: {sample}");
        let (status, message) = argocd_health(&sample);
        assert_eq!(status, health, "{reason}: {message}");
        if health != "Healthy" && reason != Deleting {
            assert!(message.contains(reason.as_str()), "{reason}: {message}");
        }
    }
    let (_, observe) = argocd_health(&bucket_encryption(Observed));
    assert!(
        observe.contains("Drifted: bucket has SM4, spec wants AES256"),
        "{observe}"
    );
}

#[test]
fn a_generation_not_yet_acted_on_is_in_progress_everywhere() {
    let mut stored = bucket_encryption(Reason::InSync);
    stored["metadata"]["generation"] = json!(2);
    assert_eq!(kstatus(&stored), Kstatus::InProgress);
    assert_eq!(argocd_health(&stored).0, "Progressing");
    // A transient failure on generation 2 keeps generation 1's Ready and observedGeneration.
    let status: oss_encryption_operator::api::BucketEncryptionStatus =
        serde_json::from_value(stored["status"].clone()).unwrap();
    let retrying = Report {
        settled: false,
        ..Report::failed(Reason::OssError, "HTTP 500 (request id R2)", Some("R2".into()))
    };
    let next = next_status(Some(&status), Some(2), &retrying, "2026-01-01T00:01:00Z").unwrap();
    let sample = object("BucketEncryption", 2, serde_json::to_value(next).unwrap());
    assert_eq!(kstatus(&sample), Kstatus::InProgress);
    assert_eq!(argocd_health(&sample).0, "Progressing");
    let unwritten = json!({"apiVersion": "oss.encryption.dev/v1alpha1", "kind": "BucketEncryption",
        "metadata": {"name": "new", "generation": 1}});
    assert_eq!(argocd_health(&unwritten).0, "Progressing");
}

/// A policy status as a pass (or a failed pass) leaves it at generation 1.
fn policy(conditions: impl FnOnce(&mut Vec<Condition>)) -> Value {
    let mut list = Vec::new();
    conditions(&mut list);
    object(
        "BucketEncryptionPolicy",
        1,
        json!({"observedGeneration": 1, "conditions": list}),
    )
}

fn pass(counts: BucketCounts, manage: bool) -> Value {
    policy(|list| {
        let v = classify::verdict(&counts, manage, &["b: HTTP 500".into()]);
        let now = "2026-01-01T00:00:00Z";
        set_condition(list, "Ready", v.ready, v.ready_reason, &v.message, Some(1), now);
        set_condition(list, "Synced", true, "ReconcileSuccess", "", Some(1), now);
        set_condition(
            list,
            "Compliant",
            v.compliant,
            v.compliant_reason,
            &v.message,
            Some(1),
            now,
        );
        let ready = Wanted {
            status: v.ready,
            reason: v.ready_reason,
            message: &v.message,
        };
        set_progress(list, ready, true, Some(1), now);
    })
}

fn failed_pass(reason: Reason) -> Value {
    policy(|list| {
        let now = "2026-01-01T00:00:00Z";
        let message = format!("{reason}: why");
        set_condition(list, "Ready", false, reason.as_str(), &message, Some(1), now);
        set_condition(list, "Synced", false, reason.as_str(), &message, Some(1), now);
        let ready = Wanted {
            status: false,
            reason: reason.as_str(),
            message: &message,
        };
        set_progress(list, ready, true, Some(1), now);
    })
}

#[test]
fn every_policy_outcome_reads_right_in_kstatus_and_argo_cd() {
    let counts = |compliant, non_compliant, errors| BucketCounts {
        selected: compliant + non_compliant + errors,
        compliant,
        non_compliant,
        errors,
        ..BucketCounts::default()
    };
    let samples = [
        (
            "compliant",
            pass(counts(5, 0, 0), true),
            Kstatus::Current,
            "Healthy",
        ),
        (
            "bucket errors",
            pass(counts(5, 0, 1), true),
            Kstatus::InProgress,
            "Progressing",
        ),
        (
            "Manage, not correctable",
            pass(counts(5, 2, 0), true),
            Kstatus::Failed,
            "Degraded",
        ),
        (
            "Observe, non-compliant",
            pass(counts(5, 2, 0), false),
            Kstatus::Current,
            "Healthy",
        ),
        (
            "access denied",
            failed_pass(Reason::AccessDenied),
            Kstatus::Failed,
            "Degraded",
        ),
        (
            "invalid spec",
            failed_pass(Reason::InvalidSpec),
            Kstatus::Failed,
            "Degraded",
        ),
        (
            "no credentials",
            failed_pass(Reason::CredentialsNotFound),
            Kstatus::InProgress,
            "Progressing",
        ),
        (
            "throttled",
            failed_pass(Reason::Throttled),
            Kstatus::InProgress,
            "Progressing",
        ),
    ];
    for (name, sample, verdict, health) in samples {
        assert_eq!(kstatus(&sample), verdict, "{name}: {sample}");
        assert_eq!(argocd_health(&sample).0, health, "{name}");
    }
    let (_, observe) = argocd_health(&pass(counts(5, 2, 0), false));
    assert!(
        observe.contains("Compliant") || observe.contains("NonCompliant"),
        "{observe}"
    );
    assert!(observe.contains("2 bucket(s) non-compliant"), "{observe}");
}

#[test]
fn the_readme_shows_the_health_script_verbatim() {
    let script = std::fs::read_to_string(format!("{ROOT}/deploy/argocd/health.lua")).unwrap();
    let readme = std::fs::read_to_string(format!("{ROOT}/README.md")).unwrap();
    assert!(
        readme.contains(&format!("```lua\n{script}```")),
        "README's Argo CD health Lua differs from deploy/argocd/health.lua: paste it"
    );
}
