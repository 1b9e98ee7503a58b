//! What to do about one bucket, decided from the desired and observed rules alone.

use std::fmt;

use crate::api::ManagementPolicy;
use crate::oss::EncryptionRule;

/// The one OSS write a reconcile may make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// OSS already matches (or Observe mode: never write).
    Nothing,
    /// PutBucketEncryption with this rule.
    Put(EncryptionRule),
    /// DeleteBucketEncryption (the spec wants no rule).
    Delete,
    /// The write would weaken the bucket's rule and the spec does not allow a downgrade: nothing
    /// is written (`DowngradeBlocked`).
    Blocked,
}

/// The decision and, when OSS differs from the spec, a human-readable description of how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub action: Action,
    /// `None` when OSS matches the spec.
    pub drift: Option<Drift>,
}

/// How the bucket differs from the spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Drift {
    pub observed: Option<EncryptionRule>,
    pub desired: Option<EncryptionRule>,
}

fn describe(rule: &Option<EncryptionRule>) -> String {
    crate::oss::describe_rule(rule.as_ref())
}

impl fmt::Display for Drift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "bucket has {}, spec wants {}",
            describe(&self.observed),
            describe(&self.desired)
        )
    }
}

/// Whether a write may weaken the bucket's rule (`spec.allowDowngrade`, `--allow-downgrade`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Downgrades {
    /// Never write a weaker rule than the bucket has (the default).
    Refuse,
    Allow,
}

impl Downgrades {
    pub fn allowed(allow: bool) -> Self {
        if allow { Self::Allow } else { Self::Refuse }
    }
}

