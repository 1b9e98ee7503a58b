//! Status reporting: conditions and the status document computed from what a reconcile found,
//! and whether it differs from what is stored (the status is written only when it does).
//!
//! `lastSyncTime` and `lastRequestId` describe the last reconcile that *changed* the status
//! (first sync, a spec change, a write to OSS, drift, an error or a recovery). An in-sync resync
//! changes nothing and so writes nothing: refreshing them every resync would cost one
//! Kubernetes write per object per interval, which the operator's budget (one GET, zero writes)
//! rules out. The Ready condition is still verified on every resync.
//!
//! Conditions (DESIGN section 2, 3.6): `Ready` (the job for this generation is done), `Synced`
//! (the last reconcile completed), `InSync` (OSS holds the spec's rule; Observe mode's answer),
//! and kstatus's `Reconciling` (a generation acted on or retried) and `Stalled` (only a change of
//! spec or environment helps), decided by [`progress`] from the Ready verdict alone.

use std::fmt;

use crate::api::{BucketEncryptionStatus, Condition, ObservedRule};
use crate::oss::EncryptionRule;

/// Condition reasons (the contract in DESIGN.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    InSync,
    Applied,
    Observed,
    Drifted,
    InvalidSpec,
    CredentialsNotFound,
    AccessDenied,
    BucketNotFound,
    EndpointNotAllowed,
    Conflict,
    NotPermitted,
    Throttled,
    OssError,
    Deleting,
    KubernetesError,
    DowngradeBlocked,
    KeyNotUsable,
    KeyCheckFailed,
    ReconcileSuccess,
}

impl Reason {
    /// Every reason, so a stored condition can be read back.
    pub const ALL: [Reason; 19] = [
        Self::InSync,
        Self::Applied,
        Self::Observed,
        Self::Drifted,
        Self::InvalidSpec,
        Self::CredentialsNotFound,
        Self::AccessDenied,
        Self::BucketNotFound,
        Self::EndpointNotAllowed,
        Self::Conflict,
        Self::NotPermitted,
        Self::Throttled,
        Self::OssError,
        Self::Deleting,
        Self::KubernetesError,
        Self::DowngradeBlocked,
        Self::KeyNotUsable,
        Self::KeyCheckFailed,
        Self::ReconcileSuccess,
    ];

    /// The reason a stored condition names, if it is one of ours.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::InSync => "InSync",
            Self::Applied => "Applied",
            Self::Observed => "Observed",
            Self::Drifted => "Drifted",
            Self::InvalidSpec => "InvalidSpec",
            Self::CredentialsNotFound => "CredentialsNotFound",
            Self::AccessDenied => "AccessDenied",
            Self::BucketNotFound => "BucketNotFound",
            Self::EndpointNotAllowed => "EndpointNotAllowed",
            Self::Conflict => "Conflict",
            Self::NotPermitted => "NotPermitted",
            Self::Throttled => "Throttled",
            Self::OssError => "OssError",
            Self::Deleting => "Deleting",
            Self::KubernetesError => "KubernetesError",
            Self::DowngradeBlocked => "DowngradeBlocked",
            Self::KeyNotUsable => "KeyNotUsable",
            Self::KeyCheckFailed => "KeyCheckFailed",
            Self::ReconcileSuccess => "ReconcileSuccess",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One condition's wanted state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConditionState {
    pub status: bool,
    pub reason: Reason,
    pub message: String,
}

impl ConditionState {
    pub fn new(status: bool, reason: Reason, message: impl Into<String>) -> Self {
        Self {
            status,
            reason,
            message: message.into(),
        }
    }
}

/// What one reconcile found, as the status reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub ready: ConditionState,
    /// The generation was acted on to a definite outcome (applied, in sync, drifted, or a
    /// terminal judgement): `observedGeneration` advances and Ready is set for it. When false
    /// (a transient failure) the stored Ready and `observedGeneration` stay as they are, so an
    /// old Ready is never relabelled as the new generation's; `ready` is written only when no
    /// Ready is stored yet.
    pub settled: bool,
    pub synced: ConditionState,
    /// Whether OSS holds the spec's rule, when OSS was read (`None` keeps what is stored).
    pub in_sync: Option<ConditionState>,
    /// The rule OSS reported, when OSS was read (`Some(None)` = no rule).
    pub observed: Option<Option<EncryptionRule>>,
    /// The request id of the last OSS call, if one was made.
    pub request_id: Option<String>,
    /// The reconcile corrected drift behind the operator's back.
    pub drift_corrected: bool,
}

