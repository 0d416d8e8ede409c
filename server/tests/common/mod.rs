//! Helpers shared by the HTTP integration tests: an in-process router over a throwaway store (SQLite or
//! PostgreSQL), requests driven with `tower::ServiceExt::oneshot` (no sockets), and readable responses; for
//! WebSocket tests, [`App::serve`] puts the same router on a real socket.

#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::OnceLock;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use cmdop_inspector_server::{AppState, router};
use cmdop_store::testing::TestStore;
use cmdop_store::{Clock, Member, NewMember, secrets};
use http_body_util::BodyExt;
use tower::ServiceExt;

pub(crate) use cmdop_store::for_each_backend as both_backends;

/// How long one request may take, head and body each, before the test fails.
pub const ANSWER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// The password of members made with [`person`].
pub const PASSWORD: &str = "correct horse battery staple";

/// One argon2 hash of [`PASSWORD`], computed once per test binary (hashing is slow) and shared by all members.
pub fn password_hash() -> String {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| secrets::hash_password(PASSWORD)).clone()
}

/// Building a router runs Leptos route generation, which sets a process-wide "suppress resource loading" flag
/// (`leptos_server::SuppressResourceLoad`) while it runs: a page rendered at that moment by another test's router
/// creates resources that never load, and its request hangs. Tests run in parallel, so routers are built under
/// the write side of this lock and every request runs under the read side.
static ROUTE_GENERATION: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// The inspector's router over a test store.
pub struct App {
    pub t: TestStore,
    state: AppState,
    router: tokio::sync::OnceCell<Router>,
}

impl App {
    pub fn new(t: TestStore) -> Self {
        Self::with_public_url(t, None)
    }

    pub fn with_public_url(t: TestStore, public_url: Option<&str>) -> Self {
        let state = AppState::new(t.store.clone(), public_url);
        App { t, state, router: tokio::sync::OnceCell::new() }
    }

    /// An app whose sessions end as `recorder_lost` after `grace` without word from their recorder.
    pub fn with_recorder_grace(t: TestStore, grace: std::time::Duration) -> Self {
        let mut app = Self::new(t);
        app.state.recorder_grace = grace;
        app
    }

    /// The state the router serves (for calling e.g. `reaper::sweep` directly).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves the router on a real socket (127.0.0.1, a free port) until the test's runtime ends; returns the
    /// address. For WebSocket clients; plain requests keep using [`App::send`].
    pub async fn serve(&self) -> SocketAddr {
        let router = self.router().await;
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.expect("bind a test port");
        let addr = listener.local_addr().expect("local address");
        tokio::spawn(async move {
            axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
                .await
                .expect("test server");
        });
        addr
    }

    /// A second server replica on the same database (PostgreSQL), served on its own port: its own store
    /// connection pool, hub and writer, as another `cmdop-inspector serve` process would have.
    pub async fn serve_replica(&self) -> SocketAddr {
        let store = cmdop_store::open(&self.t.url, self.t.clock.clone()).await.expect("open the database again");
        let state = AppState::new(store, None);
        let router = {
            let _no_renders_now = ROUTE_GENERATION.write().await;
            router(state)
        };
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.expect("bind a test port");
        let addr = listener.local_addr().expect("local address");
        tokio::spawn(async move {
            axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
                .await
                .expect("test replica");
        });
        addr
    }

    /// The router, built on first use (see [`ROUTE_GENERATION`]).
    pub async fn router(&self) -> Router {
        let build = || async {
            let _no_renders_now = ROUTE_GENERATION.write().await;
            router(self.state.clone())
        };
        self.router.get_or_init(build).await.clone()
    }

    pub async fn send(&self, req: Request<Body>) -> Res {
        let what = format!("{} {}", req.method(), req.uri());
        let router = self.router().await;
        let _no_route_generation_now = ROUTE_GENERATION.read().await;
        // A hang fails the test (saying where) instead of blocking the whole run.
        let res = tokio::time::timeout(ANSWER_TIMEOUT, router.oneshot(req))
            .await
            .unwrap_or_else(|_| panic!("{what}: no response within {ANSWER_TIMEOUT:?}"))
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let status = res.status();
        let headers = res.headers().clone();
        let body = tokio::time::timeout(ANSWER_TIMEOUT, res.into_body().collect())
            .await
            .unwrap_or_else(|_| {
                panic!("{what}: {status} {headers:?}, but the body did not end within {ANSWER_TIMEOUT:?}")
            })
            .unwrap_or_else(|e| panic!("{what}: body: {e}"))
            .to_bytes()
            .to_vec();
        Res { what, status, headers, body }
    }

    pub async fn get(&self, uri: &str) -> Res {
        self.send(get(uri)).await
    }

    pub async fn get_as(&self, uri: &str, auth: &Auth) -> Res {
        self.send(auth.apply(req(Method::GET, uri)).body(Body::empty()).unwrap()).await
    }

    /// `POST /api/v1/auth/login`.
    pub async fn api_login(&self, email: &str, password: &str) -> Res {
        self.send(post_json("/api/v1/auth/login", &serde_json::json!({ "email": email, "password": password }))).await
    }

    /// Signs in through the JSON API and returns the login cookie (as a `Cookie` header value).
    pub async fn login(&self, email: &str, password: &str) -> Auth {
        let res = self.api_login(email, password).await;
        assert_eq!(res.status, StatusCode::OK, "{res}");
        Auth::Cookie(res.session_cookie())
    }

