//! Objects in the emulator (DESIGN 3.7): PutObject with the SSE headers as the official SDKs send
//! them (the bucket's default rule applied when the upload sets none, as OSS applies it at upload
//! time), HeadObject with the encryption headers of `oss-object-facts.md`, ListObjectsV2 with
//! paging and `encoding-type=url`, CopyObject (`x-oss-copy-source`, the metadata directive, SSE
//! not inherited, copy-source conditions), and seeded ranges: a million objects held as a pattern
//! (`<prefix><zero-padded index>`) in a few bytes, so benchmarks can audit large buckets.
//!
//! Object data is not kept (only its length and MD5), and objects are not persisted.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, Method};
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jiff::Timestamp;
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};

use super::reply::{OssFault, empty_response, xml_response};
use super::state::{Bucket, EmulatorState};
use crate::oss::objects::{ObjectListRequest, ObjectPage, ObjectSummary, list_to_xml};
use crate::oss::sign::{http_date, percent_decode};

/// The CMK id HeadObject reports for SSE-KMS without a named key (OSS's managed key for the
/// bucket's region has an id of its own, and OSS names it).
pub const MANAGED_CMK_ID: &str = "0a1b2c3d-0000-4000-8000-05500e0c0001";

/// Most objects one seed may create.
pub const MAX_SEED: u64 = 100_000_000;

/// An object's server-side encryption as the wire spells it (empty = none).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ObjectSse {
    /// ``, `AES256`, `SM4` or `KMS`.
    pub algorithm: String,
    /// The CMK (KMS only; the managed key's id when none was named).
    pub key_id: String,
    /// `SM4` (KMS only) or empty.
    pub data_encryption: String,
}

impl ObjectSse {
    /// No encryption.
    pub fn none() -> Self {
        Self::default()
    }

    /// `AES256` or `SM4`.
    pub fn service(algorithm: &str) -> Self {
        Self {
            algorithm: algorithm.to_owned(),
            ..Self::default()
        }
    }

    /// SSE-KMS with this CMK (empty = the managed one), SM4 data encryption or not.
    pub fn kms(key_id: &str, sm4: bool) -> Self {
        Self {
            algorithm: "KMS".to_owned(),
            key_id: if key_id.is_empty() {
                MANAGED_CMK_ID.to_owned()
            } else {
                key_id.to_owned()
            },
            data_encryption: if sm4 { "SM4".to_owned() } else { String::new() },
        }
    }

    /// The three response headers (only those that are set).
    fn headers(&self) -> Vec<(&'static str, &str)> {
        let mut headers = Vec::new();
        if !self.algorithm.is_empty() {
            headers.push(("x-oss-server-side-encryption", self.algorithm.as_str()));
        }
        if !self.key_id.is_empty() {
            headers.push(("x-oss-server-side-encryption-key-id", self.key_id.as_str()));
        }
        if !self.data_encryption.is_empty() {
            headers.push(("x-oss-server-side-data-encryption", self.data_encryption.as_str()));
        }
        headers
    }
}

/// One object as the emulator keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredObject {
    /// Quoted upper-case MD5 hex, as OSS reports a PutObject's.
    pub etag: String,
    pub size: u64,
    pub last_modified: Timestamp,
    pub content_type: String,
    /// `x-oss-meta-*` headers (names lower-cased).
    pub meta: Vec<(String, String)>,
    pub sse: ObjectSse,
}

/// Many objects at once: keys `<prefix><index zero-padded to width>` for index `0..count`,
/// object `i` encrypted as `encryptions[i % len]` (none when empty), modified one second after
/// the one before from `lastModified`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Seed {
    #[serde(default)]
    pub prefix: String,
    pub count: u64,
    #[serde(default)]
    pub encryptions: Vec<ObjectSse>,
    /// RFC 3339; default 2024-01-01T00:00:00Z.
    #[serde(default)]
    pub last_modified: Option<String>,
    #[serde(default)]
    pub size: u64,
}

/// A seed ready to answer: its width and start time fixed.
#[derive(Clone, Debug)]
struct Range {
    prefix: String,
    count: u64,
    width: usize,
    encryptions: Vec<ObjectSse>,
    start: Timestamp,
    size: u64,
}

impl Range {
    fn key(&self, index: u64) -> String {
        format!("{}{index:0width$}", self.prefix, width = self.width)
    }

    /// The index of `key` in this range, if it is one of its keys.
    fn index_of(&self, key: &str) -> Option<u64> {
        let digits = key.strip_prefix(&self.prefix)?;
        if digits.len() != self.width || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse::<u64>().ok().filter(|i| *i < self.count)
    }

