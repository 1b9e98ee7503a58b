//! XML bodies: `ServerSideEncryptionRule` (both directions) and OSS `Error` documents.
//!
//! Writing matches the official SDKs byte for byte (no declaration, no whitespace, element order
//! SSEAlgorithm, KMSMasterKeyID, KMSDataEncryption, empty elements omitted). Reading matches on
//! local names, accepts any element order and namespaces, and treats absent as empty.

use quick_xml::Reader;
use quick_xml::escape::escape;
use quick_xml::events::Event;

use super::rule::EncryptionRule;

/// The body could not be read as the expected document.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    #[error("not well-formed XML: {0}")]
    Malformed(String),
    #[error("expected root element <{expected}>, found <{found}>")]
    UnexpectedRoot { expected: &'static str, found: String },
    #[error("missing element <{0}>")]
    Missing(&'static str),
}

/// A leaf element: its parent's local name, its own local name, and its text.
#[derive(Debug)]
struct Leaf {
    parent: String,
    name: String,
    text: String,
}

/// An element still open while reading: its name, whether it has child elements, its text so far.
struct Open {
    name: String,
    has_children: bool,
    text: String,
}

fn local_name(name: quick_xml::name::LocalName<'_>) -> String {
    String::from_utf8_lossy(name.as_ref()).into_owned()
}

/// Reads a document into its root's local name and every leaf element (by local name).
fn read_leaves(xml: &str) -> Result<(String, Vec<Leaf>), XmlError> {
    let malformed = |e: &dyn std::fmt::Display| XmlError::Malformed(e.to_string());
    let mut reader = Reader::from_str(xml);
    reader.config_mut().trim_text(true);
    let mut stack: Vec<Open> = Vec::new();
    let mut root: Option<String> = None;
    let mut leaves = Vec::new();
    loop {
        let (name, is_empty) = match reader.read_event().map_err(|e| malformed(&e))? {
            Event::Start(start) => (local_name(start.local_name()), false),
            Event::Empty(empty) => (local_name(empty.local_name()), true),
            Event::Text(t) => {
                let open = stack
                    .last_mut()
                    .ok_or_else(|| malformed(&"text outside the root element"))?;
                open.text.push_str(&t.unescape().map_err(|e| malformed(&e))?);
                continue;
            }
            Event::CData(c) => {
                let open = stack
                    .last_mut()
                    .ok_or_else(|| malformed(&"CDATA outside the root element"))?;
                open.text.push_str(&String::from_utf8_lossy(&c.into_inner()));
                continue;
            }
            Event::End(end) => {
                let name = local_name(end.local_name());
                let open = stack.pop().ok_or_else(|| malformed(&"unbalanced end tag"))?;
                if open.name != name {
                    return Err(malformed(&format!("</{name}> closes <{}>", open.name)));
                }
                if let (false, Some(parent)) = (open.has_children, stack.last()) {
                    leaves.push(Leaf {
                        parent: parent.name.clone(),
                        name,
                        text: open.text,
                    });
                }
                continue;
            }
            Event::Eof => break,
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) | Event::DocType(_) => continue,
        };
        match stack.last_mut() {
            Some(parent) => parent.has_children = true,
            None if root.is_none() => root = Some(name.clone()),
            None => return Err(malformed(&"more than one root element")),
        }
        if is_empty {
            if let Some(parent) = stack.last() {
                leaves.push(Leaf {
                    parent: parent.name.clone(),
                    name,
                    text: String::new(),
                });
            }
        } else {
            stack.push(Open {
                name,
                has_children: false,
                text: String::new(),
            });
        }
    }
    if let Some(open) = stack.last() {
        return Err(malformed(&format!("<{}> is never closed", open.name)));
    }
    let root = root.ok_or_else(|| malformed(&"empty document"))?;
    Ok((root, leaves))
}

/// One step of [`walk`]: an element opens, or closes with the text it held.
pub(crate) enum Node<'a> {
    /// `<name>` inside `path` (the enclosing elements, outermost first).
    Open { path: &'a [String], name: &'a str },
    /// `</name>` inside `path`, with its text (trimmed, unescaped; empty for a parent element).
    Close {
        path: &'a [String],
        name: &'a str,
        text: String,
    },
}

