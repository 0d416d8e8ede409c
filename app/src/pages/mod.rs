mod login;
mod not_found;
mod session;
mod sessions;

pub use login::{LoginPage, is_local_path};
pub use not_found::NotFound;
pub use session::{LiveState, SessionPage};
pub use sessions::SessionsPage;

use leptos::prelude::ServerFnError;

/// A server function's error as the page says it.
pub(crate) fn error_text(e: &ServerFnError) -> String {
    match e {
        ServerFnError::ServerError(msg) => msg.clone(),
        other => format!("Could not load this page: {other}"),
    }
}

/// The list's URL for a query string; a bare `/sessions` when there is none.
pub(crate) fn sessions_href(query: &str) -> String {
    if query.is_empty() { "/sessions".to_string() } else { format!("/sessions?{query}") }
}
