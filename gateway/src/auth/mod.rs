//! Access tokens: HS256 with a shared secret (development) or RS256 with the identity provider's
//! key set (JWKS, from a file or a URL). The header's `alg` must be the one configured, so
//! `alg: none` and HS/RS confusion (an HS256 token "signed" with the public RSA key) are refused
//! before any signature check; `exp` is required, `nbf`, `iss` and `aud` are checked when present
//! or configured. Roles come from `realm_access.roles` (Keycloak) or `roles`.
//!
//! - `jwt`: the [`Authenticator`], which validates a token against the configured keys.
//! - `jwks`: the RS256 key set, loaded at start-up and reloaded for an unknown `kid`.
//! - `principal`: the caller a valid token names ([`Principal`], [`Roles`]) and what it may see.
//! - `extract`: the token of a request (Bearer header or session cookie) and the axum extractor.
//! - `dev_token`: HS256 tokens for development and tests.

mod dev_token;
mod extract;
mod jwks;
mod jwt;
mod principal;
#[cfg(test)]
mod test_support;

pub use dev_token::{DevClaims, dev_token};
pub use extract::token_from_parts;
pub use jwt::Authenticator;
pub use principal::{Principal, Roles};

use crate::error::ApiError;

/// Name of the session cookie the cockpit page trades its token for.
pub const SESSION_COOKIE: &str = "followup_session";
/// Longest token accepted (a Keycloak token with many roles stays far below).
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Longest user id (`leads.owner_user_id` is VARCHAR(50)).
pub const MAX_USER_ID_CHARS: usize = 50;

/// Why a token was refused; every variant becomes a 401 with a short, safe detail.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("missing token: send Authorization: Bearer <token> or the session cookie")]
    Missing,
    #[error("the Authorization header must be 'Bearer <token>'")]
    NotBearer,
    #[error("malformed token")]
    Malformed,
    #[error("token algorithm not accepted")]
    Algorithm,
    #[error("token signed with an unknown key")]
    UnknownKey,
    #[error("token signature invalid")]
    Signature,
    #[error("token expired")]
    Expired,
    #[error("token not valid yet")]
    NotYetValid,
    #[error("token issuer not accepted")]
    Issuer,
    #[error("token audience not accepted")]
    Audience,
    #[error("token lacks required claim {0}")]
    MissingClaim(String),
    #[error("token has no usable user id in claim {0}")]
    NoUser(String),
}

impl From<AuthError> for ApiError {
    fn from(err: AuthError) -> ApiError {
        ApiError::Unauthorized(err.to_string())
    }
}