impl Report {
    /// A reconcile that ended in an error before or while talking to OSS.
    pub fn failed(reason: Reason, message: impl Into<String>, request_id: Option<String>) -> Self {
        let message = message.into();
        Self {
            ready: ConditionState::new(false, reason, message.clone()),
            settled: true,
            synced: ConditionState::new(false, reason, message),
            in_sync: None,
            observed: None,
            request_id,
            drift_corrected: false,
        }
    }
}

/// Removes `(request id …)` parts, which differ on every OSS call.
fn without_request_ids(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(start) = rest.find("(request id ") {
        out.push_str(&rest[..start]);
        match rest[start..].find(')') {
            Some(end) => rest = &rest[start + end + 1..],
            None => {
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// The message to report for a failure: when the stored condition already reports the same
/// failure (same reason, same text but for the request id), its message is kept, so a repeated
/// failure changes nothing, writes nothing, and cannot feed a reconcile loop through its own
/// status writes. The kept message names the request id of the first failure.
pub fn stable_message(
    current: Option<&crate::api::BucketEncryptionStatus>,
    type_: &str,
    reason: Reason,
    message: String,
) -> String {
    let existing = current.and_then(|s| s.conditions.iter().find(|c| c.type_ == type_));
    match existing {
        Some(c)
            if c.reason == reason.as_str()
                && without_request_ids(&c.message) == without_request_ids(&message) =>
        {
            c.message.clone()
        }
        _ => message,
    }
}

/// Ready reasons after which only a change of spec or environment helps: kstatus `Stalled`
/// (Flux and `kstatus` report Failed instead of waiting for a timeout). A table, so a new
/// reason is one line; `NonCompliant` is a Manage policy's buckets it may not correct.
pub const STALLED_REASONS: [&str; 9] = [
    "InvalidSpec",
    "AccessDenied",
    "BucketNotFound",
    "EndpointNotAllowed",
    "Conflict",
    "NotPermitted",
    "DowngradeBlocked",
    "KeyNotUsable",
    "NonCompliant",
];

/// Whether a Ready=False reason means stalled (see [`STALLED_REASONS`]).
pub fn is_stalled(reason: &str) -> bool {
    STALLED_REASONS.contains(&reason)
}

/// One condition as a verdict wants it (reason and message borrowed from the verdict).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wanted<'a> {
    pub status: bool,
    pub reason: &'a str,
    pub message: &'a str,
}

/// What a reconcile's Ready verdict means for kstatus: `(Reconciling, Stalled)`, never both True.
/// `settled` is false while the generation is still being worked on (a transient failure kept
/// the old Ready); a Ready=False is either stalled (by the table) or retried (Reconciling); a
/// Ready=True leaves both False. A False condition carries the Ready reason and no message.
pub fn progress<'a>(ready: Wanted<'a>, settled: bool) -> (Wanted<'a>, Wanted<'a>) {
    let idle = Wanted {
        status: false,
        message: "",
        ..ready
    };
    let active = Wanted {
        status: true,
        ..ready
    };
    match (settled, ready.status) {
        (false, _) => (active, idle),
        (true, true) => (idle, idle),
        (true, false) if is_stalled(ready.reason) => (idle, active),
        (true, false) => (active, idle),
    }
}

/// Sets `Reconciling` and `Stalled` from the Ready verdict (see [`progress`]).
pub fn set_progress(
    conditions: &mut Vec<Condition>,
    ready: Wanted<'_>,
    settled: bool,
    generation: Option<i64>,
    now: &str,
) {
    let (reconciling, stalled) = progress(ready, settled);
    for (type_, wanted) in [("Reconciling", reconciling), ("Stalled", stalled)] {
        set_condition(
            conditions,
            type_,
            wanted.status,
            wanted.reason,
            wanted.message,
            generation,
            now,
        );
    }
}

fn condition_status(status: bool) -> &'static str {
    if status { "True" } else { "False" }
}

/// Sets a condition; `lastTransitionTime` moves only when the status flips.
fn upsert(
    conditions: &mut Vec<Condition>,
    type_: &str,
    wanted: &ConditionState,
    generation: Option<i64>,
    now: &str,
) {
    set_condition(
        conditions,
        type_,
        wanted.status,
        wanted.reason.as_str(),
        &wanted.message,
        generation,
        now,
    );
}

/// Sets a metav1.Condition (BucketEncryption and BucketEncryptionPolicy alike);
/// `lastTransitionTime` moves only when the status flips.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: &str,
) {
    let status = condition_status(status);
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(existing) => {
            if existing.status != status {
                existing.last_transition_time = now.to_owned();
            }
            existing.status = status.to_owned();
            existing.reason = reason.to_owned();
            existing.message = message.to_owned();
            existing.observed_generation = generation;
        }
        None => conditions.push(Condition {
            type_: type_.to_owned(),
            status: status.to_owned(),
            reason: reason.to_owned(),
            message: message.to_owned(),
            last_transition_time: now.to_owned(),
            observed_generation: generation,
        }),
    }
}

