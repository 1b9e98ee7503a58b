//! HTTP side of the Kubernetes API test server: routing, list/watch, faults and counters.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::Response;
use base64::Engine as _;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use super::admission::FieldValidation;
use super::store::{ApiError, PatchKind, ResourceDef, Store, Writer};

/// API groups of the built-in types served here.
const BUILTIN_GROUPS: &[&str] = &["", "coordination.k8s.io", "events.k8s.io", "apiextensions.k8s.io"];

/// Faults the server injects; see `KubeApiServer::set_faults`.
#[derive(Clone, Debug, Default)]
pub struct KubeFaults {
    /// Added before every answer.
    pub latency: Duration,
    /// Probability that a request is answered with one of `fail_with` instead.
    pub fail_rate: f64,
    /// Statuses to fail with (500, 429 with `Retry-After`, 409); defaults to 500.
    pub fail_with: Vec<u16>,
    /// Fail only writes (create, update, patch, delete), never reads and watches.
    pub writes_only: bool,
    /// Close every open watch stream this often.
    pub drop_watches_every: Option<Duration>,
    /// `"<verb> <resource>"` pairs (as counted, e.g. `"get secrets"`) answered `403 Forbidden`,
    /// as RBAC would answer a service account that lacks the permission.
    pub forbidden: Vec<String>,
    /// As `forbidden`, for one caller only: `(bearer token, "<verb> <resource>")`.
    pub forbidden_to: Vec<(String, String)>,
}

/// Shared state of the HTTP layer.
pub struct Shared {
    pub store: Mutex<Store>,
    pub faults: Mutex<KubeFaults>,
    /// Requests by verb and resource (`"patch bucketencryptions/status"`).
    pub counters: Mutex<BTreeMap<String, u64>>,
    /// Every distinct access, as RBAC sees it: (who: the bearer token, "" without one; API
    /// group; namespace, "" when cluster-wide; resource with subresource; verb).
    pub accesses: Mutex<BTreeSet<Access>>,
    /// Bumped to close every open watch.
    pub drop_watches: watch::Sender<u64>,
}

/// One access: (who, API group, namespace, resource, verb); see `Shared::accesses`.
pub type Access = (String, String, String, String, String);

impl Shared {
    pub fn lock(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn count(&self, verb: &str, resource: &str) {
        *self
            .counters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(format!("{verb} {resource}"))
            .or_default() += 1;
    }
}

fn json_response(status: u16, body: &Value) -> Response {
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response
        .headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    response
}

fn error_response(error: &ApiError) -> Response {
    json_response(error.code, &error.body)
}

/// What the real server answers for routes it does not serve.
fn page_not_found() -> Response {
    let mut response = Response::new(Body::from("404 page not found\n"));
    *response.status_mut() = StatusCode::NOT_FOUND;
    response.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// A parsed resource path.
struct Route {
    group: String,
    version: String,
    namespace: String,
    plural: String,
    name: String,
    subresource: String,
}

/// `/api/v1/...` or `/apis/<group>/<version>/...` → the parts, or `None` for discovery roots.
fn parse_path(path: &str) -> Option<(String, String, Vec<String>)> {
    let segments: Vec<String> = path.trim_matches('/').split('/').map(str::to_owned).collect();
    match segments.first().map(String::as_str) {
        Some("api") if segments.len() >= 2 => {
            Some((String::new(), segments[1].clone(), segments[2..].to_vec()))
        }
        Some("apis") if segments.len() >= 3 => {
            Some((segments[1].clone(), segments[2].clone(), segments[3..].to_vec()))
        }
        _ => None,
    }
}

fn route(
    group: String,
    version: String,
    rest: &[String],
    def_namespaced: impl Fn(&str) -> Option<bool>,
) -> Option<Route> {
    let (namespace, rest) = match rest {
        [ns_word, ns, tail @ ..] if ns_word == "namespaces" && !tail.is_empty() => (ns.clone(), tail),
        _ => (String::new(), rest),
    };
    let (plural, name, subresource) = match rest {
        [plural] => (plural.clone(), String::new(), String::new()),
        [plural, name] => (plural.clone(), name.clone(), String::new()),
        [plural, name, sub] => (plural.clone(), name.clone(), sub.clone()),
        _ => return None,
    };
    // `namespaces/<name>` itself is the cluster-scoped Namespace resource.
    let namespaced = def_namespaced(&plural)?;
    if !namespaced && !namespace.is_empty() {
        return None;
    }
    Some(Route {
        group,
        version,
        namespace,
        plural,
        name,
        subresource,
    })
}

fn query_params(raw: &str) -> BTreeMap<String, String> {
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let decode = |s: &str| oss_encryption_operator::oss::sign::percent_decode(&s.replace('+', " "));
            (decode(k), decode(v))
        })
        .collect()
}

