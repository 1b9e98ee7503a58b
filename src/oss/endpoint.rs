//! Where requests go: region → endpoint, the bucket URL, bucket-name rules and the allow-list that
//! keeps the operator (and its credentials) from being pointed at an arbitrary host.

use std::fmt;
use std::net::IpAddr;

/// Endpoint flavours OSS offers for a region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndpointKind {
    /// `oss-<region>.aliyuncs.com`
    Public,
    /// `oss-<region>-internal.aliyuncs.com` (from inside the region's VPC)
    Internal,
    /// `<region>.oss.aliyuncs.com`
    DualStack,
    /// `oss-accelerate.aliyuncs.com`
    Accelerate,
    /// `oss-accelerate-overseas.aliyuncs.com`
    AccelerateOverseas,
}

/// Why an endpoint, bucket or region was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error(
        "invalid bucket name {0:?}: 3-63 characters of lowercase letters, digits and '-', \
         starting and ending with a letter or digit"
    )]
    InvalidBucketName(String),
    #[error("invalid region {0:?}: a region id such as cn-hangzhou ([a-z0-9-]+)")]
    InvalidRegion(String),
    #[error("invalid endpoint {0:?}: {1}")]
    InvalidEndpoint(String, &'static str),
    #[error("endpoint {host} is not allowed: it matches none of the allowed endpoints [{allowed}]")]
    NotAllowed { host: String, allowed: String },
    #[error(
        "endpoint {0} uses plain http: http is allowed only for endpoints listed exactly, never by suffix"
    )]
    PlainHttp(String),
}

/// Whether requests to `host` (no port) name the bucket in the path: IPs, `localhost` and
/// Kubernetes Service names (one label, `*.svc`, `*.svc.cluster.local`), where
/// `<bucket>.<host>` would never resolve. OSS itself is addressed virtual-hosted.
pub fn is_path_style_host(host: &str) -> bool {
    host.parse::<IpAddr>().is_ok()
        || !host.contains('.')
        || host.ends_with(".svc")
        || host.ends_with(".svc.cluster.local")
}

/// OSS bucket naming rules: 3-63 chars, `[a-z0-9-]`, no leading or trailing `-`.
pub fn validate_bucket_name(name: &str) -> Result<(), EndpointError> {
    let ok = (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(EndpointError::InvalidBucketName(name.to_owned()))
    }
}

/// Region ids: `[a-z0-9-]+`.
pub fn validate_region(region: &str) -> Result<(), EndpointError> {
    let ok = !region.is_empty()
        && region.len() <= 64
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(EndpointError::InvalidRegion(region.to_owned()))
    }
}

/// `http` or `https`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
        }
    }
}

/// An OSS service endpoint: scheme and host (with an optional port).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Endpoint {
    scheme: Scheme,
    host: String,
    port: Option<u16>,
}

impl Endpoint {
    /// The endpoint of a region, over https.
    pub fn for_region(region: &str, kind: EndpointKind) -> Result<Self, EndpointError> {
        validate_region(region)?;
        let host = match kind {
            EndpointKind::Public => format!("oss-{region}.aliyuncs.com"),
            EndpointKind::Internal => format!("oss-{region}-internal.aliyuncs.com"),
            EndpointKind::DualStack => format!("{region}.oss.aliyuncs.com"),
            EndpointKind::Accelerate => "oss-accelerate.aliyuncs.com".to_owned(),
            EndpointKind::AccelerateOverseas => "oss-accelerate-overseas.aliyuncs.com".to_owned(),
        };
        Ok(Self {
            scheme: Scheme::Https,
            host,
            port: None,
        })
    }