    fn object(&self, index: u64) -> StoredObject {
        let sse = if self.encryptions.is_empty() {
            ObjectSse::none()
        } else {
            self.encryptions[(index % self.encryptions.len() as u64) as usize].clone()
        };
        StoredObject {
            etag: format!("\"{:032X}\"", u128::from(index) * 0x9E37_79B9_7F4A_7C15 + 1),
            size: self.size,
            last_modified: self
                .start
                .checked_add(jiff::SignedDuration::from_secs(index.min(i64::MAX as u64) as i64))
                .unwrap_or(self.start),
            content_type: "application/octet-stream".to_owned(),
            meta: Vec::new(),
            sse,
        }
    }

    /// The first index whose key is after `after` (exclusive) and not before `prefix`: keys of a
    /// range ascend with the index (zero-padded), so a binary search finds it.
    fn first_after(&self, after: &str, prefix: &str) -> u64 {
        let (mut low, mut high) = (0, self.count);
        while low < high {
            let mid = low + (high - low) / 2;
            let key = self.key(mid);
            if key.as_str() > after && key.as_str() >= prefix {
                high = mid;
            } else {
                low = mid + 1;
            }
        }
        low
    }
}

/// One bucket's objects: those put one by one, and seeded ranges.
#[derive(Debug, Default)]
struct BucketObjects {
    explicit: BTreeMap<String, StoredObject>,
    ranges: Vec<Range>,
}

impl BucketObjects {
    fn get(&self, key: &str) -> Option<StoredObject> {
        if let Some(object) = self.explicit.get(key) {
            return Some(object.clone());
        }
        self.ranges
            .iter()
            .find_map(|range| range.index_of(key).map(|i| range.object(i)))
    }

    /// Up to `limit` objects with the prefix, strictly after `after`, ascending; and whether more
    /// follow. An object put over a seeded key is listed once (the put one).
    fn page(&self, prefix: &str, after: &str, limit: usize) -> (Vec<(String, StoredObject)>, bool) {
        let want = limit + 1;
        let mut found: Vec<(String, u8, StoredObject)> = Vec::new();
        let start = if prefix > after {
            Bound::Included(prefix.to_owned())
        } else {
            Bound::Excluded(after.to_owned())
        };
        found.extend(
            self.explicit
                .range((start, Bound::Unbounded))
                .take_while(|(k, _)| k.starts_with(prefix))
                .take(want)
                .map(|(k, o)| (k.clone(), 0, o.clone())),
        );
        for range in &self.ranges {
            let first = range.first_after(after, prefix);
            let mut index = first;
            while index < range.count && index - first < want as u64 {
                let key = range.key(index);
                if !key.starts_with(prefix) {
                    break;
                }
                found.push((key, 1, range.object(index)));
                index += 1;
            }
        }
        found.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        found.dedup_by(|later, earlier| later.0 == earlier.0);
        let more = found.len() > limit;
        found.truncate(limit);
        (found.into_iter().map(|(k, _, o)| (k, o)).collect(), more)
    }
}

/// Every bucket's objects.
#[derive(Debug, Default)]
pub struct ObjectStore {
    buckets: HashMap<String, BucketObjects>,
}

impl ObjectStore {
    /// Stores (or replaces) one object.
    pub fn put(&mut self, bucket: &str, key: &str, object: StoredObject) {
        self.buckets
            .entry(bucket.to_owned())
            .or_default()
            .explicit
            .insert(key.to_owned(), object);
    }

    pub fn get(&self, bucket: &str, key: &str) -> Option<StoredObject> {
        self.buckets.get(bucket).and_then(|b| b.get(key))
    }

    /// Adds a seeded range; refused when it is too large or its start time does not parse.
    pub fn seed(&mut self, bucket: &str, seed: Seed) -> Result<(), String> {
        if seed.count > MAX_SEED {
            return Err(format!("count {} is more than {MAX_SEED}", seed.count));
        }
        let start = match &seed.last_modified {
            None => "2024-01-01T00:00:00Z".parse().expect("a valid timestamp"),
            Some(text) => text
                .parse::<Timestamp>()
                .map_err(|e| format!("lastModified {text:?}: {e}"))?,
        };
        for sse in &seed.encryptions {
            check_sse(sse).map_err(|f| f.message)?;
        }
        let width = seed.count.saturating_sub(1).to_string().len();
        let encryptions = seed
            .encryptions
            .into_iter()
            .map(|sse| match sse.algorithm.as_str() {
                "KMS" => ObjectSse::kms(&sse.key_id, sse.data_encryption == "SM4"),
                _ => ObjectSse::service(&sse.algorithm),
            })
            .collect();
        self.buckets
            .entry(bucket.to_owned())
            .or_default()
            .ranges
            .push(Range {
                prefix: seed.prefix,
                count: seed.count,
                width,
                encryptions,
                start,
                size: seed.size,
            });
        Ok(())
    }

