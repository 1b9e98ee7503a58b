//! The API server's storage: resource types, objects, the resourceVersion clock, the watch
//! history, and every write rule (generation, status subresource, finalizers, optimistic
//! concurrency, managed fields). Pure over its own state; the HTTP layer lives in `http.rs`.

use super::admission::{Cause, FieldValidation, Part, Rejection, Validator};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use base64::Engine as _;
use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

use super::patch::{self, FieldPath};

/// A resource type the server serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceDef {
    /// Empty for the core group.
    pub group: String,
    pub version: String,
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub namespaced: bool,
    pub status_subresource: bool,
    /// Whether `metadata.generation` is kept (custom resources, CRDs).
    pub generation: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
}

impl ResourceDef {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `plural.group` as Kubernetes names it in messages (`secrets` for the core group).
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    fn key(&self) -> ResourceKey {
        (self.group.clone(), self.version.clone(), self.plural.clone())
    }

    fn builtin(group: &str, version: &str, plural: &str, kind: &str, namespaced: bool) -> Self {
        Self {
            group: group.into(),
            version: version.into(),
            plural: plural.into(),
            singular: kind.to_ascii_lowercase(),
            kind: kind.into(),
            namespaced,
            status_subresource: false,
            generation: false,
            short_names: Vec::new(),
            categories: Vec::new(),
        }
    }

    /// The resource types of one CRD (one per served version).
    pub fn from_crd(crd: &Value) -> Result<Vec<Self>, String> {
        let spec = crd.get("spec").ok_or("a CRD needs a spec")?;
        let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or_default().to_owned();
        let names = spec.get("names").ok_or("a CRD needs spec.names")?;
        let strings = |v: Option<&Value>| -> Vec<String> {
            v.and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                .unwrap_or_default()
        };
        let versions = spec
            .get("versions")
            .and_then(Value::as_array)
            .ok_or("a CRD needs spec.versions")?;
        let group = text(spec.get("group"));
        let plural = text(names.get("plural"));
        let kind = text(names.get("kind"));
        if group.is_empty() || plural.is_empty() || kind.is_empty() {
            return Err("a CRD needs spec.group, spec.names.plural and spec.names.kind".into());
        }
        Ok(versions
            .iter()
            .filter(|v| v.get("served").and_then(Value::as_bool).unwrap_or(true))
            .map(|v| Self {
                group: group.clone(),
                version: text(v.get("name")),
                plural: plural.clone(),
                singular: text(names.get("singular")),
                kind: kind.clone(),
                namespaced: text(spec.get("scope")) != "Cluster",
                status_subresource: v.pointer("/subresources/status").is_some(),
                generation: true,
                short_names: strings(names.get("shortNames")),
                categories: strings(names.get("categories")),
            })
            .collect())
    }
}

/// (group, version, plural)
pub type ResourceKey = (String, String, String);

/// An API error as Kubernetes answers it: HTTP code, reason and a `Status` body.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    pub code: u16,
    pub body: Value,
}

impl ApiError {
    fn status(code: u16, reason: &str, message: String, details: Value) -> Self {
        let mut body = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code,
        });
        if !details.is_null() {
            body["details"] = details;
        }
        if reason.is_empty() {
            body.as_object_mut().expect("object").remove("reason");
        }
        Self { code, body }
    }

    fn details(def: &ResourceDef, name: &str) -> Value {
        let mut details = json!({"name": name, "kind": def.plural});
        if !def.group.is_empty() {
            details["group"] = json!(def.group);
        }
        details
    }

    pub fn not_found(def: &ResourceDef, name: &str) -> Self {
        Self::status(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", def.qualified()),
            Self::details(def, name),
        )
    }

    fn already_exists(def: &ResourceDef, name: &str) -> Self {
        Self::status(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", def.qualified()),
            Self::details(def, name),
        )
    }

    fn conflict(def: &ResourceDef, name: &str) -> Self {
        Self::status(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                def.qualified()
            ),
            Self::details(def, name),
        )
    }

    pub fn invalid(def: &ResourceDef, name: &str, field: &str, reason: &str, message: String) -> Self {
        let mut details = Self::details(def, name);
        details["kind"] = json!(def.kind);
        details["causes"] = json!([{"reason": reason, "message": message, "field": field}]);
        let qualified_kind = if def.group.is_empty() {
            def.kind.clone()
        } else {
            format!("{}.{}", def.kind, def.group)
        };
        Self::status(
            422,
            "Invalid",
            format!("{qualified_kind} \"{name}\" is invalid: {field}: {message}"),
            details,
        )
    }

    /// `422 Invalid` with every cause, worded as the real server words it.
    pub fn invalid_causes(def: &ResourceDef, name: &str, causes: &[Cause]) -> Self {
        let mut details = Self::details(def, name);
        details["kind"] = json!(def.kind);
        details["causes"] = json!(
            causes
                .iter()
                .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
                .collect::<Vec<_>>()
        );
        let qualified_kind = if def.group.is_empty() {
            def.kind.clone()
        } else {
            format!("{}.{}", def.kind, def.group)
        };
        let listed: Vec<String> = causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect();
        let summary = match listed.as_slice() {
            [one] => one.clone(),
            many => format!("[{}]", many.join(", ")),
        };
        Self::status(
            422,
            "Invalid",
            format!("{qualified_kind} \"{name}\" is invalid: {summary}"),
            details,
        )
    }

    pub fn bad_request(message: String) -> Self {
        Self::status(400, "BadRequest", message, Value::Null)
    }

    pub fn internal(message: String) -> Self {
        Self::status(500, "", message, Value::Null)
    }

    fn apply_conflict(manager: &str, subresource: &str, fields: &[String]) -> Self {
        let with = if subresource.is_empty() {
            format!("conflict with \"{manager}\"")
        } else {
            format!("conflict with \"{manager}\" with subresource \"{subresource}\"")
        };
        let causes: Vec<Value> = fields
            .iter()
            .map(|f| json!({"reason": "FieldManagerConflict", "message": with, "field": f}))
            .collect();
        let noun = if fields.len() == 1 {
            "conflict"
        } else {
            "conflicts"
        };
        Self::status(
            409,
            "Conflict",
            // As structured-merge-diff words it: one field inline, several as a "- " list.
            if fields.len() == 1 {
                format!("Apply failed with 1 conflict: {with}: {}", fields[0])
            } else {
                format!(
                    "Apply failed with {} {noun}: {}s{}:\n- {}",
                    fields.len(),
                    &with[..8],
                    &with[8..],
                    fields.join("\n- ")
                )
            },
            json!({"causes": causes}),
        )
    }

    fn field_manager_required() -> Self {
        Self::status(
            422,
            "Invalid",
            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch"
                .into(),
            json!({"group": "meta.k8s.io", "kind": "PatchOptions", "causes": [
                {"reason": "FieldValueRequired", "message": "Required value: is required for apply patch", "field": "fieldManager"}]}),
        )
    }

    /// `410 Expired`, as a watch's ERROR event carries it.
    pub fn expired(requested: u64, oldest: u64) -> Self {
        Self::status(
            410,
            "Expired",
            format!("too old resource version: {requested} ({oldest})"),
            Value::Null,
        )
    }
}

