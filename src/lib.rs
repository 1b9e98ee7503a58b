//! oss-encryption-operator: keeps Alibaba Cloud OSS bucket default encryption equal to a declared
//! `BucketEncryption` resource.
//!
//! - [`oss`]: the OSS client (signing, XML, errors, endpoints, credentials); no Kubernetes here.
//! - [`audit`]: object encryption coverage (list, head, tally), shared by the CLI and the controller.
//! - [`kms`]: the KMS client for the key pre-flight (DescribeKey, ACS3 signing, cache).
//! - [`emulator`]: a faithful OSS stand-in for tests, benchmarks and the quickstart.

pub mod api;
pub mod audit;
pub mod cli;
pub mod demo;
pub mod emulator;
pub mod kms;
pub mod leader;
pub mod manifest;
pub mod oss;
pub mod reconcile;
pub mod telemetry;

/// The official vectors: the repository keeps a copy of each `shared/testdata/<name>` in
/// `tests/data/<name>` (so a fresh clone can test); when the shared original sits beside the
/// checkout (as in CI), the copy must equal it.
#[cfg(test)]
pub(crate) fn assert_vector_copy_is_current(name: &str) {
    let root = env!("CARGO_MANIFEST_DIR");
    if let Ok(original) = std::fs::read(format!("{root}/../shared/testdata/{name}")) {
        assert!(
            std::fs::read(format!("{root}/tests/data/{name}")).unwrap() == original,
            "tests/data/{name} is stale: copy shared/testdata/{name} over it"
        );
    }
}

/// Makes ring the process's rustls crypto provider (reqwest is built without one). Idempotent.
pub fn install_tls_provider() {
    // An error means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM (what Kubernetes sends), for graceful shutdown.
pub async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
}