    /// Up to `limit` of a bucket's objects with the prefix, strictly after `after`, ascending;
    /// and whether more follow.
    pub fn page(
        &self,
        bucket: &str,
        prefix: &str,
        after: &str,
        limit: usize,
    ) -> (Vec<(String, StoredObject)>, bool) {
        match self.buckets.get(bucket) {
            Some(objects) => objects.page(prefix, after, limit),
            None => (Vec::new(), false),
        }
    }

    /// Drops a bucket's objects (the bucket was deleted).
    pub fn remove_bucket(&mut self, bucket: &str) {
        self.buckets.remove(bucket);
    }

    /// Objects in a bucket (put and seeded; a put over a seeded key counted twice).
    pub fn count(&self, bucket: &str) -> u64 {
        self.buckets.get(bucket).map_or(0, |b| {
            b.explicit.len() as u64 + b.ranges.iter().map(|r| r.count).sum::<u64>()
        })
    }
}

/// Which object API a request is, if it is one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Route {
    List,
    Head,
    Put,
    Copy,
}

impl Route {
    /// The request's object API: ListObjectsV2 is `GET /?list-type=2`; the others name a key.
    pub(super) fn of(
        method: &Method,
        key: &str,
        query: &[(String, String)],
        headers: &HeaderMap,
    ) -> Option<Self> {
        match (method, key.is_empty()) {
            (&Method::GET, true) if query.iter().any(|(k, v)| k == "list-type" && v == "2") => {
                Some(Self::List)
            }
            (&Method::HEAD, false) if query.is_empty() => Some(Self::Head),
            (&Method::PUT, false) if query.is_empty() => Some(if headers.contains_key("x-oss-copy-source") {
                Self::Copy
            } else {
                Self::Put
            }),
            _ => None,
        }
    }

    /// The name the counters use.
    pub(super) fn api(self) -> &'static str {
        match self {
            Self::List => "ListObjectsV2",
            Self::Head => "HeadObject",
            Self::Put => "PutObject",
            Self::Copy => "CopyObject",
        }
    }
}

fn no_such_key() -> OssFault {
    OssFault::new(
        404,
        "NoSuchKey",
        "The specified key does not exist.",
        "0026-00000001",
    )
}

/// An authenticated object request on an existing bucket.
pub(super) struct ObjectRequest<'a> {
    pub bucket_name: &'a str,
    pub bucket: &'a Bucket,
    /// Decoded; empty for ListObjectsV2.
    pub key: &'a str,
    pub query: &'a [(String, String)],
    pub headers: &'a HeaderMap,
    pub body: &'a Bytes,
}

/// Answers an authenticated object request on an existing bucket.
pub(super) fn answer(
    state: &EmulatorState,
    route: Route,
    request: ObjectRequest<'_>,
) -> Result<(u16, Response), OssFault> {
    let ObjectRequest {
        bucket_name,
        bucket,
        key,
        query,
        headers,
        body,
    } = request;
    match route {
        Route::List => list(state, bucket_name, query),
        Route::Head => {
            let object = state.objects().get(bucket_name, key).ok_or_else(no_such_key)?;
            let mut response = empty_response(200);
            let h = response.headers_mut();
            set(h, "content-length", &object.size.to_string());
            set(h, "content-type", &object.content_type);
            set(h, "etag", &object.etag);
            set(h, "last-modified", &http_date(object.last_modified));
            set(h, "x-oss-object-type", "Normal");
            set(h, "x-oss-storage-class", "Standard");
            for (name, value) in object.sse.headers() {
                set(h, name, value);
            }
            for (name, value) in &object.meta {
                if let (Ok(name), Ok(value)) = (
                    axum::http::HeaderName::from_bytes(name.as_bytes()),
                    HeaderValue::from_str(value),
                ) {
                    h.insert(name, value);
                }
            }
            Ok((200, response))
        }
        Route::Put => {
            if let Some(md5) = header(headers, "content-md5")
                && md5 != crate::oss::content_md5(body)
            {
                return Err(OssFault::new(
                    400,
                    "InvalidDigest",
                    "The Content-MD5 you specified is not valid.",
                    "0002-00000016",
                ));
            }
            let sse = requested_sse(headers, bucket)?;
            let object = StoredObject {
                etag: format!("\"{}\"", crate::oss::sign::hex(&Md5::digest(body)).to_uppercase()),
                size: body.len() as u64,
                last_modified: state.now(),
                content_type: header(headers, "content-type")
                    .unwrap_or("application/octet-stream")
                    .to_owned(),
                meta: user_meta(headers),
                sse,
            };
            let mut response = empty_response(200);
            set(response.headers_mut(), "etag", &object.etag);
            for (name, value) in object.sse.headers() {
                set(response.headers_mut(), name, value);
            }
            state.objects().put(bucket_name, key, object);
            Ok((200, response))
        }
        Route::Copy => copy(state, bucket_name, bucket, key, headers),
    }
}

