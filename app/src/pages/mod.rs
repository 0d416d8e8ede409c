mod login;
mod not_found;
mod session;
mod sessions;

pub use login::{LoginPage, is_local_path};
pub use not_found::NotFound;
pub use session::{LiveState, SessionPage};
pub use sessions::SessionsPage;
pub(crate) use sessions::sessions_href;

use leptos::prelude::ServerFnError;

/// A server function's error as the page says it.
pub(crate) fn error_text(e: &ServerFnError) -> String {
    match e {
        ServerFnError::ServerError(msg) => msg.clone(),
        other => format!("Could not load this page: {other}"),
    }
}
