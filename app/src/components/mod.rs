mod top_bar;

pub use top_bar::AccountBar;