    /// A person with [`PASSWORD`].
    pub async fn person(&self, email: &str, name: &str) -> Member {
        self.t
            .store
            .create_member(NewMember {
                email: email.into(),
                display_name: name.into(),
                password_hash: Some(password_hash()),
                is_bot: false,
            })
            .await
            .unwrap()
    }

    /// A member without a password (a bot, or a person who only uses API tokens here).
    pub async fn member_without_password(&self, email: &str, is_bot: bool) -> Member {
        self.t
            .store
            .create_member(NewMember { email: email.into(), display_name: String::new(), password_hash: None, is_bot })
            .await
            .unwrap()
    }

    /// A fresh API token of `member`, as Bearer credentials.
    pub async fn token_for(&self, member: &Member) -> Auth {
        let (token, digest) = secrets::new_token("cmdop");
        self.t.store.create_api_token(member.id, "tests", &digest).await.unwrap();
        Auth::Bearer(token)
    }

    /// A login session made directly in the store (no password check), as the cookie the browser would send.
    pub async fn cookie_for(&self, member: &Member) -> Auth {
        let (token, digest) = secrets::new_token("cmdopls");
        let expires = self.t.clock.now() + chrono::Duration::days(7);
        self.t.store.create_login_session(member.id, &digest, expires).await.unwrap();
        Auth::Cookie(format!("cmdop_session={token}"))
    }
}

/// Credentials a request carries.
#[derive(Debug, Clone)]
pub enum Auth {
    None,
    /// A `Cookie` header value, e.g. `cmdop_session=...`.
    Cookie(String),
    /// An API token for `Authorization: Bearer`.
    Bearer(String),
}

impl Auth {
    pub fn apply(&self, b: axum::http::request::Builder) -> axum::http::request::Builder {
        match self {
            Auth::None => b,
            Auth::Cookie(c) => b.header(header::COOKIE, c),
            Auth::Bearer(t) => b.header(header::AUTHORIZATION, format!("Bearer {t}")),
        }
    }
}

pub fn req(method: Method, uri: &str) -> axum::http::request::Builder {
    Request::builder().method(method).uri(uri)
}

pub fn get(uri: &str) -> Request<Body> {
    req(Method::GET, uri).body(Body::empty()).unwrap()
}

pub fn post_json(uri: &str, body: &serde_json::Value) -> Request<Body> {
    post_raw(uri, "application/json", body.to_string())
}

pub fn post_raw(uri: &str, content_type: &str, body: impl Into<String>) -> Request<Body> {
    req(Method::POST, uri).header(header::CONTENT_TYPE, content_type).body(Body::from(body.into())).unwrap()
}

pub fn form_body(pairs: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

pub fn post_form(uri: &str, pairs: &[(&str, &str)]) -> Request<Body> {
    post_raw(uri, "application/x-www-form-urlencoded", form_body(pairs))
}

/// `req` as if it came from `ip` (what `into_make_service_with_connect_info` gives the real server).
pub fn from_ip(mut req: Request<Body>, ip: Ipv4Addr) -> Request<Body> {
    req.extensions_mut().insert(ConnectInfo(SocketAddr::new(IpAddr::V4(ip), 40_000)));
    req
}

pub fn encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A response, read to the end.
pub struct Res {
    pub what: String,
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl std::fmt::Display for Res {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let body = String::from_utf8_lossy(&self.body);
        let body: String = body.chars().take(2000).collect();
        write!(f, "{} -> {} {:?} {}", self.what, self.status, self.headers, body)
    }
}

impl Res {
    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).unwrap_or_else(|_| panic!("body is not UTF-8: {self}"))
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {self}"))
    }

    /// The message of an `{"error": "..."}` body; asserts that the body has exactly that shape and a JSON type.
    pub fn error(&self) -> String {
        let ct = self.header("content-type").unwrap_or_default();
        assert!(ct.starts_with("application/json"), "error body is not JSON: {self}");
        let v = self.json();
        let obj = v.as_object().unwrap_or_else(|| panic!("error body is not an object: {self}"));
        assert_eq!(obj.len(), 1, "error body has more than `error`: {self}");
        let msg = obj.get("error").and_then(|e| e.as_str()).unwrap_or_else(|| panic!("no `error` string: {self}"));
        assert!(!msg.is_empty(), "empty error message: {self}");
        msg.to_string()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().expect("header is ASCII"))
    }

    pub fn location(&self) -> &str {
        self.header("location").unwrap_or_else(|| panic!("no Location: {self}"))
    }

    /// The `Set-Cookie` header of the login cookie.
    pub fn set_cookie(&self) -> String {
        let all: Vec<&str> = self.headers.get_all(header::SET_COOKIE).iter().map(|v| v.to_str().unwrap()).collect();
        let ours: Vec<&&str> = all.iter().filter(|c| c.starts_with("cmdop_session=")).collect();
        assert_eq!(ours.len(), 1, "expected one cmdop_session Set-Cookie: {self}");
        ours[0].to_string()
    }

    /// The login cookie as the browser sends it back: `cmdop_session=VALUE`.
    pub fn session_cookie(&self) -> String {
        let set = self.set_cookie();
        let pair = set.split(';').next().unwrap().trim().to_string();
        assert!(pair.len() > "cmdop_session=".len(), "empty login cookie: {self}");
        pair
    }

    /// The attributes of the login cookie (everything after the first `;`), lower-cased and trimmed.
    pub fn cookie_attributes(&self) -> Vec<String> {
        self.set_cookie().split(';').skip(1).map(|a| a.trim().to_lowercase()).collect()
    }
}
