//! Access tokens: HS256 with a shared secret (development) or RS256 with the identity provider's
//! key set (JWKS, from a file or a URL). The header's `alg` must be the one configured, so
//! `alg: none` and HS/RS confusion (an HS256 token "signed" with the public RSA key) are refused
//! before any signature check; `exp` is required, `nbf`, `iss` and `aud` are checked when present
//! or configured. Roles come from `realm_access.roles` (Keycloak) or `roles`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{
    Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, decode_header,
};
use serde_json::Value;
use tokio::sync::{Mutex, RwLock};
use tokio_util::sync::CancellationToken;

use crate::config::{JwksSource, JwtConfig, KeySource};
use crate::error::ApiError;

/// Name of the session cookie the cockpit page trades its token for.
pub const SESSION_COOKIE: &str = "followup_session";
/// Longest token accepted (a Keycloak token with many roles stays far below).
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Longest user id (`leads.owner_user_id` is VARCHAR(50)).
pub const MAX_USER_ID_CHARS: usize = 50;
/// Clock skew tolerated on `exp` and `nbf`.
const LEEWAY_SECS: u64 = 30;
/// An unknown `kid` reloads the key set at most this often.
const JWKS_RELOAD_EVERY: Duration = Duration::from_secs(30);

/// Roles the cockpit knows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Roles {
    pub admin: bool,
    pub manager: bool,
    pub sales: bool,
}

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user_id: String,
    pub roles: Roles,
    /// `exp` as a Unix time.
    pub expires_at: i64,
}

impl Principal {
    /// Whether the caller sees the whole organisation (admin, manager).
    pub fn sees_org(&self) -> bool {
        self.roles.admin || self.roles.manager
    }

    /// Whose figures the caller gets for `?owner=`: `None` for the organisation, `Some(user)`
    /// for one user's leads. Admins and managers may name anyone; a sales user only themself.
    pub fn figures_owner(&self, requested: Option<&str>) -> Result<Option<String>, ApiError> {
        if self.sees_org() {
            return Ok(requested.map(str::to_owned));
        }
        if !self.roles.sales {
            return Err(ApiError::Forbidden(
                "the token carries none of the roles admin, manager, sales".to_owned(),
            ));
        }
        match requested {
            None => Ok(Some(self.user_id.clone())),
            Some(owner) if owner == self.user_id => Ok(Some(self.user_id.clone())),
            Some(_) => Err(ApiError::Forbidden(
                "a sales user sees only their own leads".to_owned(),
            )),
        }
    }

    /// Admins and managers only.
    pub fn require_org(&self) -> Result<(), ApiError> {
        if self.sees_org() {
            Ok(())
        } else {
            Err(ApiError::Forbidden(
                "only admin and manager may read this".to_owned(),
            ))
        }
    }
}

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

fn map_jwt_error(err: jsonwebtoken::errors::Error) -> AuthError {
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

struct JwksKeys {
    source: JwksSource,
    http: reqwest::Client,
    keys: RwLock<Arc<Vec<RsaKey>>>,
    last_load: Mutex<Instant>,
}

struct RsaKey {
    kid: Option<String>,
    key: DecodingKey,
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
            KeySource::Jwks(source) => {
                let http = reqwest::Client::builder()
                    .timeout(Duration::from_secs(5))
                    .build()
                    .context("building the JWKS HTTP client")?;
                let keys = load_jwks_retrying(&http, &source, shutdown).await?;
                tracing::info!(keys = keys.len(), source = ?source, "loaded RS256 key set");
                (
                    Algorithm::RS256,
                    Keys::Jwks(JwksKeys {
                        source,
                        http,
                        keys: RwLock::new(Arc::new(keys)),
                        last_load: Mutex::new(Instant::now()),
                    }),
                )
            }
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
                let keys = jwks.keys_for(header.kid.as_deref()).await?;
                let mut last = AuthError::UnknownKey;
                let mut found = None;
                for candidate in keys.iter().filter(|k| match &header.kid {
                    Some(kid) => k.kid.as_deref() == Some(kid.as_str()),
                    None => true,
                }) {
                    match decode::<Value>(token, &candidate.key, &inner.validation) {
                        Ok(data) => {
                            found = Some(data.claims);
                            break;
                        }
                        Err(err) => last = map_jwt_error(err),
                    }
                }
                found.ok_or(last)?
            }
        };
        principal_from_claims(&claims, &inner.user_claim)
    }

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

