use std::sync::Arc;

use axum::extract::FromRef;
use cmdop_store::Store;
use leptos::config::LeptosOptions;

use crate::auth::LoginLimiter;

/// What every handler shares. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub leptos_options: LeptosOptions,
    pub login_limiter: Arc<LoginLimiter>,
    /// Login cookies get `Secure` when the inspector is served over https.
    pub secure_cookies: bool,
    /// How long a login lasts.
    pub login_ttl: chrono::Duration,
}

impl AppState {
    pub fn new(store: Arc<dyn Store>, public_url: Option<&str>) -> Self {
        AppState {
            store,
            leptos_options: leptos_options(),
            login_limiter: Arc::new(LoginLimiter::default()),
            secure_cookies: public_url.is_some_and(|u| u.starts_with("https://")),
            login_ttl: chrono::Duration::days(7),
        }
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
