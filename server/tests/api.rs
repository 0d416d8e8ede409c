//! The inspector over HTTP, in process: the JSON API, signing in and out (JSON and HTML form), pages, and the
//! headers every answer carries. Every test runs against SQLite and PostgreSQL.
//!
//! Expectations come from the test's own data and the documented API (`protocol/src/api.rs`), not from the
//! implementation.

mod common;

use std::collections::HashSet;
use std::net::Ipv4Addr;

use axum::body::Body;
use axum::http::{Method, StatusCode, header};
use chrono::{DateTime, Duration, TimeZone, Utc};
use cmdop_protocol::{ClientKind, EndReason};
use cmdop_store::testing::TestStore;
use cmdop_store::{Clock, Fleet, Machine, Member, NewClient, NewSession, OutputChunk, Role, SessionEnd, secrets};
use common::*;
use serde_json::Value;
use uuid::Uuid;

common::both_backends!(
    healthz_answers_ok,
    // signing in through the JSON API
    login_sets_an_http_only_lax_cookie,
    login_cookie_is_secure_when_served_over_https,
    login_email_ignores_case_and_surrounding_spaces,
    login_failures_are_401_and_indistinguishable,
    login_bad_bodies_are_400_naming_the_problem,
    login_cookie_authenticates_until_logout,
    login_cookie_expires_after_seven_days,
    login_is_rate_limited_per_email,
    // API tokens, no credentials
    bearer_token_authenticates,
    wrong_or_missing_credentials_are_401,
    // GET /api/v1/sessions
    list_is_newest_first_with_documented_fields,
    list_pages_follow_next_cursor_to_the_end,
    list_state_filter_selects_matching_sessions,
    list_filters_by_name_and_time_combine,
    list_bad_query_parameters_are_400_naming_the_parameter,
    // GET /api/v1/sessions/{id}
    session_detail_has_documented_values,
    active_session_detail_has_clients_and_running_duration,
    malformed_session_id_is_400,
    // visibility
    invisible_session_is_404_like_a_missing_one,
    list_shows_only_visible_sessions,
    // HTML form sign-in
    form_login_redirects_to_sessions_and_sets_the_cookie,
    form_login_follows_a_local_next,
    form_login_failures_go_back_to_the_form,
    form_login_does_not_follow_off_site_next,
    form_login_next_with_tab_does_not_lead_off_site,
    form_logout_redirects_to_login_and_ends_the_login,
    // pages
    pages_send_signed_out_visitors_to_login,
    sessions_page_is_server_rendered_with_visible_sessions,
    sessions_page_escapes_commands,
    login_page_sends_signed_in_members_to_sessions,
    login_page_keeps_next_and_email_and_says_what_went_wrong,
    unknown_pages_are_404,
    unknown_api_endpoints_are_404_json,
    security_headers_are_on_every_answer,
);

// ------------------------------------------------------------------------------------------------------------
// the world most tests look at

/// 2026-01-01T00:00:00Z plus `ms`.
fn at(ms: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + Duration::milliseconds(ms)
}

const HOUR: i64 = 3_600_000;

struct Sessions {
    /// web-1, alice, ended 0; the oldest.
    first: Uuid,
    /// db-1, alice, ended 3.
    migrate: Uuid,
    /// web-1, bob, active, a desktop client attached.
    vim: Uuid,
    /// db-1, alice, active.
    top: Uuid,
    /// web-1, alice, ended 0; the newest.
    ls: Uuid,
    /// Fleet "other", carol, ended 0.
    foreign: Uuid,
}

const CMD_FIRST: &str = "echo first";
const CMD_MIGRATE: &str = "./migrate.sh up";
const CMD_VIM: &str = "vim notes.txt";
const CMD_TOP: &str = "top -d 1";
const CMD_LS: &str = "ls -la /srv";
const CMD_FOREIGN: &str = "cat /etc/other-fleet-secrets";

const MIGRATE_OUTPUT: &[u8] = b"Running migrations...\r\n  0003_users.sql \x1b[31mFAILED\x1b[0m\r\n";

struct World {
    app: App,
    acme: Fleet,
    web: Machine,
    db: Machine,
    /// Owner of acme (password [`PASSWORD`]).
    alice: Member,
    /// Plain member of acme, granted web-1.
    bob: Member,
    alice_token: Auth,
    bob_token: Auth,
    /// Owner of fleet "other" only.
    carol_token: Auth,
    /// Plain member of acme without any grant.
    dave_token: Auth,
    s: Sessions,
}

async fn world(t: TestStore) -> World {
    t.clock.set(at(12 * HOUR));
    let app = App::new(t);
    let store = app.t.store.clone();
    let acme = store.create_fleet("acme").await.unwrap();
    let other = store.create_fleet("other").await.unwrap();
    let web = store.create_machine(acme.id, "web-1").await.unwrap();
    let db = store.create_machine(acme.id, "db-1").await.unwrap();
    let far = store.create_machine(other.id, "far-1").await.unwrap();

    let alice = app.person("alice@acme.test", "Alice").await;
    let bob = app.person("bob@acme.test", "Bob").await;
    let carol = app.person("carol@other.test", "Carol").await;
    let dave = app.person("dave@acme.test", "Dave").await;
    store.add_fleet_member(acme.id, alice.id, Role::Owner).await.unwrap();
    store.add_fleet_member(acme.id, bob.id, Role::Member).await.unwrap();
    store.add_fleet_member(acme.id, dave.id, Role::Member).await.unwrap();
    store.add_fleet_member(other.id, carol.id, Role::Owner).await.unwrap();
    store.grant_machine(web.id, bob.id).await.unwrap();

    let start = |m: &Machine, by: &Member, command: &str, started: i64, cols: u16, rows: u16| NewSession {
        fleet_id: m.fleet_id,
        machine_id: m.id,
        started_by: by.id,
        command: command.into(),
        cols,
        rows,
        chat_thread_id: None,
        started_at: Some(at(started)),
    };
    let end = |code: i32, ended: i64| SessionEnd {
        exit_code: Some(code),
        exit_signal: None,
        reason: EndReason::Exited,
        ended_at: Some(at(ended)),
    };
    let output = |bytes: &[u8]| vec![OutputChunk { offset: 0, t_ms: 10, bytes: bytes.to_vec() }];

    let first = store.create_session(start(&web, &alice, CMD_FIRST, HOUR, 80, 24)).await.unwrap();
    store.append_output(first, &output(b"first\r\n")).await.unwrap();
    store.end_session(first, end(0, HOUR + 1_500)).await.unwrap();

    let migrate = store.create_session(start(&db, &alice, CMD_MIGRATE, 2 * HOUR + 123, 120, 40)).await.unwrap();
    store.append_output(migrate, &output(MIGRATE_OUTPUT)).await.unwrap();
    store.end_session(migrate, end(3, 2 * HOUR + 123 + 4_321)).await.unwrap();

    let foreign = store.create_session(start(&far, &carol, CMD_FOREIGN, 2 * HOUR + HOUR / 2, 80, 24)).await.unwrap();
    store.end_session(foreign, end(0, 2 * HOUR + HOUR / 2 + 10)).await.unwrap();

    let vim = store.create_session(start(&web, &bob, CMD_VIM, 3 * HOUR, 100, 30)).await.unwrap();
    store
        .attach_client(
            vim,
            NewClient { kind: ClientKind::Desktop, name: "bob's laptop".into(), member_id: Some(bob.id) },
        )
        .await
        .unwrap();

    let top = store.create_session(start(&db, &alice, CMD_TOP, 4 * HOUR, 80, 24)).await.unwrap();

    let ls = store.create_session(start(&web, &alice, CMD_LS, 5 * HOUR, 80, 24)).await.unwrap();
    store.append_output(ls, &output(b"total 0\r\n")).await.unwrap();
    store.end_session(ls, end(0, 5 * HOUR + 200)).await.unwrap();

    let alice_token = app.token_for(&alice).await;
    let bob_token = app.token_for(&bob).await;
    let carol_token = app.token_for(&carol).await;
    let dave_token = app.token_for(&dave).await;
    World {
        app,
        acme,
        web,
        db,
        alice,
        bob,
        alice_token,
        bob_token,
        carol_token,
        dave_token,
        s: Sessions { first, migrate, vim, top, ls, foreign },
    }
}

