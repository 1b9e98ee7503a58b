//! Objects, for the encryption-coverage audit (DESIGN 3.7): ListObjectsV2 pages and HeadObject's
//! encryption headers. The request's parameters, the `ListBucketResult` document (with
//! `encoding-type=url` decoding) and the reading of HeadObject's headers are pure functions;
//! [`ObjectClient`] sends them on the management client's signing, retries, allow-list and body
//! caps, through a limiter of its own (OSS limits the data plane apart from the management API).

use quick_xml::escape::escape;

use super::xml::{Node, XmlError, is_truncated, walk};
use super::{
    BucketTarget, Call, CredentialsProvider, EncryptionRule, Operation, OssClient, OssError, OssErrorKind,
    Reply, SseAlgorithm, Strength, pages, sign,
};
use crate::oss::rule::DataEncryption;

/// The most objects one ListObjectsV2 page may hold (`max-keys` is 1..=1000).
pub const MAX_KEYS: u32 = 1000;

/// The most pages one listing follows (a billion objects at 1,000 a page): a server that keeps
/// answering `IsTruncated` past it is not OSS.
pub const MAX_PAGES: usize = 1_000_000;

/// The longest object key OSS accepts, in bytes.
pub const MAX_KEY_BYTES: usize = 1023;

/// The cap on a ListObjectsV2 body: 1,000 keys of 1,023 bytes URL-encoded (3 characters a byte)
/// plus each entry's other elements. Larger than the management calls' cap, which a full page of
/// long keys would exceed.
pub const LIST_BODY_LIMIT: usize = 5 * 1024 * 1024;

/// One ListObjectsV2 page's request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObjectListRequest {
    /// Only keys starting with this.
    pub prefix: String,
    /// Only keys strictly after this (ignored by OSS once a continuation token is sent).
    pub start_after: String,
    /// `NextContinuationToken` of the previous page (decoded).
    pub continuation_token: String,
    /// 1..=1000; 0 means OSS's default (100).
    pub max_keys: u32,
}

impl ObjectListRequest {
    /// The query as the client sends it: `list-type=2` and `encoding-type=url` always, the other
    /// parameters only when set (as the v2 SDK does), sorted by name.
    pub fn query(&self) -> Vec<(String, String)> {
        let mut query = Vec::new();
        if !self.continuation_token.is_empty() {
            query.push(("continuation-token".to_owned(), self.continuation_token.clone()));
        }
        query.push(("encoding-type".to_owned(), "url".to_owned()));
        query.push(("list-type".to_owned(), "2".to_owned()));
        if self.max_keys > 0 {
            query.push(("max-keys".to_owned(), self.max_keys.to_string()));
        }
        if !self.prefix.is_empty() {
            query.push(("prefix".to_owned(), self.prefix.clone()));
        }
        if !self.start_after.is_empty() {
            query.push(("start-after".to_owned(), self.start_after.clone()));
        }
        query
    }
}

/// One object as ListObjectsV2 reports it (no encryption: the listing carries none).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObjectSummary {
    /// Decoded.
    pub key: String,
    /// ISO-8601 with milliseconds, `2024-01-01T00:00:00.000Z`.
    pub last_modified: String,
    /// Quoted, as OSS sends it.
    pub etag: String,
    pub size: u64,
    pub storage_class: String,
    /// `Normal`, `Multipart`, `Appendable`, `Symlink` (empty when OSS left it out).
    pub object_type: String,
}

/// One page of the listing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObjectPage {
    pub objects: Vec<ObjectSummary>,
    /// With a delimiter: the "directories" (decoded).
    pub common_prefixes: Vec<String>,
    /// More objects follow: ask again with `continuation_token = next_continuation_token`.
    pub is_truncated: bool,
    /// Decoded.
    pub next_continuation_token: String,
    /// Contents plus CommonPrefixes of this page.
    pub key_count: u64,
}

impl pages::Paged for ObjectPage {
    fn next_cursor(&self) -> Option<&str> {
        self.is_truncated.then_some(self.next_continuation_token.as_str())
    }
}

const ROOT: &str = "ListBucketResult";

