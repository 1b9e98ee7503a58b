//! Pure: what a reconcile that went through means — the report (Ready, InSync, what OSS holds,
//! the request id) and the events — from what it found and did. No I/O; `steps.rs` gathers the
//! findings and `status.rs` turns the report into the status document.

use kube::Resource;
use kube::runtime::events::{Event, EventType};

use super::plan::{Action, Plan};
use super::preflight::Held;
use super::report::event;
use super::status::{ConditionState, Reason, Report};
use crate::api::{BucketEncryption, ManagementPolicy};
use crate::oss::{EncryptionRule, Reply, describe_rule};

/// What one reconcile found and did, as the judgement reads it.
#[derive(Clone, Debug)]
pub struct Findings<'a> {
    pub policy: ManagementPolicy,
    /// The stored status said OSS held this generation's rule (see [`was_in_sync`]): only then is
    /// a difference found now drift behind the operator's back.
    pub was_in_sync: bool,
    /// The spec's rule (`None` = no rule).
    pub desired: Option<&'a EncryptionRule>,
    /// What OSS reported, with the read's request id.
    pub observed: Reply<Option<EncryptionRule>>,
    pub decision: &'a Plan,
    /// The write made, if any: (API, reply).
    pub written: Option<(&'static str, Reply<()>)>,
    /// Why nothing was written although something was planned or the key is bad.
    pub held: Option<Held>,
}

/// Whether the stored status says OSS held this generation's rule: Ready=True for the current
/// generation.
pub fn was_in_sync(resource: &BucketEncryption) -> bool {
    let generation = resource.meta().generation;
    resource.status.as_ref().is_some_and(|s| {
        s.observed_generation == generation
            && s.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True" && c.observed_generation == generation)
    })
}

/// The report and events of a reconcile that went through.
pub fn judge(found: Findings<'_>) -> (Report, Vec<Event>) {
    let Findings {
        policy,
        was_in_sync,
        desired,
        observed,
        decision,
        written,
        held,
    } = found;
    let wanted = describe_rule(desired);
    let in_sync = match &decision.drift {
        None => ConditionState::new(true, Reason::InSync, format!("bucket has {wanted}")),
        Some(drift) => ConditionState::new(false, Reason::Drifted, drift.to_string()),
    };
    let mut report = Report {
        ready: ConditionState::new(true, Reason::InSync, format!("bucket has {wanted}")),
        settled: true,
        synced: ConditionState::new(true, Reason::ReconcileSuccess, ""),
        in_sync: Some(in_sync),
        observed: Some(observed.value.clone()),
        request_id: Some(observed.request_id.clone()),
        drift_corrected: false,
    };
    let mut events = Vec::new();
    if let Some(held) = held {
        let (reason, message) = held_verdict(held, decision);
        events.push(event(EventType::Warning, reason.as_str(), &message));
        report.ready = ConditionState::new(false, reason, message);
        return (report, events);
    }
    if policy == ManagementPolicy::Observe {
        // Observe mode's job is to read and report: done, whatever InSync says.
        let seen = describe_rule(observed.value.as_ref());
        report.ready = ConditionState::new(
            true,
            Reason::Observed,
            format!("Observe mode: bucket has {seen} (InSync says whether that is the spec's rule)"),
        );
    }
    match (written, &decision.drift) {
        (None, None) => {}
        (None, Some(drift)) => {
            events.push(event(EventType::Warning, "DriftDetected", drift.to_string()));
            let note = format!("{drift} (Observe mode: not corrected)");
            report.in_sync = Some(ConditionState::new(false, Reason::Drifted, note));
        }
        (Some((api, reply)), drift) => {
            let drift_text = drift.as_ref().map(ToString::to_string).unwrap_or_default();
            let note = format!("{api} {wanted} ({drift_text}; request id {})", reply.request_id);
            let reason = match (was_in_sync, &decision.action) {
                (true, _) => "DriftCorrected",
                (false, Action::Delete) => "Deleted",
                (false, _) => "Applied",
            };
            let kind = if was_in_sync {
                EventType::Warning
            } else {
                EventType::Normal
            };
            events.push(event(kind, reason, &note));
            report.ready = ConditionState::new(true, Reason::Applied, note);
            report.in_sync = Some(ConditionState::new(
                true,
                Reason::InSync,
                format!("bucket has {wanted}"),
            ));
            report.observed = Some(desired.cloned());
            report.request_id = Some(reply.request_id);
            report.drift_corrected = was_in_sync;
        }
    }
    (report, events)
}