fn is_write(method: &Method) -> bool {
    matches!(
        *method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    )
}

/// The field manager of an Update: `fieldManager`, else the user agent's first word (as Kubernetes does).
fn writer(params: &BTreeMap<String, String>, user_agent: &str) -> Writer {
    let manager = params
        .get("fieldManager")
        .cloned()
        .unwrap_or_else(|| user_agent.split('/').next().unwrap_or("").to_owned());
    Writer {
        manager,
        force: params.get("force").is_some_and(|f| f == "true"),
        field_validation: FieldValidation::parse(params.get("fieldValidation").map(String::as_str)),
        ..Writer::default()
    }
}

/// The caller's bearer token (the test server authenticates no one; it only tells callers apart).
fn bearer_token(headers: &axum::http::HeaderMap) -> String {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
        .to_owned()
}

/// The router: everything goes through one handler that parses Kubernetes paths.
pub async fn serve(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let faults = shared.faults.lock().unwrap_or_else(|p| p.into_inner()).clone();
    if !faults.latency.is_zero() {
        tokio::time::sleep(faults.latency).await;
    }
    let params = query_params(parts.uri.query().unwrap_or(""));
    let path = parts.uri.path().to_owned();
    let method = parts.method.clone();

    if path == "/version" {
        return json_response(
            200,
            &json!({"major": "1", "minor": "36", "gitVersion": "v1.36.0-kube-api-test-server", "platform": "linux/amd64"}),
        );
    }
    let Some((group, version, rest)) = parse_path(&path) else {
        return page_not_found();
    };
    if rest.is_empty() {
        return discovery(&shared, &group, &version);
    }
    let route = {
        let store = shared.lock();
        route(group.clone(), version.clone(), &rest, |plural| {
            store.def(&group, &version, plural).map(|d| d.namespaced)
        })
    };
    let Some(route) = route else {
        return page_not_found();
    };
    let def = shared
        .lock()
        .def(&route.group, &route.version, &route.plural)
        .cloned()
        .expect("route checked the resource");
    let served_subresource =
        route.subresource.is_empty() || (route.subresource == "status" && def.status_subresource);
    if !served_subresource {
        return page_not_found();
    }
    let watching = params.get("watch").is_some_and(|w| w == "true" || w == "1");
    let verb = match (&method, route.name.is_empty()) {
        (&Method::GET, true) if watching => "watch",
        (&Method::GET, true) => "list",
        (&Method::GET, false) => "get",
        (&Method::POST, true) => "create",
        (&Method::PUT, false) => "update",
        (&Method::PATCH, false) => "patch",
        (&Method::DELETE, false) => "delete",
        _ => {
            return error_response(&ApiError {
                code: 405,
                body: json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": "the server does not allow this method on the requested resource", "reason": "MethodNotAllowed", "code": 405}),
            });
        }
    };
    let resource = if route.subresource.is_empty() {
        route.plural.clone()
    } else {
        format!("{}/{}", route.plural, route.subresource)
    };
    shared.count(verb, &resource);
    shared.accesses.lock().unwrap_or_else(|p| p.into_inner()).insert((
        bearer_token(&parts.headers),
        route.group.clone(),
        route.namespace.clone(),
        resource.clone(),
        verb.to_owned(),
    ));

    let access = format!("{verb} {resource}");
    let caller = bearer_token(&parts.headers);
    if faults.forbidden.contains(&access)
        || faults
            .forbidden_to
            .iter()
            .any(|(who, what)| *who == caller && *what == access)
    {
        let message = format!(
            "{resource} \"{}\" is forbidden: User \"system:serviceaccount:oss-encryption-system:oss-encryption-operator\" cannot {verb} resource \"{}\" in API group \"{}\" in the namespace \"{}\"",
            route.name, route.plural, route.group, route.namespace
        );
        return json_response(
            403,
            &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "reason": "Forbidden", "details": {"name": route.name, "kind": route.plural}, "code": 403}),
        );
    }

    if faults.fail_rate > 0.0
        && (!faults.writes_only || is_write(&method))
        && fastrand::f64() < faults.fail_rate
    {
        let statuses = if faults.fail_with.is_empty() {
            vec![500]
        } else {
            faults.fail_with.clone()
        };
        let status = statuses[fastrand::usize(..statuses.len())];
        let (reason, message) = match status {
            429 => (
                "TooManyRequests",
                "the server has received too many requests and has asked us to try again later",
            ),
            409 => (
                "Conflict",
                "Operation cannot be fulfilled: the object has been modified; please apply your changes to the latest version and try again",
            ),
            _ => ("InternalError", "Internal error occurred: injected fault"),
        };
        let mut response = json_response(
            status,
            &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "reason": reason, "code": status}),
        );
        if status == 429 {
            response
                .headers_mut()
                .insert("retry-after", HeaderValue::from_static("1"));
        }
        return response;
    }

    if verb == "watch" {
        return watch_stream(&shared, &def, &route.namespace, &params).await;
    }
    if verb == "list" {
        return list(&shared, &def, &route.namespace, &params);
    }

    let body: Bytes = match axum::body::to_bytes(body, 16 * 1024 * 1024).await {
        Ok(body) => body,
        Err(e) => return error_response(&ApiError::bad_request(format!("cannot read the body: {e}"))),
    };
    let parsed = || -> Result<Value, ApiError> {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))
    };
    let user_agent = parts
        .headers
        .get("user-agent")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mut writer = writer(&params, user_agent);
    let content_type = parts
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let dry_run = params.get("dryRun").is_some_and(|d| d == "All");

    let result = match verb {
        "get" => shared
            .lock()
            .get(&def, &route.namespace, &route.name)
            .map(|o| (200, o)),
        "create" => parsed().and_then(|body| {
            shared
                .lock()
                .create(&def, &route.namespace, body, &writer, dry_run)
                .map(|o| (201, o))
        }),
        "update" => parsed().and_then(|body| {
            shared
                .lock()
                .update(
                    &def,
                    &route.namespace,
                    &route.name,
                    &route.subresource,
                    body,
                    &writer,
                )
                .map(|o| (200, o))
        }),
        "patch" => {
            let kind = match content_type.split(';').next().unwrap_or("").trim() {
                "application/merge-patch+json" => Some(PatchKind::Merge),
                "application/json-patch+json" => Some(PatchKind::Json),
                "application/apply-patch+yaml" => Some(PatchKind::Apply),
                // Strategic merge patch exists for built-in types only (the real server refuses it
                // for custom resources); the built-ins served here have no list merge keys in the
                // fields patched, so it is a merge patch.
                "application/strategic-merge-patch+json" if BUILTIN_GROUPS.contains(&def.group.as_str()) => {
                    Some(PatchKind::Merge)
                }
                _ => None,
            };
            match kind {
                None => Err(ApiError {
                    code: 415,
                    body: json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got {content_type:?})"), "reason": "UnsupportedMediaType", "code": 415}),
                }),
                Some(kind) => parsed().and_then(|body| {
                    if kind == PatchKind::Apply && !params.contains_key("fieldManager") {
                        writer.manager.clear(); // apply needs an explicit manager
                    }
                    shared
                        .lock()
                        .patch(
                            &def,
                            &route.namespace,
                            &route.name,
                            &route.subresource,
                            kind,
                            &body,
                            &writer,
                        )
                        .map(|o| (200, o))
                }),
            }
        }
        "delete" => shared
            .lock()
            .delete(&def, &route.namespace, &route.name)
            .map(|o| (200, o)),
        _ => unreachable!("verbs matched above"),
    };
    match result {
        Ok((status, object)) => {
            let mut response = json_response(status, &object);
            for warning in writer.warnings.lock().unwrap_or_else(|p| p.into_inner()).iter() {
                let text = format!("299 - {}", serde_json::to_string(warning).unwrap_or_default());
                if let Ok(value) = HeaderValue::from_str(&text) {
                    response.headers_mut().append("warning", value);
                }
            }
            response
        }
        Err(error) => error_response(&error),
    }
}

