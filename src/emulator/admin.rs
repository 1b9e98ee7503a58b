//! The admin API under `/_emulator/` (bucket names cannot start with `_`, so it never shadows a
//! bucket): create buckets, change rules behind the operator's back, read counters, inject faults.
//! It has no authentication: the emulator is a test tool and listens on loopback by default.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, put};
use serde::Deserialize;

use super::state::{Bucket, Counters, EmulatorState, Faults, KmsKey, StoredRule};

/// The reserved path prefix.
pub const PREFIX: &str = "/_emulator";

type Shared = State<Arc<EmulatorState>>;

#[derive(Deserialize)]
struct NewBucket {
    #[serde(default)]
    region: Option<String>,
}

#[derive(Deserialize)]
struct NewKey {
    secret: String,
}

#[derive(Deserialize)]
struct ClockOffset {
    seconds: i64,
}

/// The admin routes; `default_region` is used for buckets created without one.
pub fn routes(default_region: String) -> Router<Arc<EmulatorState>> {
    Router::new()
        .route(&format!("{PREFIX}/health"), get(|| async { "ok" }))
        .route(
            &format!("{PREFIX}/counters"),
            get(counters).delete(reset_counters),
        )
        .route(&format!("{PREFIX}/buckets"), get(list_buckets))
        .route(
            &format!("{PREFIX}/buckets/{{bucket}}"),
            get(show_bucket)
                .put(
                    move |state: Shared, path: Path<String>, body: Option<Json<NewBucket>>| {
                        create_bucket(state, path, body, default_region.clone())
                    },
                )
                .delete(delete_bucket),
        )
        .route(
            &format!("{PREFIX}/buckets/{{bucket}}/rule"),
            put(set_rule).delete(clear_rule),
        )
        .route(
            &format!("{PREFIX}/buckets/{{bucket}}/seed"),
            axum::routing::post(seed_objects),
        )
        .route(
            &format!("{PREFIX}/buckets/{{bucket}}/denied-access-keys/{{key}}"),
            put(deny_key).delete(allow_key),
        )
        .route(
            &format!("{PREFIX}/faults"),
            get(show_faults).put(set_faults).delete(clear_faults),
        )
        .route(
            &format!("{PREFIX}/access-keys/{{id}}"),
            put(add_key).delete(remove_key),
        )
        .route(&format!("{PREFIX}/oidc-tokens/{{token}}"), put(accept_token))
        .route(&format!("{PREFIX}/kms-keys"), get(list_kms_keys))
        .route(
            &format!("{PREFIX}/kms-keys/{{id}}"),
            get(show_kms_key).put(put_kms_key).delete(delete_kms_key),
        )
        .route(
            &format!("{PREFIX}/kms-denied-access-keys/{{key}}"),
            put(deny_kms).delete(allow_kms),
        )
        .route(
            &format!("{PREFIX}/list-denied-access-keys/{{key}}"),
            put(deny_list).delete(allow_list),
        )
        .route(&format!("{PREFIX}/clock-offset"), put(set_clock_offset))
}

async fn counters(State(state): Shared) -> Json<Counters> {
    Json(state.counters())
}

async fn reset_counters(State(state): Shared) -> StatusCode {
    state.reset_counters();
    StatusCode::NO_CONTENT
}

async fn list_buckets(State(state): Shared) -> Json<std::collections::BTreeMap<String, Bucket>> {
    Json(state.buckets())
}

async fn show_bucket(State(state): Shared, Path(bucket): Path<String>) -> Result<Json<Bucket>, StatusCode> {
    state.bucket(&bucket).map(Json).ok_or(StatusCode::NOT_FOUND)
}

async fn create_bucket(
    State(state): Shared,
    Path(bucket): Path<String>,
    body: Option<Json<NewBucket>>,
    default_region: String,
) -> Result<StatusCode, (StatusCode, String)> {
    crate::oss::endpoint::validate_bucket_name(&bucket)
        .map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))?;
    let region = body.and_then(|Json(b)| b.region).unwrap_or(default_region);
    crate::oss::endpoint::validate_region(&region).map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))?;
    state.create_bucket(&bucket, &region);
    Ok(StatusCode::NO_CONTENT)
}

async fn delete_bucket(State(state): Shared, Path(bucket): Path<String>) -> StatusCode {
    if state.delete_bucket(&bucket) {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_FOUND
    }
}

async fn set_rule(
    State(state): Shared,
    Path(bucket): Path<String>,
    Json(rule): Json<StoredRule>,
) -> Result<StatusCode, (StatusCode, String)> {
    if rule.algorithm.trim().is_empty() {
        return Err((StatusCode::BAD_REQUEST, "algorithm must not be empty".into()));
    }
    if state.set_rule(&bucket, Some(rule)) {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err((StatusCode::NOT_FOUND, format!("no bucket {bucket}")))
    }
}

