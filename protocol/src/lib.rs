//! Wire types shared by the `cmdop` recorder, the inspector server and the browser.
//!
//! Serde only and wasm-safe: no Leptos, no tokio. Field names here are the public JSON API (v1), so a change
//! here is a change of the API: add fields, never rename or remove them within a version.

pub mod api;
pub mod filter;
pub mod ingest;
pub mod live;
pub mod size;
pub mod time;

pub use api::*;
pub use filter::{SessionFilter, TimeRange};
pub use size::parse_size;

/// Version of the JSON API these types describe (`/api/v1`).
pub const API_VERSION: u32 = 1;
