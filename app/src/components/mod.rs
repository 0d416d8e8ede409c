mod client_icons;
mod exit_code;
mod top_bar;

pub use client_icons::{ClientIcons, kind_label};
pub use exit_code::exit_code;
pub use top_bar::TopBar;
