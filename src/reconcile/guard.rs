//! A resource that does not deserialise still reaches the controller (as its metadata and the
//! reason), instead of failing the whole list or watch. kube's `DeserializeGuard` does the same,
//! but buffers every object as a `serde_value` tree and clones that tree before reading it: three
//! passes and two trees of allocations per object on every watch event. This guard takes the
//! object's JSON text from serde_json (no copy when reading from text) and parses it once; only
//! an object that does not parse is read a second time, for its metadata. Where the text is not
//! at hand (serde buffered the object first, as it does for a watch event whose `object` comes
//! before its `type`), the object is read through a `serde_json::Value` instead: slower, same
//! result.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use kube::core::error_boundary::InvalidObject;
use serde::Deserialize;
use serde::de::{self, DeserializeOwned, Deserializer, MapAccess, Visitor};
use serde_json::Value;

/// `K`, or why it is not one and the metadata it has.
#[derive(Clone, Debug)]
pub struct Guard<K>(pub Result<K, InvalidObject>);

/// The name under which serde_json hands a deserializer's raw JSON text to a visitor (its
/// `RawValue` protocol). A deserializer that does not know it reads the object as a map or a
/// newtype instead, which the guard also accepts.
const RAW_TEXT: &str = "$serde_json::private::RawValue";

/// All an unreadable object is read for.
#[derive(Deserialize)]
struct MetadataOnly {
    #[serde(default)]
    metadata: ObjectMeta,
}

impl<'de, K: DeserializeOwned + Resource> Deserialize<'de> for Guard<K> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_newtype_struct(RAW_TEXT, GuardVisitor(PhantomData))
    }
}

impl<K: DeserializeOwned> Guard<K> {
    /// From the object's JSON text: parsed once when it is a `K`.
    fn from_text<E: de::Error>(text: &str) -> Result<Self, E> {
        match serde_json::from_str::<K>(text) {
            Ok(object) => Ok(Self(Ok(object))),
            Err(error) => {
                let MetadataOnly { metadata } =
                    serde_json::from_str(text).map_err(|e| E::custom(without_position(&e)))?;
                Ok(Self::invalid(&error, metadata))
            }
        }
    }

    /// From the object as a JSON tree.
    fn from_tree<E: de::Error>(tree: &Value) -> Result<Self, E> {
        match K::deserialize(tree) {
            Ok(object) => Ok(Self(Ok(object))),
            Err(error) => {
                let MetadataOnly { metadata } =
                    MetadataOnly::deserialize(tree).map_err(|e| E::custom(without_position(&e)))?;
                Ok(Self::invalid(&error, metadata))
            }
        }
    }

    fn invalid(error: &serde_json::Error, metadata: ObjectMeta) -> Self {
        Self(Err(InvalidObject {
            error: without_position(error),
            metadata,
        }))
    }
}

struct GuardVisitor<K>(PhantomData<K>);

impl<'de, K: DeserializeOwned> Visitor<'de> for GuardVisitor<K> {
    type Value = Guard<K>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Kubernetes object")
    }

    /// serde_json's raw text (a one-entry map keyed `RAW_TEXT`), or an object as a plain map.
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let Some(first) = map.next_key::<Text<'de>>()? else {
            return Guard::from_tree(&Value::Object(serde_json::Map::new()));
        };
        if first.as_str() == RAW_TEXT {
            let text: Text<'de> = map.next_value()?;
            return Guard::from_text(text.as_str());
        }
        let mut tree = serde_json::Map::new();
        tree.insert(first.as_str().to_owned(), map.next_value()?);
        while let Some((key, value)) = map.next_entry::<String, Value>()? {
            tree.insert(key, value);
        }
        Guard::from_tree(&Value::Object(tree))
    }

    /// A deserializer that does not speak serde_json's raw protocol (serde's own buffer).
    fn visit_newtype_struct<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        Guard::from_tree(&Value::deserialize(deserializer)?)
    }
}

/// JSON text, borrowed from the input when it can be.
enum Text<'de> {
    Borrowed(&'de str),
    Owned(String),
}

impl Text<'_> {
    fn as_str(&self) -> &str {
        match self {
            Self::Borrowed(text) => text,
            Self::Owned(text) => text,
        }
    }
}

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("JSON text")
            }
            fn visit_borrowed_str<E: de::Error>(self, text: &'de str) -> Result<Self::Value, E> {
                Ok(Text::Borrowed(text))
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
                Ok(Text::Owned(text.to_owned()))
            }
            fn visit_string<E: de::Error>(self, text: String) -> Result<Self::Value, E> {
                Ok(Text::Owned(text))
            }
        }
        deserializer.deserialize_str(TextVisitor)
    }
}

/// serde_json's message without its " at line L column C" (a position in text nobody sees).
fn without_position(error: &serde_json::Error) -> String {
    let message = error.to_string();
    let position = format!(" at line {} column {}", error.line(), error.column());
    message
        .strip_suffix(&position)
        .map_or_else(|| message.clone(), str::to_owned)
}

impl<K: Resource> Resource for Guard<K> {
    type DynamicType = K::DynamicType;
    type Scope = K::Scope;

    fn kind(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::kind(dt)
    }

    fn group(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::group(dt)
    }

    fn version(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::version(dt)
    }

    fn plural(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::plural(dt)
    }

    fn meta(&self) -> &ObjectMeta {
        self.0.as_ref().map_or_else(|invalid| &invalid.metadata, K::meta)
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        self.0
            .as_mut()
            .map_or_else(|invalid| &mut invalid.metadata, K::meta_mut)
    }
}