/// ListObjectsV2: `prefix`, exclusive `start-after`, `continuation-token` (wins over
/// start-after), `max-keys` 1..=1000 (default 100), `encoding-type` url or absent; a delimiter
/// is not implemented.
fn list(
    state: &EmulatorState,
    bucket: &str,
    query: &[(String, String)],
) -> Result<(u16, Response), OssFault> {
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    };
    if !param("delimiter").is_empty() {
        return Err(OssFault::new(
            501,
            "NotImplemented",
            "The OSS emulator does not implement ListObjectsV2 with a delimiter.",
            "0000-00000000",
        ));
    }
    let max_keys = match param("max-keys") {
        "" => 100,
        text => match text.parse::<u32>() {
            Ok(n) if (1..=crate::oss::objects::MAX_KEYS).contains(&n) => n,
            _ => {
                return Err(OssFault::invalid_argument(
                    format!(
                        "max-keys must be between 1 and 1000, not {:?}.",
                        text.chars().take(20).collect::<String>()
                    ),
                    "0017-00000289",
                ));
            }
        },
    };
    let url = match param("encoding-type") {
        "" => false,
        "url" => true,
        _ => {
            return Err(OssFault::invalid_argument(
                "The encoding-type parameter must be url.",
                "0017-00000290",
            ));
        }
    };
    let token = param("continuation-token");
    let after = if token.is_empty() {
        param("start-after").to_owned()
    } else {
        URL_SAFE_NO_PAD
            .decode(token)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(|| {
                OssFault::invalid_argument("The continuation token is not valid.", "0017-00000291")
            })?
    };
    let request = ObjectListRequest {
        prefix: param("prefix").to_owned(),
        start_after: param("start-after").to_owned(),
        continuation_token: token.to_owned(),
        max_keys,
    };
    let (objects, more) = state
        .objects()
        .page(bucket, &request.prefix, &after, max_keys as usize);
    let objects: Vec<ObjectSummary> = objects
        .into_iter()
        .map(|(key, object)| ObjectSummary {
            key,
            last_modified: object
                .last_modified
                .strftime("%Y-%m-%dT%H:%M:%S.000Z")
                .to_string(),
            etag: object.etag,
            size: object.size,
            storage_class: "Standard".to_owned(),
            object_type: "Normal".to_owned(),
        })
        .collect();
    let page = ObjectPage {
        is_truncated: more,
        next_continuation_token: if more {
            objects
                .last()
                .map(|o| URL_SAFE_NO_PAD.encode(o.key.as_bytes()))
                .unwrap_or_default()
        } else {
            String::new()
        },
        key_count: objects.len() as u64,
        objects,
        common_prefixes: Vec::new(),
    };
    Ok((200, xml_response(200, list_to_xml(bucket, &page, &request, url))))
}

