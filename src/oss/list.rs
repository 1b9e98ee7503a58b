//! ListBuckets (GetService): the request's parameters and the `ListAllMyBucketsResult` document,
//! read by local name (any order, namespaces, absent = empty) and written as OSS writes it.

use quick_xml::escape::escape;

use super::xml::{Node, XmlError, is_truncated, walk};

/// The most buckets one page may hold (`max-keys` is 1..=1000).
pub const MAX_KEYS: u32 = 1000;

/// One page's request: names starting with `prefix`, strictly after `marker`, at most `max_keys`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListRequest {
    pub prefix: String,
    pub marker: String,
    /// 1..=1000; 0 means OSS's default (100).
    pub max_keys: u32,
}

impl ListRequest {
    /// The query as the client sends it: only the set parameters (empty `prefix`/`marker` are
    /// absent, as OSS treats them), sorted by name, as the v2 SDK does.
    pub fn query(&self) -> Vec<(String, String)> {
        let mut query = Vec::new();
        if !self.marker.is_empty() {
            query.push(("marker".to_owned(), self.marker.clone()));
        }
        if self.max_keys > 0 {
            query.push(("max-keys".to_owned(), self.max_keys.to_string()));
        }
        if !self.prefix.is_empty() {
            query.push(("prefix".to_owned(), self.prefix.clone()));
        }
        query
    }
}

/// One bucket as ListBuckets reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BucketSummary {
    pub name: String,
    /// Region id (`cn-hangzhou`): `Region`, else `Location` without its `oss-` prefix.
    pub region: String,
    /// `oss-<region>`.
    pub location: String,
    /// ISO-8601 with milliseconds, `2014-05-14T11:18:32.000Z`.
    pub creation_date: String,
    pub storage_class: String,
    pub extranet_endpoint: String,
    pub intranet_endpoint: String,
}

/// One page of the listing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BucketPage {
    pub buckets: Vec<BucketSummary>,
    /// More buckets follow: ask again with `marker = next_marker`.
    pub is_truncated: bool,
    pub next_marker: String,
    /// The account's uid (`Owner/ID`).
    pub owner: String,
}

const ROOT: &str = "ListAllMyBucketsResult";

/// The most pages one listing follows (10 million buckets, far past any account's quota): a
/// server that keeps answering `IsTruncated` past it is not OSS.
pub const MAX_PAGES: usize = 10_000;

/// Why a truncated page's `NextMarker` cannot be followed, if it cannot: OSS lists names in
/// ascending order and the marker is the last name of the page, so it is a valid bucket name
/// strictly after the marker asked with; and page `number` (from 1) is within [`MAX_PAGES`].
/// A marker that does not advance, or grows without end, would page forever.
pub fn marker_problem(asked: &str, next: &str, number: usize) -> Option<String> {
    if number >= MAX_PAGES {
        return Some(format!(
            "the listing is still truncated after {number} pages; not followed further"
        ));
    }
    if crate::oss::endpoint::validate_bucket_name(next).is_err() {
        return Some(format!(
            "NextMarker \"{}\" is not a bucket name; the listing was not followed",
            printable(next)
        ));
    }
    if next <= asked {
        return Some(format!(
            "NextMarker \"{}\" does not advance past marker \"{}\"; the listing was not followed",
            printable(next),
            printable(asked)
        ));
    }
    None
}

/// `text` safe to show on a terminal or in a YAML comment: control characters (newlines, ESC,
/// BEL, CR, …) escaped as `\n`, `\u{1b}`, …; at most 1,000 characters.
pub fn printable(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars().take(1000) {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    if text.chars().count() > 1000 {
        out.push('…');
    }
    out
}

impl super::pages::Paged for BucketPage {
    fn next_cursor(&self) -> Option<&str> {
        self.is_truncated.then_some(self.next_marker.as_str())
    }
}

/// Reads a `ListAllMyBucketsResult` body.
pub fn parse(xml: &str) -> Result<BucketPage, XmlError> {
    let mut page = BucketPage::default();
    let mut truncated = String::new();
    walk(xml, ROOT, |node| {
        match node {
            Node::Open { path, name } => {
                if name == "Bucket" && path.last().is_some_and(|p| p == "Buckets") {
                    page.buckets.push(BucketSummary::default());
                }
            }
            Node::Close { path, name, text } => {
                let parent = path.last().map(String::as_str).unwrap_or("");
                match (parent, name) {
                    (ROOT, "IsTruncated") => truncated = text,
                    (ROOT, "NextMarker") => page.next_marker = text,
                    ("Owner", "ID") => page.owner = text,
                    ("Bucket", field) => {
                        if let Some(bucket) = page.buckets.last_mut() {
                            let slot = match field {
                                "Name" => &mut bucket.name,
                                "Region" => &mut bucket.region,
                                "Location" => &mut bucket.location,
                                "CreationDate" => &mut bucket.creation_date,
                                "StorageClass" => &mut bucket.storage_class,
                                "ExtranetEndpoint" => &mut bucket.extranet_endpoint,
                                "IntranetEndpoint" => &mut bucket.intranet_endpoint,
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
    for bucket in &mut page.buckets {
        if bucket.name.is_empty() {
            return Err(XmlError::Missing("Bucket/Name"));
        }
        if bucket.region.is_empty() {
            bucket.region = bucket
                .location
                .strip_prefix("oss-")
                .unwrap_or(&bucket.location)
                .to_owned();
        }
    }
    if page.is_truncated && page.next_marker.is_empty() {
        return Err(XmlError::Missing("NextMarker"));
    }
    Ok(page)
}

/// Writes a page as OSS does: the paging elements only when truncated (with the request's echo),
/// every bucket field oss2 requires, children in alphabetical order.
pub fn to_xml(page: &BucketPage, request: &ListRequest) -> String {
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListAllMyBucketsResult>");
    if page.is_truncated {
        xml.push_str(&format!(
            "<Prefix>{}</Prefix><Marker>{}</Marker><MaxKeys>{}</MaxKeys><IsTruncated>true</IsTruncated><NextMarker>{}</NextMarker>",
            escape(&request.prefix),
            escape(&request.marker),
            if request.max_keys == 0 { 100 } else { request.max_keys },
            escape(&page.next_marker)
        ));
    }
    xml.push_str(&format!(
        "<Owner><ID>{0}</ID><DisplayName>{0}</DisplayName></Owner><Buckets>",
        escape(&page.owner)
    ));
    for b in &page.buckets {
        xml.push_str(&format!(
            "<Bucket><CreationDate>{}</CreationDate><ExtranetEndpoint>{}</ExtranetEndpoint><IntranetEndpoint>{}</IntranetEndpoint><Location>{}</Location><Name>{}</Name><Region>{}</Region><StorageClass>{}</StorageClass></Bucket>",
            escape(&b.creation_date),
            escape(&b.extranet_endpoint),
            escape(&b.intranet_endpoint),
            escape(&b.location),
            escape(&b.name),
            escape(&b.region),
            escape(&b.storage_class),
        ));
    }
    xml.push_str("</Buckets></ListAllMyBucketsResult>");
    xml
}

#[cfg(test)]
mod tests;
