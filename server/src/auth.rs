//! Signing in and out, and who a request speaks for.
//!
//! Members sign in with email + password (argon2id) and get an HttpOnly, SameSite=Lax cookie holding a random
//! token whose SHA-256 digest is the login session's key. Scripts, bots and the recorder send an API token as
//! `Authorization: Bearer`. Sign-in attempts are rate limited per client address and per email.

use std::net::SocketAddr;
use std::num::NonZeroU32;

use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::header::{LOCATION, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use cmdop_inspector::ssr::{SESSION_COOKIE, member_from_headers, session_cookie};
use cmdop_protocol::{LoginRequest, LoginResponse};
use cmdop_store::{Member, secrets};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::Deserialize;

use crate::error::ApiError;
use crate::state::AppState;

/// Sign-in attempts allowed per client address and per email: a burst, then one every few seconds.
pub struct LoginLimiter {
    by_addr: DefaultKeyedRateLimiter<String>,
    by_email: DefaultKeyedRateLimiter<String>,
}

impl Default for LoginLimiter {
    fn default() -> Self {
        let per_addr = Quota::per_minute(NonZeroU32::new(30).unwrap()).allow_burst(NonZeroU32::new(20).unwrap());
        let per_email = Quota::per_minute(NonZeroU32::new(10).unwrap()).allow_burst(NonZeroU32::new(10).unwrap());
        LoginLimiter { by_addr: RateLimiter::keyed(per_addr), by_email: RateLimiter::keyed(per_email) }
    }
}

impl LoginLimiter {
    fn check(&self, addr: &str, email: &str) -> Result<(), ApiError> {
        // Forget idle keys now and then so that the maps cannot grow without bound.
        if self.by_addr.len() > 10_000 || self.by_email.len() > 10_000 {
            self.by_addr.retain_recent();
            self.by_email.retain_recent();
        }
        let email = email.trim().to_lowercase();
        if self.by_addr.check_key(&addr.to_string()).is_err() || self.by_email.check_key(&email).is_err() {
            return Err(ApiError::RateLimited);
        }
        Ok(())
    }
}

/// The signed-in member (cookie or Bearer token); rejects with 401 otherwise.
pub struct CurrentMember(pub Member);

impl FromRequestParts<AppState> for CurrentMember {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        member_from_headers(&*state.store, &parts.headers).await?.map(CurrentMember).ok_or(ApiError::Unauthenticated)
    }
}

fn client_addr(parts_ext: &axum::http::Extensions) -> String {
    parts_ext.get::<ConnectInfo<SocketAddr>>().map(|ci| ci.0.ip().to_string()).unwrap_or_else(|| "unknown".to_string())
}

/// Checks email and password; the expensive hash runs off the async threads.
async fn authenticate(state: &AppState, addr: &str, email: &str, password: &str) -> Result<Member, ApiError> {
    if email.trim().is_empty() {
        return Err(ApiError::bad_request("email", "is required"));
    }
    if password.is_empty() {
        return Err(ApiError::bad_request("password", "is required"));
    }
    state.login_limiter.check(addr, email)?;
    let record = state.store.password_login_record(email).await?;
    let password = password.to_string();
    let verified = tokio::task::spawn_blocking(move || match record {
        Some((member, Some(hash))) => secrets::verify_password(&password, &hash).then_some(member),
        // No such member, or one without a password (a bot): take as long as a real check, then fail.
        _ => {
            secrets::verify_password_dummy(&password);
            None
        }
    })
    .await
    .expect("password check does not panic");
    verified.ok_or(ApiError::BadCredentials)
}