/// The stored Ready of the write this reconcile merely confirms: when the report says the
/// generation is in sync (nothing written) and the stored Ready already says `Applied` for the
/// same generation, that Ready stays. Relabelling it `InSync` would say nothing new and cost one
/// Kubernetes write per object after every OSS write; `InSync=True` already tells the rest.
fn confirmed_write(
    stored: &BucketEncryptionStatus,
    generation: Option<i64>,
    report: &Report,
) -> Option<ConditionState> {
    let confirms = report.settled && report.ready.status && report.ready.reason == Reason::InSync;
    let applied = stored.conditions.iter().find(|c| {
        c.type_ == "Ready"
            && c.status == "True"
            && c.reason == Reason::Applied.as_str()
            && c.observed_generation == generation
    })?;
    (confirms && stored.observed_generation == generation)
        .then(|| ConditionState::new(true, Reason::Applied, applied.message.clone()))
}

/// The status to write, or `None` when the stored one already says all of it.
pub fn next_status(
    current: Option<&BucketEncryptionStatus>,
    generation: Option<i64>,
    report: &Report,
    now: &str,
) -> Option<BucketEncryptionStatus> {
    let stored = current.cloned().unwrap_or_default();
    let mut next = stored.clone();
    let has_ready = stored.conditions.iter().any(|c| c.type_ == "Ready");
    if report.settled {
        next.observed_generation = generation;
    }
    let ready = confirmed_write(&stored, generation, report).unwrap_or_else(|| report.ready.clone());
    if report.settled || !has_ready {
        upsert(&mut next.conditions, "Ready", &ready, generation, now);
    }
    upsert(&mut next.conditions, "Synced", &report.synced, generation, now);
    if let Some(in_sync) = &report.in_sync {
        upsert(&mut next.conditions, "InSync", in_sync, generation, now);
    }
    // The failure's text as Synced keeps it (stable across retries), else Ready's.
    let verdict = if report.synced.status {
        &ready
    } else {
        &report.synced
    };
    set_progress(
        &mut next.conditions,
        Wanted {
            status: ready.status,
            reason: ready.reason.as_str(),
            message: &verdict.message,
        },
        report.settled,
        generation,
        now,
    );
    if let Some(observed) = &report.observed {
        next.observed = Some(ObservedRule::from_rule(observed.as_ref()));
    }
    if report.drift_corrected {
        next.drift_corrections += 1;
    }
    if next == stored {
        return None;
    }
    if report.observed.is_some() {
        next.last_sync_time = Some(now.to_owned());
    }
    if let Some(id) = report.request_id.as_ref().filter(|id| !id.is_empty()) {
        next.last_request_id = Some(id.clone());
    }
    Some(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oss::SseAlgorithm;

    fn in_sync(request_id: &str) -> Report {
        Report {
            ready: ConditionState::new(true, Reason::InSync, "bucket has AES256"),
            settled: true,
            synced: ConditionState::new(true, Reason::ReconcileSuccess, ""),
            in_sync: Some(ConditionState::new(true, Reason::InSync, "bucket has AES256")),
            observed: Some(Some(EncryptionRule::new(SseAlgorithm::Aes256))),
            request_id: Some(request_id.into()),
            drift_corrected: false,
        }
    }

    #[test]
    fn first_status_sets_everything() {
        let status = next_status(None, Some(1), &in_sync("R1"), "T1").unwrap();
        assert_eq!(status.observed_generation, Some(1));
        let kinds: Vec<(&str, &str)> = status
            .conditions
            .iter()
            .map(|c| (c.type_.as_str(), c.status.as_str()))
            .collect();
        assert_eq!(
            kinds,
            [
                ("Ready", "True"),
                ("Synced", "True"),
                ("InSync", "True"),
                ("Reconciling", "False"),
                ("Stalled", "False")
            ]
        );
        assert!(status.conditions.iter().all(|c| c.last_transition_time == "T1"));
        assert_eq!(status.observed.as_ref().unwrap().algorithm, "AES256");
        assert_eq!(status.last_sync_time.as_deref(), Some("T1"));
        assert_eq!(status.last_request_id.as_deref(), Some("R1"));
    }

    #[test]
    fn an_unchanged_resync_writes_nothing_even_with_a_new_request_id() {
        let stored = next_status(None, Some(1), &in_sync("R1"), "T1").unwrap();
        assert_eq!(next_status(Some(&stored), Some(1), &in_sync("R2"), "T2"), None);
    }

    #[test]
    fn transition_time_moves_only_when_status_flips() {
        let stored = next_status(None, Some(1), &in_sync("R1"), "T1").unwrap();
        let failed = Report::failed(
            Reason::AccessDenied,
            "403 AccessDenied (request id R2)",
            Some("R2".into()),
        );
        let after_failure = next_status(Some(&stored), Some(1), &failed, "T2").unwrap();
        let ready = after_failure
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(
            (
                ready.status.as_str(),
                ready.reason.as_str(),
                ready.last_transition_time.as_str()
            ),
            ("False", "AccessDenied", "T2")
        );
        assert_eq!(after_failure.last_request_id.as_deref(), Some("R2"));
        assert_eq!(
            after_failure.last_sync_time.as_deref(),
            Some("T1"),
            "no successful read"
        );
        assert_eq!(
            after_failure.observed, stored.observed,
            "the last observation is kept"
        );

        let other_failure = Report::failed(Reason::OssError, "500", None);
        let again = next_status(Some(&after_failure), Some(1), &other_failure, "T3").unwrap();
        let ready = again.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(
            (ready.reason.as_str(), ready.last_transition_time.as_str()),
            ("OssError", "T2"),
            "still False: time kept"
        );
    }

    #[test]
    fn every_reason_reads_back() {
        for reason in Reason::ALL {
            assert_eq!(Reason::parse(reason.as_str()), Some(reason));
        }
        assert_eq!(Reason::parse("Unheard"), None);
    }

    #[test]
    fn a_repeated_failure_keeps_its_first_message() {
        let first = Report::failed(
            Reason::AccessDenied,
            "403 AccessDenied: no (request id R1)",
            Some("R1".into()),
        );
        let stored = next_status(None, Some(1), &first, "T1").unwrap();
        let again = stable_message(
            Some(&stored),
            "Ready",
            Reason::AccessDenied,
            "403 AccessDenied: no (request id R2)".into(),
        );
        assert_eq!(again, "403 AccessDenied: no (request id R1)");
        let repeated = Report::failed(Reason::AccessDenied, again, Some("R2".into()));
        assert_eq!(
            next_status(Some(&stored), Some(1), &repeated, "T2"),
            None,
            "nothing to write"
        );
        let different = stable_message(
            Some(&stored),
            "Ready",
            Reason::BucketNotFound,
            "404 (request id R3)".into(),
        );
        assert_eq!(different, "404 (request id R3)");
        assert_eq!(without_request_ids("a (request id X) b (request id Y)"), "a  b ");
    }

    #[test]
    fn an_unsettled_generation_keeps_the_stored_ready_and_observed_generation() {
        let stored = next_status(None, Some(1), &in_sync("R1"), "T1").unwrap();
        let pending = Report {
            settled: false,
            ..Report::failed(Reason::OssError, "HTTP 500", None)
        };
        let next = next_status(Some(&stored), Some(2), &pending, "T2").unwrap();
        assert_eq!(next.observed_generation, Some(1), "generation 2 not acted on");
        let ready = next.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.observed_generation),
            ("True", Some(1)),
            "the old Ready keeps its own generation"
        );
        let synced = next.conditions.iter().find(|c| c.type_ == "Synced").unwrap();
        assert_eq!(
            (
                synced.status.as_str(),
                synced.reason.as_str(),
                synced.observed_generation
            ),
            ("False", "OssError", Some(2))
        );
        // With nothing stored, an unsettled failure still says Ready=False (never True).
        let first = next_status(None, Some(1), &pending, "T1").unwrap();
        assert_eq!(first.observed_generation, None);
        assert_eq!(
            first
                .conditions
                .iter()
                .find(|c| c.type_ == "Ready")
                .unwrap()
                .status,
            "False"
        );
    }

    #[test]
    fn a_resync_that_confirms_the_last_write_writes_nothing() {
        let applied = Report {
            ready: ConditionState::new(
                true,
                Reason::Applied,
                "PutBucketEncryption AES256 (bucket had no rule; request id R1)",
            ),
            ..in_sync("R1")
        };
        let stored = next_status(None, Some(1), &applied, "T1").unwrap();
        assert_eq!(condition(&stored, "Ready"), ("True", "Applied"));
        assert_eq!(
            next_status(Some(&stored), Some(1), &in_sync("R2"), "T2"),
            None,
            "relabelling Applied as InSync says nothing new"
        );
        // A new generation that OSS already satisfies is news: written, as InSync.
        let next = next_status(Some(&stored), Some(2), &in_sync("R3"), "T3").unwrap();
        assert_eq!(condition(&next, "Ready"), ("True", "InSync"));
        assert_eq!(next.observed_generation, Some(2));
        // So is a recovery from a failure after the write.
        let denied = Report::failed(Reason::AccessDenied, "403", None);
        let failed = next_status(Some(&stored), Some(1), &denied, "T4").unwrap();
        let recovered = next_status(Some(&failed), Some(1), &in_sync("R5"), "T5").unwrap();
        assert_eq!(condition(&recovered, "Ready"), ("True", "InSync"));
    }

    #[test]
    fn drift_corrections_count_and_generation_is_observed() {
        let stored = next_status(None, Some(1), &in_sync("R1"), "T1").unwrap();
        let corrected = Report {
            ready: ConditionState::new(true, Reason::Applied, "put AES256"),
            drift_corrected: true,
            ..in_sync("R2")
        };
        let next = next_status(Some(&stored), Some(2), &corrected, "T2").unwrap();
        assert_eq!(next.drift_corrections, 1);
        assert_eq!(next.observed_generation, Some(2));
        assert!(next.conditions.iter().all(|c| c.observed_generation == Some(2)));
    }

    fn condition<'a>(status: &'a BucketEncryptionStatus, type_: &str) -> (&'a str, &'a str) {
        let c = status.conditions.iter().find(|c| c.type_ == type_).unwrap();
        (c.status.as_str(), c.reason.as_str())
    }

    #[test]
    fn reconciling_and_stalled_over_every_reason() {
        use Reason::*;
        // (reason, Ready status, settled) → (Reconciling, Stalled)
        let cases = [
            (InSync, true, true, false, false),
            (Applied, true, true, false, false),
            (Observed, true, true, false, false),
            (InvalidSpec, false, true, false, true),
            (AccessDenied, false, true, false, true),
            (BucketNotFound, false, true, false, true),
            (EndpointNotAllowed, false, true, false, true),
            (Conflict, false, true, false, true),
            (DowngradeBlocked, false, true, false, true),
            (KeyNotUsable, false, true, false, true),
            (CredentialsNotFound, false, true, true, false),
            (KeyCheckFailed, false, true, true, false),
            (Deleting, false, true, true, false),
            (KubernetesError, false, true, true, false),
            (Throttled, false, false, true, false),
            (OssError, false, false, true, false),
            (KubernetesError, false, false, true, false),
        ];
        for (reason, ready, settled, reconciling, stalled) in cases {
            let wanted = Wanted {
                status: ready,
                reason: reason.as_str(),
                message: "why",
            };
            let (r, s) = progress(wanted, settled);
            assert_eq!((r.status, s.status), (reconciling, stalled), "{reason}");
            assert_eq!((r.reason, s.reason), (reason.as_str(), reason.as_str()));
            for c in [r, s] {
                assert_eq!(c.message, if c.status { "why" } else { "" }, "{reason}");
            }
        }
        assert!(is_stalled("NotPermitted"), "the grants reason is in the table");
    }

    #[test]
    fn a_failure_sets_stalled_or_reconciling_and_recovery_clears_them() {
        let stored = next_status(None, Some(1), &in_sync("R1"), "T1").unwrap();
        let denied = Report::failed(Reason::AccessDenied, "403 (request id R2)", Some("R2".into()));
        let stalled = next_status(Some(&stored), Some(1), &denied, "T2").unwrap();
        assert_eq!(condition(&stalled, "Stalled"), ("True", "AccessDenied"));
        assert_eq!(condition(&stalled, "Reconciling"), ("False", "AccessDenied"));
        assert_eq!(
            condition(&stalled, "InSync"),
            ("True", "InSync"),
            "OSS not read: kept"
        );
        let recovered = next_status(Some(&stalled), Some(1), &in_sync("R3"), "T3").unwrap();
        assert_eq!(condition(&recovered, "Stalled"), ("False", "InSync"));
        let time = |s: &BucketEncryptionStatus, t: &str| {
            s.conditions
                .iter()
                .find(|c| c.type_ == t)
                .unwrap()
                .last_transition_time
                .clone()
        };
        assert_eq!(time(&recovered, "Stalled"), "T3");
        assert_eq!(time(&recovered, "Reconciling"), "T1", "never flipped");
    }

    #[test]
    fn a_repeated_transient_failure_writes_nothing() {
        let stored = next_status(None, Some(1), &in_sync("R1"), "T1").unwrap();
        let attempt = |id: &str, current: &BucketEncryptionStatus| {
            let message = format!("HTTP 500 InternalError (request id {id})");
            let mut report = Report::failed(Reason::OssError, message.clone(), Some(id.into()));
            report.settled = false;
            report.synced.message = stable_message(Some(current), "Synced", Reason::OssError, message);
            report
        };
        let retrying = next_status(Some(&stored), Some(1), &attempt("R2", &stored), "T2").unwrap();
        assert_eq!(condition(&retrying, "Ready"), ("True", "InSync"), "kept");
        assert_eq!(condition(&retrying, "Reconciling"), ("True", "OssError"));
        assert_eq!(
            next_status(Some(&retrying), Some(1), &attempt("R3", &retrying), "T3"),
            None,
            "the second attempt says nothing new"
        );
    }

    #[test]
    fn observe_mode_is_ready_with_the_drift_in_in_sync() {
        let observed = Report {
            ready: ConditionState::new(true, Reason::Observed, "Observe mode: bucket has SM4"),
            in_sync: Some(ConditionState::new(
                false,
                Reason::Drifted,
                "bucket has SM4, spec wants AES256",
            )),
            ..in_sync("R1")
        };
        let status = next_status(None, Some(1), &observed, "T1").unwrap();
        assert_eq!(condition(&status, "Ready"), ("True", "Observed"));
        assert_eq!(condition(&status, "InSync"), ("False", "Drifted"));
        assert_eq!(condition(&status, "Stalled").0, "False");
        assert_eq!(condition(&status, "Reconciling").0, "False");
        assert_eq!(next_status(Some(&status), Some(1), &observed, "T2"), None);
    }
}
