//! The OSS error parser (body, status, header fallbacks): never panics, always yields a code.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oss_encryption_operator::oss::ServiceError;

fuzz_target!(|data: &[u8]| {
    let status = 400 + u16::from(data.first().copied().unwrap_or(0)) % 200;
    let error = ServiceError::from_response(status, data, "HDR-RID", "");
    assert!(!error.code.is_empty());
    assert!(!error.request_id.is_empty());
    let _ = error.classification();
    let _ = error.to_string();
});