/// Streams an OSS listing body element by element to `visit`, checking what every listing reader
/// needs: the root element is `root`, end tags match, nothing is left open. Self-closed elements
/// are checked as a root and otherwise skipped (absent and empty read alike).
pub(crate) fn walk(
    xml: &str,
    root: &'static str,
    mut visit: impl FnMut(Node<'_>) -> Result<(), XmlError>,
) -> Result<(), XmlError> {
    let malformed = |e: &dyn std::fmt::Display| XmlError::Malformed(e.to_string());
    let check_root = |path: &[String], name: &str| {
        if path.is_empty() && name != root {
            return Err(XmlError::UnexpectedRoot {
                expected: root,
                found: name.to_owned(),
            });
        }
        Ok(())
    };
    let mut reader = Reader::from_str(xml);
    reader.config_mut().trim_text(true);
    let mut path: Vec<String> = Vec::new();
    let mut text = String::new();
    loop {
        match reader.read_event().map_err(|e| malformed(&e))? {
            Event::Start(start) => {
                let name = local_name(start.local_name());
                check_root(&path, &name)?;
                visit(Node::Open {
                    path: &path,
                    name: &name,
                })?;
                path.push(name);
                text.clear();
            }
            Event::Empty(empty) => check_root(&path, &local_name(empty.local_name()))?,
            Event::Text(t) => text.push_str(&t.unescape().map_err(|e| malformed(&e))?),
            Event::CData(c) => text.push_str(&String::from_utf8_lossy(&c.into_inner())),
            Event::End(end) => {
                let name = local_name(end.local_name());
                if path.pop().as_deref() != Some(name.as_str()) {
                    return Err(malformed(&format!("unbalanced </{name}>")));
                }
                visit(Node::Close {
                    path: &path,
                    name: &name,
                    text: std::mem::take(&mut text),
                })?;
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !path.is_empty() {
        return Err(malformed(&format!("<{}> is never closed", path.join("/"))));
    }
    Ok(())
}

/// A listing's `IsTruncated`: `true`, or `false` (also when absent); anything else is malformed.
pub(crate) fn is_truncated(text: &str) -> Result<bool, XmlError> {
    match text {
        "" | "false" => Ok(false),
        "true" => Ok(true),
        other => Err(XmlError::Malformed(format!(
            "IsTruncated is {other:?}, not true or false"
        ))),
    }
}

fn find<'a>(leaves: &'a [Leaf], parent: &str, name: &str) -> Option<&'a str> {
    leaves
        .iter()
        .find(|l| l.name == name && l.parent == parent)
        .map(|l| l.text.as_str())
}

/// The rule as the wire strings carry it (empty = absent); the emulator validates these itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RawRule {
    pub algorithm: String,
    pub kms_master_key_id: String,
    pub kms_data_encryption: String,
}

impl From<&EncryptionRule> for RawRule {
    fn from(rule: &EncryptionRule) -> Self {
        Self {
            algorithm: rule.algorithm.as_str().to_owned(),
            kms_master_key_id: rule.kms_master_key_id.clone().unwrap_or_default(),
            kms_data_encryption: rule
                .kms_data_encryption
                .map(|d| d.as_str().to_owned())
                .unwrap_or_default(),
        }
    }
}

const RULE_ROOT: &str = "ServerSideEncryptionRule";
const RULE_DEFAULT: &str = "ApplyServerSideEncryptionByDefault";

/// Reads a `ServerSideEncryptionRule` document into its wire strings.
pub fn parse_rule(xml: &str) -> Result<RawRule, XmlError> {
    let (root, leaves) = read_leaves(xml)?;
    if root != RULE_ROOT {
        return Err(XmlError::UnexpectedRoot {
            expected: RULE_ROOT,
            found: root,
        });
    }
    let algorithm = find(&leaves, RULE_DEFAULT, "SSEAlgorithm").ok_or(XmlError::Missing("SSEAlgorithm"))?;
    Ok(RawRule {
        algorithm: algorithm.to_owned(),
        kms_master_key_id: find(&leaves, RULE_DEFAULT, "KMSMasterKeyID")
            .unwrap_or("")
            .to_owned(),
        kms_data_encryption: find(&leaves, RULE_DEFAULT, "KMSDataEncryption")
            .unwrap_or("")
            .to_owned(),
    })
}

/// Writes the PutBucketEncryption body exactly as the official SDKs do.
pub fn rule_to_xml(rule: &EncryptionRule) -> String {
    let mut xml = String::with_capacity(200);
    xml.push_str("<ServerSideEncryptionRule><ApplyServerSideEncryptionByDefault><SSEAlgorithm>");
    xml.push_str(rule.algorithm.as_str());
    xml.push_str("</SSEAlgorithm>");
    if let Some(key) = rule.kms_master_key_id.as_deref().filter(|k| !k.is_empty()) {
        xml.push_str("<KMSMasterKeyID>");
        xml.push_str(&escape(key));
        xml.push_str("</KMSMasterKeyID>");
    }
    if let Some(data) = rule.kms_data_encryption {
        xml.push_str("<KMSDataEncryption>");
        xml.push_str(data.as_str());
        xml.push_str("</KMSDataEncryption>");
    }
    xml.push_str("</ApplyServerSideEncryptionByDefault></ServerSideEncryptionRule>");
    xml
}

/// Writes a GetBucketEncryption response body from wire strings (what OSS stored).
pub fn raw_rule_to_xml(rule: &RawRule) -> String {
    let mut xml = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ServerSideEncryptionRule>\n  <ApplyServerSideEncryptionByDefault>\n",
    );
    xml.push_str(&format!(
        "    <SSEAlgorithm>{}</SSEAlgorithm>\n",
        escape(&rule.algorithm)
    ));
    if !rule.kms_master_key_id.is_empty() {
        xml.push_str(&format!(
            "    <KMSMasterKeyID>{}</KMSMasterKeyID>\n",
            escape(&rule.kms_master_key_id)
        ));
    }
    if !rule.kms_data_encryption.is_empty() {
        xml.push_str(&format!(
            "    <KMSDataEncryption>{}</KMSDataEncryption>\n",
            escape(&rule.kms_data_encryption)
        ));
    }
    xml.push_str("  </ApplyServerSideEncryptionByDefault>\n</ServerSideEncryptionRule>\n");
    xml
}