fn discovery(shared: &Shared, group: &str, version: &str) -> Response {
    let defs = shared.lock().defs_of(group, version);
    if defs.is_empty() {
        return page_not_found();
    }
    let mut resources = Vec::new();
    for def in &defs {
        let mut entry = json!({"name": def.plural, "singularName": def.singular, "namespaced": def.namespaced,
            "kind": def.kind, "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]});
        if !def.short_names.is_empty() {
            entry["shortNames"] = json!(def.short_names);
        }
        if !def.categories.is_empty() {
            entry["categories"] = json!(def.categories);
        }
        resources.push(entry);
        if def.status_subresource {
            resources.push(json!({"name": format!("{}/status", def.plural), "singularName": "", "namespaced": def.namespaced, "kind": def.kind, "verbs": ["get", "patch", "update"]}));
        }
    }
    let group_version = defs[0].api_version();
    json_response(
        200,
        &json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}),
    )
}

/// A parsed label selector: every requirement must hold.
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

fn parse_selector(selector: &str) -> Result<Vec<Requirement>, ApiError> {
    let mut requirements = Vec::new();
    let mut depth = 0;
    let mut current = String::new();
    let mut parts = Vec::new();
    for c in selector.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    parts.push(current);
    for part in parts.iter().map(|p| p.trim()).filter(|p| !p.is_empty()) {
        let set = |rest: &str| -> Vec<String> {
            rest.trim()
                .trim_start_matches('(')
                .trim_end_matches(')')
                .split(',')
                .map(|v| v.trim().to_owned())
                .collect()
        };
        let requirement = if let Some((k, v)) = part.split_once("!=") {
            Requirement::NotEquals(k.trim().into(), v.trim().into())
        } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
            Requirement::Equals(k.trim().into(), v.trim().into())
        } else if let Some((k, v)) = part.split_once(" notin ") {
            Requirement::NotIn(k.trim().into(), set(v))
        } else if let Some((k, v)) = part.split_once(" in ") {
            Requirement::In(k.trim().into(), set(v))
        } else if let Some(k) = part.strip_prefix('!') {
            Requirement::NotExists(k.trim().into())
        } else if part
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
        {
            Requirement::Exists(part.into())
        } else {
            return Err(ApiError::bad_request(format!(
                "unable to parse requirement: {part:?}"
            )));
        };
        requirements.push(requirement);
    }
    Ok(requirements)
}