/// Reads a `ListBucketResult` (ListObjectsV2) body; with `<EncodingType>url</EncodingType>` the
/// keys, prefixes and tokens are URL-decoded (`%XX` only: `+` stays `+`, as the v2 SDK reads it).
pub fn parse_list(xml: &str) -> Result<ObjectPage, XmlError> {
    let malformed = |e: &dyn std::fmt::Display| XmlError::Malformed(e.to_string());
    let mut page = ObjectPage::default();
    let (mut truncated, mut encoding, mut key_count) = (String::new(), String::new(), String::new());
    let mut sizes: Vec<String> = Vec::new();
    walk(xml, ROOT, |node| {
        match node {
            Node::Open { path, name } => {
                if name == "Contents" && path.len() == 1 {
                    page.objects.push(ObjectSummary::default());
                    sizes.push(String::new());
                }
            }
            Node::Close { path, name, text } => {
                let parent = path.last().map(String::as_str).unwrap_or("");
                match (parent, name) {
                    (ROOT, "IsTruncated") => truncated = text,
                    (ROOT, "NextContinuationToken") => page.next_continuation_token = text,
                    (ROOT, "EncodingType") => encoding = text,
                    (ROOT, "KeyCount") => key_count = text,
                    ("CommonPrefixes", "Prefix") if path.len() == 2 => page.common_prefixes.push(text),
                    ("Contents", field) if path.len() == 2 => {
                        if let Some(object) = page.objects.last_mut() {
                            let slot = match field {
                                "Key" => &mut object.key,
                                "LastModified" => &mut object.last_modified,
                                "ETag" => &mut object.etag,
                                "StorageClass" => &mut object.storage_class,
                                "Type" => &mut object.object_type,
                                "Size" => sizes.last_mut().expect("pushed with the object"),
                                _ => return Ok(()),
                            };
                            *slot = text;
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    })?;
    page.is_truncated = is_truncated(&truncated)?;
    let url = match encoding.as_str() {
        "" => false,
        "url" => true,
        other => return Err(malformed(&format!("EncodingType is {other:?}, not url"))),
    };
    if url {
        page.next_continuation_token = sign::percent_decode(&page.next_continuation_token);
        for prefix in &mut page.common_prefixes {
            *prefix = sign::percent_decode(prefix);
        }
    }
    for (object, size) in page.objects.iter_mut().zip(&sizes) {
        if object.key.is_empty() {
            return Err(XmlError::Missing("Contents/Key"));
        }
        if url {
            object.key = sign::percent_decode(&object.key);
        }
        object.size = match size.as_str() {
            "" => 0,
            text => text
                .parse()
                .map_err(|_| malformed(&format!("Size {text:?} is not a byte count")))?,
        };
    }
    page.key_count = match key_count.as_str() {
        "" => (page.objects.len() + page.common_prefixes.len()) as u64,
        text => text
            .parse()
            .map_err(|_| malformed(&format!("KeyCount {text:?} is not a count")))?,
    };
    if page.is_truncated && page.next_continuation_token.is_empty() {
        return Err(XmlError::Missing("NextContinuationToken"));
    }
    Ok(page)
}

/// Writes a page as OSS does: with `url_encoded` (`encoding-type=url`) the keys, prefix,
/// start-after and tokens URL-encoded, else XML-escaped; every entry with its `Type`, which oss2
/// requires.
pub fn list_to_xml(
    bucket: &str,
    page: &ObjectPage,
    request: &ObjectListRequest,
    url_encoded: bool,
) -> String {
    let enc = |text: &str| {
        if url_encoded {
            sign::uri_encode(text, false)
        } else {
            escape(text).into_owned()
        }
    };
    let mut xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListBucketResult><Name>{}</Name><Prefix>{}</Prefix>",
        escape(bucket),
        enc(&request.prefix)
    );
    if !request.start_after.is_empty() {
        xml.push_str(&format!("<StartAfter>{}</StartAfter>", enc(&request.start_after)));
    }
    if !request.continuation_token.is_empty() {
        xml.push_str(&format!(
            "<ContinuationToken>{}</ContinuationToken>",
            enc(&request.continuation_token)
        ));
    }
    xml.push_str(&format!(
        "<MaxKeys>{}</MaxKeys>{}<IsTruncated>{}</IsTruncated>",
        if request.max_keys == 0 {
            100
        } else {
            request.max_keys
        },
        if url_encoded {
            "<EncodingType>url</EncodingType>"
        } else {
            ""
        },
        page.is_truncated
    ));
    if page.is_truncated {
        xml.push_str(&format!(
            "<NextContinuationToken>{}</NextContinuationToken>",
            enc(&page.next_continuation_token)
        ));
    }
    for o in &page.objects {
        xml.push_str(&format!(
            "<Contents><Key>{}</Key><LastModified>{}</LastModified><ETag>{}</ETag><Type>{}</Type><Size>{}</Size><StorageClass>{}</StorageClass></Contents>",
            enc(&o.key),
            escape(&o.last_modified),
            escape(&o.etag),
            escape(&o.object_type),
            o.size,
            escape(&o.storage_class),
        ));
    }
    xml.push_str(&format!(
        "<KeyCount>{}</KeyCount></ListBucketResult>",
        page.key_count
    ));
    xml
}

/// Why a key cannot be sent to OSS, if it cannot: empty, longer than 1,023 bytes, or `.`/`..`
/// (which URL normalisation would turn into another path, whatever the escaping).
pub fn key_problem(key: &str) -> Option<String> {
    if key.is_empty() {
        return Some("the object key is empty".to_owned());
    }
    if key.len() > MAX_KEY_BYTES {
        return Some(format!(
            "the object key is {} bytes long, more than OSS's {MAX_KEY_BYTES}",
            key.len()
        ));
    }
    if key == "." || key == ".." {
        return Some(format!("the object key {key:?} cannot be addressed in a URL"));
    }
    None
}

/// How one object is encrypted, as HeadObject reports it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ObjectEncryption {
    /// No `x-oss-server-side-encryption` header.
    None,
    /// SSE-OSS with AES-256.
    Aes256,
    /// SSE-OSS with SM4.
    Sm4,
    /// SSE-KMS with this CMK (OSS names its managed key's id too), SM4 data encryption or not.
    Kms { key_id: String, sm4: bool },
}

/// The five encryption kinds the audit counts (`byEncryption`'s keys).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EncryptionKind {
    None,
    Aes256,
    Sm4,
    Kms,
    KmsSm4,
}

impl EncryptionKind {
    pub const ALL: [EncryptionKind; 5] = [Self::None, Self::Aes256, Self::Sm4, Self::Kms, Self::KmsSm4];

    /// `None`, `AES256`, `SM4`, `KMS`, `KMS+SM4`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "None",
            Self::Aes256 => "AES256",
            Self::Sm4 => "SM4",
            Self::Kms => "KMS",
            Self::KmsSm4 => "KMS+SM4",
        }
    }
}

