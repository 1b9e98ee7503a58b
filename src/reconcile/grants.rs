//! Pure: who may claim which bucket (DESIGN.md 3.5). With `--tenancy grants` a BucketEncryption
//! is permitted only when a valid BucketEncryptionGrant names its namespace with a bucket glob
//! matching its bucket, and, when it has no Secret of its own, one such grant also says
//! `operatorCredentials: Allow`. An invalid grant grants nothing. No I/O here.

use crate::api::BucketEncryption;
use crate::api::grant::{BucketEncryptionGrant, BucketEncryptionGrantSpec, OperatorCredentials};

/// Whether grants are needed at all (`--tenancy`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Tenancy {
    /// Every resource is permitted (single-team clusters; the default).
    #[default]
    Open,
    /// A resource is permitted only by a BucketEncryptionGrant.
    Grants,
}

/// A valid grant, as the decisions need it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub name: String,
    pub namespaces: Vec<String>,
    /// Glob patterns on the bucket name.
    pub buckets: Vec<String>,
    /// `operatorCredentials: Allow`.
    pub operator_credentials: bool,
}

impl Grant {
    /// The grant an object makes, or every problem with it (then it grants nothing).
    pub fn of(object: &BucketEncryptionGrant) -> Result<Self, Vec<String>> {
        validate(&object.spec)?;
        Ok(Self {
            name: object.metadata.name.clone().unwrap_or_default(),
            namespaces: object.spec.namespaces.clone(),
            buckets: object.spec.buckets.clone(),
            operator_credentials: object.spec.operator_credentials == OperatorCredentials::Allow,
        })
    }

    /// Whether the grant covers `bucket` for `namespace`.
    pub fn covers(&self, namespace: &str, bucket: &str) -> bool {
        self.namespaces.iter().any(|n| n == namespace) && self.buckets.iter().any(|p| glob_matches(p, bucket))
    }
}

/// The controller's own check of a grant (defence in depth behind admission): every problem,
/// named by field.
pub fn validate(spec: &BucketEncryptionGrantSpec) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    if spec.namespaces.is_empty() {
        problems.push("spec.namespaces: must name at least one namespace".to_owned());
    }
    for (i, namespace) in spec.namespaces.iter().enumerate() {
        if let Err(why) = valid_namespace(namespace) {
            problems.push(format!("spec.namespaces[{i}]: {why}"));
        }
    }
    if spec.buckets.is_empty() {
        problems.push("spec.buckets: must hold at least one pattern".to_owned());
    }
    for (i, pattern) in spec.buckets.iter().enumerate() {
        if let Err(why) = valid_glob(pattern) {
            problems.push(format!("spec.buckets[{i}]: {why}"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

fn shown(text: &str) -> String {
    text.chars().take(64).collect()
}

fn valid_namespace(name: &str) -> Result<(), String> {
    let bytes = name.as_bytes();
    let charset = bytes
        .iter()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
    let edges = |b: Option<&u8>| b.is_some_and(|b| *b != b'-');
    if (1..=63).contains(&bytes.len()) && charset && edges(bytes.first()) && edges(bytes.last()) {
        Ok(())
    } else {
        Err(format!(
            "{:?} is not a namespace name (1-63 lowercase letters, digits and '-', not starting or ending with '-')",
            shown(name)
        ))
    }
}

/// A bucket glob: 1-63 characters of the bucket-name charset (lowercase letters, digits, '-')
/// plus `*` and `?`, not starting or ending with '-' (no bucket name could match it).
pub fn valid_glob(pattern: &str) -> Result<(), String> {
    let bytes = pattern.as_bytes();
    let charset = bytes
        .iter()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'*' | b'?'));
    let edges = |b: Option<&u8>| b.is_some_and(|b| *b != b'-');
    if (1..=63).contains(&bytes.len()) && charset && edges(bytes.first()) && edges(bytes.last()) {
        Ok(())
    } else {
        Err(format!(
            "{:?} is not a bucket pattern (1-63 characters of lowercase letters, digits, '-', '*' and '?', not starting or ending with '-')",
            shown(pattern)
        ))
    }
}

/// Glob match of the whole name: `*` any run of characters (also none), `?` exactly one,
/// anything else itself. Linear in practice, O(pattern × name) at worst; never recursive.
pub fn glob_matches(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut pi, mut ni) = (0, 0);
    // The last `*` seen and the name position it is currently matched up to.
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, ni));
                pi += 1;
            }
            Some(&c) if c == b'?' || c == n[ni] => {
                pi += 1;
                ni += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    pi = sp + 1;
                    ni = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    p[pi.min(p.len())..].iter().all(|c| *c == b'*')
}

