//! `cmdop-inspector admin ...` (through `admin::run`) and `serve --demo` seeding (through `demo::seed`), checked
//! through the store and over HTTP. Every test runs against SQLite and PostgreSQL.

mod common;

use axum::http::StatusCode;
use cmdop_inspector_server::admin::{self, AdminCommand, FleetCommand, MachineCommand, MemberCommand, TokenCommand};
use cmdop_inspector_server::demo;
use cmdop_protocol::SessionState;
use cmdop_store::assert_err;
use cmdop_store::testing::TestStore;
use cmdop_store::{Backend, NewMember, NewSession, Role, SessionQuery, StoreError, Viewer, secrets};
use common::*;

common::both_backends!(
    fleet_create_and_duplicate,
    fleet_set_transcript_limit,
    member_add_rejects_a_short_password_and_stores_nothing,
    member_add_without_password_prints_one_that_signs_in,
    member_add_bot_gets_no_password,
    member_join_checks_role_fleet_and_member,
    machine_add,
    grant_lets_a_member_see_the_machine,
    token_create_prints_a_token_that_authenticates,
    secrets_are_not_stored_in_the_clear,
    demo_seed_creates_the_demo_once,
);

// ------------------------------------------------------------------------------------------------------------
// helpers

async fn run(t: &TestStore, command: AdminCommand) -> Result<String, StoreError> {
    admin::run(&*t.store, command).await
}

fn fleet_create(name: &str) -> AdminCommand {
    AdminCommand::Fleet(FleetCommand::Create { name: name.into() })
}

fn member_add(email: &str, password: Option<&str>, bot: bool) -> AdminCommand {
    AdminCommand::Member(MemberCommand::Add {
        email: email.into(),
        password: password.map(Into::into),
        name: None,
        bot,
    })
}

fn join(email: &str, fleet: &str, role: &str) -> AdminCommand {
    AdminCommand::Member(MemberCommand::Join { email: email.into(), fleet: fleet.into(), role: role.into() })
}

fn machine_add_cmd(fleet: &str, name: &str) -> AdminCommand {
    AdminCommand::Machine(MachineCommand::Add { fleet: fleet.into(), name: name.into() })
}

fn grant(email: &str, fleet: &str, machine: &str) -> AdminCommand {
    AdminCommand::Grant { email: email.into(), fleet: fleet.into(), machine: machine.into() }
}

fn token_create(email: &str, name: &str) -> AdminCommand {
    AdminCommand::Token(TokenCommand::Create { email: email.into(), name: name.into() })
}

/// A member without a password, made directly in the store (no hashing).
async fn plain_member(t: &TestStore, email: &str) {
    t.store
        .create_member(NewMember {
            email: email.into(),
            display_name: String::new(),
            password_hash: None,
            is_bot: false,
        })
        .await
        .unwrap();
}

/// The password `admin member add` printed.
fn printed_password(out: &str) -> String {
    let line = out.lines().find(|l| l.contains("password")).unwrap_or_else(|| panic!("no password printed: {out}"));
    line.rsplit(' ').next().unwrap().trim().to_string()
}

