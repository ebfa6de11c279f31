//! HS256 tokens for development and tests (`followup-gateway dev-token`), signed with the same
//! `JWT_SECRET` a development gateway verifies with.

use std::time::Duration;

use anyhow::Context;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::Value;

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

#[cfg(test)]
mod tests {
    use super::super::test_support::{SECRET, hs};
    use super::*;

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