/// Ready=False's reason and message when a safety net held the write back.
fn held_verdict(held: Held, decision: &Plan) -> (Reason, String) {
    match (held, &decision.drift) {
        (Held::Downgrade, drift) => (
            Reason::DowngradeBlocked,
            format!(
                "{}: that weakens the bucket's encryption (None < AES256 = SM4 < KMS), so nothing \
                 is written; set spec.allowDowngrade: true to allow it",
                drift.as_ref().map(ToString::to_string).unwrap_or_default()
            ),
        ),
        (Held::KeyNotUsable(verdict), Some(_)) if decision.action != Action::Nothing => {
            (Reason::KeyNotUsable, format!("{verdict}; nothing is written"))
        }
        (Held::KeyNotUsable(verdict), _) => (Reason::KeyNotUsable, verdict),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oss::SseAlgorithm;
    use crate::reconcile::plan::{Downgrades, plan};

    fn reply<T>(value: T, id: &str) -> Reply<T> {
        Reply {
            value,
            request_id: id.into(),
            attempts: 1,
        }
    }

    /// One row: the situation, and what the judgement must say.
    struct Case {
        name: &'static str,
        policy: ManagementPolicy,
        was_in_sync: bool,
        desired: Option<EncryptionRule>,
        observed: Option<EncryptionRule>,
        /// The write the plan asked for was made.
        wrote: bool,
        held: Option<Held>,
        /// (Ready status, Ready reason), (InSync status, InSync reason), event reasons,
        /// drift corrected, the rule reported as observed, the request id reported.
        ready: (bool, Reason),
        in_sync: (bool, Reason),
        events: &'static [&'static str],
        corrected: bool,
        reported: Option<EncryptionRule>,
        request_id: &'static str,
    }

    #[test]
    fn every_outcome_of_a_reconcile_that_went_through() {
        let aes = Some(EncryptionRule::new(SseAlgorithm::Aes256));
        let sm4 = Some(EncryptionRule::new(SseAlgorithm::Sm4));
        let kms = Some(EncryptionRule::kms(Some("k1"), None));
        use ManagementPolicy::{Manage, Observe};
        let cases = [
            Case {
                name: "in sync",
                policy: Manage,
                was_in_sync: true,
                desired: aes.clone(),
                observed: aes.clone(),
                wrote: false,
                held: None,
                ready: (true, Reason::InSync),
                in_sync: (true, Reason::InSync),
                events: &[],
                corrected: false,
                reported: aes.clone(),
                request_id: "GET",
            },
            Case {
                name: "first apply",
                policy: Manage,
                was_in_sync: false,
                desired: aes.clone(),
                observed: None,
                wrote: true,
                held: None,
                ready: (true, Reason::Applied),
                in_sync: (true, Reason::InSync),
                events: &["Applied"],
                corrected: false,
                reported: aes.clone(),
                request_id: "PUT",
            },
            Case {
                name: "drift corrected",
                policy: Manage,
                was_in_sync: true,
                desired: kms.clone(),
                observed: sm4.clone(),
                wrote: true,
                held: None,
                ready: (true, Reason::Applied),
                in_sync: (true, Reason::InSync),
                events: &["DriftCorrected"],
                corrected: true,
                reported: kms.clone(),
                request_id: "PUT",
            },
            Case {
                name: "rule removed as the spec asks",
                policy: Manage,
                was_in_sync: false,
                desired: None,
                observed: aes.clone(),
                wrote: true,
                held: None,
                ready: (true, Reason::Applied),
                in_sync: (true, Reason::InSync),
                events: &["Deleted"],
                corrected: false,
                reported: None,
                request_id: "PUT",
            },
            Case {
                name: "observe mode with drift",
                policy: Observe,
                was_in_sync: true,
                desired: aes.clone(),
                observed: sm4.clone(),
                wrote: false,
                held: None,
                ready: (true, Reason::Observed),
                in_sync: (false, Reason::Drifted),
                events: &["DriftDetected"],
                corrected: false,
                reported: sm4.clone(),
                request_id: "GET",
            },
            Case {
                name: "observe mode in sync",
                policy: Observe,
                was_in_sync: false,
                desired: aes.clone(),
                observed: aes.clone(),
                wrote: false,
                held: None,
                ready: (true, Reason::Observed),
                in_sync: (true, Reason::InSync),
                events: &[],
                corrected: false,
                reported: aes.clone(),
                request_id: "GET",
            },
            Case {
                name: "downgrade held",
                policy: Manage,
                was_in_sync: true,
                desired: aes.clone(),
                observed: kms.clone(),
                wrote: false,
                held: Some(Held::Downgrade),
                ready: (false, Reason::DowngradeBlocked),
                in_sync: (false, Reason::Drifted),
                events: &["DowngradeBlocked"],
                corrected: false,
                reported: kms.clone(),
                request_id: "GET",
            },
            Case {
                name: "key not usable, write held",
                policy: Manage,
                was_in_sync: false,
                desired: kms.clone(),
                observed: None,
                wrote: false,
                held: Some(Held::KeyNotUsable("KMS key k1 is not usable: Disabled".into())),
                ready: (false, Reason::KeyNotUsable),
                in_sync: (false, Reason::Drifted),
                events: &["KeyNotUsable"],
                corrected: false,
                reported: None,
                request_id: "GET",
            },
            Case {
                name: "key not usable while in sync",
                policy: Manage,
                was_in_sync: true,
                desired: kms.clone(),
                observed: kms.clone(),
                wrote: false,
                held: Some(Held::KeyNotUsable("KMS key k1 is not usable: Disabled".into())),
                ready: (false, Reason::KeyNotUsable),
                in_sync: (true, Reason::InSync),
                events: &["KeyNotUsable"],
                corrected: false,
                reported: kms.clone(),
                request_id: "GET",
            },
        ];
        for case in cases {
            let decision = plan(
                case.desired.as_ref(),
                case.observed.as_ref(),
                case.policy,
                Downgrades::allowed(case.held != Some(Held::Downgrade)),
            );
            let written = case.wrote.then(|| ("PutBucketEncryption", reply((), "PUT")));
            let writes = matches!(decision.action, Action::Put(_) | Action::Delete);
            assert_eq!(written.is_some(), writes && case.held.is_none(), "{}", case.name);
            let (report, events) = judge(Findings {
                policy: case.policy,
                was_in_sync: case.was_in_sync,
                desired: case.desired.as_ref(),
                observed: reply(case.observed.clone(), "GET"),
                decision: &decision,
                written,
                held: case.held.clone(),
            });
            let name = case.name;
            assert_eq!((report.ready.status, report.ready.reason), case.ready, "{name}");
            let in_sync = report.in_sync.as_ref().unwrap();
            assert_eq!((in_sync.status, in_sync.reason), case.in_sync, "{name}");
            let reasons: Vec<&str> = events.iter().map(|e| e.reason.as_str()).collect();
            assert_eq!(reasons, case.events, "{name}");
            assert_eq!(report.drift_corrected, case.corrected, "{name}");
            assert_eq!(report.observed, Some(case.reported), "{name}");
            assert_eq!(report.request_id.as_deref(), Some(case.request_id), "{name}");
            assert!(
                report.settled && report.synced.status,
                "{name}: the reconcile went through"
            );
        }
    }

    #[test]
    fn a_write_names_its_request_id_and_a_held_write_says_nothing_is_written() {
        let aes = EncryptionRule::new(SseAlgorithm::Aes256);
        let decision = plan(
            Some(&aes),
            None,
            ManagementPolicy::Manage,
            Downgrades::allowed(false),
        );
        let (report, events) = judge(Findings {
            policy: ManagementPolicy::Manage,
            was_in_sync: false,
            desired: Some(&aes),
            observed: reply(None, "GET"),
            decision: &decision,
            written: Some(("PutBucketEncryption", reply((), "PUT-1"))),
            held: None,
        });
        assert_eq!(
            report.ready.message,
            "PutBucketEncryption AES256 (bucket has None, spec wants AES256; request id PUT-1)"
        );
        assert_eq!(events[0].type_, EventType::Normal);
        let kms = EncryptionRule::kms(Some("k1"), None);
        let decision = plan(
            Some(&kms),
            None,
            ManagementPolicy::Manage,
            Downgrades::allowed(false),
        );
        let (report, _) = judge(Findings {
            policy: ManagementPolicy::Manage,
            was_in_sync: false,
            desired: Some(&kms),
            observed: reply(None, "GET"),
            decision: &decision,
            written: None,
            held: Some(Held::KeyNotUsable("KMS key k1 is not usable".into())),
        });
        assert_eq!(
            report.ready.message,
            "KMS key k1 is not usable; nothing is written"
        );
    }
}