#[cfg(test)]
mod tests {
    use kube::ResourceExt;
    use serde_json::json;

    use super::*;
    use crate::api::BucketEncryption;

    fn resource(spec: serde_json::Value) -> serde_json::Value {
        json!({"apiVersion": "oss.encryption.dev/v1alpha1", "kind": "BucketEncryption",
            "metadata": {"name": "b", "namespace": "team", "uid": "u-1"}, "spec": spec})
    }

    #[test]
    fn a_valid_object_reads_as_itself_from_text_and_from_a_value() {
        let document = resource(json!({"bucket": "logs", "region": "cn-hangzhou", "algorithm": "AES256"}));
        let from_text: Guard<BucketEncryption> = serde_json::from_str(&document.to_string()).unwrap();
        let from_value: Guard<BucketEncryption> = serde_json::from_value(document.clone()).unwrap();
        for guard in [from_text, from_value] {
            assert_eq!(guard.name_any(), "b");
            let object = guard.0.expect("a valid object reads");
            assert_eq!(object.spec.bucket, "logs");
            assert_eq!(
                serde_json::to_value(&object).unwrap()["spec"]["algorithm"],
                "AES256"
            );
        }
    }

    #[test]
    fn an_invalid_object_keeps_its_metadata_and_a_message_without_a_text_position() {
        let document = resource(json!({"bucket": "logs", "region": "cn-hangzhou", "algorithm": "ROT13"}));
        let guard: Guard<BucketEncryption> = serde_json::from_str(&document.to_string()).unwrap();
        assert_eq!(
            (guard.namespace().as_deref(), guard.uid().as_deref()),
            (Some("team"), Some("u-1"))
        );
        let invalid = guard.0.expect_err("an unknown algorithm does not read");
        assert!(invalid.error.contains("ROT13"), "{}", invalid.error);
        assert!(!invalid.error.contains(" at line "), "{}", invalid.error);
    }

    #[test]
    fn objects_in_a_list_are_guarded_one_by_one() {
        let list = json!({"apiVersion": "v1", "kind": "List", "metadata": {}, "items": [
            resource(json!({"bucket": "a", "region": "cn-hangzhou", "algorithm": "SM4"})),
            resource(json!({"bucket": 7})),
        ]});
        let read: kube::core::ObjectList<Guard<BucketEncryption>> =
            serde_json::from_str(&list.to_string()).unwrap();
        let readable: Vec<bool> = read.items.iter().map(|g| g.0.is_ok()).collect();
        assert_eq!(readable, [true, false]);
    }

    #[test]
    fn a_watch_event_carries_a_guarded_object() {
        let event = json!({"type": "MODIFIED", "object": resource(json!({"bucket": "a", "region": "r", "algorithm": "KMS"}))});
        let read: kube::core::WatchEvent<Guard<BucketEncryption>> =
            serde_json::from_str(&event.to_string()).unwrap();
        let kube::core::WatchEvent::Modified(guard) = read else {
            panic!("a MODIFIED event")
        };
        assert!(guard.0.is_ok());
    }

    #[test]
    fn a_watch_event_with_its_object_first_is_read_the_same() {
        let object = resource(json!({"bucket": "a", "region": "r", "algorithm": "KMS"}));
        let broken = resource(json!({"bucket": "a", "region": "r", "algorithm": "DES"}));
        for (object, readable) in [(object, true), (broken, false)] {
            // serde buffers the object when `object` comes before `type` (what `json!` writes).
            let text = format!("{{\"object\":{object},\"type\":\"ADDED\"}}");
            let read: kube::core::WatchEvent<Guard<BucketEncryption>> = serde_json::from_str(&text).unwrap();
            let kube::core::WatchEvent::Added(guard) = read else {
                panic!("an ADDED event")
            };
            assert_eq!((guard.0.is_ok(), guard.name_any()), (readable, "b".to_owned()));
        }
    }

    #[test]
    fn an_object_read_from_a_stream_or_a_tree_is_the_same() {
        let document = resource(json!({"bucket": "logs", "region": "cn-hangzhou", "algorithm": "SM4"}));
        let text = document.to_string();
        let from_reader: Guard<BucketEncryption> = serde_json::from_reader(text.as_bytes()).unwrap();
        let from_text: Guard<BucketEncryption> = serde_json::from_str(&text).unwrap();
        let (a, b) = (from_reader.0.unwrap(), from_text.0.unwrap());
        assert_eq!(
            serde_json::to_value(&a).unwrap(),
            serde_json::to_value(&b).unwrap()
        );
    }

    #[test]
    fn text_that_is_not_json_fails_the_whole_read() {
        assert!(serde_json::from_str::<Guard<BucketEncryption>>("{\"metadata\": ").is_err());
    }

    #[test]
    fn an_object_without_readable_metadata_fails_the_read_at_its_place_in_the_whole_text() {
        let list = json!({"apiVersion": "v1", "kind": "List", "metadata": {}, "items": [
            {"metadata": {"name": 5}},
        ]});
        let text = list.to_string();
        let error = serde_json::from_str::<kube::core::ObjectList<Guard<BucketEncryption>>>(&text)
            .expect_err("an object without metadata cannot be guarded");
        let item_starts = text.find(r#"{"metadata":{"name""#).unwrap();
        assert_eq!(error.to_string().matches(" at line ").count(), 1, "{error}");
        assert!(error.column() > item_starts, "{error}");
    }
}