/// An OSS `<Error>` document. Empty strings stand for absent elements.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
    pub request_id: String,
    pub host_id: String,
    pub ec: String,
    pub bucket_name: String,
    /// Only on `SignatureDoesNotMatch`: what OSS signed (helps find a signing bug).
    pub string_to_sign: String,
    pub access_key_id: String,
    pub recommend_doc: String,
}

/// Reads an OSS `<Error>` document (any namespace, any element order).
pub fn parse_error(xml: &str) -> Result<ErrorBody, XmlError> {
    let (root, leaves) = read_leaves(xml)?;
    if root != "Error" {
        return Err(XmlError::UnexpectedRoot {
            expected: "Error",
            found: root,
        });
    }
    let get = |name| find(&leaves, "Error", name).unwrap_or("").to_owned();
    Ok(ErrorBody {
        code: get("Code"),
        message: get("Message"),
        request_id: get("RequestId"),
        host_id: get("HostId"),
        ec: get("EC"),
        bucket_name: get("BucketName"),
        string_to_sign: get("StringToSign"),
        access_key_id: get("OSSAccessKeyId"),
        recommend_doc: get("RecommendDoc"),
    })
}

/// Writes an `<Error>` document in OSS's shape (as the emulator answers).
pub fn error_to_xml(body: &ErrorBody) -> String {
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error>\n");
    let mut element = |name: &str, value: &str| {
        if !value.is_empty() {
            xml.push_str(&format!("  <{name}>{}</{name}>\n", escape(value)));
        }
    };
    element("Code", &body.code);
    element("Message", &body.message);
    element("RequestId", &body.request_id);
    element("HostId", &body.host_id);
    element("BucketName", &body.bucket_name);
    element("OSSAccessKeyId", &body.access_key_id);
    element("StringToSign", &body.string_to_sign);
    if !body.string_to_sign.is_empty() {
        let bytes: Vec<String> = body.string_to_sign.bytes().map(|b| format!("{b:02x}")).collect();
        element("StringToSignBytes", &bytes.join(" "));
    }
    element("EC", &body.ec);
    element("RecommendDoc", &body.recommend_doc);
    xml.push_str("</Error>\n");
    xml
}

#[cfg(test)]
mod tests;