// ------------------------------------------------------------------------------------------------------------
// helpers

fn list_ids(res: &Res) -> Vec<Uuid> {
    assert_eq!(res.status, StatusCode::OK, "{res}");
    res.json()["sessions"]
        .as_array()
        .unwrap_or_else(|| panic!("no sessions array: {res}"))
        .iter()
        .map(|s| s["id"].as_str().unwrap().parse().unwrap())
        .collect()
}

/// A JSON timestamp: an RFC 3339 string in UTC, ending in `Z`.
fn timestamp(v: &Value, what: &str) -> DateTime<Utc> {
    let s = v.as_str().unwrap_or_else(|| panic!("{what} is not a string: {v}"));
    assert!(s.ends_with('Z'), "{what} is not UTC with a Z: {s}");
    DateTime::parse_from_rfc3339(s).unwrap_or_else(|e| panic!("{what} is not RFC 3339 ({e}): {s}")).to_utc()
}

fn assert_security_headers(res: &Res) {
    assert_eq!(res.header("x-content-type-options"), Some("nosniff"), "{res}");
    assert_eq!(res.header("referrer-policy"), Some("same-origin"), "{res}");
    assert_eq!(res.header("x-frame-options"), Some("SAMEORIGIN"), "{res}");
}

/// Where a browser goes with this `Location`: it drops ASCII tabs and newlines anywhere and C0 controls and
/// spaces at the ends, and reads `\` as `/` in http(s) URLs (WHATWG URL parsing). True if that stays on this site.
fn browser_stays_on_site(location: &str) -> bool {
    let cleaned: String = location
        .trim_matches(|c: char| c <= ' ')
        .chars()
        .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
        .map(|c| if c == '\\' { '/' } else { c })
        .collect();
    cleaned.starts_with('/') && !cleaned.starts_with("//")
}

// ------------------------------------------------------------------------------------------------------------
// health

async fn healthz_answers_ok(t: TestStore) {
    let app = App::new(t);
    let res = app.get("/healthz").await;
    assert_eq!(res.status, StatusCode::OK, "{res}");
    assert!(res.header("content-type").unwrap_or_default().starts_with("application/json"), "{res}");
    assert_eq!(res.json(), serde_json::json!({ "status": "ok" }));
}

// ------------------------------------------------------------------------------------------------------------
// signing in through the JSON API

async fn login_sets_an_http_only_lax_cookie(t: TestStore) {
    let app = App::new(t);
    let alice = app.person("alice@acme.test", "Alice").await;
    let now = app.t.clock.now();

    let res = app.api_login("alice@acme.test", PASSWORD).await;
    assert_eq!(res.status, StatusCode::OK, "{res}");
    let v = res.json();
    assert_eq!(v["member"]["email"], "alice@acme.test", "{res}");
    assert_eq!(v["member"]["id"], alice.id.to_string(), "{res}");
    assert_eq!(v["member"]["name"], "Alice", "{res}");
    assert_eq!(v["member"]["is_bot"], false, "{res}");
    assert_eq!(timestamp(&v["expires_at"], "expires_at"), now + Duration::days(7), "{res}");

    let set = res.set_cookie();
    assert!(set.starts_with("cmdop_session="), "{set}");
    let value = res.session_cookie()["cmdop_session=".len()..].to_string();
    assert!(value.len() >= 32, "login token looks too short to be random: {value}");
    let attrs = res.cookie_attributes();
    for want in ["httponly", "samesite=lax", "path=/"] {
        assert!(attrs.iter().any(|a| a == want), "{want} missing from {set}");
    }
    assert!(!attrs.iter().any(|a| a == "secure"), "Secure on a cookie for a plain-http inspector: {set}");
    // The cookie says how long the login lasts; the token itself is never the email or the password.
    assert!(!set.contains(PASSWORD) && !set.contains("alice"), "{set}");

    // Two logins are two different tokens.
    let again = app.api_login("alice@acme.test", PASSWORD).await;
    assert_ne!(again.session_cookie(), res.session_cookie());
}