fn matches_labels(object: &Value, requirements: &[Requirement]) -> bool {
    let labels = object.pointer("/metadata/labels");
    let label = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
    requirements.iter().all(|r| match r {
        Requirement::Equals(k, v) => label(k) == Some(v.as_str()),
        Requirement::NotEquals(k, v) => label(k) != Some(v.as_str()),
        Requirement::In(k, vs) => label(k).is_some_and(|l| vs.iter().any(|v| v == l)),
        Requirement::NotIn(k, vs) => label(k).is_none_or(|l| !vs.iter().any(|v| v == l)),
        Requirement::Exists(k) => label(k).is_some(),
        Requirement::NotExists(k) => label(k).is_none(),
    })
}

/// Supports `metadata.name` and `metadata.namespace` (`=`, `==`, `!=`).
fn matches_fields(object: &Value, selector: &str) -> bool {
    selector.split(',').filter(|p| !p.is_empty()).all(|part| {
        let (field, want, negate) = match part.split_once("!=") {
            Some((f, v)) => (f, v, true),
            None => match part.split_once("==").or_else(|| part.split_once('=')) {
                Some((f, v)) => (f, v, false),
                None => return true,
            },
        };
        let actual = object
            .pointer(&format!("/{}", field.trim().replace('.', "/")))
            .and_then(Value::as_str)
            .unwrap_or("");
        (actual == want.trim()) != negate
    })
}

