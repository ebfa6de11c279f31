//! API errors: one enum, mapped to a status and the JSON body `{code, detail}`. A 500 says
//! "internal error" and a reference; the cause goes to the log only.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// The JSON body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Machine-readable: `unauthorized`, `forbidden`, `bad_request`, `not_found`,
    /// `method_not_allowed`, `too_many_requests`, `unavailable`, `internal`.
    pub code: String,
    /// Human-readable explanation, safe to show.
    pub detail: String,
}

/// Everything a handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No token, or a token that is not valid: 401.
    #[error("{0}")]
    Unauthorized(String),
    /// A valid token without the right to this resource: 403.
    #[error("{0}")]
    Forbidden(String),
    /// A malformed request: 400.
    #[error("{0}")]
    BadRequest(String),
    /// No such route: 404.
    #[error("no such resource")]
    NotFound,
    /// A route that exists, with another method: 405.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// A dependency (the database) does not answer: 503.
    #[error("{0}")]
    Unavailable(String),
    /// The caller holds too many of something (SSE streams): 429 with `Retry-After`.
    #[error("{detail}")]
    TooManyRequests { detail: String, retry_after: u64 },
    /// The gateway holds as much as it takes (SSE streams): 503 with `Retry-After`.
    #[error("{detail}")]
    Saturated { detail: String, retry_after: u64 },
    /// Anything else: 500, details logged, never sent.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Unavailable(_) | ApiError::Saturated { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::NotFound => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Unavailable(_) | ApiError::Saturated { .. } => "unavailable",
            ApiError::TooManyRequests { .. } => "too_many_requests",
            ApiError::Internal(_) => "internal",
        }
    }

    /// A database error: unavailable when the server cannot be reached, internal otherwise.
    pub fn from_db(err: sqlx::Error) -> ApiError {
        match err {
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
                tracing::warn!(error = %err, "database unavailable");
                ApiError::Unavailable("the figures cannot be read right now; retry".to_owned())
            }
            other => ApiError::Internal(other.into()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let retry_after = match &self {
            ApiError::TooManyRequests { retry_after, .. }
            | ApiError::Saturated { retry_after, .. } => Some(*retry_after),
            _ => None,
        };
        let detail = match &self {
            ApiError::Internal(err) => {
                let reference = uuid::Uuid::new_v4().simple().to_string();
                tracing::error!(error = format!("{err:#}"), reference, "internal error");
                format!("internal error (reference {reference})")
            }
            other => other.to_string(),
        };
        let body = ErrorBody {
            code: self.code().to_owned(),
            detail,
        };
        let mut response = (status, Json(body)).into_response();
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"followup\""),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn internal_errors_hide_their_cause() {
        let response =
            ApiError::Internal(anyhow::anyhow!("password=hunter2 at db:5432")).into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let bytes = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        let body: ErrorBody = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(body.code, "internal");
        assert!(!body.detail.contains("hunter2"), "{}", body.detail);
    }

    #[tokio::test]
    async fn refusals_for_load_carry_retry_after() {
        for (error, status, code) in [
            (
                ApiError::TooManyRequests {
                    detail: "too many streams".into(),
                    retry_after: 5,
                },
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_requests",
            ),
            (
                ApiError::Saturated {
                    detail: "full".into(),
                    retry_after: 5,
                },
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
            ),
        ] {
            let response = error.into_response();
            assert_eq!(response.status(), status);
            assert_eq!(response.headers()[header::RETRY_AFTER], "5");
            let bytes = axum::body::to_bytes(response.into_body(), 4096)
                .await
                .unwrap();
            let body: ErrorBody = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(body.code, code);
        }
    }

    #[tokio::test]
    async fn unauthorized_carries_a_bearer_challenge() {
        let response = ApiError::Unauthorized("missing token".into()).into_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert!(response.headers().contains_key(header::WWW_AUTHENTICATE));
    }
}