/// Starts a login session for `member`; returns the `Set-Cookie` value and when it expires.
async fn start_login(
    state: &AppState,
    member: &Member,
) -> Result<(HeaderValue, chrono::DateTime<chrono::Utc>), ApiError> {
    let (token, digest) = secrets::new_token("cmdopls");
    let expires_at = state.store.clock().now() + state.login_ttl;
    state.store.create_login_session(member.id, &digest, expires_at).await?;
    let cookie = cookie::Cookie::build((SESSION_COOKIE, token))
        .path("/")
        .http_only(true)
        .same_site(cookie::SameSite::Lax)
        .secure(state.secure_cookies)
        .max_age(cookie::time::Duration::seconds(state.login_ttl.num_seconds()))
        .build();
    Ok((HeaderValue::from_str(&cookie.to_string()).expect("cookie is a valid header"), expires_at))
}

/// Ends the login session of the request's cookie (if any); returns the `Set-Cookie` that clears it.
async fn end_login(state: &AppState, headers: &HeaderMap) -> Result<HeaderValue, ApiError> {
    if let Some(token) = session_cookie(headers) {
        state.store.delete_login_session(&secrets::hash_token(&token)).await?;
    }
    let cookie = cookie::Cookie::build((SESSION_COOKIE, ""))
        .path("/")
        .http_only(true)
        .same_site(cookie::SameSite::Lax)
        .secure(state.secure_cookies)
        .max_age(cookie::time::Duration::ZERO)
        .build();
    Ok(HeaderValue::from_str(&cookie.to_string()).expect("cookie is a valid header"))
}

/// `POST /api/v1/auth/login` with `{"email", "password"}`.
pub async fn api_login(
    State(state): State<AppState>,
    parts: axum::http::Extensions,
    body: Result<Json<LoginRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(req) = body.map_err(|e| {
        ApiError::bad_request("body", format!("expected {{\"email\", \"password\"}}: {}", e.body_text()))
    })?;
    let member = authenticate(&state, &client_addr(&parts), &req.email, &req.password).await?;
    let (cookie, expires_at) = start_login(&state, &member).await?;
    Ok(([(SET_COOKIE, cookie)], Json(LoginResponse { member: member.info(), expires_at })).into_response())
}

/// `POST /api/v1/auth/logout`.
pub async fn api_logout(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let cookie = end_login(&state, &headers).await?;
    Ok((StatusCode::NO_CONTENT, [(SET_COOKIE, cookie)]).into_response())
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    next: Option<String>,
}

fn see_other(location: &str) -> Response {
    (StatusCode::SEE_OTHER, [(LOCATION, HeaderValue::from_str(location).unwrap_or(HeaderValue::from_static("/")))])
        .into_response()
}

fn encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// `POST /auth/login`: the sign-in page's plain HTML form. Redirects to `next` or back to the form with a reason.
pub async fn form_login(
    State(state): State<AppState>,
    parts: axum::http::Extensions,
    Form(form): Form<LoginForm>,
) -> Response {
    let next = form.next.filter(|n| cmdop_inspector::pages::is_local_path(n)).unwrap_or_else(|| "/sessions".into());
    let back = |code: &str| {
        see_other(&format!("/login?error={code}&email={}&next={}", encode(form.email.trim()), encode(&next)))
    };
    let member = match authenticate(&state, &client_addr(&parts), &form.email, &form.password).await {
        Ok(m) => m,
        Err(ApiError::BadRequest { .. }) => return back("missing"),
        Err(ApiError::RateLimited) => return back("rate_limited"),
        Err(ApiError::BadCredentials) => return back("invalid"),
        Err(other) => return other.into_response(),
    };
    match start_login(&state, &member).await {
        Ok((cookie, _)) => {
            let mut res = see_other(&next);
            res.headers_mut().insert(SET_COOKIE, cookie);
            res
        }
        Err(e) => e.into_response(),
    }
}

/// `POST /auth/logout`: the sign-out button.
pub async fn form_logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match end_login(&state, &headers).await {
        Ok(cookie) => {
            let mut res = see_other("/login");
            res.headers_mut().insert(SET_COOKIE, cookie);
            res
        }
        Err(e) => e.into_response(),
    }
}
