//! The target of the unsubscribe link in every follow-up e-mail. The link carries the lead id
//! and an HMAC of it (`followup_contract::unsubscribe_url`); no login is needed, the signature is
//! the authorisation.
//!
//! `GET` only shows a confirmation page with a button: mail scanners prefetch links, and a GET
//! that changed state would unsubscribe people who never clicked. `POST` (the button, or a mail
//! client's RFC 8058 one-click) withdraws e-mail consent where the CRM looks for it
//! (`followup_infra::withdraw_consent`); the producer checks the contactable rule before each
//! delivery. The answer is
//! the same whether the lead exists or not, so the route reveals nothing.

use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use followup_contract::{UnsubscribeError, UnsubscribeParams};
use followup_infra::withdraw_consent;

use crate::state::AppState;

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"de\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title></head><body style=\"font-family:sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem\">\
         <h1>{title}</h1>{body}</body></html>"
    );
    let mut response = (status, Html(html)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// Why a link is not acted on.
enum Refusal {
    NotConfigured,
    Invalid(StatusCode),
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::NotConfigured => page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Abmeldung nicht verfügbar",
                "<p>Die Abmeldung ist gerade nicht eingerichtet. Bitte versuchen Sie es später.</p>",
            ),
            Refusal::Invalid(status) => page(
                status,
                "Link ungültig",
                "<p>Dieser Abmeldelink ist ungültig oder unvollständig.</p>",
            ),
        }
    }
}

/// Checks the link and returns its lead id.
fn verify(state: &AppState, query: Option<&str>) -> Result<i64, Refusal> {
    let secret = state
        .unsubscribe_secret
        .as_deref()
        .ok_or(Refusal::NotConfigured)?;
    UnsubscribeParams::from_query(query.unwrap_or_default())
        .verify(secret)
        .map_err(|err| {
            Refusal::Invalid(match err {
                UnsubscribeError::BadSignature => StatusCode::FORBIDDEN,
                _ => StatusCode::BAD_REQUEST,
            })
        })
}

/// `GET /unsubscribe?lead=&sig=`: confirmation page, no change.
#[utoipa::path(get, path = "/unsubscribe", tag = "unsubscribe",
    params(("lead" = String, Query, description = "lead id", pattern = r"^[1-9][0-9]{0,17}$"),
           ("sig" = String, Query, description = "hex HMAC-SHA256 of the lead id", pattern = r"^[0-9a-f]{64}$")),
    responses((status = 200, description = "confirmation page (HTML) with a button that POSTs"),
              (status = 400, description = "malformed link"), (status = 403, description = "bad signature"),
              (status = 503, description = "UNSUBSCRIBE_SECRET not configured")))]
pub async fn confirm_unsubscribe(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Response {
    if let Err(refusal) = verify(&state, query.as_deref()) {
        return refusal.into_response();
    }
    // The form posts to this same URL, query included.
    page(
        StatusCode::OK,
        "Follow-up-E-Mails abbestellen",
        "<p>Möchten Sie keine weiteren Follow-up-E-Mails von FreshPlan erhalten?</p>\
         <form method=\"post\"><button type=\"submit\">Abmelden</button></form>",
    )
}

/// `POST /unsubscribe?lead=&sig=`: withdraws the lead's e-mail consent.
#[utoipa::path(post, path = "/unsubscribe", tag = "unsubscribe",
    params(("lead" = String, Query, description = "lead id", pattern = r"^[1-9][0-9]{0,17}$"),
           ("sig" = String, Query, description = "hex HMAC-SHA256 of the lead id", pattern = r"^[0-9a-f]{64}$")),
    responses((status = 200, description = "unsubscribed (also when already unsubscribed)"),
              (status = 400, description = "malformed link"), (status = 403, description = "bad signature"),
              (status = 503, description = "database unavailable or UNSUBSCRIBE_SECRET not configured")))]
pub async fn unsubscribe(State(state): State<AppState>, RawQuery(query): RawQuery) -> Response {
    let lead_id = match verify(&state, query.as_deref()) {
        Ok(id) => id,
        Err(refusal) => return refusal.into_response(),
    };
    match withdraw_consent(&state.pool, lead_id).await {
        Ok(_) => page(
            StatusCode::OK,
            "Sie wurden abgemeldet",
            "<p>Sie erhalten keine weiteren Follow-up-E-Mails.</p>",
        ),
        Err(err) => {
            tracing::error!(lead_id, error = %err, "cannot withdraw consent");
            page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Vorübergehend nicht möglich",
                "<p>Bitte versuchen Sie es in einigen Minuten erneut.</p>",
            )
        }
    }
}
