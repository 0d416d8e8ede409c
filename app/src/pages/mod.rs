mod login;
mod not_found;
mod sessions;

pub use login::{LoginPage, is_local_path};
pub use not_found::NotFound;
pub use sessions::SessionsPage;
