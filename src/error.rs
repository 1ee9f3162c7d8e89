//! The error policy, in one place.
//!
//! - Inside the crate, fallible code returns `anyhow::Result` and adds
//!   `.context(..)` saying what it was doing; the chain is the diagnosis.
//! - `thiserror` enums exist only where a caller branches on the kind
//!   (configuration, database connection, Slack/Google client outcomes).
//! - At the HTTP edge every handler returns [`ApiError`]. Its `IntoResponse`
//!   logs the cause chain once (for 5xx) and sends the client a status and a
//!   short message that names the problem and leaks nothing: no internals,
//!   no secrets, no echo of the request body.
//! - The binary maps outcomes to the exit codes of the operator contract:
//!   0 success, 1 runtime failure, 2 bad usage or configuration.

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};

/// Exit code: success.
pub const EXIT_OK: i32 = 0;
/// Exit code: something failed at run time (a dependency, a job).
pub const EXIT_FAILURE: i32 = 1;
/// Exit code: bad usage or configuration.
pub const EXIT_CONFIG: i32 = 2;

/// An error answered over HTTP.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request was malformed; the message says how.
    #[error("{0}")]
    BadRequest(String),
    /// 401: authentication failed. No detail is given on purpose.
    #[error("unauthorized")]
    Unauthorized,
    /// 404.
    #[error("not found")]
    NotFound,
    /// 413.
    #[error("request body too large")]
    PayloadTooLarge,
    /// 503: a feature is not configured, or a dependency is down; the message
    /// names which (never a secret).
    #[error("{0}")]
    Unavailable(String),
    /// 500: logged with its cause chain; the client sees a generic message.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        Self::Internal(anyhow::Error::new(e).context("database"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = match &self {
            Self::Internal(cause) => {
                tracing::error!(error = format!("{cause:#}"), "request failed");
                "internal error; the operator's logs have the cause".to_owned()
            }
            other => other.to_string(),
        };
        (status, Json(serde_json::json!({ "ok": false, "error": message }))).into_response()
    }
}