struct Filter {
    labels: Vec<Requirement>,
    fields: String,
}

impl Filter {
    fn from(params: &BTreeMap<String, String>) -> Result<Self, ApiError> {
        Ok(Self {
            labels: parse_selector(params.get("labelSelector").map(String::as_str).unwrap_or(""))?,
            fields: params.get("fieldSelector").cloned().unwrap_or_default(),
        })
    }

    fn matches(&self, object: &Value) -> bool {
        matches_labels(object, &self.labels) && matches_fields(object, &self.fields)
    }
}

fn list(shared: &Shared, def: &ResourceDef, namespace: &str, params: &BTreeMap<String, String>) -> Response {
    let filter = match Filter::from(params) {
        Ok(filter) => filter,
        Err(error) => return error_response(&error),
    };
    // Continue tokens carry the list resourceVersion and the position.
    let (list_rv, start) = match params.get("continue").filter(|c| !c.is_empty()) {
        Some(token) => {
            let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(token)
                .ok()
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
            match decoded {
                Some(t) => (t["rv"].as_u64(), t["start"].as_u64().unwrap_or(0) as usize),
                None => return error_response(&ApiError::bad_request("invalid continue token".into())),
            }
        }
        None => (None, 0),
    };
    let limit = params
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0);
    let (items, remaining, rv) = {
        let store = shared.lock();
        let mut matching = store
            .iter(def, namespace)
            .filter(|o| filter.matches(o))
            .skip(start);
        let items: Vec<Value> = matching
            .by_ref()
            .take(limit.unwrap_or(usize::MAX))
            .cloned()
            .collect();
        (
            items,
            matching.count(),
            list_rv.unwrap_or(store.resource_version()),
        )
    };
    let mut metadata = json!({"resourceVersion": rv.to_string(), "continue": ""});
    if remaining > 0 {
        let token = json!({"rv": rv, "start": start + items.len()}).to_string();
        metadata["continue"] = json!(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token));
        metadata["remainingItemCount"] = json!(remaining);
    }
    json_response(
        200,
        &json!({"apiVersion": def.api_version(), "kind": format!("{}List", def.kind), "metadata": metadata, "items": items}),
    )
}

/// One watch event, `type` before `object` as a real API server writes it (Go's `WatchEvent`
/// field order; `json!` would sort `object` first).
fn event_line(kind: &str, object: &Value) -> Bytes {
    Bytes::from(format!(
        "{{\"type\":{},\"object\":{object}}}\n",
        Value::from(kind)
    ))
}

fn bookmark(def: &ResourceDef, rv: u64, initial_end: bool) -> Value {
    let mut metadata = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    json!({"apiVersion": def.api_version(), "kind": def.kind, "metadata": metadata})
}

