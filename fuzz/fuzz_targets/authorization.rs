//! The Authorization header parser the emulator verifies with: never panics; V4 results are
//! well-formed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oss_encryption_operator::oss::sign::{ParsedAuthorization, parse_authorization};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(ParsedAuthorization::V4 {
        access_key_id,
        scope,
        signature,
        ..
    }) = parse_authorization(text)
    {
        assert!(!access_key_id.is_empty() && !signature.is_empty());
        assert_eq!(scope.date.len(), 8);
    }
});
