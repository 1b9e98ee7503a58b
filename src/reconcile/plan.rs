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
    match rule {
        None => "no rule".to_owned(),
        Some(rule) => rule.to_string(),
    }
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

/// Decides the action. Rules compare after normalisation (absent and empty key id or data
/// encryption are the same, which `EncryptionRule` guarantees on construction).
pub fn plan(
    desired: Option<&EncryptionRule>,
    observed: Option<&EncryptionRule>,
    policy: ManagementPolicy,
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
    let action = match (policy, desired) {
        (ManagementPolicy::Observe, _) => Action::Nothing,
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

    #[test]
    fn exhaustive_over_every_desired_observed_and_policy() {
        let states = every_state();
        let mut checked = 0;
        for desired in &states {
            for observed in &states {
                for policy in [ManagementPolicy::Manage, ManagementPolicy::Observe] {
                    let plan = plan(desired.as_ref(), observed.as_ref(), policy);
                    let expected = match (desired == observed, policy, desired) {
                        (true, _, _) | (false, ManagementPolicy::Observe, _) => Action::Nothing,
                        (false, ManagementPolicy::Manage, Some(rule)) => Action::Put(rule.clone()),
                        (false, ManagementPolicy::Manage, None) => Action::Delete,
                    };
                    assert_eq!(plan.action, expected, "{desired:?} vs {observed:?} ({policy:?})");
                    assert_eq!(plan.drift.is_some(), desired != observed);
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 9 * 9 * 2);
    }

    #[test]
    fn absent_and_empty_key_and_data_encryption_are_in_sync() {
        let desired = EncryptionRule::kms(Some(""), None);
        let observed = EncryptionRule::from_wire("KMS", "", "").unwrap();
        assert_eq!(
            plan(Some(&desired), Some(&observed), ManagementPolicy::Manage).action,
            Action::Nothing
        );
        let with_spaces = EncryptionRule::kms(Some("  "), None);
        assert_eq!(
            plan(Some(&with_spaces), Some(&observed), ManagementPolicy::Manage).drift,
            None
        );
    }

    #[test]
    fn drift_reads_well() {
        let aes = EncryptionRule::new(SseAlgorithm::Aes256);
        let kms = EncryptionRule::kms(Some("k1"), Some(DataEncryption::Sm4));
        let p = plan(Some(&kms), Some(&aes), ManagementPolicy::Manage);
        assert_eq!(
            p.drift.unwrap().to_string(),
            "bucket has AES256, spec wants KMS (key k1, data SM4)"
        );
        let p = plan(None, Some(&aes), ManagementPolicy::Observe);
        assert_eq!(
            p.drift.unwrap().to_string(),
            "bucket has AES256, spec wants no rule"
        );
        let p = plan(Some(&aes), None, ManagementPolicy::Manage);
        assert_eq!(
            p.drift.unwrap().to_string(),
            "bucket has no rule, spec wants AES256"
        );
    }
}
