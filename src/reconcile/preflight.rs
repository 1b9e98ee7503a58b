//! The safety nets before a write, as pure decisions: which KMS key the pre-flight checks, and
//! why a reconcile holds back (a downgrade, or a key OSS cannot use).

use super::plan::Action;
use crate::api::ManagementPolicy;
use crate::oss::EncryptionRule;

/// The CMK the pre-flight will most likely check, known before OSS is read: in Manage mode the
/// rule in force afterwards is the desired one (written now, or already there), so its key can be
/// checked alongside the read instead of after it. Observe mode checks the bucket's own key,
/// which only the read tells.
pub fn likely_key(desired: Option<&EncryptionRule>, policy: ManagementPolicy) -> Option<&str> {
    match policy {
        ManagementPolicy::Manage => desired.and_then(|rule| rule.kms_master_key_id.as_deref()),
        ManagementPolicy::Observe => None,
    }
}

/// The CMK named by the rule that will be in force after this reconcile, which the pre-flight
/// checks: the rule about to be written, or the bucket's own rule when nothing is written (in
/// sync, or Observe mode). `None` when that rule names no CMK (or the write is blocked or a
/// delete).
pub fn key_to_check<'a>(action: &'a Action, observed: Option<&'a EncryptionRule>) -> Option<&'a str> {
    match action {
        Action::Put(rule) => rule.kms_master_key_id.as_deref(),
        Action::Nothing => observed.and_then(|rule| rule.kms_master_key_id.as_deref()),
        Action::Delete | Action::Blocked => None,
    }
}

/// Why a reconcile wrote nothing although OSS differs or its key is bad.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Held {
    /// The write would weaken the rule and the spec does not allow that.
    Downgrade,
    /// OSS cannot use the key (the verdict in words).
    KeyNotUsable(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oss::SseAlgorithm;

    #[test]
    fn the_key_checked_is_the_one_in_force_afterwards() {
        let k1 = EncryptionRule::kms(Some("k1"), None);
        let k2 = EncryptionRule::kms(Some("k2"), None);
        let managed = EncryptionRule::kms(None, None);
        let aes = EncryptionRule::new(SseAlgorithm::Aes256);
        assert_eq!(
            key_to_check(&Action::Put(k1.clone()), Some(&k2)),
            Some("k1"),
            "the new key, before writing it"
        );
        assert_eq!(key_to_check(&Action::Put(k1.clone()), None), Some("k1"));
        assert_eq!(
            key_to_check(&Action::Nothing, Some(&k2)),
            Some("k2"),
            "in sync or observed: the bucket's key"
        );
        assert_eq!(
            key_to_check(&Action::Put(managed.clone()), Some(&k1)),
            None,
            "OSS-managed key: nothing to check"
        );
        assert_eq!(key_to_check(&Action::Nothing, Some(&managed)), None);
        assert_eq!(key_to_check(&Action::Nothing, Some(&aes)), None);
        assert_eq!(key_to_check(&Action::Nothing, None), None);
        assert_eq!(key_to_check(&Action::Delete, Some(&k1)), None);
        assert_eq!(key_to_check(&Action::Blocked, Some(&k1)), None);
    }

    #[test]
    fn the_likely_key_is_the_checked_one_whenever_manage_mode_checks() {
        let k1 = EncryptionRule::kms(Some("k1"), None);
        let k2 = EncryptionRule::kms(Some("k2"), None);
        let manage = ManagementPolicy::Manage;
        assert_eq!(likely_key(Some(&k1), manage), Some("k1"));
        assert_eq!(likely_key(Some(&EncryptionRule::kms(None, None)), manage), None);
        assert_eq!(likely_key(None, manage), None);
        assert_eq!(
            likely_key(Some(&k1), ManagementPolicy::Observe),
            None,
            "Observe checks the bucket's key"
        );
        // Whatever OSS holds, a Manage plan that checks a key checks the desired one.
        for observed in [None, Some(&k1), Some(&k2)] {
            let decision = super::super::plan::plan(
                Some(&k1),
                observed,
                manage,
                super::super::plan::Downgrades::allowed(true),
            );
            if let Some(key) = key_to_check(&decision.action, observed) {
                assert_eq!(Some(key), likely_key(Some(&k1), manage), "{observed:?}");
            }
        }
    }
}
