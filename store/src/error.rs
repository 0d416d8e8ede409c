/// What can go wrong in the store. Each variant maps to one HTTP status at the edge.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Missing, or not visible to the viewer (the two are indistinguishable on purpose).
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// The caller is known but may not do this (e.g. record on a machine they are not granted).
    #[error("{0}")]
    Forbidden(String),
    /// Bad input: which field, and what was wrong with it.
    #[error("{field}: {message}")]
    Invalid { field: &'static str, message: String },
    /// A write that does not fit what is stored (e.g. transcript bytes that disagree with stored ones).
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// From SQLite's group commit, which runs on the raw connection (`sqlite::direct`).
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl StoreError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        StoreError::Invalid { field, message: message.into() }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Turns a unique-constraint violation into `AlreadyExists(what)`, anything else into `Database`.
pub(crate) fn unique_as(what: impl FnOnce() -> String) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |e| match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::AlreadyExists(what()),
        _ => StoreError::Database(e),
    }
}