async fn login_cookie_is_secure_when_served_over_https(t: TestStore) {
    let app = App::with_public_url(t, Some("https://x.example"));
    app.person("alice@acme.test", "Alice").await;
    let res = app.api_login("alice@acme.test", PASSWORD).await;
    assert_eq!(res.status, StatusCode::OK, "{res}");
    let attrs = res.cookie_attributes();
    for want in ["secure", "httponly", "samesite=lax", "path=/"] {
        assert!(attrs.iter().any(|a| a == want), "{want} missing from {}", res.set_cookie());
    }
    // Signing out clears it with the same attributes, or the browser would keep the secure one.
    let out = app
        .send(
            Auth::Cookie(res.session_cookie())
                .apply(req(Method::POST, "/api/v1/auth/logout"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT, "{out}");
    assert!(out.cookie_attributes().iter().any(|a| a == "secure"), "{}", out.set_cookie());
}

async fn login_email_ignores_case_and_surrounding_spaces(t: TestStore) {
    let app = App::new(t);
    let alice = app.person("alice@acme.test", "Alice").await;
    let res = app.api_login("  Alice@ACME.test ", PASSWORD).await;
    assert_eq!(res.status, StatusCode::OK, "{res}");
    assert_eq!(res.json()["member"]["id"], alice.id.to_string());
    assert_eq!(res.json()["member"]["email"], "alice@acme.test");
}

async fn login_failures_are_401_and_indistinguishable(t: TestStore) {
    let app = App::new(t);
    app.person("alice@acme.test", "Alice").await;
    app.member_without_password("ci-bot@acme.test", true).await;
    app.member_without_password("tokens-only@acme.test", false).await;

    let wrong = app.api_login("alice@acme.test", "not the password").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED, "{wrong}");
    let message = wrong.error();
    assert!(wrong.headers.get(header::SET_COOKIE).is_none(), "{wrong}");

    for (what, email, password) in [
        ("unknown email", "nobody@acme.test", PASSWORD),
        ("bot without a password", "ci-bot@acme.test", "anything at all"),
        ("bot, with a real member's password", "ci-bot@acme.test", PASSWORD),
        ("person without a password", "tokens-only@acme.test", PASSWORD),
    ] {
        let res = app.api_login(email, password).await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{what}: {res}");
        assert_eq!(res.error(), message, "{what}: the answer must not tell which part was wrong");
        assert_eq!(res.body, wrong.body, "{what}");
        assert!(res.headers.get(header::SET_COOKIE).is_none(), "{what}: {res}");
    }
}

async fn login_bad_bodies_are_400_naming_the_problem(t: TestStore) {
    let app = App::new(t);
    app.person("alice@acme.test", "Alice").await;
    let json = |v: Value| post_json("/api/v1/auth/login", &v);
    let cases: Vec<(&str, axum::http::Request<Body>, &[&str])> = vec![
        (
            "malformed JSON",
            post_raw("/api/v1/auth/login", "application/json", "{\"email\": \"alice@acme.test\","),
            &["json"],
        ),
        ("missing password", json(serde_json::json!({ "email": "alice@acme.test" })), &["password"]),
        ("missing email", json(serde_json::json!({ "password": PASSWORD })), &["email"]),
        ("email of the wrong type", json(serde_json::json!({ "email": 5, "password": PASSWORD })), &["email"]),
        (
            "not JSON at all",
            post_raw("/api/v1/auth/login", "text/plain", "email=alice@acme.test&password=x"),
            &["content-type"],
        ),
        ("empty email", json(serde_json::json!({ "email": "", "password": PASSWORD })), &["email"]),
        ("blank email", json(serde_json::json!({ "email": "   ", "password": PASSWORD })), &["email"]),
        ("empty password", json(serde_json::json!({ "email": "alice@acme.test", "password": "" })), &["password"]),
    ];
    for (what, request, words) in cases {
        let res = app.send(request).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{what}: {res}");
        let error = res.error().to_lowercase();
        for w in words {
            assert!(error.contains(w), "{what}: the error should name {w:?}: {error}");
        }
        assert!(res.headers.get(header::SET_COOKIE).is_none(), "{what}: {res}");
    }
}

async fn login_cookie_authenticates_until_logout(t: TestStore) {
    let w = world(t).await;
    let cookie = w.app.login("alice@acme.test", PASSWORD).await;
    let res = w.app.get_as("/api/v1/sessions", &cookie).await;
    assert_eq!(list_ids(&res).len(), 5, "{res}");
    let res = w.app.get_as(&format!("/api/v1/sessions/{}", w.s.migrate), &cookie).await;
    assert_eq!(res.status, StatusCode::OK, "{res}");

    let out = w.app.send(cookie.apply(req(Method::POST, "/api/v1/auth/logout")).body(Body::empty()).unwrap()).await;
    assert_eq!(out.status, StatusCode::NO_CONTENT, "{out}");
    assert!(out.body.is_empty(), "{out}");
    let cleared = out.set_cookie();
    assert!(cleared.starts_with("cmdop_session=;") || cleared == "cmdop_session=", "not cleared: {cleared}");
    let attrs = out.cookie_attributes();
    assert!(attrs.iter().any(|a| a == "max-age=0"), "clearing cookie without Max-Age=0: {cleared}");
    assert!(attrs.iter().any(|a| a == "path=/"), "clearing cookie for another path: {cleared}");

    // The same cookie, replayed (a copy kept somewhere), no longer signs anyone in.
    let res = w.app.get_as("/api/v1/sessions", &cookie).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{res}");
    res.error();
    // Logging out without a cookie is harmless.
    let out = w.app.send(req(Method::POST, "/api/v1/auth/logout").body(Body::empty()).unwrap()).await;
    assert_eq!(out.status, StatusCode::NO_CONTENT, "{out}");
}

async fn login_cookie_expires_after_seven_days(t: TestStore) {
    let w = world(t).await;
    let cookie = w.app.login("alice@acme.test", PASSWORD).await;
    w.app.t.clock.advance(Duration::days(7) - Duration::seconds(1));
    let res = w.app.get_as("/api/v1/sessions", &cookie).await;
    assert_eq!(res.status, StatusCode::OK, "still within 7 days: {res}");
    w.app.t.clock.advance(Duration::seconds(2));
    let res = w.app.get_as("/api/v1/sessions", &cookie).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED, "after 7 days: {res}");
    res.error();
    let page = w.app.get_as("/sessions", &cookie).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{page}");
    assert!(page.location().starts_with("/login"), "{page}");
}

