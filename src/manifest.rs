//! Reading manifests for the CLI: files or directories of YAML (multi-document) or JSON, holding
//! BucketEncryption resources and the Secrets they name. Every problem names its file and document.

use std::collections::{BTreeMap, HashSet};
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
    /// Paths skipped on the way (not regular files, directory links not followed).
    pub warnings: Vec<String>,
}

impl Manifests {
    /// The Secret `namespace/name`, if one was given.
    pub fn secret(&self, namespace: &str, name: &str) -> Option<&SecretManifest> {
        self.secrets
            .iter()
            .find(|s| s.namespace == namespace && s.name == name)
    }
}

/// A YAML or JSON text that does not parse: where and why, never quoting the text (it may hold
/// secrets).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not valid YAML or JSON at line {line}, column {column}: {reason}")]
pub struct SyntaxError {
    pub line: u64,
    pub column: u64,
    pub reason: String,
}

/// Parses one YAML (or JSON) document. Errors carry the position and the parser's reason only.
///
/// Booleans are read as kubectl reads them: it converts YAML to JSON with sigs.k8s.io/yaml,
/// that is go-yaml v2 (YAML 1.1), whose plain-scalar booleans are exactly [`YAML11_BOOLEANS`]
/// (`yes`, `On`, `N`, ... besides `true`/`True`/`TRUE`). Any other spelling (`yES`, `oN`) and
/// any quoted scalar stay strings, which a boolean field then refuses, as the API server does.
pub fn parse_document(text: &str) -> Result<Value, SyntaxError> {
    let strict = parse_with(text, true)?;
    if !has_yaml11_candidate(&strict) {
        return Ok(strict);
    }
    // Told apart by parsing again with YAML 1.1 booleans: a scalar that is a string in the
    // first tree and a boolean in the second was plain (a quoted one is a string in both).
    match parse_with(text, false) {
        Ok(lax) => Ok(kubectl_booleans(strict, &lax)),
        Err(_) => Ok(strict),
    }
}

/// go-yaml v2's plain-scalar booleans other than `true`/`false` (`resolve.go`, `resolveMapList`).
pub const YAML11_BOOLEANS: [(&str, bool); 16] = [
    ("y", true),
    ("Y", true),
    ("yes", true),
    ("Yes", true),
    ("YES", true),
    ("on", true),
    ("On", true),
    ("ON", true),
    ("n", false),
    ("N", false),
    ("no", false),
    ("No", false),
    ("NO", false),
    ("off", false),
    ("Off", false),
    ("OFF", false),
];

fn parse_with(text: &str, strict_booleans: bool) -> Result<Value, SyntaxError> {
    let options = serde_saphyr::options! { with_snippet: false, strict_booleans: strict_booleans };
    serde_saphyr::from_str_with_options::<Value>(text, options).map_err(|error| {
        let (line, column) = error.location().map_or((0, 0), |l| (l.line(), l.column()));
        SyntaxError {
            line,
            column,
            reason: bare_reason(&error.to_string()),
        }
    })
}

/// Whether a strictly parsed tree holds a string that YAML 1.1 might read as a boolean.
fn has_yaml11_candidate(value: &Value) -> bool {
    match value {
        Value::String(s) => YAML11_BOOLEANS.iter().any(|(w, _)| w.eq_ignore_ascii_case(s)),
        Value::Array(items) => items.iter().any(has_yaml11_candidate),
        Value::Object(map) => map.values().any(has_yaml11_candidate),
        _ => false,
    }
}

/// The strict tree with go-yaml v2's plain booleans put back (pure).
fn kubectl_booleans(strict: Value, lax: &Value) -> Value {
    match (strict, lax) {
        (Value::String(s), Value::Bool(b)) if YAML11_BOOLEANS.iter().any(|(w, _)| *w == s) => Value::Bool(*b),
        (Value::Array(items), Value::Array(lax)) if items.len() == lax.len() => Value::Array(
            items
                .into_iter()
                .zip(lax)
                .map(|(item, lax)| kubectl_booleans(item, lax))
                .collect(),
        ),
        (Value::Object(map), Value::Object(lax)) => Value::Object(
            map.into_iter()
                .map(|(key, value)| {
                    let value = match lax.get(&key) {
                        Some(lax) => kubectl_booleans(value, lax),
                        None => value,
                    };
                    (key, value)
                })
                .collect(),
        ),
        (strict, _) => strict,
    }
}

/// The parser's reason without its position prefix, its source snippet or anything after the
/// first line (where a snippet would quote the input).
fn bare_reason(rendered: &str) -> String {
    let first = rendered.lines().next().unwrap_or("").trim();
    let first = first.strip_prefix("error:").unwrap_or(first).trim();
    let reason = match first.strip_prefix("line ") {
        Some(rest) => rest.split_once(": ").map_or(first, |(_, reason)| reason),
        None => first,
    };
    reason.chars().take(200).collect()
}

