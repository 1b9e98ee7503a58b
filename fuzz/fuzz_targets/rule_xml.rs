//! The GetBucketEncryption response parser: never panics; what it accepts round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oss_encryption_operator::oss::EncryptionRule;
use oss_encryption_operator::oss::xml::{parse_rule, rule_to_xml};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(raw) = parse_rule(text) else { return };
    if let Ok(rule) =
        EncryptionRule::from_wire(&raw.algorithm, &raw.kms_master_key_id, &raw.kms_data_encryption)
    {
        let again = parse_rule(&rule_to_xml(&rule)).expect("our own body parses");
        let back = EncryptionRule::from_wire(
            &again.algorithm,
            &again.kms_master_key_id,
            &again.kms_data_encryption,
        )
        .expect("our own body is a valid rule");
        assert_eq!(back, rule);
    }
});
