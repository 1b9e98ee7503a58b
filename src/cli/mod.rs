//! The command line: `plan` and `apply` over manifest files (the controller's engine, once),
//! `run` (the controller), and the flags of each. `main.rs` only parses and dispatches.

pub mod apply;
pub mod args;
pub mod operator;
pub mod output;

pub use apply::{Engine, Mode, Report, Row, emulated, run};
pub use output::table;

use crate::oss::{AllowList, ClientConfig, Credentials, CredentialsProvider, OssClient};
use args::{ManifestArgs, OutputFormat};

/// The exit code of a command line that cannot be parsed. Never 2: under
/// `--detailed-exitcode` 2 means "changes pending".
pub const USAGE_ERROR: u8 = 1;

/// Reads `--credentials-file` (YAML or JSON with accessKeyId, accessKeySecret and optionally
/// securityToken). A file that does not parse is named with the position of the problem, never
/// quoted: it holds a secret.
fn credentials_file(path: &std::path::Path) -> Result<Credentials, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let value = crate::manifest::parse_document(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    Credentials::from_fields(|key| value.get(key).and_then(|v| v.as_str()).map(str::to_owned))
        .map_err(|missing| format!("{}: {missing}", path.display()))
}

/// `plan` and `apply`: exit code 0, 1 (errors) or, with `--detailed-exitcode`, 2 (changes pending).
pub async fn manifests_command(
    mode: Mode,
    args: ManifestArgs,
    detailed_exitcode: bool,
) -> Result<u8, Box<dyn std::error::Error>> {
    let manifests = crate::manifest::load(&args.paths, &args.namespace);
    for warning in &manifests.warnings {
        eprintln!("warning: {warning}");
    }
    let config = ClientConfig {
        allow_list: AllowList::new(&args.allowed_endpoint_suffixes),
        ..ClientConfig::default()
    };
    let (emulator, engine) = if args.emulator {
        let (emulator, engine) = apply::emulated(&manifests, config).await?;
        (Some(emulator), engine)
    } else {
        let client = OssClient::new(config)?;
        let default_credentials = match &args.credentials_file {
            Some(path) => Some(credentials_file(path)?.into()),
            None => CredentialsProvider::from_env(&client).ok(),
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
                endpoint_override,
                ignore_secrets: false,
            },
        )
    };
    let report = apply::run(mode, &manifests, &engine).await;
    match args.output {
        OutputFormat::Table => {
            if let Some(emulator) = &emulator {
                println!("OSS emulator at {} (--emulator)\n", emulator.url());
            }
            print!("{}", output::table(&report, mode));
        }
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    if let Some(emulator) = emulator {
        emulator.stop().await;
    }
    Ok(match (report.errors, report.changes, detailed_exitcode) {
        (errors, _, _) if errors > 0 => 1,
        (_, changes, true) if changes > 0 => 2,
        _ => 0,
    })
}