/// One watch event as stored in the history.
#[derive(Clone, Debug)]
pub struct Event {
    pub rv: u64,
    pub resource: ResourceKey,
    pub namespace: String,
    pub kind: &'static str,
    pub object: Value,
}

/// How a patch is to be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchKind {
    Merge,
    Json,
    Apply,
}

/// Who writes, for managed fields; how unknown fields are treated; and the warnings the answer
/// carries (filled in by admission).
#[derive(Debug, Default)]
pub struct Writer {
    pub manager: String,
    pub force: bool,
    pub field_validation: FieldValidation,
    pub warnings: std::sync::Mutex<Vec<String>>,
}

/// History kept for watches; older resourceVersions get `410 Expired`.
const HISTORY: usize = 100_000;

/// The whole store.
pub struct Store {
    defs: BTreeMap<ResourceKey, ResourceDef>,
    /// Admission of each custom resource type, from its CRD.
    validators: BTreeMap<ResourceKey, Arc<Validator>>,
    /// Off only for tests that need an object admission would refuse (as if created before a
    /// stricter CRD, or with admission bypassed).
    admission: bool,
    objects: BTreeMap<(ResourceKey, String, String), Value>,
    rv: u64,
    /// Oldest resourceVersion a watch may start from.
    oldest: u64,
    history: VecDeque<Arc<Event>>,
    events: broadcast::Sender<Arc<Event>>,
    uid_seq: u64,
}

/// Every object has metadata; these helpers read it.
fn meta(object: &Value) -> &Value {
    object.get("metadata").unwrap_or(&Value::Null)
}

fn meta_str<'a>(object: &'a Value, field: &str) -> &'a str {
    meta(object).get(field).and_then(Value::as_str).unwrap_or("")
}

fn finalizers(object: &Value) -> Vec<String> {
    meta(object)
        .get("finalizers")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default()
}

/// Drops the metadata fields that are empty lists or maps (finalizers, ownerReferences, labels,
/// annotations): the real server round-trips metadata through Go's `ObjectMeta`, whose
/// `omitempty` leaves them out (recorded on apiextensions-apiserver v1.36.4, on create and patch).
fn drop_empty_metadata(object: &mut Value) {
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        for field in ["finalizers", "ownerReferences", "labels", "annotations"] {
            let empty = match meta.get(field) {
                Some(Value::Array(a)) => a.is_empty(),
                Some(Value::Object(o)) => o.is_empty(),
                _ => false,
            };
            if empty {
                meta.remove(field);
            }
        }
    }
}

fn now() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// DNS-1123 subdomain: what object names must be.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// The part of an object that moves `generation`: everything but metadata and status.
fn spec_part(object: &Value) -> Value {
    let mut copy = object.clone();
    if let Some(map) = copy.as_object_mut() {
        for key in ["metadata", "status", "apiVersion", "kind"] {
            map.remove(key);
        }
    }
    copy
}

impl Store {
    pub fn new(first_rv: u64) -> Self {
        let (events, _) = broadcast::channel(65_536);
        let mut store = Self {
            defs: BTreeMap::new(),
            validators: BTreeMap::new(),
            admission: true,
            objects: BTreeMap::new(),
            rv: first_rv,
            oldest: first_rv,
            history: VecDeque::new(),
            events,
            uid_seq: 0,
        };
        for def in [
            ResourceDef::builtin("", "v1", "namespaces", "Namespace", false),
            ResourceDef::builtin("", "v1", "secrets", "Secret", true),
            ResourceDef::builtin("", "v1", "configmaps", "ConfigMap", true),
            ResourceDef::builtin("", "v1", "events", "Event", true),
            ResourceDef::builtin("events.k8s.io", "v1", "events", "Event", true),
            ResourceDef::builtin("coordination.k8s.io", "v1", "leases", "Lease", true),
            ResourceDef {
                generation: true,
                ..ResourceDef::builtin(
                    "apiextensions.k8s.io",
                    "v1",
                    "customresourcedefinitions",
                    "CustomResourceDefinition",
                    false,
                )
            },
        ] {
            store.register(def);
        }
        store
    }

    pub fn register(&mut self, def: ResourceDef) {
        self.defs.insert(def.key(), def);
    }

