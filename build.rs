//! Records the commit the binary is built from (for `oss_encryption_operator_build_info`):
//! `OSS_ENCRYPTION_OPERATOR_COMMIT` when set (container builds without `.git`), else
//! `git rev-parse`, else `unknown`.
//!
//! It reruns when HEAD moves: `HEAD` itself, the ref it names and `packed-refs`, found through
//! git (so worktrees work too). Only paths that exist are watched (cargo reruns a build script
//! whose watched path is missing on every build), and not the whole `refs/heads` directory, which
//! every commit on any other branch touches.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    Command::new("git")
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|out| !out.is_empty())
}

fn main() {
    println!("cargo:rerun-if-env-changed=OSS_ENCRYPTION_OPERATOR_COMMIT");
    let branch = git(&["symbolic-ref", "-q", "HEAD"]);
    let watched = ["HEAD", "packed-refs"]
        .into_iter()
        .map(str::to_owned)
        .chain(branch);
    for name in watched {
        if let Some(path) = git(&["rev-parse", "--git-path", &name])
            && std::path::Path::new(&path).exists()
        {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    let commit = std::env::var("OSS_ENCRYPTION_OPERATOR_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=BUILD_COMMIT={commit}");
}
