//! Keys, configurations and token builders shared by the auth tests.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::Authenticator;
use crate::config::JwtConfig;

/// The HS256 secret of [`hs`].
pub const SECRET: &str = "test-secret-0123456789";
/// The private key whose public half the test key sets hold.
pub const RSA_KEY: &str = include_str!("../../tests/fixtures/rsa-test-key.pem");
/// The public half of [`RSA_KEY`], for algorithm-confusion attempts.
pub const RSA_PUBLIC: &str = include_str!("../../tests/fixtures/rsa-test-key.pub.pem");
/// A private key no test key set knows.
pub const OTHER_RSA_KEY: &str = include_str!("../../tests/fixtures/rsa-other-key.pem");

/// Unpadded base64url, as in a JWT.
pub fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A configuration with the user in `sub` and no issuer or audience.
pub fn config(secret: Option<&str>, jwks: Option<String>) -> JwtConfig {
    JwtConfig {
        jwt_secret: secret.map(str::to_owned),
        jwt_jwks: jwks,
        jwt_user_claim: "sub".to_owned(),
        jwt_issuer: None,
        jwt_audience: None,
    }
}

/// An HS256 authenticator with [`SECRET`].
pub async fn hs() -> Authenticator {
    Authenticator::from_config(&config(Some(SECRET), None), &CancellationToken::new())
        .await
        .unwrap()
}

/// `claims` under `header`, signed with `secret` as an HMAC key whatever the header says.
pub fn sign(header: &Header, claims: &Value, secret: &str) -> String {
    jsonwebtoken::encode(
        header,
        claims,
        &EncodingKey::from_secret(secret.as_bytes()).unwrap(),
    )
    .unwrap()
}

/// A Unix time `secs` from now.
pub fn exp_in(secs: i64) -> i64 {
    jsonwebtoken::get_current_timestamp() as i64 + secs
}

/// An RS256 token of the sales user `u7`, signed with the private key `pem`.
pub fn rs_token(kid: Option<&str>, pem: &str) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(
        &header,
        &serde_json::json!({"sub": "u7", "exp": exp_in(60), "realm_access": {"roles": ["sales"]}}),
        &EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
    )
    .unwrap()
}
