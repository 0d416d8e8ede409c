//! HTTP errors of the API: `{"error": "..."}` with one status per kind of failure.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cmdop_protocol::ErrorBody;
use cmdop_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("sign in first: send the login cookie or an `Authorization: Bearer` API token")]
    Unauthenticated,
    #[error("that email and password do not match a member")]
    BadCredentials,
    #[error("too many sign-in attempts; wait a minute and try again")]
    RateLimited,
    #[error("{field}: {message}")]
    BadRequest { field: std::borrow::Cow<'static, str>, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ApiError {
    pub fn bad_request(field: &'static str, message: impl Into<String>) -> Self {
        ApiError::BadRequest { field: field.into(), message: message.into() }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthenticated | ApiError::BadCredentials => StatusCode::UNAUTHORIZED,
            ApiError::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Store(e) => match e {
                StoreError::NotFound(_) => StatusCode::NOT_FOUND,
                StoreError::AlreadyExists(_) | StoreError::Conflict(_) => StatusCode::CONFLICT,
                StoreError::Forbidden(_) => StatusCode::FORBIDDEN,
                StoreError::Invalid { .. } => StatusCode::BAD_REQUEST,
                StoreError::Database(_) | StoreError::Sqlite(_) | StoreError::Migrate(_) => {
                    StatusCode::INTERNAL_SERVER_ERROR
                }
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!("internal error: {self}");
            "the server could not read or write its store; try again, and tell the operator if it persists".into()
        } else {
            self.to_string()
        };
        (status, Json(ErrorBody { error: message })).into_response()
    }
}