async fn login_is_rate_limited_per_email(t: TestStore) {
    let app = App::new(t);
    app.person("alice@acme.test", "Alice").await;
    app.person("bob@acme.test", "Bob").await;
    let login = |email: &str, password: &str, ip: Ipv4Addr| {
        from_ip(post_json("/api/v1/auth/login", &serde_json::json!({ "email": email, "password": password })), ip)
    };

    // Every guess from a different address: what stops them is the limit on the email.
    let mut limited_after = None;
    for i in 1..=40u8 {
        let res = app.send(login("alice@acme.test", &format!("guess number {i}"), Ipv4Addr::new(10, 0, 0, i))).await;
        match res.status {
            StatusCode::UNAUTHORIZED => continue,
            StatusCode::TOO_MANY_REQUESTS => {
                let error = res.error();
                assert!(!error.is_empty());
                limited_after = Some(i - 1);
                break;
            }
            _ => panic!("guess {i}: {res}"),
        }
    }
    let limited_after = limited_after.expect("40 wrong passwords for one email and still no 429");
    assert!(limited_after >= 3, "a few typos must not lock a member out; limited after {limited_after}");

    // Now even the right password is refused for that email, in any spelling, from a fresh address...
    let fresh = Ipv4Addr::new(10, 0, 1, 1);
    for email in ["alice@acme.test", " ALICE@acme.test"] {
        let res = app.send(login(email, PASSWORD, fresh)).await;
        assert_eq!(res.status, StatusCode::TOO_MANY_REQUESTS, "{email}: {res}");
        res.error();
        assert!(res.headers.get(header::SET_COOKIE).is_none(), "{res}");
    }
    // ...and through the HTML form, which says why.
    let res = app
        .send(from_ip(post_form("/auth/login", &[("email", "alice@acme.test"), ("password", PASSWORD)]), fresh))
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{res}");
    assert!(res.location().starts_with("/login?error=rate_limited"), "{res}");
    assert!(res.headers.get(header::SET_COOKIE).is_none(), "{res}");

    // Another member, from that same address, still signs in.
    let res = app.send(login("bob@acme.test", PASSWORD, fresh)).await;
    assert_eq!(res.status, StatusCode::OK, "{res}");
}

// ------------------------------------------------------------------------------------------------------------
// API tokens, no credentials

async fn bearer_token_authenticates(t: TestStore) {
    let w = world(t).await;
    let res = w.app.get_as("/api/v1/sessions", &w.alice_token).await;
    assert_eq!(list_ids(&res).len(), 5, "{res}");
    let res = w.app.get_as(&format!("/api/v1/sessions/{}", w.s.ls), &w.alice_token).await;
    assert_eq!(res.status, StatusCode::OK, "{res}");
    assert_eq!(res.json()["command"], CMD_LS);

    // The scheme is case-insensitive.
    let Auth::Bearer(token) = &w.alice_token else { unreachable!() };
    let lower = req(Method::GET, "/api/v1/sessions").header("authorization", format!("bearer {token}"));
    let res = w.app.send(lower.body(Body::empty()).unwrap()).await;
    assert_eq!(res.status, StatusCode::OK, "{res}");

    // A bot signs in only with its token.
    let bot = w.app.member_without_password("ci-bot@acme.test", true).await;
    w.app.t.store.add_fleet_member(w.acme.id, bot.id, Role::Member).await.unwrap();
    w.app.t.store.grant_machine(w.web.id, bot.id).await.unwrap();
    let bot_token = w.app.token_for(&bot).await;
    let res = w.app.get_as("/api/v1/sessions", &bot_token).await;
    assert_eq!(list_ids(&res), vec![w.s.ls, w.s.vim, w.s.first]);
}

async fn wrong_or_missing_credentials_are_401(t: TestStore) {
    let w = world(t).await;
    let detail = format!("/api/v1/sessions/{}", w.s.ls);

    for uri in ["/api/v1/sessions", detail.as_str()] {
        let res = w.app.get(uri).await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{res}");
        let error = res.error();
        assert!(error.to_lowercase().contains("sign in"), "should tell the caller to sign in: {error}");

        let (wrong, _) = secrets::new_token("cmdop");
        for auth in [
            Auth::Bearer(wrong.clone()),
            Auth::Bearer("x".into()),
            Auth::Cookie(format!("cmdop_session={wrong}")),
            Auth::Cookie("cmdop_session=".into()),
        ] {
            let res = w.app.get_as(uri, &auth).await;
            assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{auth:?}: {res}");
            res.error();
        }
        for value in ["Basic YWxpY2U6cGFzcw==", "Bearer", "Bearer "] {
            let request = req(Method::GET, uri).header("authorization", value).body(Body::empty()).unwrap();
            let res = w.app.send(request).await;
            assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{value}: {res}");
        }
    }

    // A bad API token is not rescued by a good cookie: the token speaks for the request.
    let cookie = w.app.cookie_for(&w.alice).await;
    let Auth::Cookie(cookie) = cookie else { unreachable!() };
    let request = req(Method::GET, "/api/v1/sessions")
        .header("cookie", cookie)
        .header("authorization", "Bearer cmdop_not-a-real-token")
        .body(Body::empty())
        .unwrap();
    let res = w.app.send(request).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{res}");
}

// ------------------------------------------------------------------------------------------------------------
// GET /api/v1/sessions

const SESSION_FIELDS: &[&str] = &[
    "id",
    "fleet",
    "machine",
    "user",
    "command",
    "state",
    "started_at",
    "ended_at",
    "exit_code",
    "duration_ms",
    "cols",
    "rows",
    "clients",
    "chat_thread",
    "transcript",
];

async fn list_is_newest_first_with_documented_fields(t: TestStore) {
    let w = world(t).await;
    let res = w.app.get_as("/api/v1/sessions", &w.alice_token).await;
    assert_eq!(res.status, StatusCode::OK, "{res}");
    assert!(res.header("content-type").unwrap_or_default().starts_with("application/json"), "{res}");
    let v = res.json();
    let top = v.as_object().unwrap();
    assert!(top.contains_key("sessions") && top.contains_key("next_cursor"), "{res}");
    assert_eq!(v["next_cursor"], Value::Null, "everything fits on one page: {res}");
    assert_eq!(list_ids(&res), vec![w.s.ls, w.s.top, w.s.vim, w.s.migrate, w.s.first]);

    let mut previous: Option<DateTime<Utc>> = None;
    for s in v["sessions"].as_array().unwrap() {
        let obj = s.as_object().unwrap();
        for f in SESSION_FIELDS {
            assert!(obj.contains_key(*f), "session lacks {f}: {s}");
        }
        let transcript = s["transcript"].as_object().unwrap_or_else(|| panic!("transcript is not an object: {s}"));
        for f in ["total_bytes", "retained_bytes", "truncated_bytes", "gaps"] {
            assert!(transcript.contains_key(f), "transcript lacks {f}: {s}");
        }
        assert!(s["clients"].is_array() && s["transcript"]["gaps"].is_array(), "{s}");
        let started = timestamp(&s["started_at"], "started_at");
        if !s["ended_at"].is_null() {
            assert!(timestamp(&s["ended_at"], "ended_at") >= started, "{s}");
        }
        if let Some(p) = previous {
            assert!(started <= p, "not newest first: {s}");
        }
        previous = Some(started);
    }
}

