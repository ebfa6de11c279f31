//! The token of a request and the axum extractor built on it. The Bearer header serves API
//! clients; the session cookie serves the cockpit page's EventSource, which cannot set headers.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;

use super::{AuthError, Authenticator, Principal, SESSION_COOKIE};
use crate::error::ApiError;

impl Authenticator {
    /// Verifies the token from `Authorization: Bearer` or, failing that, the session cookie.
    pub async fn authenticate(&self, parts: &Parts) -> Result<Principal, AuthError> {
        let token = token_from_parts(parts)?;
        self.verify(&token).await
    }
}

/// The token of a request: the Bearer header when there is one, else the session cookie.
pub fn token_from_parts(parts: &Parts) -> Result<String, AuthError> {
    if let Some(value) = parts.headers.get(header::AUTHORIZATION) {
        let value = value.to_str().map_err(|_| AuthError::NotBearer)?;
        let (scheme, token) = value.split_once(' ').ok_or(AuthError::NotBearer)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(AuthError::NotBearer);
        }
        let token = token.trim();
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        return Ok(token.to_owned());
    }
    for value in parts.headers.get_all(header::COOKIE) {
        let Ok(value) = value.to_str() else { continue };
        for pair in value.split(';') {
            if let Some((name, token)) = pair.trim().split_once('=')
                && name == SESSION_COOKIE
                && !token.is_empty()
            {
                return Ok(token.to_owned());
            }
        }
    }
    Err(AuthError::Missing)
}

/// Extractor: the authenticated caller, or a 401 JSON error.
impl<S> FromRequestParts<S> for Principal
where
    S: Send + Sync,
    Authenticator: axum::extract::FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let auth = <Authenticator as axum::extract::FromRef<S>>::from_ref(state);
        Ok(auth.authenticate(parts).await?)
    }
}
