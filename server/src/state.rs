use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderMap;
use axum::http::header::HOST;

use axum::extract::FromRef;
use cmdop_store::Store;
use leptos::config::LeptosOptions;

use crate::auth::LoginLimiter;
use crate::ingest::Writer;
use crate::live::Hub;

/// Default of `--recorder-grace`: how long a session waits for a vanished recorder before it ends.
pub const DEFAULT_RECORDER_GRACE: Duration = Duration::from_secs(5 * 60);

/// What every handler shares. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    /// Group-commits recorder output.
    pub writer: Writer,
    /// Tells live viewers about commits.
    pub hub: Arc<Hub>,
    /// Where people reach the inspector (`--public-url`), for the session URLs handed to recorders.
    pub public_url: Option<String>,
    /// A session whose recorder is silent this long ends as `recorder_lost`.
    pub recorder_grace: Duration,
    pub leptos_options: LeptosOptions,
    pub login_limiter: Arc<LoginLimiter>,
    /// Login cookies get `Secure` when the inspector is served over https.
    pub secure_cookies: bool,
    /// How long a login lasts.
    pub login_ttl: chrono::Duration,
}

impl AppState {
    /// Must be called within a tokio runtime: it starts the transcript writer task.
    pub fn new(store: Arc<dyn Store>, public_url: Option<&str>) -> Self {
        let hub = Arc::new(Hub::default());
        // Between replicas on PostgreSQL, the hub's changes travel as NOTIFYs (nothing happens on SQLite).
        let (relay_store, relay_hub) = (store.clone(), hub.clone());
        tokio::spawn(async move {
            if let Some(tx) = crate::live::relay::start(relay_store.clone(), relay_hub.clone()).await {
                relay_hub.set_relay(relay_store.replica_id(), tx);
            }
        });
        AppState {
            writer: Writer::spawn(store.clone(), hub.clone()),
            hub,
            public_url: public_url.map(|u| u.trim_end_matches('/').to_string()),
            recorder_grace: DEFAULT_RECORDER_GRACE,
            store,
            leptos_options: leptos_options(),
            login_limiter: Arc::new(LoginLimiter::default()),
            secure_cookies: public_url.is_some_and(|u| u.starts_with("https://")),
            login_ttl: chrono::Duration::days(7),
        }
    }
}

impl AppState {
    /// The inspector's base URL: `--public-url`, else what the request was addressed to.
    pub fn base_url(&self, headers: &HeaderMap) -> String {
        if let Some(url) = &self.public_url {
            return url.clone();
        }
        let host = headers.get(HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
        format!("http://{host}")
    }

    /// Browsers send `Origin` on WebSocket handshakes and may attach the login cookie to a socket another site
    /// opens: a socket whose origin is not the inspector's own is refused. Programs (recorders, bots) send none.
    pub fn check_socket_origin(&self, headers: &HeaderMap) -> Result<(), crate::error::ApiError> {
        let Some(origin) = headers.get(axum::http::header::ORIGIN) else { return Ok(()) };
        let origin = origin.to_str().unwrap_or_default().trim_end_matches('/');
        let ours = self.base_url(headers);
        let https_same_host = ours.strip_prefix("http://").map(|rest| format!("https://{rest}"));
        if origin == ours || https_same_host.as_deref() == Some(origin) {
            return Ok(());
        }
        Err(cmdop_store::StoreError::Forbidden(format!("WebSocket from origin {origin:?} refused: not {ours}")).into())
    }

    /// How often a connected recorder's session is marked alive: well within the grace period.
    pub fn recorder_heartbeat(&self) -> Duration {
        (self.recorder_grace / 4).clamp(Duration::from_millis(50), Duration::from_secs(30))
    }
}

/// Leptos options built in code, so that the binary needs neither cargo-leptos's environment nor a Cargo.toml
/// beside it.
pub fn leptos_options() -> LeptosOptions {
    LeptosOptions::builder().output_name(cmdop_inspector::OUTPUT_NAME).site_pkg_dir("pkg").build()
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos_options.clone()
    }
}