/// Splits a multi-document YAML text at `---` lines: each document with the file line it starts
/// on, so one broken document spares the others and errors name their file line. Blank and
/// comment-only parts are not documents.
fn split_documents(text: &str) -> Vec<(u64, String)> {
    let mut documents = Vec::new();
    let mut current = String::new();
    let mut start = 1u64;
    for (index, line) in text.lines().enumerate() {
        let number = index as u64 + 1;
        let starts = line == "---" || line.starts_with("--- ") || line.starts_with("---\t");
        if starts || line == "..." {
            documents.push((start, std::mem::take(&mut current)));
            start = number;
            if starts {
                // Content after the marker stays on its line, in its columns.
                current.push_str("   ");
                current.push_str(&line[3..]);
            }
        } else {
            current.push_str(line);
        }
        current.push('\n');
    }
    documents.push((start, current));
    documents
        .into_iter()
        .filter(|(_, text)| {
            text.lines()
                .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        })
        .collect()
}

/// Collects the manifest files under `path`: files named directly are taken as they are;
/// directories are walked (`.yaml`, `.yml`, `.json`), without following links to directories
/// (no cycles, no escaping the tree), each file read once however it is reached, and anything
/// that is not a regular file skipped with a warning (a FIFO would block the read forever).
fn files(path: &Path, walk: &mut Walk, top: bool) {
    let link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    let metadata = match std::fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(e) => {
            walk.errors.push((path.to_owned(), format!("cannot read: {e}")));
            return;
        }
    };
    if metadata.is_dir() {
        if link && !top {
            walk.warnings.push(format!(
                "{}: skipped: a link to a directory (not followed)",
                path.display()
            ));
            return;
        }
        let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
        if !walk.directories.insert(canonical) {
            return;
        }
        let mut entries: Vec<PathBuf> = match std::fs::read_dir(path) {
            Ok(entries) => entries.filter_map(|e| e.ok().map(|e| e.path())).collect(),
            Err(e) => {
                walk.errors.push((path.to_owned(), format!("cannot read: {e}")));
                return;
            }
        };
        entries.sort();
        for entry in entries {
            let manifest_name = entry
                .extension()
                .is_some_and(|e| e == "yaml" || e == "yml" || e == "json");
            if manifest_name || std::fs::metadata(&entry).is_ok_and(|m| m.is_dir()) {
                files(&entry, walk, false);
            }
        }
    } else if !metadata.is_file() {
        walk.warnings
            .push(format!("{}: skipped: not a regular file", path.display()));
    } else {
        let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
        if walk.files_seen.insert(canonical) {
            walk.files.push(path.to_owned());
        }
    }
}

/// What a walk found.
#[derive(Default)]
struct Walk {
    files: Vec<PathBuf>,
    files_seen: HashSet<PathBuf>,
    directories: HashSet<PathBuf>,
    errors: Vec<(PathBuf, String)>,
    warnings: Vec<String>,
}

/// Reads every document of every file under `paths` (directories recursively, `.yaml`, `.yml`,
/// `.json`). Documents without a namespace get `default_namespace`.
pub fn load(paths: &[PathBuf], default_namespace: &str) -> Manifests {
    let mut manifests = Manifests::default();
    let mut walk = Walk::default();
    for path in paths {
        files(path, &mut walk, true);
    }
    for (path, message) in walk.errors {
        manifests.errors.push(ManifestError {
            origin: Source { path, document: 0 },
            message,
        });
    }
    manifests.warnings = walk.warnings;
    let schema = Schema::new();
    for file in walk.files {
        read_file(&file, default_namespace, &schema, &mut manifests);
    }
    manifests
}