/// Adds many objects at once: `{"prefix": "logs/", "count": 1000000, "encryptions":
/// [{"algorithm": "KMS", "keyId": "k1"}, {}], "lastModified": "2024-01-01T00:00:00Z", "size": 1}`.
async fn seed_objects(
    State(state): Shared,
    Path(bucket): Path<String>,
    Json(seed): Json<super::objects::Seed>,
) -> Result<StatusCode, (StatusCode, String)> {
    if state.bucket(&bucket).is_none() {
        return Err((StatusCode::NOT_FOUND, format!("no bucket {bucket}")));
    }
    state
        .seed_objects(&bucket, seed)
        .map(|()| StatusCode::NO_CONTENT)
        .map_err(|e| (StatusCode::BAD_REQUEST, e))
}

async fn clear_rule(State(state): Shared, Path(bucket): Path<String>) -> StatusCode {
    if state.set_rule(&bucket, None) {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_FOUND
    }
}

async fn deny_key(State(state): Shared, Path((bucket, key)): Path<(String, String)>) -> StatusCode {
    if state.set_access_denied(&bucket, &key, true) {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_FOUND
    }
}

async fn allow_key(State(state): Shared, Path((bucket, key)): Path<(String, String)>) -> StatusCode {
    if state.set_access_denied(&bucket, &key, false) {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_FOUND
    }
}

async fn show_faults(State(state): Shared) -> Json<Faults> {
    Json(state.faults())
}

async fn set_faults(
    State(state): Shared,
    Json(faults): Json<Faults>,
) -> Result<StatusCode, (StatusCode, String)> {
    let rates = [
        faults.internal_error_rate,
        faults.throttle_rate,
        faults.kms_error_rate,
        faults.kms_throttle_rate,
        faults.reset_rate,
    ];
    if rates.iter().any(|r| !(0.0..=1.0).contains(r)) {
        return Err((StatusCode::BAD_REQUEST, "rates must be between 0 and 1".into()));
    }
    state.set_faults(faults);
    Ok(StatusCode::NO_CONTENT)
}

async fn clear_faults(State(state): Shared) -> StatusCode {
    state.set_faults(Faults::default());
    StatusCode::NO_CONTENT
}

async fn add_key(State(state): Shared, Path(id): Path<String>, Json(key): Json<NewKey>) -> StatusCode {
    state.add_access_key(&id, &key.secret);
    StatusCode::NO_CONTENT
}

async fn remove_key(State(state): Shared, Path(id): Path<String>) -> StatusCode {
    state.remove_access_key(&id);
    StatusCode::NO_CONTENT
}

async fn accept_token(State(state): Shared, Path(token): Path<String>) -> StatusCode {
    state.accept_oidc_token(&token);
    StatusCode::NO_CONTENT
}

async fn set_clock_offset(State(state): Shared, Json(offset): Json<ClockOffset>) -> StatusCode {
    state.set_clock_offset(jiff::SignedDuration::from_secs(offset.seconds));
    StatusCode::NO_CONTENT
}

async fn list_kms_keys(State(state): Shared) -> Json<std::collections::BTreeMap<String, KmsKey>> {
    Json(state.kms_keys())
}

async fn show_kms_key(State(state): Shared, Path(id): Path<String>) -> Result<Json<KmsKey>, StatusCode> {
    state.kms_key(&id).map(Json).ok_or(StatusCode::NOT_FOUND)
}

/// Creates a key or changes one: fields left out keep their value (a new key starts Enabled,
/// `Aliyun_AES_256`, `ENCRYPT/DECRYPT`, in cn-hangzhou).
async fn put_kms_key(
    State(state): Shared,
    Path(id): Path<String>,
    Json(change): Json<serde_json::Value>,
) -> Result<StatusCode, (StatusCode, String)> {
    let bad = |e: String| (StatusCode::BAD_REQUEST, e);
    let current = state.kms_key(&id).unwrap_or_default();
    let mut merged = serde_json::to_value(current).map_err(|e| bad(e.to_string()))?;
    let (Some(target), Some(fields)) = (merged.as_object_mut(), change.as_object()) else {
        return Err(bad("the body must be a JSON object".into()));
    };
    for (name, value) in fields {
        target.insert(name.clone(), value.clone());
    }
    let key: KmsKey = serde_json::from_value(merged).map_err(|e| bad(e.to_string()))?;
    crate::oss::endpoint::validate_region(&key.region).map_err(|e| bad(e.to_string()))?;
    state.put_kms_key(&id, key);
    Ok(StatusCode::NO_CONTENT)
}

async fn delete_kms_key(State(state): Shared, Path(id): Path<String>) -> StatusCode {
    if state.delete_kms_key(&id) {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_FOUND
    }
}

async fn deny_kms(State(state): Shared, Path(key): Path<String>) -> StatusCode {
    state.set_kms_denied(&key, true);
    StatusCode::NO_CONTENT
}

async fn allow_kms(State(state): Shared, Path(key): Path<String>) -> StatusCode {
    state.set_kms_denied(&key, false);
    StatusCode::NO_CONTENT
}

async fn deny_list(State(state): Shared, Path(key): Path<String>) -> StatusCode {
    state.set_list_denied(&key, true);
    StatusCode::NO_CONTENT
}

async fn allow_list(State(state): Shared, Path(key): Path<String>) -> StatusCode {
    state.set_list_denied(&key, false);
    StatusCode::NO_CONTENT
}
