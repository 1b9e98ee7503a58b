//! A real API server of one's own: the kit of `REAL_APISERVER_KIT` (`up.sh`, `down.sh`,
//! `standins.yaml`; `scripts/apiserver-check` exports it) started in a temp dir, for scenarios
//! that must not share the server (the operator binary watches everything, and deleting the
//! BucketEncryption CRD would pull it from under the other tests). The operator gets a client
//! certificate of its own (`CN=oss-encryption-operator`), so its requests are told apart from
//! the test's in the audit log.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::target::Target;

/// The environment variable naming the kit's directory.
pub const REAL_APISERVER_KIT: &str = "REAL_APISERVER_KIT";

/// The audit log's user name of the operator's client certificate.
pub const OPERATOR_USER: &str = "oss-encryption-operator";

/// A running server of one's own; stopped (`down.sh`) when dropped.
pub struct OwnServer {
    kit: PathBuf,
    work: tempfile::TempDir,
    /// A client as the kit's admin.
    pub admin: Target,
}

/// One request of the audit log (its `ResponseComplete` line).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Request {
    pub user: String,
    pub verb: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
    pub code: u16,
    /// When the server finished it (`stageTimestamp`).
    pub time: jiff::Timestamp,
}

impl Request {
    /// Whether the request may change what is stored.
    pub fn is_write(&self) -> bool {
        matches!(
            self.verb.as_str(),
            "create" | "update" | "patch" | "delete" | "deletecollection"
        )
    }

    /// `verb resource[/subresource] name` with an event's generated suffix cut (the recorder
    /// names events `<object>.<hex>`), so that counts are per object.
    pub fn key(&self) -> String {
        let resource = if self.subresource.is_empty() {
            self.resource.clone()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        };
        let name = if self.resource == "events" {
            self.name.split('.').next().unwrap_or_default().to_owned()
        } else {
            self.name.clone()
        };
        format!("{} {resource} {name}", self.verb)
    }
}

fn kit() -> PathBuf {
    let kit = std::env::var(REAL_APISERVER_KIT).unwrap_or_else(|_| {
        panic!(
            "{REAL_APISERVER_KIT} is not set: this test starts a real apiextensions-apiserver of its own \
             from the kit's up.sh; run it with scripts/apiserver-check"
        )
    });
    PathBuf::from(kit)
}

fn run(command: &mut Command, what: &str) -> String {
    let output = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

impl OwnServer {
    /// Starts the kit's server, installs the stand-ins (Leases, events.k8s.io Events) and the
    /// project's CRDs, and signs the operator's client certificate.
    pub async fn start() -> Self {
        let kit = kit();
        let work = tempfile::tempdir().unwrap();
        run(
            Command::new(kit.join("up.sh")).arg(work.path()),
            "the kit's up.sh",
        );
        let dir = work.path();
        run(
            Command::new("openssl")
                .args(["req", "-newkey", "rsa:2048", "-nodes", "-keyout"])
                .arg(dir.join("operator.key"))
                .arg("-out")
                .arg(dir.join("operator.csr"))
                .args(["-subj", &format!("/O=system:masters/CN={OPERATOR_USER}")]),
            "openssl req",
        );
        run(
            Command::new("openssl")
                .args(["x509", "-req", "-days", "1", "-in"])
                .arg(dir.join("operator.csr"))
                .arg("-CA")
                .arg(dir.join("ca.crt"))
                .arg("-CAkey")
                .arg(dir.join("ca.key"))
                .arg("-CAcreateserial")
                .arg("-out")
                .arg(dir.join("operator.crt"))
                .arg("-extfile")
                .arg(dir.join("client.ext")),
            "openssl x509",
        );
        let admin = std::fs::read_to_string(dir.join("admin.kubeconfig")).unwrap();
        let operator = admin
            .replace("admin.crt", "operator.crt")
            .replace("admin.key", "operator.key");
        std::fs::write(dir.join("operator.kubeconfig"), operator).unwrap();

        let server = Self {
            admin: Target::real_at(dir.join("admin.kubeconfig").to_str().unwrap()).await,
            kit,
            work,
        };
        let standins = std::fs::read_to_string(server.kit.join("standins.yaml")).unwrap();
        for crd in serde_saphyr::from_multiple::<Value>(&standins).unwrap() {
            server.admin.install_crd(&crd).await;
        }
        for file in crate::admission::CRDS {
            server.admin.install_crd(&crate::admission::crd(file)).await;
        }
        server
    }

    /// The kubeconfig the operator runs with (its own client certificate).
    pub fn operator_kubeconfig(&self) -> PathBuf {
        self.work.path().join("operator.kubeconfig")
    }

    /// The work directory (logs, kubeconfigs).
    pub fn dir(&self) -> &Path {
        self.work.path()
    }

    /// Every completed request of the audit log so far.
    pub fn requests(&self) -> Vec<Request> {
        let text = std::fs::read_to_string(self.work.path().join("audit.log")).unwrap_or_default();
        text.lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|e| e["stage"] == "ResponseComplete")
            .map(|e| {
                let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
                Request {
                    user: s(&e["user"]["username"]),
                    verb: s(&e["verb"]),
                    resource: s(&e["objectRef"]["resource"]),
                    subresource: s(&e["objectRef"]["subresource"]),
                    namespace: s(&e["objectRef"]["namespace"]),
                    name: s(&e["objectRef"]["name"]),
                    code: e["responseStatus"]["code"].as_u64().unwrap_or_default() as u16,
                    time: s(&e["stageTimestamp"]).parse().expect("an audit stageTimestamp"),
                }
            })
            .collect()
    }

    /// The operator's writes so far, counted per [`Request::key`], Leases left out (renewals
    /// are the election's, not a reconcile's).
    pub fn operator_writes(&self) -> BTreeMap<String, u64> {
        let mut counts = BTreeMap::new();
        for request in self.requests() {
            if request.user == OPERATOR_USER && request.is_write() && request.resource != "leases" {
                *counts.entry(request.key()).or_default() += 1;
            }
        }
        counts
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        let _ = Command::new(self.kit.join("down.sh"))
            .arg(self.work.path())
            .output();
    }
}

/// What `after` has beyond `before` (per key; keys whose count did not grow left out).
pub fn grown(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .filter_map(|(key, &n)| {
            let was = before.get(key).copied().unwrap_or(0);
            (n > was).then(|| (key.clone(), n - was))
        })
        .collect()
}