    /// Registers every served version of a CRD with its admission; a CRD whose rules do not
    /// compile is refused (as the real server refuses it).
    pub fn register_crd(&mut self, crd: &Value) -> Result<(), String> {
        let defs = ResourceDef::from_crd(crd)?;
        let mut validators = Vec::new();
        for version in crd
            .pointer("/spec/versions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = version["name"].as_str().unwrap_or_default();
            if let Some(def) = defs.iter().find(|d| d.version == name) {
                validators.push((def.key(), Arc::new(Validator::new(version)?)));
            }
        }
        for def in defs {
            self.register(def);
        }
        self.validators.extend(validators);
        Ok(())
    }

    /// Turns admission of custom resources on or off.
    pub fn set_admission(&mut self, on: bool) {
        self.admission = on;
    }

    /// Admits a custom resource write (no-op for built-ins or with admission off).
    fn admit(
        &self,
        def: &ResourceDef,
        name: &str,
        object: &mut Value,
        old: Option<&Value>,
        subresource: &str,
        writer: &Writer,
    ) -> Result<(), ApiError> {
        let Some(validator) = self.validators.get(&def.key()).filter(|_| self.admission) else {
            return Ok(());
        };
        let part = if subresource == "status" {
            Part::Status
        } else {
            Part::Main
        };
        match validator.admit(object, old, part, writer.field_validation) {
            Ok(warnings) => {
                writer
                    .warnings
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend(warnings);
                Ok(())
            }
            Err(Rejection::UnknownFields(fields)) => Err(ApiError::bad_request(format!(
                "{kind} in version \"{version}\" cannot be handled as a {kind}: strict decoding error: {}",
                fields
                    .iter()
                    .map(|f| format!("unknown field \"{f}\""))
                    .collect::<Vec<_>>()
                    .join(", "),
                kind = def.kind,
                version = def.version,
            ))),
            Err(Rejection::Invalid(causes)) => Err(ApiError::invalid_causes(def, name, &causes)),
        }
    }

    pub fn def(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceDef> {
        self.defs
            .get(&(group.to_owned(), version.to_owned(), plural.to_owned()))
    }

    /// Every served type of a group/version (for discovery); empty when none.
    pub fn defs_of(&self, group: &str, version: &str) -> Vec<ResourceDef> {
        self.defs
            .values()
            .filter(|d| d.group == group && d.version == version)
            .cloned()
            .collect()
    }

    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.events.subscribe()
    }

    /// Forgets the watch history, so any older resourceVersion is `410 Expired` (like etcd compaction).
    pub fn compact(&mut self) {
        self.history.clear();
        self.rv += 1;
        self.oldest = self.rv;
    }

    fn record(&mut self, def: &ResourceDef, namespace: &str, kind: &'static str, object: Value) {
        let event = Arc::new(Event {
            rv: self.rv,
            resource: def.key(),
            namespace: namespace.to_owned(),
            kind,
            object,
        });
        if self.history.len() == HISTORY
            && let Some(dropped) = self.history.pop_front()
        {
            self.oldest = dropped.rv;
        }
        self.history.push_back(event.clone());
        let _ = self.events.send(event);
    }

    fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    fn new_uid(&mut self) -> String {
        self.uid_seq += 1;
        let r = fastrand::u64(..);
        format!(
            "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
            (r >> 32) as u32,
            (r >> 16) as u16,
            self.uid_seq & 0xfff,
            (r >> 4) & 0xfff,
            self.uid_seq
        )
    }

    /// Events after `rv` (exclusive), or `410` when `rv` is older than the retained history.
    pub fn events_since(&self, rv: u64) -> Result<Vec<Arc<Event>>, ApiError> {
        if rv < self.oldest {
            return Err(ApiError::expired(rv, self.oldest));
        }
        Ok(self.history.iter().filter(|e| e.rv > rv).cloned().collect())
    }

    pub fn get(&self, def: &ResourceDef, namespace: &str, name: &str) -> Result<Value, ApiError> {
        self.objects
            .get(&(def.key(), namespace.to_owned(), name.to_owned()))
            .cloned()
            .ok_or_else(|| ApiError::not_found(def, name))
    }

