//! The three patch kinds the operator sends, as pure functions over JSON:
//! JSON merge patch (RFC 7386), JSON patch (RFC 6902), and a simplified server-side apply
//! with managed fields (see `mod.rs` for what it simplifies).

use serde_json::{Map, Value};

/// RFC 7386: objects merge recursively, `null` deletes, everything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let target = target.as_object_mut().expect("made an object above");
    for (key, value) in patch {
        if value.is_null() {
            target.remove(key);
        } else {
            merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

/// Why a JSON patch could not be applied.
#[derive(Debug, PartialEq, Eq)]
pub struct JsonPatchError(pub String);

fn pointer_tokens(path: &str) -> Result<Vec<String>, JsonPatchError> {
    if path.is_empty() {
        return Ok(Vec::new());
    }
    let rest = path
        .strip_prefix('/')
        .ok_or_else(|| JsonPatchError(format!("invalid JSON pointer {path:?}")))?;
    Ok(rest
        .split('/')
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect())
}

fn parent_of<'a>(doc: &'a mut Value, tokens: &[String]) -> Result<&'a mut Value, JsonPatchError> {
    let mut node = doc;
    for token in tokens {
        node = match node {
            Value::Object(map) => map
                .get_mut(token)
                .ok_or_else(|| JsonPatchError(format!("path segment {token:?} does not exist")))?,
            Value::Array(items) => {
                let index: usize = token
                    .parse()
                    .map_err(|_| JsonPatchError(format!("bad index {token:?}")))?;
                items
                    .get_mut(index)
                    .ok_or_else(|| JsonPatchError(format!("index {index} out of range")))?
            }
            _ => return Err(JsonPatchError(format!("cannot descend into {token:?}"))),
        };
    }
    Ok(node)
}

fn add(doc: &mut Value, path: &str, value: Value) -> Result<(), JsonPatchError> {
    let tokens = pointer_tokens(path)?;
    let Some((last, parents)) = tokens.split_last() else {
        *doc = value;
        return Ok(());
    };
    match parent_of(doc, parents)? {
        Value::Object(map) => {
            map.insert(last.clone(), value);
        }
        Value::Array(items) => {
            let index = if last == "-" {
                items.len()
            } else {
                last.parse()
                    .map_err(|_| JsonPatchError(format!("bad index {last:?}")))?
            };
            if index > items.len() {
                return Err(JsonPatchError(format!("index {index} out of range")));
            }
            items.insert(index, value);
        }
        _ => return Err(JsonPatchError(format!("cannot add at {path:?}"))),
    }
    Ok(())
}

fn remove(doc: &mut Value, path: &str) -> Result<Value, JsonPatchError> {
    let tokens = pointer_tokens(path)?;
    let (last, parents) = tokens
        .split_last()
        .ok_or_else(|| JsonPatchError("cannot remove the whole document".into()))?;
    match parent_of(doc, parents)? {
        Value::Object(map) => map
            .remove(last)
            .ok_or_else(|| JsonPatchError(format!("{path:?} does not exist"))),
        Value::Array(items) => {
            let index: usize = last
                .parse()
                .map_err(|_| JsonPatchError(format!("bad index {last:?}")))?;
            if index >= items.len() {
                return Err(JsonPatchError(format!("index {index} out of range")));
            }
            Ok(items.remove(index))
        }
        _ => Err(JsonPatchError(format!("cannot remove {path:?}"))),
    }
}

fn get(doc: &Value, path: &str) -> Result<Value, JsonPatchError> {
    doc.pointer(path)
        .cloned()
        .ok_or_else(|| JsonPatchError(format!("{path:?} does not exist")))
}

/// RFC 6902 over a document; all or nothing (the document is untouched on error).
pub fn json_patch(doc: &mut Value, patch: &Value) -> Result<(), JsonPatchError> {
    let ops = patch
        .as_array()
        .ok_or_else(|| JsonPatchError("a JSON patch must be an array".into()))?;
    let mut work = doc.clone();
    for op in ops {
        let field = |name: &str| {
            op.get(name)
                .and_then(Value::as_str)
                .ok_or_else(|| JsonPatchError(format!("operation lacks {name:?}")))
        };
        let path = field("path")?;
        match field("op")? {
            "add" => add(&mut work, path, op.get("value").cloned().unwrap_or(Value::Null))?,
            "remove" => {
                remove(&mut work, path)?;
            }
            "replace" => {
                remove(&mut work, path)?;
                add(&mut work, path, op.get("value").cloned().unwrap_or(Value::Null))?;
            }
            "test" => {
                if get(&work, path)? != op.get("value").cloned().unwrap_or(Value::Null) {
                    return Err(JsonPatchError(format!("test failed at {path:?}")));
                }
            }
            "move" => {
                let value = remove(&mut work, field("from")?)?;
                add(&mut work, path, value)?;
            }
            "copy" => {
                let value = get(&work, field("from")?)?;
                add(&mut work, path, value)?;
            }
            other => return Err(JsonPatchError(format!("unknown operation {other:?}"))),
        }
    }
    *doc = work;
    Ok(())
}

