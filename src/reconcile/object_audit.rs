//! Pure decisions of the object audit (`spec.objectAudit`, DESIGN 3.7): whether an audit is due,
//! whether a resource may be audited at all, and the `status.objects` and event text an audit's
//! result becomes. The effects (the worker, its requests and its one status write) are
//! `audit_worker.rs`; the figures themselves are [`crate::audit::figures`], shared with the CLI.

use jiff::Timestamp;

use crate::api::object_audit::{
    AuditRequests, BelowRuleShare, DatedObject, EncryptionCounts, KEY_SHOWN, MAX_KEYS_SHOWN,
    MIN_AUDIT_INTERVAL,
};
use crate::api::{BucketEncryption, ObjectAudit, ObjectAuditStatus};
use crate::audit::{BucketAudit, Dated};

/// Whether the resource's object audit is due at `now`, given the last one (`status.objects`,
/// or the worker's own newer record): never audited, audited against another rule or another
/// sample size, or the interval has passed since. An audit that failed outright (nothing
/// examined, an error) is retried after the shortest interval (1h) instead of the full one.
pub fn audit_due(audit: &ObjectAudit, rule: &str, last: Option<&ObjectAuditStatus>, now: Timestamp) -> bool {
    let Some(last) = last else { return true };
    if last.rule != rule || last.sample != audit.sample {
        return true;
    }
    let Ok(at) = last.last_audit_time.parse::<Timestamp>() else {
        return true;
    };
    let failed = last.examined == 0 && last.errors > 0;
    let wait = if failed {
        audit.interval.min(MIN_AUDIT_INTERVAL)
    } else {
        audit.interval
    };
    let wait = jiff::SignedDuration::try_from(wait).unwrap_or(jiff::SignedDuration::MAX);
    at.checked_add(wait).is_ok_and(|next| next <= now)
}

/// Why a resource is not audited now, read from its status: the rule reconcile must have
/// settled the current generation with OSS holding the rule (Ready=True, InSync=True), so a
/// resource that does not own its bucket (Conflict), is not permitted, is invalid, or whose
/// bucket is not in sync is left alone. `None`: it may be audited.
pub fn audit_blocker(resource: &BucketEncryption) -> Option<&'static str> {
    let Some(status) = resource.status.as_ref() else {
        return Some("not reconciled yet");
    };
    if status.observed_generation != resource.metadata.generation {
        return Some("the current generation is not reconciled yet");
    }
    let is_true = |type_: &str| {
        status
            .conditions
            .iter()
            .any(|c| c.type_ == type_ && c.status == "True")
    };
    if !is_true("Ready") {
        return Some("not Ready");
    }
    if !is_true("InSync") {
        return Some("the bucket's rule is not in sync");
    }
    None
}

/// The later of two records of the last audit (the stored status can lag behind the worker's
/// own write until the cache sees it).
pub fn latest<'a>(
    a: Option<&'a ObjectAuditStatus>,
    b: Option<&'a ObjectAuditStatus>,
) -> Option<&'a ObjectAuditStatus> {
    let at = |s: &ObjectAuditStatus| s.last_audit_time.parse::<Timestamp>().ok();
    match (a, b) {
        (Some(a), Some(b)) => Some(if at(b) > at(a) { b } else { a }),
        (a, b) => a.or(b),
    }
}

/// A percentage as the status spells it.
fn percent(share: f64) -> String {
    format!("{:.2}%", share * 100.0)
}

fn dated(d: &Dated) -> DatedObject {
    DatedObject {
        key: crate::oss::list::printable(&d.key)
            .chars()
            .take(KEY_SHOWN)
            .collect(),
        last_modified: d.last_modified.clone(),
    }
}

/// `status.objects` for one audit's result, ended at `now` (the CLI's figures, bounded: at most
/// 20 CMK ids, keys cut to 256 characters, the first error only).
/// A count as the status holds it (int64, as Kubernetes API integers are), saturating.
fn n(count: u64) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

