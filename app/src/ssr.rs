//! Server-side glue of the library: what the server functions need from the host (the store) and how a request
//! is turned into a member. The host (our binary, or an embedding app) provides [`InspectorContext`].

use std::sync::Arc;

use cmdop_store::{Member, Store, StoreError, secrets};
use http::HeaderMap;

/// Name of the login cookie.
pub const SESSION_COOKIE: &str = "cmdop_session";

/// Provided as Leptos context for every page render and server function call.
#[derive(Clone)]
pub struct InspectorContext {
    pub store: Arc<dyn Store>,
}

/// The login token from the `Cookie` header, if any.
pub fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == SESSION_COOKIE)
        .map(|c| c.value().to_string())
}

/// The token of an `Authorization: Bearer ...` header, if any.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

/// The member a request speaks for: an API token (Bearer) wins over the login cookie. `None` if neither is
/// present and valid.
pub async fn member_from_headers(store: &dyn Store, headers: &HeaderMap) -> Result<Option<Member>, StoreError> {
    if let Some(token) = bearer_token(headers) {
        return store.member_by_api_token(&secrets::hash_token(token)).await;
    }
    match session_cookie(headers) {
        Some(token) => store.member_by_login_session(&secrets::hash_token(&token)).await,
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_session_cookie_among_others() {
        let mut h = HeaderMap::new();
        h.insert(http::header::COOKIE, "a=1; cmdop_session=tok_123; b=2".parse().unwrap());
        assert_eq!(session_cookie(&h).as_deref(), Some("tok_123"));
        let mut h = HeaderMap::new();
        h.insert(http::header::COOKIE, "cmdop_sessionx=1".parse().unwrap());
        assert_eq!(session_cookie(&h), None);
    }

    #[test]
    fn bearer_scheme_is_case_insensitive_and_needs_a_token() {
        let mut h = HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, "bearer abc".parse().unwrap());
        assert_eq!(bearer_token(&h), Some("abc"));
        h.insert(http::header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer_token(&h), None);
        h.insert(http::header::AUTHORIZATION, "Bearer ".parse().unwrap());
        assert_eq!(bearer_token(&h), None);
    }
}
