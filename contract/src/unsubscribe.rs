//! Signed unsubscribe links, shared by the producer (which puts the link into every follow-up)
//! and the gateway (which serves the route behind it). Pure functions, no I/O.
//!
//! The link is `<UNSUBSCRIBE_BASE_URL>/unsubscribe?lead=<lead id>&sig=<signature>` where the
//! signature is the lowercase hex HMAC-SHA256, keyed with `UNSUBSCRIBE_SECRET` (its UTF-8 bytes),
//! of the message `unsubscribe:<lead id in decimal>`. The `unsubscribe:` prefix keeps a signature
//! from meaning anything else should the secret ever be reused for another purpose. Links do not
//! expire: people click year-old mails, and all the link can do is withdraw consent.

use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Path of the gateway route behind the link, appended to `UNSUBSCRIBE_BASE_URL`.
pub const UNSUBSCRIBE_PATH: &str = "/unsubscribe";

/// Why an unsubscribe request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnsubscribeError {
    #[error("the unsubscribe link has no valid lead id")]
    BadLead,
    #[error("the unsubscribe link has no signature")]
    MissingSignature,
    #[error("the unsubscribe link's signature does not match")]
    BadSignature,
}

fn mac_for(secret: &[u8], lead_id: i64) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(b"unsubscribe:");
    mac.update(lead_id.to_string().as_bytes());
    mac
}

/// The signature of `lead_id`'s unsubscribe link: 64 lowercase hex digits.
pub fn unsubscribe_signature(secret: &[u8], lead_id: i64) -> String {
    hex::encode(mac_for(secret, lead_id).finalize().into_bytes())
}

/// Whether `signature` (hex, either case) is the signature of `lead_id`'s link. Constant time.
pub fn verify_unsubscribe_signature(secret: &[u8], lead_id: i64, signature: &str) -> bool {
    match hex::decode(signature.trim()) {
        Ok(bytes) => mac_for(secret, lead_id).verify_slice(&bytes).is_ok(),
        Err(_) => false,
    }
}

/// The full unsubscribe link for `lead_id` under `base_url` (a trailing `/` is ignored).
pub fn unsubscribe_url(base_url: &str, secret: &[u8], lead_id: i64) -> String {
    format!(
        "{}{UNSUBSCRIBE_PATH}?lead={lead_id}&sig={}",
        base_url.trim_end_matches('/'),
        unsubscribe_signature(secret, lead_id)
    )
}

/// The query parameters of the link, for a web framework's query extractor
/// (`axum::extract::Query<UnsubscribeParams>`). `lead` is kept as text so that a malformed id is
/// refused by [`UnsubscribeParams::verify`] rather than by the extractor.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct UnsubscribeParams {
    #[serde(default)]
    pub lead: String,
    #[serde(default)]
    pub sig: String,
}

impl UnsubscribeParams {
    /// The lead id when the signature is valid.
    pub fn verify(&self, secret: &[u8]) -> Result<i64, UnsubscribeError> {
        let lead_id: i64 = self
            .lead
            .trim()
            .parse()
            .map_err(|_| UnsubscribeError::BadLead)?;
        if lead_id <= 0 {
            return Err(UnsubscribeError::BadLead);
        }
        if self.sig.trim().is_empty() {
            return Err(UnsubscribeError::MissingSignature);
        }
        if verify_unsubscribe_signature(secret, lead_id, &self.sig) {
            Ok(lead_id)
        } else {
            Err(UnsubscribeError::BadSignature)
        }
    }

    /// Parses a raw query string (`lead=1&sig=ab…`, with or without a leading `?`). Lead ids and
    /// signatures are digits and hex, so no percent-decoding is needed; anything encoded is
    /// simply not a valid value.
    pub fn from_query(query: &str) -> UnsubscribeParams {
        let mut params = UnsubscribeParams::default();
        for pair in query.trim_start_matches('?').split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "lead" => params.lead = value.to_owned(),
                "sig" => params.sig = value.to_owned(),
                _ => {}
            }
        }
        params
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"a test secret of some length";

    #[test]
    fn a_link_verifies_and_names_its_lead() {
        let url = unsubscribe_url("https://crm.example.com/followup/", SECRET, 42);
        let (base, query) = url.split_once('?').unwrap();
        assert_eq!(base, "https://crm.example.com/followup/unsubscribe");
        assert_eq!(UnsubscribeParams::from_query(query).verify(SECRET), Ok(42));
        let sig = unsubscribe_signature(SECRET, 42);
        assert_eq!(sig.len(), 64);
        assert!(verify_unsubscribe_signature(
            SECRET,
            42,
            &sig.to_uppercase()
        ));
    }

    #[test]
    fn tampering_is_refused() {
        let sig = unsubscribe_signature(SECRET, 42);
        let verify = |lead: &str, sig: &str| {
            UnsubscribeParams {
                lead: lead.into(),
                sig: sig.into(),
            }
            .verify(SECRET)
        };
        // Another lead with this lead's signature.
        assert_eq!(verify("43", &sig), Err(UnsubscribeError::BadSignature));
        // One hex digit changed.
        let mut flipped = sig.clone().into_bytes();
        flipped[0] = if flipped[0] == b'0' { b'1' } else { b'0' };
        let flipped = String::from_utf8(flipped).unwrap();
        assert_eq!(verify("42", &flipped), Err(UnsubscribeError::BadSignature));
        // Truncated, not hex, missing, another secret.
        assert_eq!(
            verify("42", &sig[..62]),
            Err(UnsubscribeError::BadSignature)
        );
        assert_eq!(verify("42", "zz"), Err(UnsubscribeError::BadSignature));
        assert_eq!(verify("42", ""), Err(UnsubscribeError::MissingSignature));
        assert_eq!(verify("abc", &sig), Err(UnsubscribeError::BadLead));
        assert_eq!(verify("-42", &sig), Err(UnsubscribeError::BadLead));
        assert!(!verify_unsubscribe_signature(b"another secret", 42, &sig));
    }
}