    /// Objects of a type, in a namespace or (empty) all, in namespace/name order.
    pub fn iter<'a>(&'a self, def: &ResourceDef, namespace: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        let key = def.key();
        let start = (key.clone(), namespace.to_owned(), String::new());
        self.objects
            .range(start..)
            .take_while(move |((k, ns, _), _)| *k == key && (namespace.is_empty() || ns == namespace))
            .map(|(_, v)| v)
    }

    /// Clones of [`Store::iter`].
    pub fn list(&self, def: &ResourceDef, namespace: &str) -> Vec<Value> {
        self.iter(def, namespace).cloned().collect()
    }

    /// Creates an object; with `dry_run` answers what would be stored and stores nothing.
    pub fn create(
        &mut self,
        def: &ResourceDef,
        namespace: &str,
        mut object: Value,
        writer: &Writer,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        if !object.is_object() {
            return Err(ApiError::bad_request("the body must be a JSON object".into()));
        }
        let mut name = meta_str(&object, "name").to_owned();
        if name.is_empty() {
            let prefix = meta_str(&object, "generateName");
            if prefix.is_empty() {
                return Err(ApiError::invalid(
                    def,
                    "",
                    "metadata.name",
                    "FieldValueRequired",
                    "Required value: name or generateName is required".into(),
                ));
            }
            const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
            let suffix: String = (0..5)
                .map(|_| ALPHABET[fastrand::usize(..ALPHABET.len())] as char)
                .collect();
            name = format!("{prefix}{suffix}");
        }
        if !valid_name(&name) {
            return Err(ApiError::invalid(
                def,
                &name,
                "metadata.name",
                "FieldValueInvalid",
                format!(
                    "Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
                ),
            ));
        }
        let key = (def.key(), namespace.to_owned(), name.clone());
        if self.objects.contains_key(&key) {
            return Err(ApiError::already_exists(def, &name));
        }
        if self.crd_terminating(def) {
            // As recorded on apiextensions-apiserver v1.36.4: 403 Forbidden.
            return Err(ApiError::status(
                403,
                "Forbidden",
                format!(
                    "{}.{} \"{name}\" is forbidden: create not allowed while custom resource definition is terminating",
                    def.plural, def.group
                ),
                ApiError::details(def, &name),
            ));
        }
        validate_kind_rules(def, &name, &mut object)?;
        self.admit(def, &name, &mut object, None, "", writer)?;
        if def.status_subresource
            && let Some(map) = object.as_object_mut()
        {
            map.remove("status");
        }
        let uid = self.new_uid();
        let rv = if dry_run { 0 } else { self.next_rv() };
        let metadata = object
            .as_object_mut()
            .expect("checked above")
            .entry("metadata")
            .or_insert_with(|| json!({}));
        if !metadata.is_object() {
            *metadata = json!({});
        }
        let m = metadata.as_object_mut().expect("made an object");
        m.insert("name".into(), json!(name));
        if def.namespaced {
            m.insert("namespace".into(), json!(namespace));
        } else {
            m.remove("namespace");
        }
        m.insert("uid".into(), json!(uid));
        if dry_run {
            m.remove("resourceVersion");
        } else {
            m.insert("resourceVersion".into(), json!(rv.to_string()));
        }
        m.insert("creationTimestamp".into(), json!(now()));
        for server_owned in [
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "managedFields",
            "generateName",
        ] {
            if server_owned != "generateName" {
                m.remove(server_owned);
            }
        }
        if def.generation {
            m.insert("generation".into(), json!(1));
        }
        drop_empty_metadata(&mut object);
        let m = object["metadata"].as_object_mut().expect("made an object");
        if def.plural == "namespaces" {
            let labels = m.entry("labels").or_insert_with(|| json!({}));
            labels["kubernetes.io/metadata.name"] = json!(name);
        }
        object["apiVersion"] = json!(def.api_version());
        object["kind"] = json!(def.kind);
        let mut fields = patch::leaf_fields(&object);
        fields.extend(patch::map_nodes(&object));
        set_managed(&mut object, writer, "Update", "", &fields, &def.api_version());
        if dry_run {
            return Ok(object);
        }
        if def.plural == "customresourcedefinitions" {
            self.register_crd(&object).map_err(|message| {
                // A rule's error names its own field, as the real server's does.
                let (field, message) = match message.split_once(": ") {
                    Some((field, rest)) if field.starts_with("spec.validation.") => {
                        (field.to_owned(), rest.to_owned())
                    }
                    _ => ("spec.validation.openAPIV3Schema".to_owned(), message),
                };
                ApiError::invalid(def, &name, &field, "FieldValueInvalid", message)
            })?;
        }
        self.objects.insert(key, object.clone());
        self.record(def, namespace, "ADDED", object.clone());
        Ok(object)
    }

    /// Replaces an object (PUT). `subresource` is `""` or `"status"`.
    pub fn update(
        &mut self,
        def: &ResourceDef,
        namespace: &str,
        name: &str,
        subresource: &str,
        body: Value,
        writer: &Writer,
    ) -> Result<Value, ApiError> {
        let current = self.get(def, namespace, name)?;
        let sent_rv = meta_str(&body, "resourceVersion");
        if !sent_rv.is_empty() && sent_rv != meta_str(&current, "resourceVersion") {
            return Err(ApiError::conflict(def, name));
        }
        self.write(def, namespace, name, subresource, current, body, writer, "Update")
    }

    /// Applies a patch of any kind.
    #[allow(clippy::too_many_arguments)]
    pub fn patch(
        &mut self,
        def: &ResourceDef,
        namespace: &str,
        name: &str,
        subresource: &str,
        kind: PatchKind,
        body: &Value,
        writer: &Writer,
    ) -> Result<Value, ApiError> {
        if kind == PatchKind::Apply && writer.manager.is_empty() {
            return Err(ApiError::field_manager_required());
        }
        let current = match self.get(def, namespace, name) {
            Ok(current) => current,
            // Server-side apply creates what does not exist.
            Err(_) if kind == PatchKind::Apply && subresource.is_empty() => {
                let mut object = body.clone();
                object["metadata"]["name"] = json!(name);
                let created = self.create(def, namespace, object, &Writer::default(), false)?;
                return self
                    .patch(def, namespace, name, subresource, kind, body, writer)
                    .or(Ok(created));
            }
            Err(error) => return Err(error),
        };
        match kind {
            PatchKind::Merge => {
                let sent_rv = body
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                if !sent_rv.is_empty() && sent_rv != meta_str(&current, "resourceVersion") {
                    return Err(ApiError::conflict(def, name));
                }
                let mut next = current.clone();
                patch::merge_patch(&mut next, body);
                self.write(def, namespace, name, subresource, current, next, writer, "Update")
            }
            PatchKind::Json => {
                let mut next = current.clone();
                patch::json_patch(&mut next, body).map_err(|e| {
                    ApiError::status(
                        422,
                        "Invalid",
                        format!("the JSON patch could not be applied: {}", e.0),
                        Value::Null,
                    )
                })?;
                self.write(def, namespace, name, subresource, current, next, writer, "Update")
            }
            PatchKind::Apply => self.apply(def, namespace, name, subresource, current, body, writer),
        }
    }

    /// Server-side apply (simplified; see mod.rs).
    #[allow(clippy::too_many_arguments)]
    fn apply(
        &mut self,
        def: &ResourceDef,
        namespace: &str,
        name: &str,
        subresource: &str,
        current: Value,
        applied: &Value,
        writer: &Writer,
    ) -> Result<Value, ApiError> {
        if let Some(validator) = self.validators.get(&def.key())
            && let Some(error) = validator.apply_type_error(applied)
        {
            let text = |f: &str| applied["metadata"][f].as_str().unwrap_or("").to_owned();
            return Err(ApiError::internal(format!(
                "failed to create typed patch object ({}/{}; {}, Kind={}): {error}",
                text("namespace"),
                text("name"),
                def.api_version(),
                def.kind
            )));
        }
        let mut applied = applied.clone();
        if let Some(m) = applied.get_mut("metadata").and_then(Value::as_object_mut) {
            m.retain(|k, _| ["labels", "annotations", "finalizers", "ownerReferences"].contains(&k.as_str()));
        }
        let scope = |path: &FieldPath| match subresource {
            "status" => path.first().is_some_and(|p| p == "status"),
            _ => !(def.status_subresource && path.first().is_some_and(|p| p == "status")),
        };
        let fields: Vec<FieldPath> = patch::leaf_fields(&applied)
            .into_iter()
            .filter(|p| scope(p))
            .collect();

        // Conflicts: another manager owns a field this apply sets to a different value.
        let entries = managed_entries(&current);
        let mut conflicts: Vec<(String, String, String)> = Vec::new();
        for entry in &entries {
            if entry.manager == writer.manager
                && entry.operation == "Apply"
                && entry.subresource == subresource
            {
                continue;
            }
            for path in &entry.fields {
                if fields.contains(path) && patch::value_at(&current, path) != patch::value_at(&applied, path)
                {
                    conflicts.push((
                        entry.manager.clone(),
                        entry.subresource.clone(),
                        format!(".{}", path.join(".")),
                    ));
                }
            }
        }
        if !conflicts.is_empty() && !writer.force {
            let (manager, sub, _) = conflicts[0].clone();
            let fields: Vec<String> = conflicts.iter().map(|c| c.2.clone()).collect();
            return Err(ApiError::apply_conflict(&manager, &sub, &fields));
        }

        // Fields this manager applied before and dropped now go away unless someone else owns them.
        let previous: Vec<FieldPath> = entries
            .iter()
            .find(|e| e.manager == writer.manager && e.operation == "Apply" && e.subresource == subresource)
            .map(|e| e.fields.clone())
            .unwrap_or_default();
        let mut next = current.clone();
        for dropped in previous.iter().filter(|p| !fields.contains(p)) {
            let owned_elsewhere = entries.iter().any(|e| {
                !(e.manager == writer.manager && e.operation == "Apply" && e.subresource == subresource)
                    && e.fields.contains(dropped)
            });
            if !owned_elsewhere {
                patch::remove_at(&mut next, dropped);
            }
        }
        let mut scoped = applied.clone();
        if let Some(map) = scoped.as_object_mut() {
            map.remove("apiVersion");
            map.remove("kind");
            match subresource {
                "status" => map.retain(|k, _| k == "status"),
                _ if def.status_subresource => {
                    map.remove("status");
                }
                _ => {}
            }
        }
        // metadata.finalizers is a set: the applied elements merge into the live ones.
        if let Some(Value::Array(applied_set)) = scoped.pointer("/metadata/finalizers") {
            let live: Vec<Value> = next
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let merged = patch::merge_set(&live, applied_set);
            scoped["metadata"]["finalizers"] = Value::Array(merged);
        }
        patch::apply_merge(&mut next, &scoped);
        self.admit(def, name, &mut next, Some(&current), subresource, writer)?;

        // Ownership: forced fields leave their old owners; this manager owns exactly what it applied.
        let mut new_entries = entries.clone();
        for entry in &mut new_entries {
            if entry.manager == writer.manager
                && entry.operation == "Apply"
                && entry.subresource == subresource
            {
                if entry.fields != fields {
                    entry.fields = fields.clone();
                    entry.time = now();
                }
            } else {
                entry.fields.retain(|p| {
                    !(fields.contains(p) && patch::value_at(&current, p) != patch::value_at(&applied, p))
                });
            }
        }
        if !new_entries
            .iter()
            .any(|e| e.manager == writer.manager && e.operation == "Apply" && e.subresource == subresource)
        {
            new_entries.insert(
                0,
                ManagedEntry {
                    manager: writer.manager.clone(),
                    operation: "Apply".into(),
                    subresource: subresource.into(),
                    api_version: def.api_version(),
                    fields: fields.clone(),
                    time: now(),
                },
            );
        }
        new_entries.retain(|e| !e.fields.is_empty());
        store_entries(&mut next, &new_entries);
        self.commit(def, namespace, name, subresource, current, next)
    }

    /// An Update-style write (PUT, merge or JSON patch) through the main endpoint or `/status`.
    #[allow(clippy::too_many_arguments)]
    fn write(
        &mut self,
        def: &ResourceDef,
        namespace: &str,
        name: &str,
        subresource: &str,
        current: Value,
        mut next: Value,
        writer: &Writer,
        operation: &str,
    ) -> Result<Value, ApiError> {
        // Identity and server-owned metadata always come from the stored object.
        for field in [
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "resourceVersion",
            "generation",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "managedFields",
        ] {
            match meta(&current).get(field) {
                Some(value) => next["metadata"][field] = value.clone(),
                None => {
                    if let Some(m) = next.get_mut("metadata").and_then(Value::as_object_mut) {
                        m.remove(field);
                    }
                }
            }
        }
        next["apiVersion"] = json!(def.api_version());
        next["kind"] = json!(def.kind);
        match subresource {
            "status" => {
                // Only .status changes through /status.
                let status = next.get("status").cloned();
                next = current.clone();
                match status {
                    Some(status) => next["status"] = status,
                    None => {
                        next.as_object_mut().expect("object").remove("status");
                    }
                }
            }
            _ if def.status_subresource => match current.get("status") {
                Some(status) => next["status"] = status.clone(),
                None => {
                    if let Some(map) = next.as_object_mut() {
                        map.remove("status");
                    }
                }
            },
            _ => {}
        }
        validate_kind_rules(def, name, &mut next)?;
        self.admit(def, name, &mut next, Some(&current), subresource, writer)?;
        if !meta_str(&current, "deletionTimestamp").is_empty() {
            let before = finalizers(&current);
            let added: Vec<String> = finalizers(&next)
                .into_iter()
                .filter(|f| !before.contains(f))
                .collect();
            if !added.is_empty() {
                let message = format!(
                    "Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{{{}}}",
                    added
                        .iter()
                        .map(|f| format!("\"{f}\""))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                let mut error =
                    ApiError::invalid(def, name, "metadata.finalizers", "FieldValueForbidden", message);
                // As recorded: for custom resources the real server lists this cause twice (the
                // generic registry and the CRD strategy both check it), once in the message.
                if self.validators.contains_key(&def.key())
                    && let Some(causes) = error.body["details"]["causes"].as_array_mut()
                    && let Some(first) = causes.first().cloned()
                {
                    causes.push(first);
                }
                return Err(error);
            }
        }
        // Managed fields: this writer takes the fields it changed.
        let changed: Vec<FieldPath> = {
            let old = patch::leaf_fields(&current);
            let mut paths = patch::leaf_fields(&next);
            paths.retain(|p| patch::value_at(&current, p) != patch::value_at(&next, p));
            paths.extend(old.into_iter().filter(|p| patch::value_at(&next, p).is_none()));
            // Maps this write creates (or removes): an Update owns the map itself.
            if operation == "Update" {
                let created = patch::map_nodes(&next);
                let removed = patch::map_nodes(&current);
                paths.extend(created.iter().filter(|p| !patch::has_field(&current, p)).cloned());
                paths.extend(removed.into_iter().filter(|p| !patch::has_field(&next, p)));
            }
            paths
        };
        if !changed.is_empty() {
            let mut entries = managed_entries(&current);
            for entry in &mut entries {
                entry.fields.retain(|p| !changed.contains(p));
            }
            let present: Vec<FieldPath> = changed
                .into_iter()
                .filter(|p| patch::has_field(&next, p))
                .collect();
            let manager = if writer.manager.is_empty() {
                "unknown".to_owned()
            } else {
                writer.manager.clone()
            };
            match entries
                .iter_mut()
                .find(|e| e.manager == manager && e.operation == operation && e.subresource == subresource)
            {
                Some(entry) => {
                    for p in present {
                        if !entry.fields.contains(&p) {
                            entry.fields.push(p);
                        }
                    }
                    entry.time = now();
                }
                None => entries.push(ManagedEntry {
                    manager,
                    operation: operation.into(),
                    subresource: subresource.into(),
                    api_version: def.api_version(),
                    fields: present,
                    time: now(),
                }),
            }
            entries.retain(|e| !e.fields.is_empty());
            store_entries(&mut next, &entries);
        }
        self.commit(def, namespace, name, subresource, current, next)
    }

    /// Stores `next` unless it equals `current` (a no-op keeps the resourceVersion), moving
    /// `generation` on spec changes and deleting objects whose last finalizer went away.
    fn commit(
        &mut self,
        def: &ResourceDef,
        namespace: &str,
        name: &str,
        subresource: &str,
        current: Value,
        mut next: Value,
    ) -> Result<Value, ApiError> {
        drop_empty_metadata(&mut next);
        if next == current {
            return Ok(current);
        }
        if def.generation && subresource.is_empty() && spec_part(&next) != spec_part(&current) {
            let generation = meta(&current)
                .get("generation")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            next["metadata"]["generation"] = json!(generation + 1);
        }
        let key = (def.key(), namespace.to_owned(), name.to_owned());
        let rv = self.next_rv();
        if !meta_str(&next, "deletionTimestamp").is_empty() && finalizers(&next).is_empty() {
            // As recorded: the answer keeps the last stored resourceVersion, and the DELETED event
            // carries the last stored object under a new one.
            self.objects.remove(&key);
            let mut gone = current;
            gone["metadata"]["resourceVersion"] = json!(rv.to_string());
            self.record(def, namespace, "DELETED", gone);
            self.finish_crd_deletions();
            return Ok(next);
        }
        next["metadata"]["resourceVersion"] = json!(rv.to_string());
        self.objects.insert(key, next.clone());
        self.record(def, namespace, "MODIFIED", next.clone());
        Ok(next)
    }

    /// DELETE: gone at once without finalizers (a `Success` Status), else marked for deletion.
    pub fn delete(&mut self, def: &ResourceDef, namespace: &str, name: &str) -> Result<Value, ApiError> {
        if def.group == CRD_GROUP && def.plural == CRD_PLURAL {
            return self.delete_crd(def, name);
        }
        let current = self.get(def, namespace, name)?;
        let key = (def.key(), namespace.to_owned(), name.to_owned());
        if finalizers(&current).is_empty() {
            self.objects.remove(&key);
            self.next_rv();
            let mut gone = current.clone();
            gone["metadata"]["resourceVersion"] = json!(self.rv.to_string());
            self.record(def, namespace, "DELETED", gone);
            self.finish_crd_deletions();
            let mut details = json!({"name": name, "kind": def.plural, "uid": meta_str(&current, "uid")});
            if !def.group.is_empty() {
                details["group"] = json!(def.group);
            }
            return Ok(
                json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}),
            );
        }
        if !meta_str(&current, "deletionTimestamp").is_empty() {
            return Ok(current);
        }
        let mut next = current.clone();
        next["metadata"]["deletionTimestamp"] = json!(now());
        next["metadata"]["deletionGracePeriodSeconds"] = json!(0);
        if def.generation {
            let generation = meta(&current)
                .get("generation")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            next["metadata"]["generation"] = json!(generation + 1);
        }
        let rv = self.next_rv();
        next["metadata"]["resourceVersion"] = json!(rv.to_string());
        self.objects.insert(key, next.clone());
        self.record(def, namespace, "MODIFIED", next.clone());
        Ok(next)
    }
}

