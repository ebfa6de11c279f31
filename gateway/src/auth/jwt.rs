//! The [`Authenticator`]: checks a token's algorithm, signature and registered claims against
//! the configured key (an HS256 secret or the RS256 key set) and turns its claims into a
//! [`Principal`].

use std::sync::Arc;

use anyhow::Context;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::jwks::JwksKeys;
use super::principal::principal_from_claims;
use super::{AuthError, MAX_TOKEN_BYTES, Principal};
use crate::config::{JwtConfig, KeySource};

/// Clock skew tolerated on `exp` and `nbf`.
const LEEWAY_SECS: u64 = 30;

/// The library's reason for refusing a token, as the short detail a client may see.
pub(super) fn map_jwt_error(err: jsonwebtoken::errors::Error) -> AuthError {
    use jsonwebtoken::errors::ErrorKind as K;
    match err.kind() {
        K::InvalidSignature => AuthError::Signature,
        K::ExpiredSignature => AuthError::Expired,
        K::ImmatureSignature => AuthError::NotYetValid,
        K::InvalidIssuer => AuthError::Issuer,
        K::InvalidAudience => AuthError::Audience,
        K::MissingRequiredClaim(c) => AuthError::MissingClaim(c.clone()),
        K::InvalidAlgorithm | K::InvalidAlgorithmName | K::UnsupportedAlgorithm => {
            AuthError::Algorithm
        }
        // A key that does not fit the algorithm is a signature problem, not ours to explain.
        K::InvalidRsaKey(_) | K::InvalidKeyFormat | K::InvalidEcdsaKey | K::InvalidEddsaKey => {
            AuthError::Signature
        }
        _ => AuthError::Malformed,
    }
}

/// Checks tokens. Cheap to clone.
#[derive(Clone)]
pub struct Authenticator {
    inner: Arc<AuthInner>,
}

struct AuthInner {
    algorithm: Algorithm,
    validation: Validation,
    user_claim: String,
    keys: Keys,
}

enum Keys {
    Secret(DecodingKey),
    Jwks(JwksKeys),
}