/// CopyObject within the emulator: the source from `x-oss-copy-source` (`/bucket/<url-encoded
/// key>`, `/` escaped or not), its conditions, the metadata directive, and the request's SSE
/// headers (never the source's; the destination bucket's default when none are sent).
fn copy(
    state: &EmulatorState,
    bucket_name: &str,
    bucket: &Bucket,
    key: &str,
    headers: &HeaderMap,
) -> Result<(u16, Response), OssFault> {
    let source = header(headers, "x-oss-copy-source").unwrap_or("");
    let source = source.split_once('?').map_or(source, |(path, _)| path);
    let invalid_source = || {
        OssFault::invalid_argument(
            "Copy Source must mention the source bucket and key: /sourcebucket/sourcekey.",
            "0017-00000802",
        )
    };
    let (source_bucket, source_key) = source
        .strip_prefix('/')
        .and_then(|rest| rest.split_once('/'))
        .ok_or_else(invalid_source)?;
    let source_key = percent_decode(source_key);
    if source_key.is_empty() {
        return Err(invalid_source());
    }
    if state.bucket(source_bucket).is_none() {
        return Err(OssFault::no_such_bucket());
    }
    let directive = header(headers, "x-oss-metadata-directive").unwrap_or("COPY");
    if directive != "COPY" && directive != "REPLACE" {
        return Err(OssFault::invalid_argument(
            "The x-oss-metadata-directive header must be COPY or REPLACE.",
            "0017-00000803",
        ));
    }
    let original = state
        .objects()
        .get(source_bucket, &source_key)
        .ok_or_else(no_such_key)?;
    let unquoted = |etag: &str| etag.trim().trim_matches('"').to_ascii_uppercase();
    let precondition = || {
        OssFault::new(
            412,
            "PreconditionFailed",
            "At least one of the pre-conditions you specified did not hold.",
            "0026-00000011",
        )
    };
    if let Some(etag) = header(headers, "x-oss-copy-source-if-match")
        && unquoted(etag) != unquoted(&original.etag)
    {
        return Err(precondition());
    }
    if let Some(since) =
        header(headers, "x-oss-copy-source-if-unmodified-since").and_then(crate::oss::sign::parse_http_date)
        && original.last_modified > since
    {
        return Err(precondition());
    }
    let not_modified = header(headers, "x-oss-copy-source-if-none-match")
        .is_some_and(|etag| unquoted(etag) == unquoted(&original.etag))
        || header(headers, "x-oss-copy-source-if-modified-since")
            .and_then(crate::oss::sign::parse_http_date)
            .is_some_and(|since| original.last_modified <= since);
    if not_modified {
        return Ok((304, empty_response(304)));
    }
    let sse = requested_sse(headers, bucket)?;
    // An unversioned same-key copy takes the request's metadata whatever the directive says.
    let replace = directive == "REPLACE" || (source_bucket == bucket_name && source_key == key);
    let (content_type, meta) = if replace {
        (
            header(headers, "content-type")
                .unwrap_or("application/octet-stream")
                .to_owned(),
            user_meta(headers),
        )
    } else {
        (original.content_type.clone(), original.meta.clone())
    };
    let object = StoredObject {
        etag: original.etag.clone(),
        size: original.size,
        last_modified: state.now(),
        content_type,
        meta,
        sse,
    };
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<CopyObjectResult><ETag>{}</ETag><LastModified>{}</LastModified></CopyObjectResult>",
        quick_xml::escape::escape(&object.etag),
        object.last_modified.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    );
    let mut response = xml_response(200, body);
    for (name, value) in object.sse.headers() {
        set(response.headers_mut(), name, value);
    }
    state.objects().put(bucket_name, key, object);
    Ok((200, response))
}

/// The encryption an upload or copy asks for, checked as OSS checks it; without an
/// `x-oss-server-side-encryption` header, the bucket's default rule (none: not encrypted).
/// Data encryption counts only with KMS (OSS ignores it with AES256).
fn requested_sse(headers: &HeaderMap, bucket: &Bucket) -> Result<ObjectSse, OssFault> {
    let requested = ObjectSse {
        algorithm: header(headers, "x-oss-server-side-encryption")
            .unwrap_or("")
            .to_owned(),
        key_id: header(headers, "x-oss-server-side-encryption-key-id")
            .unwrap_or("")
            .to_owned(),
        data_encryption: header(headers, "x-oss-server-side-data-encryption")
            .unwrap_or("")
            .to_owned(),
    };
    check_sse(&requested)?;
    let chosen = if requested.algorithm.is_empty() {
        match &bucket.rule {
            None => return Ok(ObjectSse::none()),
            Some(rule) => ObjectSse {
                algorithm: rule.algorithm.clone(),
                key_id: rule.kms_master_key_id.clone(),
                data_encryption: rule.kms_data_encryption.clone(),
            },
        }
    } else {
        requested
    };
    Ok(match chosen.algorithm.as_str() {
        "KMS" => ObjectSse::kms(&chosen.key_id, chosen.data_encryption == "SM4"),
        other => ObjectSse::service(other),
    })
}