pub fn audit_status(audit: &BucketAudit, sample: Option<i32>, now: &str) -> ObjectAuditStatus {
    let tally = &audit.objects;
    let count = |kind: &str| n(tally.by_encryption.get(kind).copied().unwrap_or(0));
    let mut keys: Vec<(&String, &u64)> = tally.by_key.iter().collect();
    // The largest counts first; ties by key id, so the choice is stable.
    keys.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let omitted = n(keys.iter().skip(MAX_KEYS_SHOWN).map(|(_, k)| **k).sum());
    ObjectAuditStatus {
        last_audit_time: now.to_owned(),
        rule: audit.rule.clone(),
        sample,
        listed: n(audit.listed),
        examined: n(tally.examined),
        below_rule: n(tally.below_rule),
        by_encryption: EncryptionCounts {
            none: count("None"),
            aes256: count("AES256"),
            sm4: count("SM4"),
            kms: count("KMS"),
            kms_sm4: count("KMS+SM4"),
        },
        by_key: keys
            .into_iter()
            .take(MAX_KEYS_SHOWN)
            .map(|(k, count)| (k.clone(), n(*count)))
            .collect(),
        by_key_omitted: omitted,
        oldest_below_rule: tally.oldest_below_rule.as_ref().map(dated),
        newest_below_rule: tally.newest_below_rule.as_ref().map(dated),
        below_rule_share: audit.below_rule_share.as_ref().map(|s| BelowRuleShare {
            estimate: percent(s.estimate),
            low: percent(s.low),
            high: percent(s.high),
        }),
        requests: AuditRequests {
            list_objects: n(audit.requests.list_objects),
            head_object: n(audit.requests.head_object),
        },
        errors: n(audit.error_count),
        error: audit.errors.first().cloned(),
    }
}

