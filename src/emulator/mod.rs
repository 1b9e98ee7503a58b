//! The OSS emulator: a small HTTP server that speaks the real wire protocol of the three
//! bucket-encryption APIs (with STS `AssumeRoleWithOIDC` for RRSA and KMS `DescribeKey` for the
//! key pre-flight), verifies V1/V4 signatures and
//! STS tokens, keeps state (optionally persisted), counts requests and injects faults.
//!
//! It is a test and demo tool: tests and benchmarks start it in-process with [`Emulator::start`],
//! the `oss-emulator` binary runs it standalone, and the CLI's `--emulator` mode embeds it.

mod admin;
mod api;
mod auth;
mod body;
mod kms;
pub mod objects;
mod persist;
mod reply;
pub mod state;
mod sts;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::response::Response;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use admin::PREFIX as ADMIN_PREFIX;
pub use auth::MAX_SKEW;
pub use body::FREE_BYTES as BODY_FREE_BYTES;
pub use state::{Bucket, Counters, EmulatorState, Faults, KmsKey, StoredRule};

use crate::oss::Endpoint;

/// Bodies larger than this are refused (an encryption rule is ~300 bytes).
const MAX_BODY: usize = 64 * 1024;

/// What the emulator starts with.
#[derive(Clone, Debug)]
pub struct EmulatorConfig {
    /// Address to listen on; port 0 picks a free one.
    pub listen: SocketAddr,
    /// Long-lived access keys: (id, secret).
    pub access_keys: Vec<(String, String)>,
    /// Buckets to create: (name, region).
    pub buckets: Vec<(String, String)>,
    /// Region of buckets created without one.
    pub default_region: String,
    /// OIDC tokens STS accepts.
    pub oidc_tokens: Vec<String>,
    /// KMS keys: (key id, key).
    pub kms_keys: Vec<(String, KmsKey)>,
    /// Keep buckets and rules in this JSON file (atomic writes) so a restart loses nothing.
    pub persist_path: Option<PathBuf>,
    /// A connection that has not sent a complete request head within this time is closed.
    pub header_read_timeout: Duration,
    /// A request whose body is not complete within this time (from its head) is answered
    /// `400 RequestTimeout` and its connection closed.
    pub body_read_timeout: Duration,
    /// Bytes that all bodies being read may hold together (beyond [`BODY_FREE_BYTES`] each);
    /// a body that would need more is answered `503 ServiceUnavailable`.
    pub body_budget: usize,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            access_keys: Vec::new(),
            buckets: Vec::new(),
            default_region: "cn-hangzhou".to_owned(),
            oidc_tokens: Vec::new(),
            kms_keys: Vec::new(),
            persist_path: None,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            body_budget: 8 * 1024 * 1024,
        }
    }
}

/// A running emulator. Dropping it stops the server.
pub struct Emulator {
    addr: SocketAddr,
    state: Arc<EmulatorState>,
    bodies: Arc<body::BodyReader>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Emulator {
    /// Binds and serves in the background.
    pub async fn start(config: EmulatorConfig) -> std::io::Result<Self> {
        let state = Arc::new(EmulatorState::new(config.persist_path.clone())?);
        for (id, secret) in &config.access_keys {
            state.add_access_key(id, secret);
        }
        state.create_buckets(&config.buckets);
        for token in &config.oidc_tokens {
            state.accept_oidc_token(token);
        }
        for (id, key) in &config.kms_keys {
            state.put_kms_key(id, key.clone());
        }
        let listener = tokio::net::TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let bodies = body::BodyReader::new(MAX_BODY, config.body_read_timeout, config.body_budget);
        let app = router(state.clone(), config.default_region.clone(), bodies.clone());
        let (shutdown, signal) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, app, config.header_read_timeout, signal));
        tracing::info!(%addr, "OSS emulator listening");
        Ok(Self {
            addr,
            state,
            bodies,
            shutdown: Some(shutdown),
            task: Some(task),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The endpoint a client should use (path-style, plain http on loopback).
    pub fn endpoint(&self) -> Endpoint {
        Endpoint::parse(&self.url()).expect("a socket address is a valid endpoint")
    }

    /// Direct access to the state (set rules, read counters, inject faults) for in-process users.
    pub fn state(&self) -> &Arc<EmulatorState> {
        &self.state
    }

    /// How many OSS/KMS/STS request bodies are being read right now.
    pub fn bodies_reading(&self) -> usize {
        self.bodies.reading()
    }

    /// Bytes of the shared body budget held right now.
    pub fn body_budget_in_use(&self) -> usize {
        self.bodies.budget_in_use()
    }

    /// Stops accepting requests and waits for the server task.
    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// Accepts connections until `stop` fires; each is served over HTTP/1.1 with a header-read
/// timeout, so half-open connections cannot pile up. Open connections end with the server.
async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    header_read_timeout: Duration,
    mut stop: oneshot::Receiver<()>,
) {
    let mut connections = tokio::task::JoinSet::new();
    let mut peak_since_trim = 0usize;
    let mut last_trim = std::time::Instant::now();
    loop {
        let accepted = tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => accepted,
            // Reap finished connections so the set does not grow; when most of a crowd has
            // left, hand its memory back to the OS.
            Some(_) = connections.join_next(), if !connections.is_empty() => {
                if peak_since_trim >= TRIM_AFTER_CONNECTIONS
                    && connections.len() < peak_since_trim / 4
                    && last_trim.elapsed() >= Duration::from_secs(1)
                {
                    peak_since_trim = connections.len();
                    last_trim = std::time::Instant::now();
                    tokio::task::spawn_blocking(release_freed_memory);
                }
                continue;
            }
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracing::warn!(%error, "OSS emulator could not accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        connections.spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(header_read_timeout)
                // A connection's read buffer stays small (request heads are a few KiB; bodies
                // are copied out as they arrive), whatever a client sends.
                .max_buf_size(READ_BUFFER)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            if let Err(error) = connection.await {
                tracing::debug!(%error, "OSS emulator connection ended");
            }
        });
        peak_since_trim = peak_since_trim.max(connections.len());
    }
    connections.shutdown().await;
}

/// The most a connection's read buffer grows to (hyper's minimum is 8 KiB).
const READ_BUFFER: usize = 16 * 1024;

/// Freed memory is handed back after a crowd of at least this many connections has left.
const TRIM_AFTER_CONNECTIONS: usize = 256;

/// Gives freed heap memory back to the OS: glibc keeps what many connections freed in its
/// arenas, so without this the emulator's RSS would stay at its peak after a crowd has left.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn malloc_trim(pad: usize) -> std::ffi::c_int;
        }
        // SAFETY: glibc's malloc_trim only returns free pages of its own heaps to the kernel;
        // it takes no pointers and is thread-safe.
        unsafe {
            malloc_trim(0);
        }
    }
}

