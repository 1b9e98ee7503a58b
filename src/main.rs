//! The `oss-encryption-operator` command line: parsing and dispatch only (the work is in
//! `oss_encryption_operator::cli` and the library behind it).

use clap::Parser;
use oss_encryption_operator::cli::args::{Cli, Command};
use oss_encryption_operator::cli::{self, Mode};
use oss_encryption_operator::telemetry;

/// jemalloc: less CPU than glibc's malloc for the controller's many small, short-lived
/// allocations (JSON, HTTP), and less memory left in per-thread arenas.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let code = if error.use_stderr() { cli::USAGE_ERROR } else { 0 };
            let _ = error.print();
            return std::process::ExitCode::from(code);
        }
    };
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if let Command::Run(args) = &cli.command {
        runtime.worker_threads(usize::from(args.worker_threads));
    }
    match runtime.build() {
        Ok(runtime) => runtime.block_on(dispatch(cli)),
        Err(error) => {
            eprintln!("error: could not start the async runtime: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn dispatch(cli: Cli) -> std::process::ExitCode {
    match &cli.command {
        Command::Run(args) => telemetry::init_logging(args.log_format, "info"),
        _ => telemetry::init_logging(telemetry::LogFormat::Text, "warn"),
    }
    match cli.command {
        Command::Plan {
            common,
            detailed_exitcode,
        } => exit_with(cli::manifests_command(Mode::Plan, common, detailed_exitcode).await),
        Command::Apply { common } => exit_with(cli::manifests_command(Mode::Apply, common, false).await),
        Command::Import(args) => exit_with(cli::import::run(args).await),
        Command::Audit(args) => exit_with(cli::audit::run(args).await),
        // The controller runs as a task on the worker thread(s) (`--worker-threads`), beside the
        // HTTP connections it drives, not on the main thread (`block_on`), where each request
        // and each answer would cross between threads.
        Command::Run(args) => {
            match tokio::spawn(async move { cli::operator::run(args).await.map_err(|e| e.to_string()) }).await
            {
                Ok(Ok(())) => std::process::ExitCode::SUCCESS,
                Ok(Err(error)) => {
                    eprintln!("error: {error}");
                    std::process::ExitCode::FAILURE
                }
                Err(panicked) => {
                    eprintln!("error: the controller stopped unexpectedly: {panicked}");
                    std::process::ExitCode::FAILURE
                }
            }
        }
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
        Command::Crd {
            reference,
            policy,
            grant,
        } => {
            if reference {
                print!("{}", oss_encryption_operator::api::reference_markdown());
            } else if grant {
                print!("{}", oss_encryption_operator::api::grant::crd_yaml());
            } else if policy {
                print!("{}", oss_encryption_operator::api::policy::crd_yaml());
            } else {
                print!("{}", oss_encryption_operator::api::crd_yaml());
            }
            std::process::ExitCode::SUCCESS
        }
        Command::Version => {
            println!("oss-encryption-operator {}", env!("CARGO_PKG_VERSION"));
            std::process::ExitCode::SUCCESS
        }
    }
}

fn exit_with(result: Result<u8, Box<dyn std::error::Error>>) -> std::process::ExitCode {
    match result {
        Ok(code) => std::process::ExitCode::from(code),
        Err(error) => {
            eprintln!("error: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