/// What is asked of the grants: may `namespace` claim `bucket`, and does it rely on the
/// operator's own credentials (no `spec.credentials`)?
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request<'a> {
    pub namespace: &'a str,
    pub bucket: &'a str,
    pub operator_credentials: bool,
}

impl<'a> Request<'a> {
    /// What a resource asks for.
    pub fn of(resource: &'a BucketEncryption) -> Self {
        Self {
            namespace: resource.metadata.namespace.as_deref().unwrap_or_default(),
            bucket: &resource.spec.bucket,
            operator_credentials: resource.spec.credentials.is_none(),
        }
    }
}

/// Whether a resource is permitted, with the reason when it is not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Permission {
    Permitted,
    /// What is missing and what grant would permit it.
    NotPermitted(String),
}

impl Permission {
    pub fn is_permitted(&self) -> bool {
        *self == Self::Permitted
    }
}

/// Whether `request` is permitted under `tenancy` by `grants` (the valid ones).
pub fn permit<'g>(
    tenancy: Tenancy,
    grants: impl IntoIterator<Item = &'g Grant>,
    request: Request<'_>,
) -> Permission {
    if tenancy == Tenancy::Open {
        return Permission::Permitted;
    }
    let Request {
        namespace,
        bucket,
        operator_credentials,
    } = request;
    let mut covering: Vec<&Grant> = grants
        .into_iter()
        .filter(|g| g.covers(namespace, bucket))
        .collect();
    if covering.is_empty() {
        return Permission::NotPermitted(format!(
            "namespace {namespace} may not claim bucket {bucket}: no BucketEncryptionGrant names namespace \
             {namespace} with a bucket pattern matching {bucket} (a grant with namespaces: [{namespace}] and \
             buckets: [{bucket}] would permit it)"
        ));
    }
    if operator_credentials && !covering.iter().any(|g| g.operator_credentials) {
        covering.sort_by(|a, b| a.name.cmp(&b.name));
        let names: Vec<&str> = covering.iter().map(|g| g.name.as_str()).collect();
        return Permission::NotPermitted(format!(
            "namespace {namespace} may claim bucket {bucket} (BucketEncryptionGrant {}) but not with the \
             operator's credentials: none of those grants says operatorCredentials: Allow (name a Secret of \
             namespace {namespace} in spec.credentials.secretRef, or set operatorCredentials: Allow on a grant)",
            names.join(", ")
        ));
    }
    Permission::Permitted
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(name: &str, namespaces: &[&str], buckets: &[&str], operator: bool) -> Grant {
        Grant {
            name: name.into(),
            namespaces: namespaces.iter().map(|s| s.to_string()).collect(),
            buckets: buckets.iter().map(|s| s.to_string()).collect(),
            operator_credentials: operator,
        }
    }

    #[test]
    fn globs_match_the_whole_name() {
        let table = [
            ("payments-*", "payments-prod", true),
            ("payments-*", "payments-", true),
            ("payments-*", "payment-prod", false),
            ("payments-*", "x-payments-prod", false),
            ("*-logs", "audit-logs", true),
            ("*-logs", "audit-logs-2", false),
            ("audit-logs-payments", "audit-logs-payments", true),
            ("audit-logs-payments", "audit-logs-payment", false),
            ("audit-logs-payments", "audit-logs-paymentsx", false),
            ("b?t", "bat", true),
            ("b?t", "bt", false),
            ("b?t", "baat", false),
            ("*", "anything-at-all", true),
            ("**", "abc", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("a*b*c", "abcbc", true),
            (
                "*a*a*a*b",
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                false,
            ),
            ("?*", "a", true),
            ("?*", "", false),
            ("*?", "ab", true),
            ("team-?-*", "team-a-data", true),
            ("team-?-*", "team-ab-data", false),
        ];
        for (pattern, name, expected) in table {
            assert_eq!(glob_matches(pattern, name), expected, "{pattern:?} on {name:?}");
        }
    }

    #[test]
    fn glob_syntax_is_the_bucket_charset_plus_wildcards() {
        for good in [
            "payments-*",
            "*",
            "a",
            "b?t",
            "audit-logs-payments",
            &"a".repeat(63),
        ] {
            assert!(valid_glob(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "-payments",
            "payments-",
            "Payments-*",
            "pay_ments",
            "pay.ments",
            "[a-z]*",
            &"a".repeat(64),
            "é*",
        ] {
            let why = valid_glob(bad).unwrap_err();
            assert!(why.contains("not a bucket pattern"), "{bad}: {why}");
        }
    }

    #[test]
    fn a_grant_is_checked_field_by_field() {
        let spec = BucketEncryptionGrantSpec {
            namespaces: vec!["payments".into(), "Bad_NS".into()],
            buckets: vec!["ok-*".into(), "-bad".into()],
            operator_credentials: OperatorCredentials::Deny,
        };
        let problems = validate(&spec).unwrap_err();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].starts_with("spec.namespaces[1]:"), "{problems:?}");
        assert!(problems[1].starts_with("spec.buckets[1]:"), "{problems:?}");
        let empty = BucketEncryptionGrantSpec {
            namespaces: vec![],
            buckets: vec![],
            operator_credentials: OperatorCredentials::Allow,
        };
        assert_eq!(validate(&empty).unwrap_err().len(), 2);
    }

    #[test]
    fn who_is_permitted() {
        let grants = [
            grant(
                "team-payments",
                &["payments", "payments-staging"],
                &["payments-*", "audit-logs-payments"],
                false,
            ),
            grant("payments-operator", &["payments"], &["payments-shared"], true),
            grant("team-web", &["web"], &["web-*"], false),
        ];
        let ask = |namespace, bucket, operator_credentials| {
            permit(
                Tenancy::Grants,
                &grants,
                Request {
                    namespace,
                    bucket,
                    operator_credentials,
                },
            )
        };
        // (namespace, bucket, relies on the operator's credentials, permitted, message says)
        let table: [(&str, &str, bool, bool, &str); 9] = [
            ("payments", "payments-prod", false, true, ""),
            ("payments-staging", "audit-logs-payments", false, true, ""),
            ("payments", "payments-shared", true, true, ""),
            (
                "payments",
                "web-site",
                false,
                false,
                "buckets: [web-site] would permit",
            ),
            (
                "web",
                "payments-prod",
                false,
                false,
                "namespace web may not claim bucket payments-prod",
            ),
            (
                "elsewhere",
                "payments-prod",
                false,
                false,
                "namespaces: [elsewhere]",
            ),
            (
                "payments",
                "payments-prod",
                true,
                false,
                "BucketEncryptionGrant team-payments) but not with the operator's credentials",
            ),
            (
                "payments-staging",
                "payments-shared",
                true,
                false,
                "BucketEncryptionGrant team-payments) but not with the operator's credentials",
            ),
            ("web", "web-x", true, false, "operatorCredentials: Allow"),
        ];
        for (namespace, bucket, operator, permitted, says) in table {
            let verdict = ask(namespace, bucket, operator);
            match verdict {
                Permission::Permitted => {
                    assert!(permitted, "{namespace}/{bucket} operator={operator}: permitted")
                }
                Permission::NotPermitted(why) => {
                    assert!(!permitted, "{namespace}/{bucket} operator={operator}: {why}");
                    assert!(
                        why.contains(says) && why.contains(namespace) && why.contains(bucket),
                        "{why}"
                    );
                }
            }
        }
    }

    #[test]
    fn open_tenancy_permits_everything_and_no_grant_permits_nothing() {
        let request = Request {
            namespace: "any",
            bucket: "any-bucket",
            operator_credentials: true,
        };
        assert_eq!(permit(Tenancy::Open, &[], request), Permission::Permitted);
        assert!(!permit(Tenancy::Grants, &[], request).is_permitted());
    }
}