fn router(state: Arc<EmulatorState>, default_region: String, bodies: Arc<body::BodyReader>) -> Router {
    // Admin bodies are read under the same deadline, cap and budget (not counted as OSS calls).
    let admin_bodies = bodies.clone();
    let admin_body = axum::middleware::from_fn(move |request: Request, next: axum::middleware::Next| {
        let bodies = admin_bodies.clone();
        async move {
            let (parts, body) = request.into_parts();
            match bodies.read(body).await {
                Ok(bytes) => {
                    next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
                        .await
                }
                Err(error) => {
                    let status = match error {
                        body::BodyError::TooLarge => axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                        body::BodyError::TimedOut | body::BodyError::Broken => {
                            axum::http::StatusCode::REQUEST_TIMEOUT
                        }
                        body::BodyError::OverBudget => axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    };
                    let mut response =
                        Response::new(axum::body::Body::from(format!("body refused: {error:?}\n")));
                    *response.status_mut() = status;
                    response.headers_mut().insert(
                        axum::http::header::CONNECTION,
                        axum::http::HeaderValue::from_static("close"),
                    );
                    response
                }
            }
        }
    });
    admin::routes(default_region)
        .route_layer(admin_body)
        .fallback(move |State(state): State<Arc<EmulatorState>>, request: Request| {
            serve_oss(state, bodies.clone(), request)
        })
        .with_state(state)
}

/// The answer to a body that was not read: answered and counted like any other request, and
/// the connection closed (the rest of the body is never read).
fn body_refused(state: &EmulatorState, method: &axum::http::Method, error: body::BodyError) -> Response {
    use body::BodyError;
    let fault = match error {
        BodyError::TooLarge => reply::OssFault::new(
            400,
            "EntityTooLarge",
            "Your proposed upload exceeds the maximum allowed size.",
            "0005-00000002",
        ),
        // OSS lists `RequestTimeout` (400) among its common error codes; the message is the
        // S3-lineage one, the EC is not documented.
        BodyError::TimedOut | BodyError::Broken => reply::OssFault::new(
            400,
            "RequestTimeout",
            "Your socket connection to the server was not read from or written to within the timeout period.",
            "0002-00000000",
        ),
        BodyError::OverBudget => reply::OssFault::new(
            503,
            "ServiceUnavailable",
            "Thread pool is almost full, please retry later",
            "0004-00000301",
        ),
    };
    let request_id = state.next_request_id();
    state.count(api::api_name(method), fault.status);
    let mut response = reply::error_response(&fault, &request_id, "", "");
    response.headers_mut().insert(
        axum::http::header::CONNECTION,
        axum::http::HeaderValue::from_static("close"),
    );
    reply::finish(response, &request_id, state.now())
}

/// Everything that is not admin: KMS (`x-acs-action`), STS (`?Action=`) or the OSS API.
async fn serve_oss(state: Arc<EmulatorState>, bodies: Arc<body::BodyReader>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body: Bytes = match bodies.read(body).await {
        Ok(body) => body,
        Err(error) => return body_refused(&state, &parts.method, error),
    };
    let raw_query = parts.uri.query().unwrap_or("");
    if kms::is_kms(&parts.headers, raw_query) {
        return kms::handle(
            state,
            &parts.method,
            parts.uri.path(),
            raw_query,
            &parts.headers,
            &body,
        )
        .await;
    }
    if sts::is_sts(raw_query) {
        return sts::handle(state, raw_query, body).await;
    }
    api::handle(
        state,
        parts.method,
        parts.uri.path(),
        raw_query,
        &parts.headers,
        body,
    )
    .await
}
