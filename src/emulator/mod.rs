//! The OSS emulator: a small HTTP server that speaks the real wire protocol of the three
//! bucket-encryption APIs (and STS `AssumeRoleWithOIDC` for RRSA), verifies V1/V4 signatures and
//! STS tokens, keeps state (optionally persisted), counts requests and injects faults.
//!
//! It is a test and demo tool: tests and benchmarks start it in-process with [`Emulator::start`],
//! the `oss-emulator` binary runs it standalone, and the CLI's `--emulator` mode embeds it.

mod admin;
mod api;
mod auth;
mod reply;
pub mod state;
mod sts;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::response::Response;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use admin::PREFIX as ADMIN_PREFIX;
pub use auth::MAX_SKEW;
pub use state::{Bucket, Counters, EmulatorState, Faults, StoredRule};

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
    /// Keep buckets and rules in this JSON file (atomic writes) so a restart loses nothing.
    pub persist_path: Option<PathBuf>,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            access_keys: Vec::new(),
            buckets: Vec::new(),
            default_region: "cn-hangzhou".to_owned(),
            oidc_tokens: Vec::new(),
            persist_path: None,
        }
    }
}

/// A running emulator. Dropping it stops the server.
pub struct Emulator {
    addr: SocketAddr,
    state: Arc<EmulatorState>,
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
        for (name, region) in &config.buckets {
            state.create_bucket(name, region);
        }
        for token in &config.oidc_tokens {
            state.accept_oidc_token(token);
        }
        let listener = tokio::net::TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let app = router(state.clone(), config.default_region.clone());
        let (shutdown, signal) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = signal.await;
                })
                .await;
            if let Err(error) = served {
                tracing::error!(%error, "OSS emulator stopped");
            }
        });
        tracing::info!(%addr, "OSS emulator listening");
        Ok(Self {
            addr,
            state,
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

fn router(state: Arc<EmulatorState>, default_region: String) -> Router {
    admin::routes(default_region)
        .fallback(serve_oss)
        .with_state(state)
}

/// Everything that is not admin: STS (`?Action=`) or the OSS API.
async fn serve_oss(State(state): State<Arc<EmulatorState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body: Bytes = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(body) => body,
        Err(_) => {
            let fault = reply::OssFault::new(
                400,
                "EntityTooLarge",
                "Your proposed upload exceeds the maximum allowed size.",
                "0000-00000000",
            );
            return reply::error_response(&fault, &state.next_request_id(), "", "");
        }
    };
    let raw_query = parts.uri.query().unwrap_or("");
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
