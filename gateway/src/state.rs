//! [`AppState`]: what every handler of the router can reach (the API, the session routes, the
//! unsubscribe page), built once by [`crate::run_until_stopped`].

use std::sync::Arc;

use axum::extract::FromRef;
use chrono_tz::Tz;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::auth::Authenticator;
use crate::hub::Hub;
use crate::limits::SseLimits;
use crate::metrics::GatewayMetrics;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub tz: Tz,
    pub auth: Authenticator,
    pub hub: Hub,
    /// `SSE_MAX_CONNECTIONS` and `SSE_MAX_CONNECTIONS_PER_USER`.
    pub sse_limits: SseLimits,
    pub metrics: GatewayMetrics,
    pub cookie_secure: bool,
    pub shutdown: CancellationToken,
    /// `UNSUBSCRIBE_SECRET`, shared with the producer.
    pub unsubscribe_secret: Option<Arc<[u8]>>,
}

/// Lets the [`crate::auth::Principal`] extractor find the authenticator in the state.
impl FromRef<AppState> for Authenticator {
    fn from_ref(state: &AppState) -> Authenticator {
        state.auth.clone()
    }
}