/// A watch: initial events (synthetic ADDED, history replay, or a single 410 ERROR), then live
/// events, bookmarks, until `timeoutSeconds`, a client hang-up, or an injected drop.
async fn watch_stream(
    shared: &Arc<Shared>,
    def: &ResourceDef,
    namespace: &str,
    params: &BTreeMap<String, String>,
) -> Response {
    let filter = match Filter::from(params) {
        Ok(filter) => filter,
        Err(error) => return error_response(&error),
    };
    let requested = params.get("resourceVersion").cloned().unwrap_or_default();
    let bookmarks = params.get("allowWatchBookmarks").is_some_and(|b| b == "true");
    let send_initial = params.get("sendInitialEvents").is_some_and(|b| b == "true");
    let timeout = params
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(1800));
    let in_scope = |resource: &(String, String, String), ns: &str| {
        *resource == (def.group.clone(), def.version.clone(), def.plural.clone())
            && (namespace.is_empty() || ns == namespace)
    };

    let mut initial: Vec<(String, Value)> = Vec::new();
    let (mut live, start_rv) = {
        let store = shared.lock();
        let live = store.subscribe();
        let now_rv = store.resource_version();
        let synthetic = requested.is_empty() || requested == "0" || send_initial;
        if synthetic {
            for object in store
                .list(def, namespace)
                .into_iter()
                .filter(|o| filter.matches(o))
            {
                initial.push(("ADDED".into(), object));
            }
            if send_initial && bookmarks {
                initial.push(("BOOKMARK".into(), bookmark(def, now_rv, true)));
            }
        } else {
            let Ok(from) = requested.parse::<u64>() else {
                return error_response(&ApiError::internal(format!(
                    "resourceVersion: Invalid value: \"{requested}\": strconv.ParseUint: parsing \"{requested}\": invalid syntax"
                )));
            };
            match store.events_since(from) {
                Ok(events) => {
                    for event in events
                        .iter()
                        .filter(|e| in_scope(&e.resource, &e.namespace) && filter.matches(&e.object))
                    {
                        initial.push((event.kind.into(), event.object.clone()));
                    }
                }
                Err(expired) => initial.push(("ERROR".into(), expired.body)),
            }
        }
        (live, now_rv)
    };

    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let mut drops = shared.drop_watches.subscribe();
    let def = def.clone();
    let namespace = namespace.to_owned();
    tokio::spawn(async move {
        let expired = initial.iter().any(|(kind, _)| kind == "ERROR");
        for (kind, object) in &initial {
            if tx.send(event_line(kind, object)).await.is_err() {
                return;
            }
        }
        if expired {
            return;
        }
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        // Like the watch cache: a bookmark 2 s before the deadline (when the watch lasts longer
        // than that), then one a minute.
        let first_bookmark = timeout
            .checked_sub(Duration::from_secs(2))
            .filter(|d| !d.is_zero());
        let mut tick = tokio::time::interval_at(
            tokio::time::Instant::now() + first_bookmark.unwrap_or(timeout + Duration::from_secs(60)),
            Duration::from_secs(60),
        );
        let mut last_rv = start_rv;
        loop {
            tokio::select! {
                () = &mut deadline => return,
                _ = drops.changed() => return,
                () = tx.closed() => return,
                _ = tick.tick() => {
                    if bookmarks && tx.send(event_line("BOOKMARK", &bookmark(&def, last_rv, false))).await.is_err() {
                        return;
                    }
                }
                event = live.recv() => match event {
                    Ok(event) => {
                        if event.rv <= start_rv {
                            continue;
                        }
                        last_rv = event.rv;
                        let resource = (def.group.clone(), def.version.clone(), def.plural.clone());
                        if event.resource == resource
                            && (namespace.is_empty() || event.namespace == namespace)
                            && filter.matches(&event.object)
                            && tx.send(event_line(event.kind, &event.object)).await.is_err()
                        {
                            return;
                        }
                    }
                    // A watcher that falls behind is cut off; the client re-watches, as with a real server.
                    Err(_) => return,
                }
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|chunk| (Ok::<Bytes, std::io::Error>(chunk), rx))
    });
    let mut response = Response::new(Body::from_stream(stream));
    response
        .headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    response
}