/// Decides the action. Rules compare after normalisation (absent and empty key id or data
/// encryption are the same, which `EncryptionRule` guarantees on construction). A write that
/// weakens the rule (`None` < `AES256` = `SM4` < `KMS`) is `Blocked` unless downgrades are allowed.
pub fn plan(
    desired: Option<&EncryptionRule>,
    observed: Option<&EncryptionRule>,
    policy: ManagementPolicy,
    downgrades: Downgrades,
) -> Plan {
    if desired == observed {
        return Plan {
            action: Action::Nothing,
            drift: None,
        };
    }
    let drift = Some(Drift {
        observed: observed.cloned(),
        desired: desired.cloned(),
    });
    let weakens = crate::oss::is_downgrade(observed, desired);
    let action = match (policy, desired) {
        (ManagementPolicy::Observe, _) => Action::Nothing,
        (ManagementPolicy::Manage, _) if weakens && downgrades == Downgrades::Refuse => Action::Blocked,
        (ManagementPolicy::Manage, Some(rule)) => Action::Put(rule.clone()),
        (ManagementPolicy::Manage, None) => Action::Delete,
    };
    Plan { action, drift }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oss::{DataEncryption, SseAlgorithm};

    /// Every rule OSS can hold, and no rule.
    fn every_state() -> Vec<Option<EncryptionRule>> {
        let mut states = vec![
            None,
            Some(EncryptionRule::new(SseAlgorithm::Aes256)),
            Some(EncryptionRule::new(SseAlgorithm::Sm4)),
        ];
        for key in [None, Some("key-1"), Some("key-2")] {
            for data in [None, Some(DataEncryption::Sm4)] {
                states.push(Some(EncryptionRule::kms(key, data)));
            }
        }
        states
    }

    /// The expected Manage-mode action for every (desired, observed) pair, written by hand:
    /// rows are desired, columns observed, both in `every_state` order
    /// (none, AES256, SM4, KMS, KMS+SM4, KMS k1, KMS k1+SM4, KMS k2, KMS k2+SM4).
    /// `.` nothing, `P` put the desired rule, `D` delete the rule, `B` blocked (a downgrade).
    /// With downgrades allowed:
    const MANAGE: [&str; 9] = [
        ".DDDDDDDD", // want no rule
        "P.PPPPPPP", // want AES256
        "PP.PPPPPP", // want SM4
        "PPP.PPPPP", // want KMS, OSS-managed key
        "PPPP.PPPP", // want KMS + SM4 data
        "PPPPP.PPP", // want KMS key-1
        "PPPPPP.PP", // want KMS key-1 + SM4 data
        "PPPPPPP.P", // want KMS key-2
        "PPPPPPPP.", // want KMS key-2 + SM4 data
    ];

    /// The same with downgrades refused (the default).
    const GUARDED: [&str; 9] = [
        ".BBBBBBBB", // want no rule: removing any rule is a downgrade
        "P.PBBBBBB", // want AES256: over SM4 is lateral, over KMS a downgrade
        "PP.BBBBBB", // want SM4
        "PPP.PPPPP", // want KMS: key and data changes within KMS are lateral
        "PPPP.PPPP",
        "PPPPP.PPP",
        "PPPPPP.PP",
        "PPPPPPP.P",
        "PPPPPPPP.",
    ];

    #[test]
    fn exhaustive_over_every_desired_observed_and_policy() {
        let states = every_state();
        assert_eq!(states.len(), MANAGE.len());
        let mut checked = 0;
        for (table, downgrades) in [(MANAGE, Downgrades::Allow), (GUARDED, Downgrades::Refuse)] {
            for (row, desired) in states.iter().enumerate() {
                for (column, observed) in states.iter().enumerate() {
                    let expected = match table[row].as_bytes()[column] {
                        b'.' => Action::Nothing,
                        b'P' => Action::Put(desired.clone().expect("P only where a rule is wanted")),
                        b'D' => Action::Delete,
                        b'B' => Action::Blocked,
                        other => panic!("bad table entry {}", other as char),
                    };
                    let (want, have) = (desired.as_ref(), observed.as_ref());
                    let manage = plan(want, have, ManagementPolicy::Manage, downgrades);
                    assert_eq!(
                        manage.action, expected,
                        "{desired:?} vs {observed:?}, {downgrades:?}"
                    );
                    let observe = plan(want, have, ManagementPolicy::Observe, downgrades);
                    assert_eq!(observe.action, Action::Nothing, "Observe never writes");
                    for decision in [manage, observe] {
                        assert_eq!(
                            decision.drift.is_some(),
                            row != column,
                            "{desired:?} vs {observed:?}"
                        );
                    }
                    checked += 2;
                }
            }
        }
        assert_eq!(checked, 9 * 9 * 2 * 2);
    }

    #[test]
    fn absent_and_empty_key_and_data_encryption_are_in_sync() {
        let desired = EncryptionRule::kms(Some(""), None);
        let observed = EncryptionRule::from_wire("KMS", "", "").unwrap();
        assert_eq!(
            plan(
                Some(&desired),
                Some(&observed),
                ManagementPolicy::Manage,
                Downgrades::Refuse
            )
            .action,
            Action::Nothing
        );
        let with_spaces = EncryptionRule::kms(Some("  "), None);
        assert_eq!(
            plan(
                Some(&with_spaces),
                Some(&observed),
                ManagementPolicy::Manage,
                Downgrades::Refuse
            )
            .drift,
            None
        );
    }

    #[test]
    fn drift_reads_well() {
        let aes = EncryptionRule::new(SseAlgorithm::Aes256);
        let kms = EncryptionRule::kms(Some("k1"), Some(DataEncryption::Sm4));
        let p = plan(
            Some(&kms),
            Some(&aes),
            ManagementPolicy::Manage,
            Downgrades::Refuse,
        );
        assert_eq!(
            p.drift.unwrap().to_string(),
            "bucket has AES256, spec wants KMS (key k1, data SM4)"
        );
        let p = plan(None, Some(&aes), ManagementPolicy::Observe, Downgrades::Refuse);
        assert_eq!(p.drift.unwrap().to_string(), "bucket has AES256, spec wants None");
        let p = plan(Some(&aes), None, ManagementPolicy::Manage, Downgrades::Refuse);
        assert_eq!(p.drift.unwrap().to_string(), "bucket has None, spec wants AES256");
    }
}