impl ObjectEncryption {
    /// Reads the three headers (absent and empty alike). An algorithm OSS does not document is
    /// an error, never taken for "not encrypted". Data encryption counts only with KMS (OSS
    /// ignores it otherwise).
    pub fn from_headers(sse: Option<&str>, key_id: Option<&str>, data: Option<&str>) -> Result<Self, String> {
        let sse = sse.map(str::trim).unwrap_or("");
        let key_id = key_id.map(str::trim).unwrap_or("");
        let data = data.map(str::trim).unwrap_or("");
        match sse {
            "" => Ok(Self::None),
            "AES256" => Ok(Self::Aes256),
            "SM4" => Ok(Self::Sm4),
            "KMS" => match data {
                "" => Ok(Self::Kms {
                    key_id: key_id.to_owned(),
                    sm4: false,
                }),
                "SM4" => Ok(Self::Kms {
                    key_id: key_id.to_owned(),
                    sm4: true,
                }),
                other => Err(format!(
                    "x-oss-server-side-data-encryption {:?} is not SM4",
                    super::list::printable(other)
                )),
            },
            other => Err(format!(
                "x-oss-server-side-encryption {:?} is not AES256, SM4 or KMS",
                super::list::printable(other)
            )),
        }
    }

    /// Which of the five kinds this is.
    pub fn kind(&self) -> EncryptionKind {
        match self {
            Self::None => EncryptionKind::None,
            Self::Aes256 => EncryptionKind::Aes256,
            Self::Sm4 => EncryptionKind::Sm4,
            Self::Kms { sm4: false, .. } => EncryptionKind::Kms,
            Self::Kms { sm4: true, .. } => EncryptionKind::KmsSm4,
        }
    }