fn principal_from_claims(claims: &Value, user_claim: &str) -> Result<Principal, AuthError> {
    let user_id = claims
        .get(user_claim)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|u| !u.is_empty() && u.chars().count() <= MAX_USER_ID_CHARS)
        .ok_or_else(|| AuthError::NoUser(user_claim.to_owned()))?
        .to_owned();
    let mut roles = Roles::default();
    let realm = claims.pointer("/realm_access/roles");
    let plain = claims.get("roles");
    for list in [realm, plain].into_iter().flatten() {
        let names: Vec<&str> = match list {
            Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
            Value::String(s) => s.split([' ', ',']).collect(),
            _ => Vec::new(),
        };
        for name in names {
            match name.trim().to_ascii_lowercase().as_str() {
                "admin" => roles.admin = true,
                "manager" => roles.manager = true,
                "sales" => roles.sales = true,
                _ => {}
            }
        }
    }
    let expires_at = claims.get("exp").and_then(Value::as_i64).unwrap_or(0);
    Ok(Principal {
        user_id,
        roles,
        expires_at,
    })
}

impl JwksKeys {
    /// The current keys; reloads them first when `kid` is unknown (at most every 30 s).
    async fn keys_for(&self, kid: Option<&str>) -> Result<Arc<Vec<RsaKey>>, AuthError> {
        let keys = self.keys.read().await.clone();
        let known = match kid {
            Some(kid) => keys.iter().any(|k| k.kid.as_deref() == Some(kid)),
            None => !keys.is_empty(),
        };
        if known {
            return Ok(keys);
        }
        let mut last = self.last_load.lock().await;
        if last.elapsed() < JWKS_RELOAD_EVERY {
            // Another request reloaded a moment ago, or the key really is unknown.
            return Ok(self.keys.read().await.clone());
        }
        *last = Instant::now();
        match load_jwks(&self.http, &self.source).await {
            Ok(fresh) => {
                tracing::info!(
                    keys = fresh.len(),
                    "reloaded RS256 key set for an unknown kid"
                );
                let fresh = Arc::new(fresh);
                *self.keys.write().await = fresh.clone();
                Ok(fresh)
            }
            Err(err) => {
                tracing::warn!(error = format!("{err:#}"), "reloading the key set failed");
                Ok(keys)
            }
        }
    }
}

