//! The bucket's default encryption rule as a typed value.

use std::fmt;

/// `SSEAlgorithm` values OSS accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SseAlgorithm {
    /// SSE-OSS, keys managed by OSS.
    Aes256,
    /// SSE-KMS, with the OSS-managed CMK or a named CMK.
    Kms,
    /// SSE-OSS with the SM4 block cipher.
    Sm4,
}

impl SseAlgorithm {
    pub const ALL: [SseAlgorithm; 3] = [Self::Aes256, Self::Kms, Self::Sm4];

    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Aes256 => "AES256",
            Self::Kms => "KMS",
            Self::Sm4 => "SM4",
        }
    }

    /// Parses the wire spelling, case-sensitively as OSS does.
    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == value)
    }
}

impl fmt::Display for SseAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `KMSDataEncryption` values (only with KMS).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DataEncryption {
    Sm4,
}

impl DataEncryption {
    pub fn as_str(self) -> &'static str {
        "SM4"
    }

    pub fn parse(value: &str) -> Option<Self> {
        (value == "SM4").then_some(Self::Sm4)
    }
}

/// One bucket's default server-side encryption rule.
///
/// Empty and absent are the same for the key id and data encryption (normalised on construction).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EncryptionRule {
    pub algorithm: SseAlgorithm,
    /// CMK id; only with KMS. `None` with KMS = the OSS-managed CMK (`alias/acs/oss`).
    pub kms_master_key_id: Option<String>,
    /// Only with KMS.
    pub kms_data_encryption: Option<DataEncryption>,
}

/// Why a rule cannot be sent to OSS.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("kmsMasterKeyId is only allowed with algorithm KMS, not {0}")]
    KeyWithoutKms(SseAlgorithm),
    #[error("kmsDataEncryption is only allowed with algorithm KMS, not {0}")]
    DataEncryptionWithoutKms(SseAlgorithm),
    #[error("unknown SSEAlgorithm {0:?}: expected AES256, KMS or SM4")]
    UnknownAlgorithm(String),
    #[error("unknown KMSDataEncryption {0:?}: expected SM4")]
    UnknownDataEncryption(String),
}

impl EncryptionRule {
    /// A rule with just an algorithm.
    pub fn new(algorithm: SseAlgorithm) -> Self {
        Self {
            algorithm,
            kms_master_key_id: None,
            kms_data_encryption: None,
        }
    }

    /// A KMS rule; an empty key id means the OSS-managed CMK.
    pub fn kms(key_id: Option<&str>, data_encryption: Option<DataEncryption>) -> Self {
        Self {
            algorithm: SseAlgorithm::Kms,
            kms_master_key_id: key_id.map(str::trim).filter(|k| !k.is_empty()).map(str::to_owned),
            kms_data_encryption: data_encryption,
        }
    }

    /// Checks the combinations OSS rejects (key id or data encryption without KMS).
    pub fn validate(&self) -> Result<(), RuleError> {
        if self.algorithm != SseAlgorithm::Kms {
            if self.kms_master_key_id.is_some() {
                return Err(RuleError::KeyWithoutKms(self.algorithm));
            }
            if self.kms_data_encryption.is_some() {
                return Err(RuleError::DataEncryptionWithoutKms(self.algorithm));
            }
        }
        Ok(())
    }

    /// Builds a rule from the wire strings (empty = absent), as a GET response carries them.
    pub fn from_wire(algorithm: &str, key_id: &str, data_encryption: &str) -> Result<Self, RuleError> {
        let algorithm = SseAlgorithm::parse(algorithm.trim())
            .ok_or_else(|| RuleError::UnknownAlgorithm(algorithm.to_owned()))?;
        let data_encryption = match data_encryption.trim() {
            "" => None,
            value => Some(
                DataEncryption::parse(value)
                    .ok_or_else(|| RuleError::UnknownDataEncryption(value.to_owned()))?,
            ),
        };
        let key_id = key_id.trim();
        Ok(Self {
            algorithm,
            kms_master_key_id: (!key_id.is_empty()).then(|| key_id.to_owned()),
            kms_data_encryption: data_encryption,
        })
    }
}

impl fmt::Display for EncryptionRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.algorithm.as_str())?;
        if self.algorithm == SseAlgorithm::Kms {
            match &self.kms_master_key_id {
                Some(key) => write!(f, " (key {key}")?,
                None => f.write_str(" (OSS-managed key")?,
            }
            if let Some(data) = self.kms_data_encryption {
                write!(f, ", data {}", data.as_str())?;
            }
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// A rule or its absence in words: the rule, or `None` (the spelling of `algorithm: None`). The
/// one formatter the controller, the CLI and the demo share.
pub fn describe_rule(rule: Option<&EncryptionRule>) -> String {
    rule.map_or_else(|| "None".to_owned(), ToString::to_string)
}

/// How strongly a rule protects new objects: `None` < `AES256` = `SM4` < `KMS` (a key id or data
/// encryption change within KMS, and AES256 <-> SM4, are lateral).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Strength {
    Unencrypted,
    ServiceManaged,
    KeyManaged,
}