impl Store {
    /// Stores a CRD object (as `POST .../customresourcedefinitions` would) and registers its
    /// types; a CRD already stored only has its types registered again.
    pub fn install_crd(&mut self, crd: &Value) -> Result<(), String> {
        let def = self
            .def(CRD_GROUP, "v1", CRD_PLURAL)
            .cloned()
            .expect("the CRD type is built in");
        let name = meta_str(crd, "name").to_owned();
        if self.get(&def, "", &name).is_ok() {
            return self.register_crd(crd);
        }
        self.create(&def, "", crd.clone(), &Writer::default(), false)
            .map(|_| ())
            .map_err(|e| e.body.to_string())
    }

    /// The stored CRD that defines `def`, if any.
    fn crd_of(&self, def: &ResourceDef) -> Option<&Value> {
        let name = format!("{}.{}", def.plural, def.group);
        self.objects.get(&(
            (CRD_GROUP.into(), "v1".into(), CRD_PLURAL.into()),
            String::new(),
            name,
        ))
    }

    /// Whether `def` is a custom resource whose CRD is being deleted.
    fn crd_terminating(&self, def: &ResourceDef) -> bool {
        def.group != CRD_GROUP
            && self
                .crd_of(def)
                .is_some_and(|crd| !meta_str(crd, "deletionTimestamp").is_empty())
    }