/// The Warning event's note when examined objects are below the rule, `None` when none is.
pub fn below_rule_note(status: &ObjectAuditStatus) -> Option<String> {
    if status.below_rule == 0 {
        return None;
    }
    let c = &status.by_encryption;
    let mut note = format!(
        "{} of {} examined objects are encrypted below the rule {} (None {}, AES256 {}, SM4 {}, KMS {}, KMS+SM4 {})",
        status.below_rule, status.examined, status.rule, c.none, c.aes256, c.sm4, c.kms, c.kms_sm4
    );
    if let Some(share) = &status.below_rule_share {
        note.push_str(&format!(
            "; a sample of {} objects: {} of the bucket estimated below the rule (95%: {} to {})",
            status.listed, share.estimate, share.low, share.high
        ));
    }
    if let Some(oldest) = &status.oldest_below_rule {
        note.push_str(&format!("; oldest {} ({})", oldest.key, oldest.last_modified));
    }
    note.push_str("; the bucket rule does not re-encrypt existing objects");
    Some(note)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::audit::{Requests, Share, Tally};
    use crate::oss::EncryptionRule;
    use crate::oss::objects::ObjectEncryption;

    fn last(rule: &str, sample: Option<i32>, at: &str, examined: i64, errors: i64) -> ObjectAuditStatus {
        ObjectAuditStatus {
            last_audit_time: at.into(),
            rule: rule.into(),
            sample,
            examined,
            errors,
            ..ObjectAuditStatus::default()
        }
    }

    #[test]
    fn an_audit_is_due_when_never_run_when_its_rule_or_sample_changed_or_its_interval_passed() {
        let daily = ObjectAudit {
            interval: Duration::from_secs(24 * 3600),
            sample: Some(100),
        };
        let now: Timestamp = "2026-12-03T12:00:00Z".parse().unwrap();
        assert!(audit_due(&daily, "KMS", None, now), "never audited");
        let fresh = last("KMS", Some(100), "2026-12-03T00:00:00Z", 100, 0);
        assert!(!audit_due(&daily, "KMS", Some(&fresh), now), "12h ago, daily");
        assert!(audit_due(&daily, "AES256", Some(&fresh), now), "another rule");
        assert!(
            audit_due(
                &ObjectAudit {
                    sample: None,
                    ..daily
                },
                "KMS",
                Some(&fresh),
                now
            ),
            "all instead of a sample"
        );
        let old = last("KMS", Some(100), "2026-12-02T12:00:00Z", 100, 0);
        assert!(audit_due(&daily, "KMS", Some(&old), now), "exactly 24h ago");
        let failed = last("KMS", Some(100), "2026-12-03T10:59:59Z", 0, 1);
        assert!(
            audit_due(&daily, "KMS", Some(&failed), now),
            "failed over 1h ago: again"
        );
        let failed = last("KMS", Some(100), "2026-12-03T11:30:00Z", 0, 1);
        assert!(!audit_due(&daily, "KMS", Some(&failed), now), "failed 30 min ago");
        let partial = last("KMS", Some(100), "2026-12-03T10:00:00Z", 90, 10);
        assert!(
            !audit_due(&daily, "KMS", Some(&partial), now),
            "partial: a full interval"
        );
        let garbled = last("KMS", Some(100), "yesterday", 100, 0);
        assert!(audit_due(&daily, "KMS", Some(&garbled), now));
        let forever = ObjectAudit {
            interval: Duration::MAX,
            sample: Some(100),
        };
        assert!(!audit_due(&forever, "KMS", Some(&fresh), now), "saturates");
    }

    #[test]
    fn the_latest_record_wins() {
        let a = last("KMS", None, "2026-12-03T00:00:00Z", 1, 0);
        let b = last("KMS", None, "2026-12-03T01:00:00Z", 1, 0);
        assert_eq!(latest(Some(&a), Some(&b)), Some(&b));
        assert_eq!(latest(Some(&b), Some(&a)), Some(&b));
        assert_eq!(latest(None, Some(&a)), Some(&a));
        assert_eq!(latest(None, None), None);
    }

    fn resource(status: serde_json::Value) -> BucketEncryption {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "oss.encryption.dev/v1alpha1", "kind": "BucketEncryption",
            "metadata": {"name": "r", "namespace": "n", "generation": 2},
            "spec": {"bucket": "b-1", "region": "cn-hangzhou", "algorithm": "KMS"},
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn only_a_settled_ready_in_sync_resource_is_audited() {
        let condition = |type_: &str, status: &str, reason: &str| serde_json::json!({"type": type_, "status": status, "reason": reason, "lastTransitionTime": "t"});
        let ok = resource(serde_json::json!({"observedGeneration": 2, "conditions": [
            condition("Ready", "True", "InSync"), condition("InSync", "True", "InSync")]}));
        assert_eq!(audit_blocker(&ok), None);
        let conflict = resource(serde_json::json!({"observedGeneration": 2, "conditions": [
            condition("Ready", "False", "Conflict")]}));
        assert_eq!(audit_blocker(&conflict), Some("not Ready"));
        let stale = resource(serde_json::json!({"observedGeneration": 1, "conditions": [
            condition("Ready", "True", "InSync"), condition("InSync", "True", "InSync")]}));
        assert!(audit_blocker(&stale).is_some());
        let drifted = resource(serde_json::json!({"observedGeneration": 2, "conditions": [
            condition("Ready", "True", "Observed"), condition("InSync", "False", "Drifted")]}));
        assert_eq!(audit_blocker(&drifted), Some("the bucket's rule is not in sync"));
        assert!(audit_blocker(&resource(serde_json::Value::Null)).is_some());
    }

    #[test]
    fn the_status_carries_the_clis_figures_bounded() {
        let rule = EncryptionRule::kms(None, None);
        let mut tally = Tally::new();
        tally.add(
            "old",
            "2020-01-01T00:00:00.000Z",
            &ObjectEncryption::None,
            Some(&rule),
        );
        tally.add(
            "new",
            "2025-01-01T00:00:00.000Z",
            &ObjectEncryption::Aes256,
            Some(&rule),
        );
        for i in 0..25u64 {
            for _ in 0..=i {
                let kms = ObjectEncryption::Kms {
                    key_id: format!("key-{i:02}"),
                    sm4: i == 0,
                };
                tally.add("k", "2026-01-01T00:00:00.000Z", &kms, Some(&rule));
            }
        }
        let audit = BucketAudit {
            bucket: "b-1".into(),
            region: "cn-hangzhou".into(),
            rule: "KMS".into(),
            rule_from: "manifest",
            mode: "sample",
            listed: 5000,
            below_rule_share: Some(Share::of(&tally)),
            objects: tally,
            requests: Requests {
                get_bucket_encryption: 0,
                list_objects: 5,
                head_object: 327,
            },
            error_count: 0,
            errors: Vec::new(),
        };
        let status = audit_status(&audit, Some(327), "2026-12-03T12:00:00Z");
        assert_eq!(
            (status.examined, status.below_rule, status.listed),
            (327, 2, 5000)
        );
        assert_eq!(
            status.by_encryption,
            EncryptionCounts {
                none: 1,
                aes256: 1,
                sm4: 0,
                kms: 324,
                kms_sm4: 1
            }
        );
        assert_eq!(status.by_key.len(), MAX_KEYS_SHOWN);
        assert_eq!(status.by_key.get("key-24"), Some(&25));
        assert_eq!(
            status.by_key.get("key-04"),
            None,
            "the five smallest are left out"
        );
        assert_eq!(status.by_key_omitted, 1 + 2 + 3 + 4 + 5);
        assert_eq!(status.oldest_below_rule.as_ref().unwrap().key, "old");
        assert_eq!(status.newest_below_rule.as_ref().unwrap().key, "new");
        let share = status.below_rule_share.as_ref().unwrap();
        assert_eq!(share.estimate, "0.61%");
        assert_eq!(status.requests.head_object, 327);
        let note = below_rule_note(&status).unwrap();
        assert!(
            note.starts_with("2 of 327 examined objects are encrypted below the rule KMS (None 1, AES256 1"),
            "{note}"
        );
        assert!(note.contains("oldest old (2020-01-01T00:00:00.000Z)"), "{note}");
        let clean = ObjectAuditStatus::default();
        assert_eq!(below_rule_note(&clean), None);
    }
}
