mod login;
mod not_found;
mod sessions;

pub use login::{is_local_path, LoginPage};
pub use not_found::NotFound;
pub use sessions::SessionsPage;