    /// Parses `host`, `host:port`, `https://host[:port]` or `http://host[:port]` (a trailing `/` is fine).
    /// A bare host means https.
    pub fn parse(value: &str) -> Result<Self, EndpointError> {
        let invalid = |why| EndpointError::InvalidEndpoint(value.to_owned(), why);
        let trimmed = value.trim();
        // Schemes are case-insensitive (RFC 3986 3.1): `HTTPS://` is https.
        let strip = |prefix: &str| {
            trimmed
                .get(..prefix.len())
                .filter(|head| head.eq_ignore_ascii_case(prefix))
                .map(|_| &trimmed[prefix.len()..])
        };
        let (scheme, rest) = if let Some(rest) = strip("https://") {
            (Scheme::Https, rest)
        } else if let Some(rest) = strip("http://") {
            (Scheme::Http, rest)
        } else if trimmed.contains("://") {
            return Err(invalid("only http and https are supported"));
        } else {
            (Scheme::Https, trimmed)
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.is_empty() {
            return Err(invalid("no host"));
        }
        if authority.contains(['/', '?', '#', '@', ' ']) {
            return Err(invalid(
                "must be a host (and port) only, without path, query or user info",
            ));
        }
        let (host, port) = split_host_port(authority).ok_or_else(|| invalid("bad port"))?;
        let valid_host = host.parse::<IpAddr>().is_ok()
            || (!host.is_empty()
                && host.len() <= 253
                && host.split('.').all(|label| {
                    !label.is_empty()
                        && label.len() <= 63
                        && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                }));
        if !valid_host {
            return Err(invalid("not a valid host name or IP address"));
        }
        Ok(Self {
            scheme,
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The host without port (IPv6 without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// `host[:port]`, IPv6 in brackets.
    pub fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        match self.port {
            Some(port) => format!("{host}:{port}"),
            None => host,
        }
    }

    /// IPs, `localhost` and Kubernetes Service names (one label, `*.svc`, `*.svc.cluster.local`:
    /// the emulator, where `<bucket>.<host>` would never resolve) are addressed path-style; other
    /// names virtual-hosted, as OSS requires.
    pub fn is_path_style(&self) -> bool {
        is_path_style_host(&self.host)
    }

    /// The URL of a bucket's `?encryption` sub-resource.
    pub fn encryption_url(&self, bucket: &str) -> String {
        if self.is_path_style() {
            format!(
                "{}://{}/{bucket}/?encryption",
                self.scheme.as_str(),
                self.authority()
            )
        } else {
            format!(
                "{}://{bucket}.{}/?encryption",
                self.scheme.as_str(),
                self.authority()
            )
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme.as_str(), self.authority())
    }
}

fn split_host_port(authority: &str) -> Option<(&str, Option<u16>)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return match after.strip_prefix(':') {
            Some(port) => Some((host, Some(port.parse().ok()?))),
            None if after.is_empty() => Some((host, None)),
            None => None,
        };
    }
    match authority.rsplit_once(':') {
        Some((host, _)) if host.contains(':') => Some((authority, None)), // bare IPv6
        Some((host, port)) => Some((host, Some(port.parse().ok()?))),
        None => Some((authority, None)),
    }
}

/// Which endpoints the operator may send credentials to.
///
/// An entry starting with `.` matches hosts ending with it (`.aliyuncs.com`); any other entry
/// matches exactly, either a host (any port) or `host:port`. Plain http is accepted only through
/// an exact entry, so the default list never sends credentials in the clear.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowList {
    entries: Vec<String>,
}

/// The default allow-list: Alibaba Cloud's own domain.
pub const DEFAULT_ALLOWED_SUFFIX: &str = ".aliyuncs.com";

impl Default for AllowList {
    fn default() -> Self {
        Self::new([DEFAULT_ALLOWED_SUFFIX])
    }
}

impl AllowList {
    pub fn new<S: AsRef<str>>(entries: impl IntoIterator<Item = S>) -> Self {
        Self {
            entries: entries
                .into_iter()
                .map(|e| e.as_ref().trim().to_ascii_lowercase())
                .filter(|e| !e.is_empty())
                .collect(),
        }
    }

    /// Adds an entry (the CLI adds the embedded emulator's address this way).
    pub fn allow(&mut self, entry: impl AsRef<str>) {
        self.entries.push(entry.as_ref().trim().to_ascii_lowercase());
    }

    pub fn entries(&self) -> &[String] {
        &self.entries
    }