    /// Every stored instance of the types a CRD defines: (def, namespace, name).
    fn instances(&self, group: &str, plural: &str) -> Vec<(ResourceDef, String, String)> {
        self.objects
            .keys()
            .filter(|((g, _, p), _, _)| g == group && p == plural)
            .filter_map(|((g, v, p), ns, name)| {
                let def = self.defs.get(&(g.clone(), v.clone(), p.clone()))?.clone();
                Some((def, ns.clone(), name.clone()))
            })
            .collect()
    }

    /// CRD deletion as the real server does it: the first DELETE sets `deletionTimestamp`, adds
    /// the `customresourcecleanup.apiextensions.k8s.io` finalizer and a `Terminating`
    /// condition (`InstanceDeletionPending` in the answer, `InstanceDeletionInProgress` right
    /// after); every instance is then deleted (finalizers honoured), and the CRD is gone
    /// once the last instance is. The real server does the last two asynchronously.
    fn delete_crd(&mut self, def: &ResourceDef, name: &str) -> Result<Value, ApiError> {
        let current = self.get(def, "", name)?;
        if !meta_str(&current, "deletionTimestamp").is_empty() {
            return Ok(current);
        }
        let mut next = current.clone();
        next["metadata"]["deletionTimestamp"] = json!(now());
        next["metadata"]["deletionGracePeriodSeconds"] = json!(0);
        let mut held = finalizers(&current);
        if !held.iter().any(|f| f == CRD_CLEANUP) {
            held.push(CRD_CLEANUP.into());
        }
        // Unlike other deletions, the generation stays (as recorded on the real server).
        next["metadata"]["finalizers"] = json!(held);
        let conditions = next
            .as_object_mut()
            .expect("an object")
            .entry("status")
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .map(|status| status.entry("conditions").or_insert_with(|| json!([])));
        if let Some(Value::Array(conditions)) = conditions {
            conditions.retain(|c| c["type"] != "Terminating");
            conditions.push(json!({
                "type": "Terminating", "status": "True", "reason": "InstanceDeletionPending",
                "message": "CustomResourceDefinition marked for deletion; CustomResource deletion will begin soon",
                "lastTransitionTime": now(),
            }));
        }
        let rv = self.next_rv();
        next["metadata"]["resourceVersion"] = json!(rv.to_string());
        let key = (def.key(), String::new(), name.to_owned());
        self.objects.insert(key.clone(), next.clone());
        self.record(def, "", "MODIFIED", next.clone());
        // The DELETE answers with the pending condition; the CRD finalizer's controller then
        // says it is deleting the instances (a status write of its own).
        let answer = next.clone();
        if let Some(Value::Array(conditions)) = next.pointer_mut("/status/conditions") {
            for condition in conditions.iter_mut().filter(|c| c["type"] == "Terminating") {
                condition["reason"] = json!("InstanceDeletionInProgress");
                condition["message"] = json!("CustomResource deletion is in progress");
            }
        }
        let rv = self.next_rv();
        next["metadata"]["resourceVersion"] = json!(rv.to_string());
        self.objects.insert(key, next.clone());
        self.record(def, "", "MODIFIED", next.clone());
        let group = next
            .pointer("/spec/group")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let plural = next
            .pointer("/spec/names/plural")
            .and_then(Value::as_str)
            .unwrap_or_default();
        for (instance, namespace, instance_name) in self.instances(group, plural) {
            let _ = self.delete(&instance, &namespace, &instance_name);
        }
        self.finish_crd_deletions();
        Ok(answer)
    }