async fn list_pages_follow_next_cursor_to_the_end(t: TestStore) {
    let w = world(t).await;
    for (who, auth, expected, page_sizes) in [
        ("alice", &w.alice_token, vec![w.s.ls, w.s.top, w.s.vim, w.s.migrate, w.s.first], vec![2, 2, 1]),
        ("bob", &w.bob_token, vec![w.s.ls, w.s.vim, w.s.first], vec![2, 1]),
    ] {
        let mut uri = "/api/v1/sessions?limit=2".to_string();
        let mut all = Vec::new();
        let mut sizes = Vec::new();
        loop {
            assert!(sizes.len() < 20, "{who}: pagination does not end");
            let res = w.app.get_as(&uri, auth).await;
            let ids = list_ids(&res);
            assert!(!ids.is_empty() && ids.len() <= 2, "{who}: page of {}: {res}", ids.len());
            sizes.push(ids.len());
            all.extend(ids);
            match &res.json()["next_cursor"] {
                Value::Null => break,
                Value::String(c) => uri = format!("/api/v1/sessions?limit=2&cursor={}", encode(c)),
                other => panic!("{who}: next_cursor is {other}"),
            }
        }
        assert_eq!(sizes, page_sizes, "{who}");
        assert_eq!(all.iter().collect::<HashSet<_>>().len(), all.len(), "{who}: duplicates across pages");
        assert_eq!(all, expected, "{who}");
    }

    // The cursor carries on with the filters of the query.
    let res = w.app.get_as("/api/v1/sessions?state=ended&limit=2", &w.alice_token).await;
    assert_eq!(list_ids(&res), vec![w.s.ls, w.s.migrate]);
    let cursor = res.json()["next_cursor"].as_str().expect("a second page").to_string();
    let res =
        w.app.get_as(&format!("/api/v1/sessions?state=ended&limit=2&cursor={}", encode(&cursor)), &w.alice_token).await;
    assert_eq!(list_ids(&res), vec![w.s.first]);
    assert_eq!(res.json()["next_cursor"], Value::Null);

    // limit=1 and the largest limit are accepted.
    assert_eq!(list_ids(&w.app.get_as("/api/v1/sessions?limit=1", &w.alice_token).await), vec![w.s.ls]);
    assert_eq!(list_ids(&w.app.get_as("/api/v1/sessions?limit=200", &w.alice_token).await).len(), 5);
}

async fn list_state_filter_selects_matching_sessions(t: TestStore) {
    let w = world(t).await;
    let res = w.app.get_as("/api/v1/sessions?state=ended", &w.alice_token).await;
    assert_eq!(list_ids(&res), vec![w.s.ls, w.s.migrate, w.s.first]);
    for s in res.json()["sessions"].as_array().unwrap() {
        assert_eq!(s["state"], "ended", "{s}");
    }
    let res = w.app.get_as("/api/v1/sessions?state=active", &w.alice_token).await;
    assert_eq!(list_ids(&res), vec![w.s.top, w.s.vim]);
    for s in res.json()["sessions"].as_array().unwrap() {
        assert_eq!(s["state"], "active", "{s}");
        assert_eq!(s["ended_at"], Value::Null, "{s}");
    }
    // A filter cannot widen what a viewer sees.
    let res = w.app.get_as("/api/v1/sessions?state=active", &w.bob_token).await;
    assert_eq!(list_ids(&res), vec![w.s.vim]);
}

async fn list_filters_by_name_and_time_combine(t: TestStore) {
    let w = world(t).await;
    let s = &w.s;
    let time = |ms: i64| encode(&at(ms).to_rfc3339());
    for (query, expected) in [
        ("machine=web-1", vec![s.ls, s.vim, s.first]),
        ("user=bob%40acme.test", vec![s.vim]),
        ("fleet=acme&machine=db-1", vec![s.top, s.migrate]),
        ("machine=web-1&user=alice%40acme.test&state=ended", vec![s.ls, s.first]),
        ("fleet=other", vec![]),
        ("machine=far-1", vec![]),
        ("machine=no-such-machine", vec![]),
        // The clock stands at 12 h; the newest session started at 5 h.
        ("range=1h", vec![]),
        ("range=1d", vec![s.ls, s.top, s.vim, s.migrate, s.first]),
        ("range=1w&machine=db-1", vec![s.top, s.migrate]),
        // since inclusive, until exclusive: top started at exactly 4 h.
        (&format!("since={}&until={}", time(2 * HOUR), time(4 * HOUR)), vec![s.vim, s.migrate]),
        (&format!("range=custom&since={}", time(4 * HOUR)), vec![s.ls, s.top]),
        (&format!("until={}&user=alice%40acme.test", time(2 * HOUR + 124)), vec![s.migrate, s.first]),
        ("fleet=&machine=&user=&range=&since=&until=", vec![s.ls, s.top, s.vim, s.migrate, s.first]),
    ] {
        let res = w.app.get_as(&format!("/api/v1/sessions?{query}"), &w.alice_token).await;
        assert_eq!(res.status, StatusCode::OK, "{query}: {res}");
        assert_eq!(list_ids(&res), expected, "{query}");
    }
    // The filters narrow what a viewer sees, never widen it: bob is granted web-1 only.
    for (query, expected) in
        [("machine=db-1", vec![]), ("fleet=acme", vec![s.ls, s.vim, s.first]), ("user=bob%40acme.test", vec![s.vim])]
    {
        assert_eq!(
            list_ids(&w.app.get_as(&format!("/api/v1/sessions?{query}"), &w.bob_token).await),
            expected,
            "bob: {query}"
        );
    }
    // The cursor carries on with the name filters.
    let res = w.app.get_as("/api/v1/sessions?machine=web-1&limit=2", &w.alice_token).await;
    assert_eq!(list_ids(&res), vec![s.ls, s.vim]);
    let cursor = encode(res.json()["next_cursor"].as_str().expect("a second page"));
    let res = w.app.get_as(&format!("/api/v1/sessions?machine=web-1&limit=2&cursor={cursor}"), &w.alice_token).await;
    assert_eq!(list_ids(&res), vec![s.first]);
}

async fn list_bad_query_parameters_are_400_naming_the_parameter(t: TestStore) {
    let w = world(t).await;
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=abc", "limit"),
        ("limit=1000", "limit"),
        ("limit=201", "limit"),
        ("limit=-1", "limit"),
        ("limit=2.5", "limit"),
        ("state=bogus", "state"),
        ("state=ended&limit=0", "limit"),
        ("cursor=garbage", "cursor"),
        ("cursor=bm90LWEtY3Vyc29y", "cursor"),
        ("limit=2&cursor=%21%21%21", "cursor"),
        ("range=2h", "range"),
        ("since=yesterday", "since"),
        ("until=2026-13-01", "until"),
        ("range=1h&since=2026-11-01T00%3A00%3A00Z", "since"),
        ("since=2026-11-02T00%3A00%3A00Z&until=2026-11-01T00%3A00%3A00Z", "until"),
        ("machin=web-1", "machin"),
        ("machine=web-1&machine=db-1", "machine"),
    ] {
        let res = w.app.get_as(&format!("/api/v1/sessions?{query}"), &w.alice_token).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{query}: {res}");
        let error = res.error();
        assert!(error.contains(field), "{query}: the error should name {field:?}: {error}");
    }
}

