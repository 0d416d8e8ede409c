//! The sessions inspector's store: one [`Store`] trait, two implementations (SQLite, the embedded default, and
//! PostgreSQL, for several replicas on one database), one migration set each.
//!
//! Visibility lives here: every read takes a [`Viewer`] and the SQL itself filters, so a caller cannot forget it.
//! An invisible session is [`StoreError::NotFound`], exactly like a missing one.

mod clock;
mod error;
mod model;
pub mod notify;
mod postgres;
pub mod secrets;
mod sql;
mod sqlite;
mod store;
#[cfg(feature = "testing")]
pub mod testing;
mod ts;
mod wal_checkpointer;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{StoreError, StoreResult};
pub use model::*;
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;
pub use store::{Backend, Store};

use std::sync::Arc;

/// Opens the store a database URL names: `postgres://...` (or `postgresql://`) for PostgreSQL, `sqlite://PATH`
/// or a plain file path for SQLite. Migrates before returning.
pub async fn open(database_url: &str, clock: Arc<dyn Clock>) -> StoreResult<Arc<dyn Store>> {
    if database_url.starts_with("postgres://") || database_url.starts_with("postgresql://") {
        Ok(Arc::new(PostgresStore::connect(database_url, clock).await?))
    } else {
        let path = database_url.strip_prefix("sqlite://").unwrap_or(database_url);
        Ok(Arc::new(SqliteStore::open(std::path::Path::new(path), clock).await?))
    }
}
