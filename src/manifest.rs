//! Reading manifests for the CLI: files or directories of YAML (multi-document) or JSON, holding
//! BucketEncryption resources and the Secrets they name. Every problem names its file and document.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_json::Value;

use crate::api::BucketEncryption;

/// Where a document came from: `path` and its 1-based position in the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    pub path: PathBuf,
    pub document: usize,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (document {})", self.path.display(), self.document)
    }
}

/// A document that could not be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{origin}: {message}")]
pub struct ManifestError {
    pub origin: Source,
    pub message: String,
}

/// A Secret's string values, as the CLI uses them for `spec.credentials.secretRef`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretManifest {
    pub namespace: String,
    pub name: String,
    pub data: BTreeMap<String, String>,
}

impl fmt::Debug for SecretManifest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretManifest")
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .field("keys", &self.data.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Everything read from the given paths.
#[derive(Debug, Default)]
pub struct Manifests {
    pub resources: Vec<(Source, BucketEncryption)>,
    pub secrets: Vec<SecretManifest>,
    pub errors: Vec<ManifestError>,
}

impl Manifests {
    /// The Secret `namespace/name`, if one was given.
    pub fn secret(&self, namespace: &str, name: &str) -> Option<&SecretManifest> {
        self.secrets
            .iter()
            .find(|s| s.namespace == namespace && s.name == name)
    }
}

fn files(path: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        entries.sort();
        for entry in entries {
            if entry.is_dir() {
                files(&entry, out)?;
            } else if entry
                .extension()
                .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
            {
                out.push(entry);
            }
        }
    } else {
        out.push(path.to_owned());
    }
    Ok(())
}

/// Reads every document of every file under `paths` (directories recursively, `.yaml`, `.yml`,
/// `.json`). Documents without a namespace get `default_namespace`.
pub fn load(paths: &[PathBuf], default_namespace: &str) -> Manifests {
    let mut manifests = Manifests::default();
    for path in paths {
        let mut found = Vec::new();
        if let Err(e) = files(path, &mut found) {
            manifests.errors.push(ManifestError {
                origin: Source {
                    path: path.clone(),
                    document: 0,
                },
                message: format!("cannot read: {e}"),
            });
            continue;
        }
        for file in found {
            read_file(&file, default_namespace, &mut manifests);
        }
    }
    manifests
}

fn read_file(file: &Path, default_namespace: &str, manifests: &mut Manifests) {
    let error = |document: usize, message: String| ManifestError {
        origin: Source {
            path: file.to_owned(),
            document,
        },
        message,
    };
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) => {
            manifests.errors.push(error(0, format!("cannot read: {e}")));
            return;
        }
    };
    let documents: Vec<Value> = match serde_saphyr::from_multiple::<Value>(&text) {
        Ok(documents) => documents,
        Err(e) => {
            manifests.errors.push(error(0, format!("not valid YAML: {e}")));
            return;
        }
    };
    for (index, document) in documents.into_iter().enumerate().filter(|(_, d)| !d.is_null()) {
        let source = Source {
            path: file.to_owned(),
            document: index + 1,
        };
        match read_document(document, default_namespace) {
            Ok(Read::Resource(resource)) => manifests.resources.push((source, *resource)),
            Ok(Read::Secret(secret)) => manifests.secrets.push(secret),
            Err(message) => manifests.errors.push(ManifestError {
                origin: source,
                message,
            }),
        }
    }
}

enum Read {
    Resource(Box<BucketEncryption>),
    Secret(SecretManifest),
}

fn read_document(mut document: Value, default_namespace: &str) -> Result<Read, String> {
    if !document.is_object() {
        return Err("not a Kubernetes object (expected a mapping with apiVersion and kind)".into());
    }
    let api_version = document["apiVersion"].as_str().unwrap_or("").to_owned();
    let kind = document["kind"].as_str().unwrap_or("").to_owned();
    if document
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("")
        .is_empty()
    {
        document["metadata"]["namespace"] = Value::from(default_namespace);
    }
    match (api_version.as_str(), kind.as_str()) {
        ("oss.encryption.dev/v1alpha1", "BucketEncryption") => {
            let resource: BucketEncryption =
                serde_json::from_value(document).map_err(|e| format!("invalid BucketEncryption: {e}"))?;
            if resource.metadata.name.as_deref().unwrap_or("").is_empty() {
                return Err("BucketEncryption without metadata.name".into());
            }
            Ok(Read::Resource(Box::new(resource)))
        }
        ("v1", "Secret") => {
            let text = |v: &Value| v.as_str().unwrap_or("").to_owned();
            let mut data = BTreeMap::new();
            if let Some(encoded) = document["data"].as_object() {
                for (key, value) in encoded {
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(text(value))
                        .map_err(|_| format!("Secret data.{key} is not base64"))?;
                    data.insert(key.clone(), String::from_utf8_lossy(&bytes).into_owned());
                }
            }
            if let Some(plain) = document["stringData"].as_object() {
                for (key, value) in plain {
                    data.insert(key.clone(), text(value));
                }
            }
            Ok(Read::Secret(SecretManifest {
                namespace: text(&document["metadata"]["namespace"]),
                name: text(&document["metadata"]["name"]),
                data,
            }))
        }
        ("", _) | (_, "") => Err("missing apiVersion or kind".into()),
        _ => Err(format!(
            "unsupported kind {kind} ({api_version}): expected oss.encryption.dev/v1alpha1 BucketEncryption or v1 Secret"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn loads_resources_and_secrets_and_names_every_bad_document() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "a.yaml",
            "apiVersion: oss.encryption.dev/v1alpha1\nkind: BucketEncryption\nmetadata: {name: one}\nspec: {bucket: one-bucket, region: cn-hangzhou, algorithm: AES256}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: creds, namespace: ns}\ndata: {accessKeyId: QUtJRA==}\nstringData: {accessKeySecret: s}\n",
        );
        write(
            dir.path(),
            "b.yml",
            "apiVersion: oss.encryption.dev/v1alpha1\nkind: BucketEncryption\nmetadata: {name: two}\nspec: {bucket: two, region: cn-hangzhou, algorithm: DES}\n",
        );
        write(dir.path(), "c.yaml", "key: [unclosed\n");
        write(dir.path(), "notes.txt", "ignored");
        let manifests = load(&[dir.path().to_owned()], "default");
        assert_eq!(manifests.resources.len(), 1);
        assert_eq!(
            manifests.resources[0].1.metadata.namespace.as_deref(),
            Some("default")
        );
        let secret = manifests.secret("ns", "creds").unwrap();
        assert_eq!(secret.data["accessKeyId"], "AKID");
        assert_eq!(secret.data["accessKeySecret"], "s");
        assert!(
            !format!("{secret:?}").contains("AKID"),
            "no secret values in Debug"
        );
        let errors: Vec<String> = manifests.errors.iter().map(ToString::to_string).collect();
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(
            errors[0].contains("a.yaml (document 2)") && errors[0].contains("unsupported kind ConfigMap"),
            "{errors:?}"
        );
        assert!(
            errors[1].contains("b.yml (document 1)") && errors[1].contains("DES"),
            "{errors:?}"
        );
        assert!(
            errors[2].contains("c.yaml") && errors[2].contains("not valid YAML"),
            "{errors:?}"
        );
    }

    #[test]
    fn a_missing_path_is_an_error() {
        let manifests = load(&[PathBuf::from("/nonexistent/manifests.yaml")], "default");
        assert_eq!(manifests.errors.len(), 1);
        assert!(
            manifests.errors[0]
                .to_string()
                .contains("/nonexistent/manifests.yaml")
        );
    }
}
