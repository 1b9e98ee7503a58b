//! The HTTP ground rules every client here follows (OSS, STS, and any later one): redirects are
//! never followed (these APIs answer directly; following one would carry signed requests and
//! tokens past the endpoint allow-list), and response bodies are read with a size cap.

use bytes::{Bytes, BytesMut};

/// The largest response body read (an encryption rule or an error is well under 4 KiB).
pub const BODY_LIMIT: usize = 1024 * 1024;

/// A reqwest client builder with redirects disabled.
pub fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none())
}

/// Why a response body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the response body is larger than {limit} bytes; not read")]
    TooLarge { limit: usize },
    #[error("{0}")]
    Transport(#[from] reqwest::Error),
}

/// A 3xx answer: `(status, Location)`; `None` for any other status.
pub fn redirect(response: &reqwest::Response) -> Option<(u16, String)> {
    let status = response.status();
    status.is_redirection().then(|| {
        let location = response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("(no Location header)");
        (status.as_u16(), location.chars().take(300).collect())
    })
}

/// Reads the body, refusing (without reading further) once it would exceed `limit` bytes.
pub async fn read_body(mut response: reqwest::Response, limit: usize) -> Result<Bytes, BodyError> {
    if response
        .content_length()
        .is_some_and(|length| length > limit as u64)
    {
        return Err(BodyError::TooLarge { limit });
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}
