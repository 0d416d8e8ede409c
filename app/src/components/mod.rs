mod exit_code;
mod top_bar;

pub use exit_code::exit_code;
pub use top_bar::TopBar;
