//! oss-encryption-operator: keeps Alibaba Cloud OSS bucket default encryption equal to a declared
//! `BucketEncryption` resource.
//!
//! - [`oss`]: the OSS client (signing, XML, errors, endpoints, credentials); no Kubernetes here.
//! - [`emulator`]: a faithful OSS stand-in for tests, benchmarks and the quickstart.

pub mod emulator;
pub mod oss;

/// Makes ring the process's rustls crypto provider (reqwest is built without one). Idempotent.
pub fn install_tls_provider() {
    // An error means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
