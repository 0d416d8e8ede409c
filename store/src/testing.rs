//! Throwaway stores for tests (feature `testing`): a SQLite file in a temp dir, or a fresh PostgreSQL database
//! per store, so that test runs never collide. PostgreSQL comes from `CMDOP_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`); the database is dropped when the `TestStore` is.

use std::sync::Arc;

use crate::{ManualClock, PostgresStore, SqliteStore, Store};

/// Expands each listed `async fn(TestStore)` into one `#[tokio::test]` per backend, in modules `sqlite` and
/// `postgres`: the way every store-backed test runs against both.
#[macro_export]
macro_rules! for_each_backend {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::$name($crate::testing::TestStore::sqlite().await).await } )*
        }
        mod postgres {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::$name($crate::testing::TestStore::postgres().await).await } )*
        }
    };
}

/// Asserts that `$result` is `Err($pat)` and evaluates to the error; otherwise panics saying what it was.
#[macro_export]
macro_rules! assert_err {
    ($result:expr, $pat:pat) => {
        $crate::assert_err!($result, $pat, "")
    };
    ($result:expr, $pat:pat, $($ctx:tt)+) => {
        match $result {
            Err(e @ $pat) => e,
            other => panic!("expected Err({}), got {:?}: {}", stringify!($pat), other, format!($($ctx)+)),
        }
    };
}

/// A `bash -l` session, 80x24, on `machine`, started by `by` now.
pub fn new_session(machine: &crate::Machine, by: &crate::Member) -> crate::NewSession {
    crate::NewSession {
        fleet_id: machine.fleet_id,
        machine_id: machine.id,
        started_by: by.id,
        command: "bash -l".into(),
        cols: 80,
        rows: 24,
        chat_thread_id: None,
        started_at: None,
    }
}

/// Fleet `acme` with machine `web-1` and its owner `o@example.com`: where a test of one session's writes starts.
pub async fn owner_and_machine(store: &dyn crate::Store) -> (crate::Member, crate::Machine) {
    let fleet = store.create_fleet("acme").await.expect("fleet");
    let machine = store.create_machine(fleet.id, "web-1").await.expect("machine");
    let new = crate::NewMember {
        email: "o@example.com".into(),
        display_name: "O".into(),
        password_hash: None,
        is_bot: false,
    };
    let owner = store.create_member(new).await.expect("member");
    store.add_fleet_member(fleet.id, owner.id, crate::Role::Owner).await.expect("owner");
    (owner, machine)
}

pub const DEFAULT_TEST_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

pub struct TestStore {
    pub store: Arc<dyn Store>,
    pub clock: Arc<ManualClock>,
    /// The URL the store was opened with (a SQLite path or a PostgreSQL URL), for opening it again.
    pub url: String,
    cleanup: Cleanup,
}

enum Cleanup {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres { admin_url: String, database: String },
}

impl TestStore {
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("inspector.db");
        let clock = Arc::new(ManualClock::at_epoch_2026());
        let store = SqliteStore::open(&path, clock.clone()).await.expect("open sqlite");
        TestStore { store: Arc::new(store), clock, url: path.display().to_string(), cleanup: Cleanup::Sqlite(dir) }
    }

    pub async fn postgres() -> Self {
        let admin_url =
            std::env::var("CMDOP_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_TEST_POSTGRES_URL.to_string());
        let database = format!("cmdop_test_{}", uuid::Uuid::now_v7().simple());
        let admin = sqlx::PgPool::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {admin_url} is needed for the conformance suite: {e}"));
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {database}")))
            .execute(&admin)
            .await
            .expect("create test database");
        admin.close().await;
        let url = with_database(&admin_url, &database);
        let clock = Arc::new(ManualClock::at_epoch_2026());
        let store = PostgresStore::connect(&url, clock.clone()).await.expect("connect postgres");
        TestStore { store: Arc::new(store), clock, url, cleanup: Cleanup::Postgres { admin_url, database } }
    }

    pub async fn of(backend: crate::store::Backend) -> Self {
        match backend {
            crate::store::Backend::Sqlite => Self::sqlite().await,
            crate::store::Backend::Postgres => Self::postgres().await,
        }
    }
}

/// `postgres://host/db?x` with the database part replaced.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = url.split_once('?').map(|(b, q)| (b, Some(q))).unwrap_or((url, None));
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_part = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{host_part}/{database}?{q}"),
        None => format!("{host_part}/{database}"),
    }
}

impl Drop for TestStore {
    fn drop(&mut self) {
        if let Cleanup::Postgres { admin_url, database } = &self.cleanup {
            let (admin_url, database) = (admin_url.clone(), database.clone());
            // Drop runs outside any async context we could await in: use a runtime of its own, on its own thread.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
                rt.block_on(async {
                    if let Ok(admin) = sqlx::PgPool::connect(&admin_url).await {
                        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS {database} WITH (FORCE)"
                        )))
                        .execute(&admin)
                        .await;
                        admin.close().await;
                    }
                });
            })
            .join();
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn database_is_replaced_in_urls() {
        assert_eq!(super::with_database("postgres://u@h:5432/postgres", "x"), "postgres://u@h:5432/x");
        assert_eq!(super::with_database("postgres://h", "x"), "postgres://h/x");
        assert_eq!(super::with_database("postgres://h/db?sslmode=disable", "x"), "postgres://h/x?sslmode=disable");
    }
}