    /// Releases the cleanup finalizer of every deleting CRD that has no instances left (the
    /// CRD and its types are then gone).
    fn finish_crd_deletions(&mut self) {
        let Some(def) = self.def(CRD_GROUP, "v1", CRD_PLURAL).cloned() else {
            return;
        };
        let done: Vec<Value> = self
            .iter(&def, "")
            .filter(|crd| {
                !meta_str(crd, "deletionTimestamp").is_empty()
                    && finalizers(crd).iter().any(|f| f == CRD_CLEANUP)
            })
            .filter(|crd| {
                let group = crd
                    .pointer("/spec/group")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let plural = crd
                    .pointer("/spec/names/plural")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                self.instances(group, plural).is_empty()
            })
            .cloned()
            .collect();
        for crd in done {
            let name = meta_str(&crd, "name").to_owned();
            let rest: Vec<String> = finalizers(&crd)
                .into_iter()
                .filter(|f| f != CRD_CLEANUP)
                .collect();
            let mut next = crd.clone();
            next["metadata"]["finalizers"] = json!(rest);
            if rest.is_empty() {
                for served in ResourceDef::from_crd(&crd).unwrap_or_default() {
                    self.defs.remove(&served.key());
                    self.validators.remove(&served.key());
                }
            }
            let _ = self.commit(&def, "", &name, "", crd, next);
        }
    }
}