    /// Accepts the endpoint or says why not. Plain http passes only through an exact entry
    /// (the emulator's address), never through a suffix.
    pub fn check(&self, endpoint: &Endpoint) -> Result<(), EndpointError> {
        let host = endpoint.host();
        let authority = endpoint.authority();
        let exact = self
            .entries
            .iter()
            .any(|e| !e.starts_with('.') && (*e == host || *e == authority));
        let by_suffix = self
            .entries
            .iter()
            .any(|e| e.starts_with('.') && host.ends_with(e.as_str()) && host.len() > e.len());
        match (exact, by_suffix, endpoint.scheme()) {
            (true, _, _) | (false, true, Scheme::Https) => Ok(()),
            (false, true, Scheme::Http) => Err(EndpointError::PlainHttp(endpoint.to_string())),
            (false, false, _) => Err(EndpointError::NotAllowed {
                host: authority,
                allowed: self.entries.join(", "),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names() {
        for good in ["abc", "audit-logs-prod", "a1b2c3", &"a".repeat(63)] {
            assert!(validate_bucket_name(good).is_ok(), "{good}");
        }
        for bad in [
            "ab",
            &"a".repeat(64),
            "-abc",
            "abc-",
            "Abc",
            "a_b",
            "a.b",
            "",
            "ab c",
        ] {
            let err = validate_bucket_name(bad).unwrap_err();
            assert!(err.to_string().contains("3-63"), "{bad}: {err}");
        }
    }

    #[test]
    fn regions() {
        assert!(validate_region("cn-hangzhou").is_ok());
        for bad in ["", "CN-hangzhou", "cn_hangzhou", "cn.hangzhou", "cn hangzhou"] {
            assert!(validate_region(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn region_endpoints() {
        let host = |kind| {
            Endpoint::for_region("cn-hangzhou", kind)
                .unwrap()
                .host()
                .to_owned()
        };
        assert_eq!(host(EndpointKind::Public), "oss-cn-hangzhou.aliyuncs.com");
        assert_eq!(
            host(EndpointKind::Internal),
            "oss-cn-hangzhou-internal.aliyuncs.com"
        );
        assert_eq!(host(EndpointKind::DualStack), "cn-hangzhou.oss.aliyuncs.com");
        assert_eq!(host(EndpointKind::Accelerate), "oss-accelerate.aliyuncs.com");
        assert_eq!(
            host(EndpointKind::AccelerateOverseas),
            "oss-accelerate-overseas.aliyuncs.com"
        );
        assert!(Endpoint::for_region("bad region", EndpointKind::Public).is_err());
    }

    #[test]
    fn urls_are_virtual_hosted_for_names_and_path_style_for_ips() {
        let public = Endpoint::for_region("cn-hangzhou", EndpointKind::Public).unwrap();
        assert_eq!(
            public.encryption_url("examplebucket"),
            "https://examplebucket.oss-cn-hangzhou.aliyuncs.com/?encryption"
        );
        let emulator = Endpoint::parse("http://127.0.0.1:9000").unwrap();
        assert_eq!(
            emulator.encryption_url("b1b"),
            "http://127.0.0.1:9000/b1b/?encryption"
        );
        let v6 = Endpoint::parse("http://[::1]:9000/").unwrap();
        assert_eq!(v6.encryption_url("b1b"), "http://[::1]:9000/b1b/?encryption");
    }

    #[test]
    fn kubernetes_service_names_are_path_style() {
        // `b1b.oss-emulator.demo.svc` never resolves: a Service (the demo's emulator) is
        // addressed by path, as an IP is.
        for service in [
            "http://oss-emulator.demo.svc:9000",
            "http://oss-emulator.demo.svc.cluster.local:9000",
            "http://oss-emulator:9000",
        ] {
            let endpoint = Endpoint::parse(service).unwrap();
            let url = endpoint.encryption_url("b1b");
            assert_eq!(url, format!("{}/b1b/?encryption", endpoint), "{service}");
        }
        let lookalike = Endpoint::parse("oss-cn-hangzhou.aliyuncs.com.svc.example.com").unwrap();
        assert!(!lookalike.is_path_style());
    }

    #[test]
    fn endpoint_parsing() {
        let e = Endpoint::parse("oss-cn-hangzhou-internal.aliyuncs.com").unwrap();
        assert_eq!(
            (e.scheme(), e.host(), e.port()),
            (Scheme::Https, "oss-cn-hangzhou-internal.aliyuncs.com", None)
        );
        let e = Endpoint::parse("https://OSS-cn-hangzhou.aliyuncs.com:443/").unwrap();
        assert_eq!((e.host(), e.port()), ("oss-cn-hangzhou.aliyuncs.com", Some(443)));
        for bad in [
            "",
            "ftp://x",
            "https://",
            "https://a/b",
            "https://a?x",
            "https://u@a",
            "a:notaport",
            "a..b",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn allow_list_suffixes_and_exact_entries() {
        let list = AllowList::default();
        assert!(
            list.check(&Endpoint::parse("oss-cn-hangzhou.aliyuncs.com").unwrap())
                .is_ok()
        );
        assert!(list.check(&Endpoint::parse("evil.example.com").unwrap()).is_err());
        assert!(
            list.check(&Endpoint::parse("aliyuncs.com.evil.example").unwrap())
                .is_err()
        );
        assert!(list.check(&Endpoint::parse("evilaliyuncs.com").unwrap()).is_err());
        let err = list
            .check(&Endpoint::parse("http://127.0.0.1:9000").unwrap())
            .unwrap_err();
        assert!(err.to_string().contains("127.0.0.1:9000"), "{err}");

        let mut list = AllowList::default();
        list.allow("127.0.0.1:9000");
        assert!(
            list.check(&Endpoint::parse("http://127.0.0.1:9000").unwrap())
                .is_ok()
        );
        assert!(
            list.check(&Endpoint::parse("http://127.0.0.1:9001").unwrap())
                .is_err()
        );
        list.allow("localhost");
        assert!(
            list.check(&Endpoint::parse("http://localhost:1234").unwrap())
                .is_ok()
        );
    }

    #[test]
    fn plain_http_is_refused_off_loopback() {
        let list = AllowList::default();
        let err = list
            .check(&Endpoint::parse("http://oss-cn-hangzhou.aliyuncs.com").unwrap())
            .unwrap_err();
        assert!(matches!(err, EndpointError::PlainHttp(_)));
    }
}