    /// The CMK id of a KMS object.
    pub fn key_id(&self) -> Option<&str> {
        match self {
            Self::Kms { key_id, .. } => Some(key_id),
            _ => None,
        }
    }

    /// The bucket rule that would encrypt an object this way (`None` = no rule).
    pub fn as_rule(&self) -> Option<EncryptionRule> {
        match self {
            Self::None => None,
            Self::Aes256 => Some(EncryptionRule::new(SseAlgorithm::Aes256)),
            Self::Sm4 => Some(EncryptionRule::new(SseAlgorithm::Sm4)),
            Self::Kms { key_id, sm4 } => Some(EncryptionRule::kms(
                Some(key_id.as_str()).filter(|k| !k.is_empty()),
                sm4.then_some(DataEncryption::Sm4),
            )),
        }
    }

    /// Its strength in the downgrade guard's order (`None` < `AES256` = `SM4` < `KMS`).
    pub fn strength(&self) -> Strength {
        super::strength(self.as_rule().as_ref())
    }

    /// Weaker than `desired` (a bucket rule, `None` = no rule), in the downgrade guard's order:
    /// a KMS object under another CMK than the rule's is not weaker, nor SM4 under AES256.
    pub fn is_below(&self, desired: Option<&EncryptionRule>) -> bool {
        self.strength() < super::strength(desired)
    }
}

/// What HeadObject says of one object, as far as the audit needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectHead {
    pub encryption: ObjectEncryption,
    /// `Last-Modified` as sent (RFC 1123).
    pub last_modified: String,
    pub etag: String,
    pub content_length: u64,
    pub object_type: String,
    pub storage_class: String,
}

/// Reads HeadObject's answer headers through `header` (case-insensitive lookup).
pub fn head_from_headers<'a>(header: impl Fn(&str) -> Option<&'a str>) -> Result<ObjectHead, String> {
    let encryption = ObjectEncryption::from_headers(
        header("x-oss-server-side-encryption"),
        header("x-oss-server-side-encryption-key-id"),
        header("x-oss-server-side-data-encryption"),
    )?;
    let text = |name: &str| header(name).unwrap_or("").trim().to_owned();
    let content_length = match header("content-length").map(str::trim) {
        None | Some("") => 0,
        Some(text) => text.parse().map_err(|_| {
            format!(
                "Content-Length {:?} is not a byte count",
                super::list::printable(text)
            )
        })?,
    };
    Ok(ObjectHead {
        encryption,
        last_modified: text("last-modified"),
        etag: text("etag"),
        content_length,
        object_type: text("x-oss-object-type"),
        storage_class: text("x-oss-storage-class"),
    })
}

/// Why a truncated page's continuation token cannot be followed, if it cannot: the token must
/// change from page to page, and page `number` (from 1) must be within [`MAX_PAGES`].
pub fn token_problem(asked: &str, next: &str, number: usize) -> Option<String> {
    if number >= MAX_PAGES {
        return Some(format!(
            "the listing is still truncated after {number} pages; not followed further"
        ));
    }
    if next == asked {
        return Some(format!(
            "NextContinuationToken \"{}\" repeats the token asked with; the listing was not followed",
            super::list::printable(next)
        ));
    }
    None
}

/// The data-plane client: ListObjectsV2 and HeadObject, with a limiter of its own. Made by
/// [`OssClient::data_plane`]; cheap to clone (clones share the limiter).
#[derive(Clone, Debug)]
pub struct ObjectClient {
    inner: OssClient,
}

