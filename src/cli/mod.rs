//! The command line: `plan` and `apply` over manifest files (the controller's engine, once),
//! `run` (the controller), and the flags of each. `main.rs` only parses and dispatches.

pub mod apply;
pub mod args;
pub mod audit;
pub mod import;
pub mod operator;
pub mod ordered;
pub mod output;

pub use apply::{Engine, Mode, Report, Row, emulated, run};
pub use output::table;

use crate::oss::{AllowList, ClientConfig, Credentials, CredentialsProvider, OssClient};
use args::{ManifestArgs, OutputFormat};

/// The exit code of a command line that cannot be parsed. Never 2: under
/// `--detailed-exitcode` 2 means "changes pending".
pub const USAGE_ERROR: u8 = 1;

/// Runs the resources and writes the results: table rows as they come in (in manifest order),
/// a progress line on stderr when it is a terminal, JSON at the end. A closed stdout (`| head`,
/// `> /dev/full`) stops a `plan` quietly (it only reads), but never an `apply`: every row is
/// still applied (an apply cut short leaves in-flight writes in doubt and the account half
/// converged), and stderr names how many rows were shown and how many were done; the exit code
/// is the one the whole run earns.
async fn stream(
    mode: Mode,
    manifests: &crate::manifest::Manifests,
    engine: &Engine,
    args: &ManifestArgs,
    emulator: Option<&crate::emulator::Emulator>,
) -> Report {
    use std::io::{IsTerminal, Write};
    let mut stdout = std::io::stdout().lock();
    let table = args.output == OutputFormat::Table;
    let writer = output::TableWriter::for_manifests(manifests);
    // Why stdout stopped taking text (EPIPE, ENOSPC), once it has.
    let mut closed: Option<std::io::Error> = None;
    let mut write = |stdout: &mut std::io::StdoutLock<'_>, text: &str| {
        if closed.is_none()
            && let Err(error) = stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush())
        {
            closed = Some(error);
        }
        closed.is_none()
    };
    if table {
        if let Some(emulator) = emulator {
            write(
                &mut stdout,
                &format!("OSS emulator at {} (--emulator)\n\n", emulator.url()),
            );
        }
        write(&mut stdout, &writer.header());
    }
    let progress = std::io::stderr().is_terminal();
    let total = manifests.errors.len() + manifests.resources.len();
    let (mut done, mut changes, mut errors, mut shown) = (0, 0, 0, 0);
    let report = apply::run_streaming(mode, manifests, engine, usize::from(args.concurrency), |row| {
        done += 1;
        changes += usize::from(row.is_change());
        errors += usize::from(row.is_error() || row.is_blocked());
        if progress {
            eprint!(
                "\r\x1b[K{done}/{total} done, {changes} change(s), {errors} error(s), {:.0} OSS requests/s allowed",
                engine.client.current_rate()
            );
        }
        let still_open = !table || write(&mut stdout, &writer.row(row));
        shown += usize::from(table && still_open);
        if still_open || mode == Mode::Apply {
            std::ops::ControlFlow::Continue(())
        } else {
            std::ops::ControlFlow::Break(())
        }
    })
    .await;
    if progress {
        eprint!("\r\x1b[K");
    }
    let closing = if table {
        output::summary(&report, mode)
    } else {
        serde_json::to_string_pretty(&report).unwrap_or_default() + "\n"
    };
    if write(&mut stdout, &closing) || mode == Mode::Plan {
        return report;
    }
    let reason = closed.map(|e| e.to_string()).unwrap_or_default();
    eprintln!(
        "warning: stdout could not be written ({reason}): {shown} of {total} rows shown; \
         apply went on: all {} rows done, {} changed, {} error(s), {} blocked",
        report.rows.len(),
        report.changes,
        report.errors,
        report.blocked
    );
    report
}

/// Reads `--credentials-file` (YAML or JSON with accessKeyId, accessKeySecret and optionally
/// securityToken). A file that does not parse is named with the position of the problem, never
/// quoted: it holds a secret.
pub(crate) fn credentials_file(path: &std::path::Path) -> Result<Credentials, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let value = crate::manifest::parse_document(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    Credentials::from_fields(|key| value.get(key).and_then(|v| v.as_str()).map(str::to_owned))
        .map_err(|missing| format!("{}: {missing}", path.display()))
}

/// `plan` and `apply`: exit code 0, 1 (errors, or rows blocked by a safety net) or, with `--detailed-exitcode`, 2 (changes pending).
pub async fn manifests_command(
    mode: Mode,
    args: ManifestArgs,
    detailed_exitcode: bool,
) -> Result<u8, Box<dyn std::error::Error>> {
    let manifests = crate::manifest::load(&args.paths, &args.namespace);
    for warning in &manifests.warnings {
        eprintln!("warning: {warning}");
    }
    let mut config = ClientConfig {
        allow_list: AllowList::new(&args.allowed_endpoint_suffixes),
        ..ClientConfig::default()
    };
    args.rate.apply_to(&mut config);
    let (emulator, mut engine) = if args.emulator {
        let (emulator, engine) = apply::emulated(&manifests, config, &args.kms).await?;
        (Some(emulator), engine)
    } else {
        let key_checker = args.kms.checker(config.allow_list.clone(), None)?;
        let client = OssClient::new(config)?;
        let (default_credentials, credentials_refused) = match &args.credentials_file {
            Some(path) => (Some(credentials_file(path)?.into()), None),
            None => match CredentialsProvider::from_env(&client) {
                Ok(provider) => (Some(provider), None),
                Err(crate::oss::CredentialsError::NotFound) => (None, None),
                Err(refused) => (None, Some(refused.to_string())),
            },
        };
        let endpoint_override = args
            .endpoint
            .as_deref()
            .map(crate::oss::Endpoint::parse)
            .transpose()?;
        (
            None,
            Engine {
                client,
                default_credentials,
                credentials_refused,
                endpoint_override,
                ignore_secrets: false,
                key_checker,
                allow_downgrade: false,
            },
        )
    };
    engine.allow_downgrade = args.allow_downgrade;
    // One run, one answer per key: a KMS that keeps failing costs one retry ladder, not one per row.
    engine.key_checker = engine
        .key_checker
        .map(|checker| checker.with_failure_ttl(std::time::Duration::MAX));
    let report = stream(mode, &manifests, &engine, &args, emulator.as_ref()).await;
    if let Some(emulator) = emulator {
        emulator.stop().await;
    }
    Ok(
        match (report.errors + report.blocked, report.changes, detailed_exitcode) {
            (failures, _, _) if failures > 0 => 1,
            (_, changes, true) if changes > 0 => 2,
            _ => 0,
        },
    )
}