fn read_file(file: &Path, default_namespace: &str, schema: &Schema, manifests: &mut Manifests) {
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
    for (index, (first_line, text)) in split_documents(&text).into_iter().enumerate() {
        let source = Source {
            path: file.to_owned(),
            document: index + 1,
        };
        let document = match parse_document(&text) {
            Ok(document) if document.is_null() => continue,
            Ok(document) => document,
            Err(mut syntax) => {
                syntax.line += first_line.saturating_sub(1);
                manifests.errors.push(error(index + 1, syntax.to_string()));
                continue;
            }
        };
        match read_document(document, default_namespace, schema) {
            Ok(Read::Resource(resource)) => manifests.resources.push((source, *resource)),
            Ok(Read::Secret(secret)) => manifests.secrets.push(secret),
            Ok(Read::Kustomization) => {}
            Ok(Read::Policy) => manifests.warnings.push(format!(
                "{source}: BucketEncryptionPolicy skipped (policies are enforced by the running operator, not by plan/apply)"
            )),
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
    /// A kustomize `Kustomization` (as `import` writes beside its resources): not a resource.
    Kustomization,
    /// A BucketEncryptionPolicy: the controller's business (it lists the account), not plan/apply's.
    Policy,
}

/// The fields each kind may carry, from the CRD's own schema (one source of truth).
struct Schema {
    bucket_encryption: Value,
    secret: Value,
}

impl Schema {
    fn new() -> Self {
        let crd = serde_json::to_value(<BucketEncryption as kube::CustomResourceExt>::crd())
            .expect("the CRD serialises");
        let mut bucket_encryption = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone();
        // The API server knows these for every kind; the CRD schema leaves them out.
        for field in ["apiVersion", "kind", "metadata"] {
            bucket_encryption["properties"][field] = serde_json::json!({});
        }
        let secret = serde_json::json!({"properties": {
            "apiVersion": {}, "kind": {}, "metadata": {}, "data": {}, "stringData": {},
            "type": {}, "immutable": {}
        }});
        Self {
            bucket_encryption,
            secret,
        }
    }
}

/// Fields the schema does not know, each named with the nearest known one as a hint.
fn unknown_fields(value: &Value, schema: &Value, path: &str, problems: &mut Vec<String>) {
    let (Some(object), Some(known)) = (value.as_object(), schema["properties"].as_object()) else {
        if let (Some(items), Some(item_schema)) = (value.as_array(), schema.get("items")) {
            for (i, item) in items.iter().enumerate() {
                unknown_fields(item, item_schema, &format!("{path}[{i}]"), problems);
            }
        }
        return;
    };
    for (key, child) in object {
        let place = if path.is_empty() {
            String::new()
        } else {
            format!(" in {path}")
        };
        match known.get(key) {
            Some(child_schema) => {
                let child_path = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                unknown_fields(child, child_schema, &child_path, problems);
            }
            None => {
                let hint = nearest(key, known.keys().map(String::as_str))
                    .map(|n| format!(" (did you mean {n}?)"))
                    .unwrap_or_default();
                let shown: String = key.chars().take(64).collect();
                problems.push(format!("unknown field {shown}{place}{hint}"));
            }
        }
    }
}

/// The known name closest to `name` (case-insensitive edit distance), if close enough to be a typo.
fn nearest<'a>(name: &str, known: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let name = name.to_ascii_lowercase();
    known
        .map(|k| (edit_distance(&name, &k.to_ascii_lowercase()), k))
        .filter(|(distance, k)| *distance <= (k.len() / 3).max(2))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, k)| k)
}

/// Levenshtein distance.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != *cb);
            current.push(substitute.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

fn read_document(mut document: Value, default_namespace: &str, schema: &Schema) -> Result<Read, String> {
    if !document.is_object() {
        return Err("not a Kubernetes object (expected a mapping with apiVersion and kind)".into());
    }
    let api_version = document["apiVersion"].as_str().unwrap_or("").to_owned();
    let kind = document["kind"].as_str().unwrap_or("").to_owned();
    let known = match (api_version.as_str(), kind.as_str()) {
        ("oss.encryption.dev/v1alpha1", "BucketEncryption") => &schema.bucket_encryption,
        ("v1", "Secret") => &schema.secret,
        _ => &Value::Null,
    };
    let mut problems = Vec::new();
    unknown_fields(&document, known, "", &mut problems);
    if !problems.is_empty() {
        return Err(format!(
            "{}; nothing was sent for this document",
            problems.join("; ")
        ));
    }
    // Kubernetes types these as strings; anything else (`5`, `[x]`) is an error, never the default.
    for field in ["name", "namespace"] {
        match document.pointer(&format!("/metadata/{field}")) {
            None | Some(Value::Null | Value::String(_)) => {}
            Some(_) => {
                return Err(format!(
                    "metadata.{field} must be a string; nothing was sent for this document"
                ));
            }
        }
    }
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
        (version, "Kustomization") if version.starts_with("kustomize.config.k8s.io/") => {
            Ok(Read::Kustomization)
        }
        ("oss.encryption.dev/v1alpha1", "BucketEncryptionPolicy") => Ok(Read::Policy),
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
    fn booleans_are_go_yaml_v2_s() {
        let doc = "a: yes\nb: yES\nc: 'yes'\nd: [On, oN, \"off\", N]\ne: TRUE\nf: tRUE\ng: {h: no}\n";
        assert_eq!(
            parse_document(doc).unwrap(),
            serde_json::json!({
                "a": true, "b": "yES", "c": "yes", "d": [true, "oN", "off", false],
                "e": true, "f": "tRUE", "g": {"h": false}
            })
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