async fn load_jwks_retrying(
    http: &reqwest::Client,
    source: &JwksSource,
    shutdown: &CancellationToken,
) -> anyhow::Result<Vec<RsaKey>> {
    let mut delay = Duration::from_millis(500);
    loop {
        match load_jwks(http, source).await {
            Ok(keys) => return Ok(keys),
            // A file is there or not; only a URL is worth waiting for.
            Err(err) if matches!(source, JwksSource::File(_)) => return Err(err),
            Err(err) => {
                tracing::warn!(
                    error = format!("{err:#}"),
                    retry_in_ms = delay.as_millis() as u64,
                    "JWKS not loadable yet"
                );
                tokio::select! {
                    _ = shutdown.cancelled() => return Err(err.context("JWKS not loadable before shutdown")),
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
}

async fn load_jwks(http: &reqwest::Client, source: &JwksSource) -> anyhow::Result<Vec<RsaKey>> {
    let text = match source {
        JwksSource::File(path) => tokio::fs::read_to_string(path)
            .await
            .with_context(|| format!("reading JWT_JWKS file {}", path.display()))?,
        JwksSource::Url(url) => http
            .get(url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .with_context(|| format!("fetching JWT_JWKS {url}"))?
            .text()
            .await
            .context("reading the JWKS response")?,
    };
    let set: JwkSet = serde_json::from_str(&text).context("JWT_JWKS is not a JWK set")?;
    let keys = rsa_keys(&set);
    anyhow::ensure!(
        !keys.is_empty(),
        "JWT_JWKS holds no RSA signature key usable for RS256"
    );
    Ok(keys)
}

/// The RSA signing keys of a set. Symmetric (`oct`) keys are ignored on purpose: accepting one
/// would let a published key set sign HS256 tokens.
fn rsa_keys(set: &JwkSet) -> Vec<RsaKey> {
    set.keys
        .iter()
        .filter(|jwk| matches!(jwk.algorithm, AlgorithmParameters::RSA(_)))
        .filter(|jwk| {
            matches!(jwk.common.key_algorithm, None | Some(KeyAlgorithm::RS256))
                && matches!(
                    jwk.common.public_key_use,
                    None | Some(PublicKeyUse::Signature)
                )
        })
        .filter_map(|jwk| {
            DecodingKey::from_jwk(jwk).ok().map(|key| RsaKey {
                kid: jwk.common.key_id.clone(),
                key,
            })
        })
        .collect()
}

/// Claims of a development token.
pub struct DevClaims<'a> {
    pub user_claim: &'a str,
    pub user: &'a str,
    pub roles: &'a [String],
    pub ttl: Duration,
    pub issuer: Option<&'a str>,
    pub audience: Option<&'a str>,
}

/// An HS256 token for development and tests, accepted by a gateway with the same `JWT_SECRET`.
pub fn dev_token(secret: &str, claims: &DevClaims<'_>) -> anyhow::Result<String> {
    let now = jsonwebtoken::get_current_timestamp();
    let mut body = serde_json::Map::new();
    body.insert(claims.user_claim.to_owned(), Value::from(claims.user));
    body.insert("roles".to_owned(), Value::from(claims.roles.to_vec()));
    body.insert("iat".to_owned(), Value::from(now));
    body.insert("exp".to_owned(), Value::from(now + claims.ttl.as_secs()));
    if let Some(iss) = claims.issuer {
        body.insert("iss".to_owned(), Value::from(iss));
    }
    if let Some(aud) = claims.audience {
        body.insert("aud".to_owned(), Value::from(aud));
    }
    let key = EncodingKey::from_secret(secret.as_bytes()).context("JWT_SECRET as a key")?;
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &Value::Object(body), &key)
        .context("signing the development token")
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

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    const SECRET: &str = "test-secret-0123456789";

    fn config(secret: Option<&str>, jwks: Option<String>) -> JwtConfig {
        JwtConfig {
            jwt_secret: secret.map(str::to_owned),
            jwt_jwks: jwks,
            jwt_user_claim: "sub".to_owned(),
            jwt_issuer: None,
            jwt_audience: None,
        }
    }

    async fn hs() -> Authenticator {
        Authenticator::from_config(&config(Some(SECRET), None), &CancellationToken::new())
            .await
            .unwrap()
    }

    fn sign(header: &Header, claims: &Value, secret: &str) -> String {
        jsonwebtoken::encode(
            header,
            claims,
            &EncodingKey::from_secret(secret.as_bytes()).unwrap(),
        )
        .unwrap()
    }

    fn exp_in(secs: i64) -> i64 {
        jsonwebtoken::get_current_timestamp() as i64 + secs
    }

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

    const RSA_KEY: &str = include_str!("../tests/fixtures/rsa-test-key.pem");
    const RSA_PUBLIC: &str = include_str!("../tests/fixtures/rsa-test-key.pub.pem");
    const OTHER_RSA_KEY: &str = include_str!("../tests/fixtures/rsa-other-key.pem");

    fn jwks_file(kid: &str) -> tempfile::NamedTempFile {
        let key = EncodingKey::from_rsa_pem(RSA_KEY.as_bytes()).unwrap();
        let mut jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&key, Algorithm::RS256).unwrap();
        jwk.common.key_id = Some(kid.to_owned());
        let set = serde_json::json!({"keys": [
            // A symmetric key in the set must never be used.
            {"kty": "oct", "kid": "sym", "k": b64(b"0123456789abcdef0123456789abcdef")},
            jwk,
        ]});
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), set.to_string()).unwrap();
        file
    }

    fn rs_token(kid: Option<&str>, pem: &str) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(
            &header,
            &serde_json::json!({"sub": "u7", "exp": exp_in(60), "realm_access": {"roles": ["sales"]}}),
            &EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn rs256_with_a_jwks_file_and_no_algorithm_confusion() {
        let file = jwks_file("k1");
        let auth = Authenticator::from_config(
            &config(None, Some(file.path().display().to_string())),
            &CancellationToken::new(),
        )
        .await
        .unwrap();
        let p = auth.verify(&rs_token(Some("k1"), RSA_KEY)).await.unwrap();
        assert_eq!(p.user_id, "u7");
        assert!(p.roles.sales && !p.roles.admin);
        // Without a kid, the set's keys are tried.
        assert!(auth.verify(&rs_token(None, RSA_KEY)).await.is_ok());
        // Another private key under the same kid.
        assert_eq!(
            auth.verify(&rs_token(Some("k1"), OTHER_RSA_KEY)).await,
            Err(AuthError::Signature)
        );
        // HS256 "signed" with the public key, and HS256 with the set's symmetric key: refused
        // on the algorithm before any key is used.
        let mut confused = Header::new(Algorithm::HS256);
        confused.kid = Some("k1".into());
        let claims = serde_json::json!({"sub": "u7", "exp": exp_in(60), "roles": ["admin"]});
        assert_eq!(
            auth.verify(&sign(&confused, &claims, RSA_PUBLIC)).await,
            Err(AuthError::Algorithm)
        );
        confused.kid = Some("sym".into());
        assert_eq!(
            auth.verify(&sign(
                &confused,
                &claims,
                "0123456789abcdef0123456789abcdef"
            ))
            .await,
            Err(AuthError::Algorithm)
        );
        // An unknown kid.
        assert_eq!(
            auth.verify(&rs_token(Some("k9"), RSA_KEY)).await,
            Err(AuthError::UnknownKey)
        );
    }

    #[tokio::test]
    async fn an_hs_gateway_refuses_rs_tokens() {
        let auth = hs().await;
        assert_eq!(
            auth.verify(&rs_token(None, RSA_KEY)).await,
            Err(AuthError::Algorithm)
        );
    }

    #[test]
    fn scope_rules() {
        let p = |admin, manager, sales| Principal {
            user_id: "u1".into(),
            roles: Roles {
                admin,
                manager,
                sales,
            },
            expires_at: 0,
        };
        assert_eq!(p(true, false, false).figures_owner(None).unwrap(), None);
        assert_eq!(
            p(false, true, false).figures_owner(Some("u2")).unwrap(),
            Some("u2".into())
        );
        assert_eq!(
            p(false, false, true).figures_owner(None).unwrap(),
            Some("u1".into())
        );
        assert_eq!(
            p(false, false, true).figures_owner(Some("u1")).unwrap(),
            Some("u1".into())
        );
        assert!(matches!(
            p(false, false, true).figures_owner(Some("u2")),
            Err(ApiError::Forbidden(_))
        ));
        assert!(matches!(
            p(false, false, false).figures_owner(None),
            Err(ApiError::Forbidden(_))
        ));
        assert!(p(false, false, true).require_org().is_err());
        assert!(p(false, true, false).require_org().is_ok());
    }

    #[test]
    fn dev_tokens_verify() {
        let token = dev_token(
            SECRET,
            &DevClaims {
                user_claim: "sub",
                user: "u3",
                roles: &["sales".to_owned()],
                ttl: Duration::from_secs(60),
                issuer: None,
                audience: None,
            },
        )
        .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let p = rt.block_on(async { hs().await.verify(&token).await.unwrap() });
        assert_eq!(p.user_id, "u3");
        assert!(p.roles.sales);
    }
}