impl Authenticator {
    /// Builds the authenticator; with a JWKS URL, waits (retrying) until the key set loads or
    /// `shutdown` fires, so a gateway started beside its identity provider does not crash-loop.
    pub async fn from_config(
        config: &JwtConfig,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Authenticator> {
        let source = config.validate()?;
        let (algorithm, keys) = match source {
            KeySource::Secret(secret) => (
                Algorithm::HS256,
                Keys::Secret(
                    DecodingKey::from_secret(secret.as_bytes()).context("JWT_SECRET as a key")?,
                ),
            ),
            KeySource::Jwks(source) => (
                Algorithm::RS256,
                Keys::Jwks(JwksKeys::load(source, shutdown).await?),
            ),
        };
        let mut validation = Validation::new(algorithm);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        let mut required = vec!["exp"];
        if let Some(issuer) = &config.jwt_issuer {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        match &config.jwt_audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                required.push("aud");
            }
            // No audience configured: tokens from an IdP carry one (Keycloak: "account");
            // without a configured value there is nothing to compare it with.
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        Ok(Authenticator {
            inner: Arc::new(AuthInner {
                algorithm,
                validation,
                user_claim: config.jwt_user_claim.clone(),
                keys,
            }),
        })
    }

    /// Verifies `token` and returns the caller.
    pub async fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let inner = &self.inner;
        if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::Malformed);
        }
        // Parsing the header fails for `alg: none` and any algorithm this library lacks.
        let header = decode_header(token).map_err(|_| AuthError::Malformed)?;
        if header.alg != inner.algorithm {
            return Err(AuthError::Algorithm);
        }
        let claims: Value = match &inner.keys {
            Keys::Secret(key) => {
                decode::<Value>(token, key, &inner.validation)
                    .map_err(map_jwt_error)?
                    .claims
            }
            Keys::Jwks(jwks) => {
                jwks.decode(token, header.kid.as_deref(), &inner.validation)
                    .await?
            }
        };
        principal_from_claims(&claims, &inner.user_claim)
    }
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::Header;

    use super::super::Roles;
    use super::super::test_support::{RSA_KEY, SECRET, b64, config, exp_in, hs, rs_token, sign};
    use super::*;

    #[tokio::test]
    async fn accepts_a_valid_hs256_token_with_roles_from_either_claim() {
        let auth = hs().await;
        let token = sign(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({"sub": "u1", "exp": exp_in(60), "realm_access": {"roles": ["manager", "offline_access"]}, "roles": ["sales"]}),
            SECRET,
        );
        let p = auth.verify(&token).await.unwrap();
        assert_eq!(p.user_id, "u1");
        assert_eq!(
            p.roles,
            Roles {
                admin: false,
                manager: true,
                sales: true
            }
        );
    }

    #[tokio::test]
    async fn refuses_expired_foreign_unsigned_and_exp_less_tokens() {
        let auth = hs().await;
        let expired = sign(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({"sub": "u1", "exp": exp_in(-3600), "roles": ["admin"]}),
            SECRET,
        );
        assert_eq!(auth.verify(&expired).await, Err(AuthError::Expired));
        let foreign = sign(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({"sub": "u1", "exp": exp_in(60), "roles": ["admin"]}),
            "another-secret-0123456789",
        );
        assert_eq!(auth.verify(&foreign).await, Err(AuthError::Signature));
        let no_exp = sign(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({"sub": "u1", "roles": ["admin"]}),
            SECRET,
        );
        assert_eq!(
            auth.verify(&no_exp).await,
            Err(AuthError::MissingClaim("exp".into()))
        );
        let none = format!(
            "{}.{}.",
            b64(br#"{"alg":"none","typ":"JWT"}"#),
            b64(format!(r#"{{"sub":"u1","exp":{},"roles":["admin"]}}"#, exp_in(60)).as_bytes())
        );
        assert!(auth.verify(&none).await.is_err());
        let hs512 = sign(
            &Header::new(Algorithm::HS512),
            &serde_json::json!({"sub": "u1", "exp": exp_in(60), "roles": ["admin"]}),
            SECRET,
        );
        assert_eq!(auth.verify(&hs512).await, Err(AuthError::Algorithm));
        let no_user = sign(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({"exp": exp_in(60), "roles": ["admin"]}),
            SECRET,
        );
        assert_eq!(
            auth.verify(&no_user).await,
            Err(AuthError::NoUser("sub".into()))
        );
        assert_eq!(auth.verify("garbage").await, Err(AuthError::Malformed));
    }

    #[tokio::test]
    async fn issuer_and_audience_are_checked_when_configured() {
        let mut cfg = config(Some(SECRET), None);
        cfg.jwt_issuer = Some("https://idp/realms/crm".into());
        cfg.jwt_audience = Some("cockpit".into());
        let auth = Authenticator::from_config(&cfg, &CancellationToken::new())
            .await
            .unwrap();
        let token = |iss: &str, aud: &str| {
            sign(
                &Header::new(Algorithm::HS256),
                &serde_json::json!({"sub": "u1", "exp": exp_in(60), "iss": iss, "aud": aud, "roles": ["admin"]}),
                SECRET,
            )
        };
        assert!(
            auth.verify(&token("https://idp/realms/crm", "cockpit"))
                .await
                .is_ok()
        );
        assert_eq!(
            auth.verify(&token("https://evil", "cockpit")).await,
            Err(AuthError::Issuer)
        );
        assert_eq!(
            auth.verify(&token("https://idp/realms/crm", "other")).await,
            Err(AuthError::Audience)
        );
        let bare = sign(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({"sub": "u1", "exp": exp_in(60), "roles": ["admin"]}),
            SECRET,
        );
        // Both are missing; which one is named first is up to the library.
        assert!(matches!(
            auth.verify(&bare).await,
            Err(AuthError::MissingClaim(c)) if c == "iss" || c == "aud"
        ));
    }

    #[tokio::test]
    async fn an_hs_gateway_refuses_rs_tokens() {
        let auth = hs().await;
        assert_eq!(
            auth.verify(&rs_token(None, RSA_KEY)).await,
            Err(AuthError::Algorithm)
        );
    }
}
