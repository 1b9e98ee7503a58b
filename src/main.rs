//! The `oss-encryption-operator` command line. Thin: the work is in the library.

use clap::{Parser, Subcommand};

/// Keeps Alibaba Cloud OSS bucket default encryption equal to declared BucketEncryption resources.
#[derive(Parser, Debug)]
#[command(name = "oss-encryption-operator", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Start the embedded OSS emulator and drive the OSS client through every encryption rule
    /// (put, read back, delete) with V4 and V1 signatures; exits non-zero if anything differs.
    Demo,
    /// Print the BucketEncryption CustomResourceDefinition as YAML (what crds/bucketencryption.yaml holds).
    Crd,
    /// Print the version.
    Version,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Demo => match oss_encryption_operator::demo::run().await {
            Ok(report) => {
                print!("{report}");
                std::process::ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("error: {error}");
                std::process::ExitCode::FAILURE
            }
        },
        Command::Crd => {
            print!("{}", oss_encryption_operator::api::crd_yaml());
            std::process::ExitCode::SUCCESS
        }
        Command::Version => {
            println!("oss-encryption-operator {}", env!("CARGO_PKG_VERSION"));
            std::process::ExitCode::SUCCESS
        }
    }
}