// ------------------------------------------------------------------------------------------------------------
// GET /api/v1/sessions/{id}

async fn session_detail_has_documented_values(t: TestStore) {
    let w = world(t).await;
    let res = w.app.get_as(&format!("/api/v1/sessions/{}", w.s.migrate), &w.alice_token).await;
    assert_eq!(res.status, StatusCode::OK, "{res}");
    let s = res.json();
    assert_eq!(s["id"], w.s.migrate.to_string());
    assert_eq!(s["fleet"], "acme");
    assert_eq!(s["fleet_id"], w.acme.id.to_string());
    assert_eq!(s["machine"], "db-1");
    assert_eq!(s["machine_id"], w.db.id.to_string());
    assert_eq!(s["user"], "alice@acme.test");
    assert_eq!(s["user_id"], w.alice.id.to_string());
    assert_eq!(s["user_name"], "Alice");
    assert_eq!(s["command"], CMD_MIGRATE);
    assert_eq!(s["state"], "ended");
    assert_eq!(s["end_reason"], "exited");
    assert_eq!(timestamp(&s["started_at"], "started_at"), at(2 * HOUR + 123));
    assert_eq!(timestamp(&s["ended_at"], "ended_at"), at(2 * HOUR + 123 + 4_321));
    assert_eq!(s["exit_code"], 3);
    assert_eq!(s["duration_ms"], 4_321);
    assert_eq!((s["cols"].clone(), s["rows"].clone()), (120.into(), 40.into()));
    assert_eq!(s["clients"], serde_json::json!([]));
    assert_eq!(s["chat_thread"], Value::Null);
    let len = MIGRATE_OUTPUT.len();
    assert_eq!(
        s["transcript"],
        serde_json::json!({ "total_bytes": len, "retained_bytes": len, "truncated_bytes": 0, "gaps": [] })
    );

    // The list shows the very same object.
    let list = w.app.get_as("/api/v1/sessions", &w.alice_token).await.json();
    let listed = list["sessions"].as_array().unwrap().iter().find(|x| x["id"] == s["id"]).unwrap().clone();
    assert_eq!(listed, s);
}

async fn active_session_detail_has_clients_and_running_duration(t: TestStore) {
    let w = world(t).await;
    let res = w.app.get_as(&format!("/api/v1/sessions/{}", w.s.vim), &w.bob_token).await;
    assert_eq!(res.status, StatusCode::OK, "{res}");
    let s = res.json();
    assert_eq!(s["state"], "active");
    assert_eq!(s["user"], "bob@acme.test");
    assert_eq!(s["machine"], "web-1");
    assert_eq!(
        (s["ended_at"].clone(), s["exit_code"].clone(), s["end_reason"].clone()),
        (Value::Null, Value::Null, Value::Null)
    );
    // Active: now minus start; the clock stands at 12:00, the session started at 03:00.
    assert_eq!(s["duration_ms"], 9 * HOUR);
    let clients = s["clients"].as_array().unwrap();
    assert_eq!(clients.len(), 1, "{s}");
    assert_eq!(clients[0]["kind"], "desktop");
    assert_eq!(clients[0]["name"], "bob's laptop");
    assert_eq!(clients[0]["detached_at"], Value::Null);
    assert_eq!(timestamp(&clients[0]["attached_at"], "attached_at"), at(12 * HOUR));
    assert!(clients[0]["id"].as_str().unwrap().parse::<Uuid>().is_ok());
    assert_eq!(s["transcript"]["total_bytes"], 0);

    w.app.t.clock.advance(Duration::milliseconds(2_500));
    let s = w.app.get_as(&format!("/api/v1/sessions/{}", w.s.vim), &w.bob_token).await.json();
    assert_eq!(s["duration_ms"], 9 * HOUR + 2_500);
}

async fn malformed_session_id_is_400(t: TestStore) {
    let w = world(t).await;
    for id in ["not-a-uuid", "123", "00000000-0000-0000-0000-00000000000g", "%20"] {
        let res = w.app.get_as(&format!("/api/v1/sessions/{id}"), &w.alice_token).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{id}: {res}");
        let error = res.error();
        assert!(error.starts_with("id") || error.contains("id:") || error.contains(" id"), "{id}: {error}");
    }
}

// ------------------------------------------------------------------------------------------------------------
// visibility

async fn invisible_session_is_404_like_a_missing_one(t: TestStore) {
    let w = world(t).await;
    for (who, auth, invisible) in [
        ("carol (owner of another fleet)", &w.carol_token, vec![w.s.migrate, w.s.first, w.s.vim]),
        ("dave (member of acme without a grant)", &w.dave_token, vec![w.s.first, w.s.migrate, w.s.vim]),
        ("bob (granted web-1 only)", &w.bob_token, vec![w.s.migrate, w.s.top, w.s.foreign]),
        ("alice (owner of acme only)", &w.alice_token, vec![w.s.foreign]),
    ] {
        let missing = w.app.get_as(&format!("/api/v1/sessions/{}", Uuid::now_v7()), auth).await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND, "{who}: {missing}");
        let missing_error = missing.error();
        for id in invisible {
            let res = w.app.get_as(&format!("/api/v1/sessions/{id}"), auth).await;
            assert_eq!(res.status, StatusCode::NOT_FOUND, "{who} must not learn that {id} exists: {res}");
            assert_eq!(res.error(), missing_error, "{who}: must read like a missing session");
            assert_eq!(res.body, missing.body, "{who}");
        }
    }
    // And what they may see, they get.
    for (auth, id) in [(&w.bob_token, w.s.first), (&w.bob_token, w.s.vim), (&w.carol_token, w.s.foreign)] {
        let res = w.app.get_as(&format!("/api/v1/sessions/{id}"), auth).await;
        assert_eq!(res.status, StatusCode::OK, "{res}");
    }
}