/// The strength of a rule (`None` = no rule).
pub fn strength(rule: Option<&EncryptionRule>) -> Strength {
    match rule.map(|r| r.algorithm) {
        None => Strength::Unencrypted,
        Some(SseAlgorithm::Aes256 | SseAlgorithm::Sm4) => Strength::ServiceManaged,
        Some(SseAlgorithm::Kms) => Strength::KeyManaged,
    }
}

/// Whether replacing `current` with `next` weakens the bucket's protection.
pub fn is_downgrade(current: Option<&EncryptionRule>, next: Option<&EncryptionRule>) -> bool {
    strength(next) < strength(current)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every pair of rules OSS can hold (and no rule), against a hand-written table: rows are
    /// the current rule, columns the next (none, AES256, SM4, KMS, KMS+SM4, KMS k1, KMS k1+SM4);
    /// `v` marks a downgrade.
    #[test]
    fn strength_order_over_every_pair() {
        let rules = [
            None,
            Some(EncryptionRule::new(SseAlgorithm::Aes256)),
            Some(EncryptionRule::new(SseAlgorithm::Sm4)),
            Some(EncryptionRule::kms(None, None)),
            Some(EncryptionRule::kms(None, Some(DataEncryption::Sm4))),
            Some(EncryptionRule::kms(Some("k1"), None)),
            Some(EncryptionRule::kms(Some("k1"), Some(DataEncryption::Sm4))),
        ];
        let table = [
            ".......", // from no rule: nothing is weaker
            "v......", // from AES256: only removing it
            "v......", // from SM4
            "vvv....", // from KMS: removing it, or AES256/SM4
            "vvv....", "vvv....", "vvv....",
        ];
        for (row, current) in rules.iter().enumerate() {
            for (column, next) in rules.iter().enumerate() {
                let expected = table[row].as_bytes()[column] == b'v';
                assert_eq!(
                    is_downgrade(current.as_ref(), next.as_ref()),
                    expected,
                    "{current:?} -> {next:?}"
                );
            }
        }
    }

    #[test]
    fn no_rule_reads_as_none() {
        assert_eq!(describe_rule(None), "None");
        assert_eq!(
            describe_rule(Some(&EncryptionRule::kms(Some("k"), None))),
            "KMS (key k)"
        );
    }

    #[test]
    fn absent_and_empty_key_are_the_same() {
        assert_eq!(
            EncryptionRule::kms(Some(""), None),
            EncryptionRule::kms(None, None)
        );
        assert_eq!(
            EncryptionRule::from_wire("KMS", "", "").unwrap(),
            EncryptionRule::kms(None, None)
        );
    }

    #[test]
    fn key_or_data_encryption_only_with_kms() {
        for algorithm in [SseAlgorithm::Aes256, SseAlgorithm::Sm4] {
            let mut with_key = EncryptionRule::new(algorithm);
            with_key.kms_master_key_id = Some("k".into());
            assert_eq!(with_key.validate(), Err(RuleError::KeyWithoutKms(algorithm)));
            let mut with_data = EncryptionRule::new(algorithm);
            with_data.kms_data_encryption = Some(DataEncryption::Sm4);
            assert_eq!(
                with_data.validate(),
                Err(RuleError::DataEncryptionWithoutKms(algorithm))
            );
        }
        assert!(
            EncryptionRule::kms(Some("k"), Some(DataEncryption::Sm4))
                .validate()
                .is_ok()
        );
    }

    #[test]
    fn algorithm_spelling_is_case_sensitive() {
        assert_eq!(SseAlgorithm::parse("AES256"), Some(SseAlgorithm::Aes256));
        assert_eq!(SseAlgorithm::parse("aes256"), None);
        assert!(matches!(
            EncryptionRule::from_wire("DES", "", ""),
            Err(RuleError::UnknownAlgorithm(a)) if a == "DES"
        ));
        assert!(matches!(
            EncryptionRule::from_wire("KMS", "", "abc"),
            Err(RuleError::UnknownDataEncryption(_))
        ));
    }

    #[test]
    fn display_is_human_readable() {
        assert_eq!(EncryptionRule::new(SseAlgorithm::Aes256).to_string(), "AES256");
        assert_eq!(
            EncryptionRule::kms(None, None).to_string(),
            "KMS (OSS-managed key)"
        );
        assert_eq!(
            EncryptionRule::kms(Some("k1"), Some(DataEncryption::Sm4)).to_string(),
            "KMS (key k1, data SM4)"
        );
    }
}