/// A field path inside an object, e.g. `["status", "lastRequestId"]`.
pub type FieldPath = Vec<String>;

/// Metadata fields that managers own (the rest of metadata is the server's).
const OWNED_METADATA: &[&str] = &["labels", "annotations", "finalizers", "ownerReferences"];

/// Metadata lists that are sets (`listType=set`): managedFields names each element as
/// `v:<json>` and an Update that creates the list owns it as `"."`; other lists are atomic.
const SET_METADATA: &[&str] = &["finalizers"];

/// The path component naming one element of a set list (`v:"example.com/one"`).
fn set_element(value: &Value) -> String {
    format!("v:{value}")
}

/// The element a `v:<json>` path component names, if `key` is one.
fn parse_set_element(key: &str) -> Option<Value> {
    key.strip_prefix("v:")
        .and_then(|json| serde_json::from_str(json).ok())
}

/// The leaf fields a (partial) object sets. Lists are atomic leaves (set lists give one leaf
/// per element); so is a map's absence.
pub fn leaf_fields(object: &Value) -> Vec<FieldPath> {
    fn walk(value: &Value, prefix: &mut FieldPath, out: &mut Vec<FieldPath>) {
        match value {
            Value::Object(map) if !map.is_empty() => {
                for (key, child) in map {
                    prefix.push(key.clone());
                    walk(child, prefix, out);
                    prefix.pop();
                }
            }
            _ => out.push(prefix.clone()),
        }
    }
    let mut out = Vec::new();
    let Some(map) = object.as_object() else {
        return out;
    };
    for (key, value) in map {
        match key.as_str() {
            "apiVersion" | "kind" => {}
            "metadata" => {
                for owned in OWNED_METADATA {
                    let path = vec!["metadata".into(), owned.to_string()];
                    match value.get(owned) {
                        Some(Value::Array(items)) if SET_METADATA.contains(owned) => {
                            for item in items {
                                let mut element = path.clone();
                                element.push(set_element(item));
                                out.push(element);
                            }
                        }
                        Some(child) => walk(child, &mut path.clone(), &mut out),
                        None => {}
                    }
                }
            }
            _ => walk(value, &mut vec![key.clone()], &mut out),
        }
    }
    out
}

/// The value at a field path, if present (a `v:<json>` component is a set list's element).
pub fn value_at<'a>(object: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(object, |node, key| match node {
        Value::Array(items) => {
            let wanted = parse_set_element(key)?;
            items.iter().find(|item| **item == wanted)
        }
        _ => node.get(key),
    })
}

/// Removes the value at a field path (and maps it leaves empty).
pub fn remove_at(object: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    if parents.is_empty() {
        match object {
            Value::Object(map) => {
                map.remove(last);
            }
            Value::Array(items) => {
                if let Some(element) = parse_set_element(last) {
                    items.retain(|item| *item != element);
                }
            }
            _ => {}
        }
        return;
    }
    if let Some(parent) = object.get_mut(&parents[0]) {
        remove_at(parent, &path[1..]);
        if parent.as_object().is_some_and(Map::is_empty) || parent.as_array().is_some_and(Vec::is_empty) {
            object.as_object_mut().expect("has a child").remove(&parents[0]);
        }
    }
}

/// `fieldsV1` form of a set of paths: `{"f:status": {"f:lastRequestId": {}}}`.
pub fn fields_v1(paths: &[FieldPath]) -> Value {
    let mut root = Map::new();
    for path in paths {
        let mut node = &mut root;
        for key in path {
            let key = if key == "." || key.starts_with("v:") {
                key.clone()
            } else {
                format!("f:{key}")
            };
            node = node
                .entry(key)
                .or_insert_with(|| Value::Object(Map::new()))
                .as_object_mut()
                .expect("fieldsV1 nodes are objects");
        }
    }
    Value::Object(root)
}