fn check_sse(sse: &ObjectSse) -> Result<(), OssFault> {
    match sse.algorithm.as_str() {
        "" if sse.key_id.is_empty() => Ok(()),
        "AES256" | "SM4" if sse.key_id.is_empty() => Ok(()),
        "KMS" if sse.data_encryption.is_empty() || sse.data_encryption == "SM4" => Ok(()),
        "KMS" => Err(OssFault::invalid_argument(
            "x-oss-server-side-data-encryption must be SM4.",
            "0005-00000203",
        )),
        "" | "AES256" | "SM4" => Err(OssFault::invalid_argument(
            "x-oss-server-side-encryption-key-id is applicable only with KMS.",
            "0005-00000204",
        )),
        _ => Err(OssFault::new(
            400,
            "InvalidEncryptionAlgorithmError",
            "The Encryption request you specified is not valid. Supported value: AES256/KMS/SM4",
            "0005-00000003",
        )),
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

fn user_meta(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(name, _)| name.as_str().starts_with("x-oss-meta-"))
        .filter_map(|(name, value)| {
            value
                .to_str()
                .ok()
                .map(|v| (name.as_str().to_owned(), v.to_owned()))
        })
        .collect()
}

fn set(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(prefix: &str, count: u64) -> Range {
        Range {
            prefix: prefix.into(),
            count,
            width: count.saturating_sub(1).to_string().len(),
            encryptions: vec![ObjectSse::none(), ObjectSse::service("AES256")],
            start: "2024-01-01T00:00:00Z".parse().unwrap(),
            size: 1,
        }
    }

    #[test]
    fn seeded_keys_are_found_and_paged_in_order() {
        let r = range("logs/", 1000);
        assert_eq!(r.key(7), "logs/007");
        assert_eq!(r.index_of("logs/007"), Some(7));
        assert_eq!(r.index_of("logs/07"), None);
        assert_eq!(r.index_of("logs/1000"), None);
        assert_eq!(r.first_after("", ""), 0);
        assert_eq!(r.first_after("logs/499", ""), 500);
        assert_eq!(r.first_after("", "logs/5"), 500);
        assert_eq!(r.object(3).sse, ObjectSse::service("AES256"));
        let mut objects = BucketObjects {
            ranges: vec![r],
            ..BucketObjects::default()
        };
        let put = StoredObject {
            size: 99,
            ..range("x", 1).object(0)
        };
        objects.explicit.insert("logs/0005".into(), put.clone());
        objects.explicit.insert("logs/005".into(), put);
        let (page, more) = objects.page("logs/00", "logs/003", 4);
        let keys: Vec<&str> = page.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            ["logs/004", "logs/005", "logs/006", "logs/007"],
            "logs/0005 sorts before logs/003"
        );
        assert!(more);
        assert_eq!(page[1].1.size, 99, "the put object wins over the seeded one");
        let (page, _) = objects.page("logs/000", "", 10);
        let keys: Vec<&str> = page.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["logs/000", "logs/0005"], "only keys with the prefix");
        let (page, more) = objects.page("logs/", "logs/998", 10);
        assert_eq!(page.len(), 1);
        assert!(!more);
        let (page, _) = objects.page("other", "", 10);
        assert!(page.is_empty());
    }

    #[test]
    fn sse_headers_are_checked_as_oss_checks_them() {
        let bucket = Bucket::default();
        let code = |pairs: &[(&'static str, &str)]| {
            let mut headers = HeaderMap::new();
            for (k, v) in pairs {
                headers.insert(*k, v.parse().unwrap());
            }
            requested_sse(&headers, &bucket)
                .map(|s| s.algorithm)
                .unwrap_or_else(|f| f.code.to_owned())
        };
        assert_eq!(code(&[]), "");
        assert_eq!(
            code(&[("x-oss-server-side-encryption", "DES")]),
            "InvalidEncryptionAlgorithmError"
        );
        assert_eq!(
            code(&[
                ("x-oss-server-side-encryption", "AES256"),
                ("x-oss-server-side-encryption-key-id", "k")
            ]),
            "InvalidArgument"
        );
        assert_eq!(
            code(&[
                ("x-oss-server-side-encryption", "AES256"),
                ("x-oss-server-side-data-encryption", "SM4")
            ]),
            "AES256"
        );
        let ruled = Bucket {
            rule: Some(super::super::state::StoredRule {
                algorithm: "KMS".into(),
                kms_master_key_id: String::new(),
                kms_data_encryption: "SM4".into(),
            }),
            ..Bucket::default()
        };
        assert_eq!(
            requested_sse(&HeaderMap::new(), &ruled).unwrap(),
            ObjectSse::kms("", true)
        );
    }
}