async fn list_shows_only_visible_sessions(t: TestStore) {
    let w = world(t).await;
    let res = w.app.get_as("/api/v1/sessions", &w.carol_token).await;
    assert_eq!(list_ids(&res), vec![w.s.foreign]);
    let res = w.app.get_as("/api/v1/sessions", &w.dave_token).await;
    assert_eq!(list_ids(&res), Vec::<Uuid>::new());
    assert_eq!(res.json()["next_cursor"], Value::Null);
    let res = w.app.get_as("/api/v1/sessions", &w.bob_token).await;
    assert_eq!(list_ids(&res), vec![w.s.ls, w.s.vim, w.s.first]);
    for s in res.json()["sessions"].as_array().unwrap() {
        assert_eq!(s["machine"], "web-1", "{s}");
    }
    let res = w.app.get_as("/api/v1/sessions", &w.alice_token).await;
    assert!(!list_ids(&res).contains(&w.s.foreign));
}

// ------------------------------------------------------------------------------------------------------------
// HTML form sign-in

async fn form_login_redirects_to_sessions_and_sets_the_cookie(t: TestStore) {
    let w = world(t).await;
    let res = w.app.send(post_form("/auth/login", &[("email", "alice@acme.test"), ("password", PASSWORD)])).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{res}");
    assert_eq!(res.location(), "/sessions");
    let attrs = res.cookie_attributes();
    for want in ["httponly", "samesite=lax", "path=/"] {
        assert!(attrs.iter().any(|a| a == want), "{want} missing from {}", res.set_cookie());
    }
    let cookie = Auth::Cookie(res.session_cookie());
    let res = w.app.get_as("/api/v1/sessions", &cookie).await;
    assert_eq!(list_ids(&res).len(), 5, "{res}");
    let page = w.app.get_as("/sessions", &cookie).await;
    assert_eq!(page.status, StatusCode::OK, "{page}");
}

async fn form_login_follows_a_local_next(t: TestStore) {
    let w = world(t).await;
    let next = "/sessions?state=ended";
    let res = w
        .app
        .send(post_form("/auth/login", &[("email", "alice@acme.test"), ("password", PASSWORD), ("next", next)]))
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{res}");
    assert_eq!(res.location(), next);
    res.session_cookie();
}

async fn form_login_failures_go_back_to_the_form(t: TestStore) {
    let w = world(t).await;
    let res = w
        .app
        .send(post_form(
            "/auth/login",
            &[("email", "alice@acme.test"), ("password", "not the password"), ("next", "/sessions?state=active")],
        ))
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{res}");
    let location = res.location();
    assert!(location.starts_with("/login?error=invalid"), "{location}");
    assert!(location.contains("email=alice%40acme.test"), "the form keeps the email: {location}");
    assert!(location.contains(&format!("next={}", encode("/sessions?state=active"))), "and where to go: {location}");
    assert!(res.headers.get(header::SET_COOKIE).is_none(), "{res}");

    let unknown =
        w.app.send(post_form("/auth/login", &[("email", "nobody@acme.test"), ("password", "not the password")])).await;
    assert!(unknown.location().starts_with("/login?error=invalid"), "{unknown}");

    for pairs in
        [vec![("email", "alice@acme.test")], vec![("password", PASSWORD)], vec![("email", ""), ("password", "")]]
    {
        let res = w.app.send(post_form("/auth/login", &pairs)).await;
        assert_eq!(res.status, StatusCode::SEE_OTHER, "{pairs:?}: {res}");
        assert!(res.location().starts_with("/login?error=missing"), "{pairs:?}: {res}");
        assert!(res.headers.get(header::SET_COOKIE).is_none(), "{res}");
    }
}

async fn form_login_does_not_follow_off_site_next(t: TestStore) {
    let w = world(t).await;
    for next in
        ["//evil.example", "//evil.example/sessions", "https://evil.example/", "/\\evil.example", "evil.example"]
    {
        let res = w
            .app
            .send(post_form("/auth/login", &[("email", "alice@acme.test"), ("password", PASSWORD), ("next", next)]))
            .await;
        assert_eq!(res.status, StatusCode::SEE_OTHER, "{next}: {res}");
        assert_eq!(res.location(), "/sessions", "{next}");
        res.session_cookie();
    }
}

/// Browsers drop tabs and newlines from URLs, so `/<TAB>/evil.example` is `//evil.example` to them.
async fn form_login_next_with_tab_does_not_lead_off_site(t: TestStore) {
    let w = world(t).await;
    let mut off_site = Vec::new();
    for next in ["/\t/evil.example", "/\t\t/evil.example", "/\n/evil.example", "/\r\n/evil.example", "\t//evil.example"]
    {
        let res = w
            .app
            .send(post_form("/auth/login", &[("email", "alice@acme.test"), ("password", PASSWORD), ("next", next)]))
            .await;
        assert_eq!(res.status, StatusCode::SEE_OTHER, "{next:?}: {res}");
        let location = res.location();
        if !browser_stays_on_site(location) {
            off_site.push(format!("next={next:?} -> Location {location:?}"));
        }
    }
    assert!(off_site.is_empty(), "these redirect a browser to evil.example after sign-in: {off_site:#?}");
}

async fn form_logout_redirects_to_login_and_ends_the_login(t: TestStore) {
    let w = world(t).await;
    let cookie = w.app.cookie_for(&w.alice).await;
    assert_eq!(w.app.get_as("/api/v1/sessions", &cookie).await.status, StatusCode::OK);
    let res = w.app.send(cookie.apply(req(Method::POST, "/auth/logout")).body(Body::empty()).unwrap()).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{res}");
    assert_eq!(res.location(), "/login");
    assert!(res.cookie_attributes().iter().any(|a| a == "max-age=0"), "{}", res.set_cookie());
    let after = w.app.get_as("/api/v1/sessions", &cookie).await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED, "{after}");
    let page = w.app.get_as("/sessions", &cookie).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{page}");
}

// ------------------------------------------------------------------------------------------------------------
// pages

async fn pages_send_signed_out_visitors_to_login(t: TestStore) {
    let w = world(t).await;
    let res = w.app.get("/sessions").await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{res}");
    assert_eq!(res.location(), "/login?next=%2Fsessions");
    let res = w.app.get("/sessions?state=ended").await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{res}");
    assert_eq!(res.location(), "/login?next=%2Fsessions%3Fstate%3Dended");
    // Nothing of the sessions leaks into the redirect.
    assert!(!res.text().contains(CMD_MIGRATE), "{res}");

    let res = w.app.get("/").await;
    assert!(res.status.is_redirection(), "{res}");
    assert_eq!(res.location(), "/sessions");

    let res = w.app.get("/login").await;
    assert_eq!(res.status, StatusCode::OK, "{res}");
    assert!(res.header("content-type").unwrap_or_default().starts_with("text/html"), "{res}");
    let html = res.text();
    assert!(html.contains("action=\"/auth/login\""), "the sign-in form posts to /auth/login: {res}");
    assert!(html.contains("name=\"email\"") && html.contains("name=\"password\""), "{res}");
}

