//! The unsubscribe link of every e-mail: the gateway's page, signed with the secret the gateway
//! verifies (`followup_contract::unsubscribe_url`), so no login is needed to follow it.

use followup_contract::unsubscribe_url;

/// Where unsubscribe links point and how they are signed.
#[derive(Clone)]
pub struct UnsubscribeLinks {
    base_url: String,
    secret: Vec<u8>,
}

/// Redacts the secret, so a `{:?}` of the renderer cannot leak it into a log.
impl std::fmt::Debug for UnsubscribeLinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnsubscribeLinks")
            .field("base_url", &self.base_url)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl UnsubscribeLinks {
    /// Links under `base_url` (the gateway's base URL), signed with `secret`.
    pub fn new(base_url: impl Into<String>, secret: impl Into<Vec<u8>>) -> Self {
        UnsubscribeLinks {
            base_url: base_url.into(),
            secret: secret.into(),
        }
    }

    /// The signed link of `lead_id`.
    pub fn url(&self, lead_id: i64) -> String {
        unsubscribe_url(&self.base_url, &self.secret, lead_id)
    }
}