/// Everything the database holds, as bytes: the SQLite file with its WAL and shared memory, or a `pg_dump` of the
/// PostgreSQL database. `None` if `pg_dump` cannot be run here.
fn database_bytes(t: &TestStore) -> Option<Vec<u8>> {
    match t.store.backend() {
        Backend::Sqlite => {
            let mut bytes = std::fs::read(&t.url).expect("read the SQLite file");
            for suffix in ["-wal", "-shm", "-journal"] {
                if let Ok(more) = std::fs::read(format!("{}{suffix}", t.url)) {
                    bytes.extend(more);
                }
            }
            Some(bytes)
        }
        Backend::Postgres => match std::process::Command::new("pg_dump").args(["--data-only", &t.url]).output() {
            Ok(out) => {
                assert!(out.status.success(), "pg_dump failed: {}", String::from_utf8_lossy(&out.stderr));
                Some(out.stdout)
            }
            Err(e) => {
                eprintln!("pg_dump is not available ({e}): not reading the PostgreSQL database");
                None
            }
        },
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Asserts that the database holds `digest` (so we look at the right bytes) and none of `secrets`.
fn assert_only_digest_stored(t: &TestStore, digest: &[u8], secrets: &[&str]) {
    let Some(db) = database_bytes(t) else { return };
    let stored = match t.store.backend() {
        Backend::Sqlite => contains(&db, digest),
        Backend::Postgres => contains(&db, hex(digest).as_bytes()),
    };
    assert!(stored, "the token's digest is not in the database bytes: the check below would prove nothing");
    for s in secrets {
        assert!(!contains(&db, s.as_bytes()), "the database holds the secret {s:?} in the clear");
    }
}

// ------------------------------------------------------------------------------------------------------------
// fleets

async fn fleet_create_and_duplicate(t: TestStore) {
    let out = run(&t, AdminCommand::Fleet(FleetCommand::List)).await.unwrap();
    assert!(out.contains("no fleets"), "{out}");

    let out = run(&t, fleet_create("ops")).await.unwrap();
    let fleet = t.store.fleet_by_name("ops").await.unwrap();
    assert!(out.contains("ops") && out.contains(&fleet.id.to_string()), "{out}");

    let err = assert_err!(run(&t, fleet_create("ops")).await, StoreError::AlreadyExists(_), "duplicate fleet");
    assert!(err.to_string().contains("already exists"), "{err}");
    assert_eq!(t.store.list_fleets().await.unwrap().len(), 1);

    run(&t, fleet_create("dev")).await.unwrap();
    let out = run(&t, AdminCommand::Fleet(FleetCommand::List)).await.unwrap();
    assert!(out.contains("ops") && out.contains("dev"), "{out}");
}

async fn fleet_set_transcript_limit(t: TestStore) {
    run(&t, fleet_create("ops")).await.unwrap();
    let set = |limit: &str| -> AdminCommand {
        AdminCommand::Fleet(FleetCommand::Set {
            name: "ops".into(),
            transcript_limit: Some(admin::parse_size(limit).unwrap()),
        })
    };
    let out = run(&t, set("512KiB")).await.unwrap();
    assert!(out.contains("524288"), "{out}");
    assert_eq!(t.store.fleet_by_name("ops").await.unwrap().transcript_limit_bytes, 512 * 1024);

    // Out of bounds: refused, naming the field, and the stored limit stays.
    for bad in ["1KiB", "2GiB"] {
        let err = assert_err!(run(&t, set(bad)).await, StoreError::Invalid { field: "transcript_limit", .. }, "{bad}");
        assert!(err.to_string().contains("64 KiB"), "{err}");
    }
    assert_eq!(t.store.fleet_by_name("ops").await.unwrap().transcript_limit_bytes, 512 * 1024);
    for bad in ["", "lots", "-5", "0", "1.5MiB"] {
        assert!(admin::parse_size(bad).is_err(), "{bad:?} accepted");
    }
    assert_eq!(admin::parse_size("8MiB"), Ok(8 << 20));
    assert_eq!(admin::parse_size("4096"), Ok(4096));
    let none = AdminCommand::Fleet(FleetCommand::Set { name: "ops".into(), transcript_limit: None });
    assert_err!(run(&t, none).await, StoreError::Invalid { field: "transcript_limit", .. }, "nothing to set");
    let missing = AdminCommand::Fleet(FleetCommand::Set { name: "nope".into(), transcript_limit: Some(1 << 20) });
    assert_err!(run(&t, missing).await, StoreError::NotFound(_), "unknown fleet");
}

// ------------------------------------------------------------------------------------------------------------
// members

async fn member_add_rejects_a_short_password_and_stores_nothing(t: TestStore) {
    // Seven characters, in ASCII and in letters of more than one byte each.
    for short in ["short7!", "pässwör", ""] {
        let err = assert_err!(
            run(&t, member_add("erin@acme.test", Some(short), false)).await,
            StoreError::Invalid { field: "password", .. },
            "password {short:?}"
        );
        assert!(err.to_string().contains('8'), "should say how long a password must be: {err}");
        assert_err!(t.store.member_by_email("erin@acme.test").await, StoreError::NotFound(_), "after {short:?}");
    }
    // Eight is enough.
    let out = run(&t, member_add("erin@acme.test", Some("exactly8"), false)).await.unwrap();
    assert!(!out.contains("exactly8"), "a chosen password is not echoed: {out}");
    let erin = t.store.member_by_email("erin@acme.test").await.unwrap();
    assert!(out.contains(&erin.id.to_string()), "{out}");
    assert!(!erin.is_bot);
}

async fn member_add_without_password_prints_one_that_signs_in(t: TestStore) {
    let app = App::new(t);
    let out = run(&app.t, member_add("Erin@Acme.test", None, false)).await.unwrap();
    let password = printed_password(&out);
    assert!(password.chars().count() >= secrets::MIN_PASSWORD_LEN, "generated password too short: {password:?}");
    let erin = app.t.store.member_by_email("erin@acme.test").await.unwrap();
    assert_eq!(erin.display_name, "erin", "display name defaults to the part before @");

    let res = app.api_login("erin@acme.test", &password).await;
    assert_eq!(res.status, StatusCode::OK, "{res}");
    assert_eq!(res.json()["member"]["email"], "erin@acme.test");
    assert_eq!(res.json()["member"]["id"], erin.id.to_string());

    // Another member gets another password.
    let other = printed_password(&run(&app.t, member_add("finn@acme.test", None, false)).await.unwrap());
    assert_ne!(other, password);
    // A duplicate email is refused.
    assert_err!(
        run(&app.t, member_add("ERIN@acme.test", Some("long enough"), false)).await,
        StoreError::AlreadyExists(_),
        "same email, other case"
    );
}

async fn member_add_bot_gets_no_password(t: TestStore) {
    let app = App::new(t);
    let out = run(&app.t, member_add("ci-bot@acme.test", None, true)).await.unwrap();
    assert!(!out.to_lowercase().contains("password"), "a bot has no password to print: {out}");
    let bot = app.t.store.member_by_email("ci-bot@acme.test").await.unwrap();
    assert!(bot.is_bot);
    let res = app.api_login("ci-bot@acme.test", "anything at all").await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{res}");
}

async fn member_join_checks_role_fleet_and_member(t: TestStore) {
    run(&t, fleet_create("ops")).await.unwrap();
    plain_member(&t, "erin@acme.test").await;

    for role in ["root", "Owner", ""] {
        let err = assert_err!(
            run(&t, join("erin@acme.test", "ops", role)).await,
            StoreError::Invalid { field: "role", .. },
            "role {role:?}"
        );
        let msg = err.to_string();
        for r in ["owner", "admin", "member"] {
            assert!(msg.contains(r), "the error should list {r}: {msg}");
        }
    }
    assert_err!(run(&t, join("erin@acme.test", "nope", "member")).await, StoreError::NotFound(_), "unknown fleet");
    assert_err!(run(&t, join("nobody@acme.test", "ops", "member")).await, StoreError::NotFound(_), "unknown member");
    let erin = t.store.member_by_email("erin@acme.test").await.unwrap();
    assert!(t.store.memberships(erin.id).await.unwrap().is_empty(), "a failed join left a membership");

    let out = run(&t, join("erin@acme.test", "ops", "admin")).await.unwrap();
    assert!(out.contains("admin") && out.contains("ops"), "{out}");
    let memberships = t.store.memberships(erin.id).await.unwrap();
    assert_eq!(memberships.len(), 1);
    assert_eq!((memberships[0].fleet.name.as_str(), memberships[0].role), ("ops", Role::Admin));

    assert_err!(run(&t, join("erin@acme.test", "ops", "owner")).await, StoreError::AlreadyExists(_), "join twice");
}

// ------------------------------------------------------------------------------------------------------------
// machines and grants

async fn machine_add(t: TestStore) {
    run(&t, fleet_create("ops")).await.unwrap();
    let out = run(&t, machine_add_cmd("ops", "web-1")).await.unwrap();
    let fleet = t.store.fleet_by_name("ops").await.unwrap();
    let machine = t.store.machine_by_name(fleet.id, "web-1").await.unwrap();
    assert!(out.contains("web-1") && out.contains(&machine.id.to_string()), "{out}");
    assert_err!(run(&t, machine_add_cmd("ops", "web-1")).await, StoreError::AlreadyExists(_), "same machine twice");
    assert_err!(run(&t, machine_add_cmd("nope", "web-2")).await, StoreError::NotFound(_), "unknown fleet");
    // The same name in another fleet is another machine.
    run(&t, fleet_create("dev")).await.unwrap();
    run(&t, machine_add_cmd("dev", "web-1")).await.unwrap();
}

async fn grant_lets_a_member_see_the_machine(t: TestStore) {
    let app = App::new(t);
    let t = &app.t;
    run(t, fleet_create("ops")).await.unwrap();
    run(t, machine_add_cmd("ops", "web-1")).await.unwrap();
    run(t, machine_add_cmd("ops", "db-1")).await.unwrap();
    plain_member(t, "erin@acme.test").await;
    plain_member(t, "owner@acme.test").await;
    run(t, join("erin@acme.test", "ops", "member")).await.unwrap();
    run(t, join("owner@acme.test", "ops", "owner")).await.unwrap();

    assert_err!(run(t, grant("erin@acme.test", "ops", "nope")).await, StoreError::NotFound(_), "unknown machine");
    assert_err!(run(t, grant("erin@acme.test", "nope", "web-1")).await, StoreError::NotFound(_), "unknown fleet");
    assert_err!(run(t, grant("nobody@acme.test", "ops", "web-1")).await, StoreError::NotFound(_), "unknown member");

    let fleet = t.store.fleet_by_name("ops").await.unwrap();
    let owner = t.store.member_by_email("owner@acme.test").await.unwrap();
    let erin = t.store.member_by_email("erin@acme.test").await.unwrap();
    let mut sessions = Vec::new();
    for machine in ["web-1", "db-1"] {
        let m = t.store.machine_by_name(fleet.id, machine).await.unwrap();
        let id = t
            .store
            .create_session(NewSession {
                fleet_id: fleet.id,
                machine_id: m.id,
                started_by: owner.id,
                command: format!("uptime on {machine}"),
                cols: 80,
                rows: 24,
                chat_thread_id: None,
                started_at: None,
            })
            .await
            .unwrap();
        sessions.push(id);
    }
    let token = app.token_for(&erin).await;
    let before = app.get_as("/api/v1/sessions", &token).await;
    assert_eq!(before.json()["sessions"], serde_json::json!([]), "{before}");

    let out = run(t, grant("erin@acme.test", "ops", "web-1")).await.unwrap();
    assert!(out.contains("web-1") && out.contains("erin@acme.test"), "{out}");
    let after = app.get_as("/api/v1/sessions", &token).await;
    let listed: Vec<String> = after.json()["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["command"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed, vec!["uptime on web-1"], "{after}");
    let res = app.get_as(&format!("/api/v1/sessions/{}", sessions[1]), &token).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND, "db-1 is not granted: {res}");

    assert_err!(run(t, grant("erin@acme.test", "ops", "web-1")).await, StoreError::AlreadyExists(_), "grant twice");
}

// ------------------------------------------------------------------------------------------------------------
// API tokens

async fn token_create_prints_a_token_that_authenticates(t: TestStore) {
    let app = App::new(t);
    run(&app.t, fleet_create("ops")).await.unwrap();
    plain_member(&app.t, "erin@acme.test").await;
    run(&app.t, join("erin@acme.test", "ops", "owner")).await.unwrap();
    assert_err!(run(&app.t, token_create("nobody@acme.test", "ci")).await, StoreError::NotFound(_), "unknown member");

    let out = run(&app.t, token_create("erin@acme.test", "ci")).await.unwrap();
    let token = out.lines().last().unwrap().trim().to_string();
    assert!(token.starts_with("cmdop_") && token.len() > 40, "no token on the last line: {out}");

    let res = app.get_as("/api/v1/sessions", &Auth::Bearer(token.clone())).await;
    assert_eq!(res.status, StatusCode::OK, "{res}");
    let erin = app.t.store.member_by_email("erin@acme.test").await.unwrap();
    assert_eq!(
        app.t.store.member_by_api_token(&secrets::hash_token(&token)).await.unwrap().map(|m| m.id),
        Some(erin.id)
    );

    // Each run makes another token; both work.
    let out2 = run(&app.t, token_create("erin@acme.test", "ci")).await.unwrap();
    let token2 = out2.lines().last().unwrap().trim().to_string();
    assert_ne!(token2, token);
    assert_eq!(app.get_as("/api/v1/sessions", &Auth::Bearer(token2.clone())).await.status, StatusCode::OK);

    // Only the digest is kept.
    assert_only_digest_stored(&app.t, &secrets::hash_token(&token), &[&token, &token2, &token[6..]]);
}

async fn secrets_are_not_stored_in_the_clear(t: TestStore) {
    let app = App::new(t);
    let chosen = "chosen passphrase 4711";
    run(&app.t, member_add("erin@acme.test", Some(chosen), false)).await.unwrap();
    let generated = printed_password(&run(&app.t, member_add("finn@acme.test", None, false)).await.unwrap());
    let cookie = app.login("finn@acme.test", &generated).await;
    let Auth::Cookie(cookie) = cookie else { unreachable!() };
    let login_token = cookie.strip_prefix("cmdop_session=").unwrap().to_string();
    let out = run(&app.t, token_create("erin@acme.test", "ci")).await.unwrap();
    let token = out.lines().last().unwrap().trim().to_string();

    assert_only_digest_stored(&app.t, &secrets::hash_token(&token), &[chosen, &generated, &token, &login_token]);
    assert_only_digest_stored(&app.t, &secrets::hash_token(&login_token), &[]);
}

// ------------------------------------------------------------------------------------------------------------
// demo

async fn demo_seed_creates_the_demo_once(t: TestStore) {
    let app = App::new(t);
    let store = &app.t.store;
    let seeded = demo::seed(&**store).await.unwrap();
    assert!(seeded.seeded_now);
    let fleet = store.fleet_by_name(demo::DEMO_FLEET).await.unwrap();
    assert_eq!(fleet.name, "demo");

    let owner = store.member_by_email(demo::DEMO_EMAIL).await.unwrap();
    let all = store.list_sessions(&Viewer::Member(owner.id), &SessionQuery::default()).await.unwrap();
    assert_eq!(all.sessions.len(), 4, "{:?}", all.sessions.iter().map(|s| &s.command).collect::<Vec<_>>());
    assert_eq!(all.next_cursor, None);
    for s in &all.sessions {
        assert_eq!(s.fleet, "demo");
        assert_eq!(s.state, SessionState::Ended, "{}", s.command);
        assert!(s.transcript.total_bytes > 0 && s.transcript.retained_bytes > 0, "{}: empty transcript", s.command);
    }
    let failed: Vec<_> = all.sessions.iter().filter(|s| s.exit_code == Some(3)).collect();
    assert_eq!(failed.len(), 1, "one session exits with 3");
    let transcript = store.read_transcript(&Viewer::Member(owner.id), failed[0].id, 0).await.unwrap();
    assert!(contains(&transcript.bytes, b"FAILED"), "{:?}", String::from_utf8_lossy(&transcript.bytes));
    let mut by_bot = 0;
    for s in &all.sessions {
        if store.member_by_id(s.user_id).await.unwrap().is_bot {
            by_bot += 1;
        }
    }
    assert_eq!(by_bot, 1, "one session is a bot's");

    // The demo logins work over HTTP, and the viewer sees only what they are granted.
    let owner_cookie = app.login(demo::DEMO_EMAIL, demo::DEMO_PASSWORD).await;
    let res = app.get_as("/api/v1/sessions", &owner_cookie).await;
    assert_eq!(res.json()["sessions"].as_array().unwrap().len(), 4, "{res}");
    let viewer_cookie = app.login(demo::VIEWER_EMAIL, demo::VIEWER_PASSWORD).await;
    let res = app.get_as("/api/v1/sessions", &viewer_cookie).await;
    let seen = res.json()["sessions"].as_array().unwrap().clone();
    assert!(!seen.is_empty() && seen.len() < 4, "the viewer sees some, not all: {res}");
    assert!(seen.iter().all(|s| s["machine"] == "web-1"), "{res}");

    // Seeding again changes nothing.
    let fleets = store.list_fleets().await.unwrap().len();
    let again = demo::seed(&**store).await.unwrap();
    assert!(!again.seeded_now);
    let after = store.list_sessions(&Viewer::Member(owner.id), &SessionQuery::default()).await.unwrap();
    assert_eq!(after, all, "a second seed changed the sessions");
    assert_eq!(store.list_fleets().await.unwrap().len(), fleets);
}