impl ObjectClient {
    pub(super) fn new(inner: OssClient) -> Self {
        Self { inner }
    }

    /// The data-plane request rate in force now.
    pub fn current_rate(&self) -> f64 {
        self.inner.current_rate()
    }

    /// Throttling answers seen on the data plane.
    pub fn throttles(&self) -> u64 {
        self.inner.throttles()
    }

    fn refused(op: Operation, target: &BucketTarget, detail: String) -> OssError {
        OssError {
            operation: op,
            bucket: target.bucket.clone(),
            attempts: 0,
            kind: OssErrorKind::InvalidRequest(detail),
        }
    }

    /// One ListObjectsV2 page (`encoding-type=url`, decoded).
    pub async fn list_objects(
        &self,
        target: &BucketTarget,
        credentials: &CredentialsProvider,
        request: &ObjectListRequest,
    ) -> Result<Reply<ObjectPage>, OssError> {
        let op = Operation::ListObjects;
        if request.max_keys > MAX_KEYS {
            return Err(Self::refused(
                op,
                target,
                format!("max-keys {} is out of range: 1 to {MAX_KEYS}", request.max_keys),
            ));
        }
        let call = Call {
            op,
            bucket: Some(&target.bucket),
            key: None,
            region: &target.region,
            endpoint: &target.endpoint,
            version: target.signature_version,
            query: request.query(),
            body: None,
            body_limit: LIST_BODY_LIMIT,
        };
        let raw = self.inner.send(&call, credentials).await?;
        let page = raw
            .read(parse_list)
            .map_err(|detail| raw.bad(op, &target.bucket, detail))?;
        Ok(Reply {
            value: page,
            request_id: raw.request_id,
            attempts: raw.attempts,
        })
    }

    /// Every object whose key starts with `prefix`, a page (at most `max_keys`, 1..=1000) at a
    /// time, following `NextContinuationToken` until the listing ends; an error ends the stream.
    /// Only one page is held at a time.
    pub fn object_pages<'a>(
        &'a self,
        target: &'a BucketTarget,
        credentials: &'a CredentialsProvider,
        prefix: &str,
        max_keys: u32,
    ) -> impl futures_util::Stream<Item = Result<ObjectPage, OssError>> + 'a {
        let prefix = prefix.to_owned();
        pages::follow(
            Operation::ListObjects,
            target.bucket.clone(),
            move |continuation_token| {
                let request = ObjectListRequest {
                    prefix: prefix.clone(),
                    max_keys,
                    continuation_token,
                    ..ObjectListRequest::default()
                };
                async move { self.list_objects(target, credentials, &request).await }
            },
            token_problem,
        )
    }

    /// HeadObject: the object's encryption (and the other headers the audit reads). Errors come
    /// from the base64 `x-oss-err` header (HEAD answers have no body): 404 `NoSuchKey`, 403
    /// `AccessDenied`, with the request id.
    pub async fn head_object(
        &self,
        target: &BucketTarget,
        credentials: &CredentialsProvider,
        key: &str,
    ) -> Result<Reply<ObjectHead>, OssError> {
        let op = Operation::HeadObject;
        if let Some(problem) = key_problem(key) {
            return Err(Self::refused(op, target, problem));
        }
        let call = Call {
            op,
            bucket: Some(&target.bucket),
            key: Some(key),
            region: &target.region,
            endpoint: &target.endpoint,
            version: target.signature_version,
            query: Vec::new(),
            body: None,
            body_limit: super::transport::BODY_LIMIT,
        };
        let raw = self.inner.send(&call, credentials).await?;
        let head = head_from_headers(|name| raw.headers.get(name).and_then(|v| v.to_str().ok())).map_err(
            |detail| OssError {
                operation: op,
                bucket: target.bucket.clone(),
                attempts: raw.attempts,
                kind: OssErrorKind::BadResponse {
                    status: raw.status,
                    request_id: raw.request_id.clone(),
                    detail,
                },
            },
        )?;
        Ok(Reply {
            value: head,
            request_id: raw.request_id,
            attempts: raw.attempts,
        })
    }
}

#[cfg(test)]
mod tests;