async fn sessions_page_is_server_rendered_with_visible_sessions(t: TestStore) {
    let w = world(t).await;
    let alice = w.app.cookie_for(&w.alice).await;
    let res = w.app.get_as("/sessions", &alice).await;
    assert_eq!(res.status, StatusCode::OK, "{res}");
    assert!(res.header("content-type").unwrap_or_default().starts_with("text/html"), "{res}");
    let html = res.text();
    for command in [CMD_FIRST, CMD_MIGRATE, CMD_VIM, CMD_TOP, CMD_LS] {
        assert!(html.contains(command), "alice's page lacks {command:?}: {res}");
    }
    for id in [w.s.first, w.s.migrate, w.s.vim, w.s.top, w.s.ls] {
        assert!(html.contains(&id.to_string()), "alice's page lacks session {id}");
    }
    assert!(!html.contains(CMD_FOREIGN), "another fleet's session on alice's page");
    assert!(!html.contains(&w.s.foreign.to_string()), "another fleet's session on alice's page");

    let bob = w.app.cookie_for(&w.bob).await;
    let html = w.app.get_as("/sessions", &bob).await.text();
    for command in [CMD_FIRST, CMD_VIM, CMD_LS] {
        assert!(html.contains(command), "bob's page lacks {command:?}");
    }
    for command in [CMD_MIGRATE, CMD_TOP, CMD_FOREIGN] {
        assert!(!html.contains(command), "bob's page shows {command:?} of a machine he is not granted");
    }
}

async fn sessions_page_escapes_commands(t: TestStore) {
    let w = world(t).await;
    let command = "echo '</script><script>alert(1)</script>' <b>bold</b>";
    w.app
        .t
        .store
        .create_session(NewSession {
            fleet_id: w.acme.id,
            machine_id: w.web.id,
            started_by: w.alice.id,
            command: command.into(),
            cols: 80,
            rows: 24,
            chat_thread_id: None,
            started_at: Some(at(6 * HOUR)),
        })
        .await
        .unwrap();
    let cookie = w.app.cookie_for(&w.alice).await;
    let res = w.app.get_as("/sessions", &cookie).await;
    assert_eq!(res.status, StatusCode::OK, "{res}");
    let html = res.text();
    assert!(!html.contains("<script>alert(1)"), "a command's markup reached the page unescaped");
    assert!(!html.contains("<b>bold</b>"), "a command's markup reached the page unescaped");
    assert!(html.contains("alert(1)"), "the command is on the page (escaped): {res}");
}

async fn login_page_sends_signed_in_members_to_sessions(t: TestStore) {
    let w = world(t).await;
    let cookie = w.app.cookie_for(&w.alice).await;
    let res = w.app.get_as("/login", &cookie).await;
    assert!(res.status.is_redirection(), "{res}");
    assert_eq!(res.location(), "/sessions");
}

/// The sign-in form works without hydration: the server-rendered form already carries `next` and the email the
/// member typed, and says why the last attempt failed.
async fn login_page_keeps_next_and_email_and_says_what_went_wrong(t: TestStore) {
    let w = world(t).await;
    let res = w.app.get("/login?error=invalid&email=alice%40acme.test&next=%2Fsessions%3Fstate%3Dended").await;
    assert_eq!(res.status, StatusCode::OK, "{res}");
    let html = res.text();
    assert!(html.contains("do not match a member"), "no error message: {res}");
    let mut missing = Vec::new();
    if !html.contains("value=\"alice@acme.test\"") {
        missing.push("the email field is not filled in with alice@acme.test");
    }
    if !html.contains("value=\"/sessions?state=ended\"") {
        missing.push("the hidden next field does not carry /sessions?state=ended");
    }
    assert!(missing.is_empty(), "server-rendered sign-in form: {missing:?}: {res}");

    let res = w.app.get("/login?next=%2F%2Fevil.example").await;
    assert_eq!(res.status, StatusCode::OK, "{res}");
    assert!(!res.text().contains("evil.example"), "an off-site next made it into the form: {res}");
}

async fn unknown_pages_are_404(t: TestStore) {
    let w = world(t).await;
    let cookie = w.app.cookie_for(&w.alice).await;
    for auth in [Auth::None, cookie] {
        let res = w.app.get_as("/no-such-page", &auth).await;
        assert_eq!(res.status, StatusCode::NOT_FOUND, "{auth:?}: {res}");
        assert!(res.header("content-type").unwrap_or_default().starts_with("text/html"), "{res}");
        assert!(res.text().contains("Not found"), "{res}");
    }
}

async fn unknown_api_endpoints_are_404_json(t: TestStore) {
    let w = world(t).await;
    for (uri, auth) in [
        ("/api/v1/whatever", Auth::None),
        ("/api/v1/whatever", w.alice_token.clone()),
        ("/api/v2/sessions", w.alice_token.clone()),
        ("/api/v1/sessions/x/y", w.alice_token.clone()),
    ] {
        let res = w.app.get_as(uri, &auth).await;
        assert_eq!(res.status, StatusCode::NOT_FOUND, "{uri} {auth:?}: {res}");
        res.error();
    }
    let res = w.app.send(post_json("/api/v1/nope", &serde_json::json!({}))).await;
    assert_eq!(res.status, StatusCode::NOT_FOUND, "{res}");
    res.error();
}

async fn security_headers_are_on_every_answer(t: TestStore) {
    let w = world(t).await;
    let cookie = w.app.cookie_for(&w.alice).await;
    let answers = vec![
        w.app.get("/healthz").await,
        w.app.get_as("/api/v1/sessions", &w.alice_token).await,
        w.app.get("/api/v1/sessions").await,
        w.app.get_as("/api/v1/sessions?limit=0", &w.alice_token).await,
        w.app.get_as(&format!("/api/v1/sessions/{}", Uuid::now_v7()), &w.alice_token).await,
        w.app.get("/api/v1/whatever").await,
        w.app.get("/sessions").await,
        w.app.get_as("/sessions", &cookie).await,
        w.app.get("/login").await,
        w.app.get("/no-such-page").await,
        w.app.send(post_json("/api/v1/auth/login", &serde_json::json!({ "email": "", "password": "x" }))).await,
        w.app.send(post_form("/auth/login", &[("email", ""), ("password", "")])).await,
    ];
    for res in &answers {
        assert_security_headers(res);
    }
}
