//! The RS256 key set (JWKS) of the identity provider, from a file or a URL. It is loaded at
//! start-up (a URL is retried until it answers, so the gateway can start beside its identity
//! provider) and reloaded when a token names a `kid` the set lacks (a key rotation), at most
//! every 30 s so unknown `kid`s cannot make the gateway hammer the provider.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use followup_infra::{Backoff, retry_until};
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{DecodingKey, Validation, decode};
use serde_json::Value;
use tokio::sync::{Mutex, RwLock};
use tokio_util::sync::CancellationToken;

use super::AuthError;
use super::jwt::map_jwt_error;
use crate::config::JwksSource;

/// An unknown `kid` reloads the key set at most this often.
const JWKS_RELOAD_EVERY: Duration = Duration::from_secs(30);

/// The current key set and what it takes to reload it.
pub(super) struct JwksKeys {
    source: JwksSource,
    http: reqwest::Client,
    keys: RwLock<Arc<Vec<RsaKey>>>,
    last_load: Mutex<Instant>,
}

struct RsaKey {
    kid: Option<String>,
    key: DecodingKey,
}

impl JwksKeys {
    /// Loads the key set from `source`, retrying a URL until it loads or `shutdown` fires.
    pub(super) async fn load(
        source: JwksSource,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<JwksKeys> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .context("building the JWKS HTTP client")?;
        let keys = load_jwks_retrying(&http, &source, shutdown).await?;
        tracing::info!(keys = keys.len(), source = ?source, "loaded RS256 key set");
        Ok(JwksKeys {
            source,
            http,
            keys: RwLock::new(Arc::new(keys)),
            last_load: Mutex::new(Instant::now()),
        })
    }

    /// Decodes `token` with the key its `kid` names, or with each key of the set when it names
    /// none; the error is the last key's, or [`AuthError::UnknownKey`] when no key fits the `kid`.
    pub(super) async fn decode(
        &self,
        token: &str,
        kid: Option<&str>,
        validation: &Validation,
    ) -> Result<Value, AuthError> {
        let keys = self.keys_for(kid).await?;
        let mut last = AuthError::UnknownKey;
        let mut found = None;
        for candidate in keys.iter().filter(|k| match kid {
            Some(kid) => k.kid.as_deref() == Some(kid),
            None => true,
        }) {
            match decode::<Value>(token, &candidate.key, validation) {
                Ok(data) => {
                    found = Some(data.claims);
                    break;
                }
                Err(err) => last = map_jwt_error(err),
            }
        }
        found.ok_or(last)
    }

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
    // A file is there or not; only a URL is worth waiting for.
    let JwksSource::Url(url) = source else {
        return load_jwks(http, source).await;
    };
    let backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(10));
    retry_until(
        shutdown,
        "JWKS not loadable yet",
        Some(url.as_str()),
        backoff,
        || load_jwks(http, source),
    )
    .await
    .map_err(|err| err.context("JWKS not loadable before shutdown"))
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

#[cfg(test)]
mod tests {
    use jsonwebtoken::{Algorithm, EncodingKey, Header};

    use super::super::test_support::{
        OTHER_RSA_KEY, RSA_KEY, RSA_PUBLIC, b64, config, exp_in, rs_token, sign,
    };
    use super::super::{AuthError, Authenticator};
    use super::*;

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
}
