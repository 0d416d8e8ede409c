//! The HTTP API client: authenticated GETs whose errors carry the server's own message.

use std::time::Duration;

use cmdop_protocol::ErrorBody;
use serde::de::DeserializeOwned;

use crate::config::Target;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The server answered with an error status; `message` is its `{"error"}` text when it sent one.
    #[error("{message} (HTTP {status})")]
    Status { status: u16, message: String },
    #[error("cannot reach {url}: {detail}")]
    Unreachable { url: String, detail: String },
    #[error("unexpected answer from {url}: {detail}")]
    BadBody { url: String, detail: String },
}

impl ApiError {
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

pub struct Api {
    client: reqwest::Client,
    target: Target,
}

impl Api {
    pub fn new(target: Target) -> anyhow::Result<Self> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .user_agent(concat!("cmdop/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .build()?;
        Ok(Api { client, target })
    }

    pub fn server(&self) -> &str {
        &self.target.server
    }

    /// `GET {server}{path}` with `query`, decoded as `T`.
    pub async fn get<T: DeserializeOwned>(&self, path: &str, query: &[(&str, &str)]) -> Result<T, ApiError> {
        let url = self.target.url(path);
        let unreachable = |e: reqwest::Error| ApiError::Unreachable { url: url.clone(), detail: error_chain(&e) };
        let response =
            self.client.get(&url).query(query).bearer_auth(&self.target.token).send().await.map_err(unreachable)?;
        let status = response.status();
        let body = response.bytes().await.map_err(unreachable)?;
        if !status.is_success() {
            let message = match serde_json::from_slice::<ErrorBody>(&body) {
                Ok(e) => e.error,
                Err(_) if body.is_empty() => status.canonical_reason().unwrap_or("error").to_string(),
                Err(_) => String::from_utf8_lossy(&body[..body.len().min(200)]).trim().to_string(),
            };
            return Err(ApiError::Status { status: status.as_u16(), message });
        }
        serde_json::from_slice(&body).map_err(|e| ApiError::BadBody { url, detail: e.to_string() })
    }
}

/// reqwest's top-level message only says "error sending request for url (...)": the causes say what went wrong.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut causes = Vec::new();
    let mut source = e.source();
    while let Some(s) = source {
        causes.push(s.to_string());
        source = s.source();
    }
    if causes.is_empty() { e.to_string() } else { causes.join(": ") }
}

/// Runs `future` on a small runtime (the HTTP commands are one request or a few).
pub fn block_on<F: std::future::Future>(future: F) -> anyhow::Result<F::Output> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    Ok(runtime.block_on(future))
}