/// The non-empty maps (and set lists) an object sets, each as its path plus `"."` (the map
/// itself, which an Update that creates it owns, as `".": {}` in `fieldsV1`). Same scope as
/// [`leaf_fields`].
pub fn map_nodes(object: &Value) -> Vec<FieldPath> {
    fn walk(value: &Value, prefix: &mut FieldPath, out: &mut Vec<FieldPath>) {
        if let Value::Object(map) = value
            && !map.is_empty()
        {
            let mut node = prefix.clone();
            node.push(".".into());
            out.push(node);
            for (key, child) in map {
                prefix.push(key.clone());
                walk(child, prefix, out);
                prefix.pop();
            }
        }
    }
    let mut out = Vec::new();
    let Some(map) = object.as_object() else {
        return out;
    };
    for (key, value) in map {
        match key.as_str() {
            "apiVersion" | "kind" => {}
            "metadata" => {
                for owned in OWNED_METADATA {
                    let mut path = vec!["metadata".into(), owned.to_string()];
                    match value.get(owned) {
                        Some(Value::Array(items)) if SET_METADATA.contains(owned) && !items.is_empty() => {
                            path.push(".".into());
                            out.push(path);
                        }
                        Some(child) => walk(child, &mut path, &mut out),
                        None => {}
                    }
                }
            }
            _ => walk(value, &mut vec![key.clone()], &mut out),
        }
    }
    out
}

/// Whether `object` has what `path` names (for a map node, the map).
pub fn has_field(object: &Value, path: &[String]) -> bool {
    match path.split_last() {
        Some((last, parent)) if last == "." => {
            value_at(object, parent).is_some_and(|node| node.is_object() || node.is_array())
        }
        _ => value_at(object, path).is_some(),
    }
}

/// Paths back from `fieldsV1`.
pub fn paths_of(fields: &Value) -> Vec<FieldPath> {
    fn walk(value: &Value, prefix: &mut FieldPath, out: &mut Vec<FieldPath>) {
        let children: Vec<(&String, &Value)> = value
            .as_object()
            .map(|m| {
                m.iter()
                    .filter(|(k, _)| k.starts_with("f:") || k.starts_with("v:"))
                    .collect()
            })
            .unwrap_or_default();
        if value.get(".").is_some() {
            let mut node = prefix.clone();
            node.push(".".into());
            out.push(node);
        }
        if children.is_empty() {
            if !prefix.is_empty() && value.get(".").is_none() {
                out.push(prefix.clone());
            }
            return;
        }
        for (key, child) in children {
            let component = key.strip_prefix("f:").unwrap_or(key);
            prefix.push(component.to_owned());
            walk(child, prefix, out);
            prefix.pop();
        }
    }
    let mut out = Vec::new();
    walk(fields, &mut Vec::new(), &mut out);
    out
}

/// Server-side apply's merge of a `listType=set` list (structured-merge-diff's order): the live
/// list's order is kept; an applied element the live list lacks goes in before the next applied
/// element the live list has (or at the end); no element twice.
pub fn merge_set(live: &[Value], applied: &[Value]) -> Vec<Value> {
    let (mut lhs, mut rhs) = (live, applied);
    let mut out: Vec<Value> = Vec::new();
    while !lhs.is_empty() || !rhs.is_empty() {
        let next = if lhs.is_empty() {
            let (first, rest) = rhs.split_first().expect("not empty");
            rhs = rest;
            first
        } else if rhs.is_empty() || !applied.contains(&lhs[0]) || live.contains(&rhs[0]) {
            let (first, rest) = lhs.split_first().expect("not empty");
            lhs = rest;
            first
        } else {
            let (first, rest) = rhs.split_first().expect("not empty");
            rhs = rest;
            first
        };
        if !out.contains(next) {
            out.push(next.clone());
        }
    }
    out
}

/// Deep merge for apply: maps merge, everything else (lists included) replaces.
pub fn apply_merge(target: &mut Value, applied: &Value) {
    match (target.as_object_mut(), applied) {
        (Some(target), Value::Object(applied)) => {
            for (key, value) in applied {
                match target.get_mut(key) {
                    Some(existing) if existing.is_object() && value.is_object() => {
                        apply_merge(existing, value)
                    }
                    _ => {
                        target.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        _ => *target = applied.clone(),
    }
}