/// The API group and resource of CustomResourceDefinitions.
const CRD_GROUP: &str = "apiextensions.k8s.io";
const CRD_PLURAL: &str = "customresourcedefinitions";
/// The finalizer the real server puts on a CRD being deleted until its instances are gone.
const CRD_CLEANUP: &str = "customresourcecleanup.apiextensions.k8s.io";

/// Per-kind rules the real server enforces for the built-in kinds the operator writes.
fn validate_kind_rules(def: &ResourceDef, name: &str, object: &mut Value) -> Result<(), ApiError> {
    match (def.group.as_str(), def.plural.as_str()) {
        ("", "secrets") => {
            // stringData is write-only: merged into data, base64-encoded.
            if let Some(Value::Object(string_data)) =
                object.as_object_mut().and_then(|o| o.remove("stringData"))
            {
                let data = object
                    .as_object_mut()
                    .expect("object")
                    .entry("data")
                    .or_insert_with(|| json!({}));
                for (key, value) in string_data {
                    let text = value.as_str().unwrap_or_default();
                    data[key] = json!(base64::engine::general_purpose::STANDARD.encode(text));
                }
            }
            if object.get("type").is_none() {
                object["type"] = json!("Opaque");
            }
            Ok(())
        }
        ("events.k8s.io", "events") => {
            for required in ["reportingController", "reportingInstance", "action", "eventTime"] {
                if object
                    .get(required)
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .is_empty()
                {
                    return Err(ApiError::invalid(
                        def,
                        name,
                        required,
                        "FieldValueRequired",
                        "Required value".into(),
                    ));
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// One `managedFields` entry, decoded.
#[derive(Clone, Debug)]
struct ManagedEntry {
    manager: String,
    operation: String,
    subresource: String,
    api_version: String,
    fields: Vec<FieldPath>,
    time: String,
}

fn managed_entries(object: &Value) -> Vec<ManagedEntry> {
    meta(object)
        .get("managedFields")
        .and_then(Value::as_array)
        .map(|entries| {
            entries
                .iter()
                .map(|e| {
                    let text = |f: &str| e.get(f).and_then(Value::as_str).unwrap_or("").to_owned();
                    ManagedEntry {
                        manager: text("manager"),
                        operation: text("operation"),
                        subresource: text("subresource"),
                        api_version: text("apiVersion"),
                        fields: patch::paths_of(e.get("fieldsV1").unwrap_or(&Value::Null)),
                        time: text("time"),
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Stores managedFields in the real server's order: by operation (`Apply` before `Update`),
/// then time, manager and subresource.
fn store_entries(object: &mut Value, entries: &[ManagedEntry]) {
    let mut entries = entries.to_vec();
    entries.sort_by(|p, q| {
        (&p.operation, &p.time, &p.manager, &p.subresource).cmp(&(
            &q.operation,
            &q.time,
            &q.manager,
            &q.subresource,
        ))
    });
    let encoded: Vec<Value> = entries
        .iter()
        .map(|e| {
            let mut entry = Map::new();
            entry.insert("apiVersion".into(), json!(e.api_version));
            entry.insert("fieldsType".into(), json!("FieldsV1"));
            entry.insert("fieldsV1".into(), patch::fields_v1(&e.fields));
            entry.insert("manager".into(), json!(e.manager));
            entry.insert("operation".into(), json!(e.operation));
            if !e.subresource.is_empty() {
                entry.insert("subresource".into(), json!(e.subresource));
            }
            entry.insert("time".into(), json!(e.time));
            Value::Object(entry)
        })
        .collect();
    if encoded.is_empty() {
        if let Some(m) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("managedFields");
        }
    } else {
        object["metadata"]["managedFields"] = Value::Array(encoded);
    }
}

fn set_managed(
    object: &mut Value,
    writer: &Writer,
    operation: &str,
    subresource: &str,
    fields: &[FieldPath],
    api_version: &str,
) {
    let manager = if writer.manager.is_empty() {
        "unknown".to_owned()
    } else {
        writer.manager.clone()
    };
    store_entries(
        object,
        &[ManagedEntry {
            manager,
            operation: operation.into(),
            subresource: subresource.into(),
            api_version: api_version.into(),
            fields: fields.to_vec(),
            time: now(),
        }],
    );
}
