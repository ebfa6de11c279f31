//! Follow-up insights (issue 15): the leads behind a figure, a page at a time, and how the figures
//! moved per day, for the caller's scope (and `owner` for admins and managers), with the same
//! RBAC as the figures.

use axum::Json;
use axum::extract::State;
use axum::response::Response;
use chrono::Utc;
use followup_readmodel::{
    Cursor, History, LeadFigure, LeadPage, MAX_HISTORY_DAYS, Scope, load_history, load_lead_page,
};
use serde::Deserialize;

use crate::api::{ApiQuery, AppState, OwnerQuery, no_store, scope_for};
use crate::auth::Principal;
use crate::error::ApiError;

/// Items per page unless `limit` says otherwise.
const DEFAULT_PAGE: u16 = 50;
/// The largest page.
const MAX_PAGE: u16 = 200;

/// `?figure=…&limit=…&after=…&owner=…`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LeadsQuery {
    /// Whose leads: `pendingT3`, `pendingT7`, `sentToday`, `converted` or `failed`.
    pub figure: LeadFigure,
    /// Items per page, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u16>,
    /// The `next` of the previous page (opaque; digits, optionally two groups joined by `.`).
    #[param(max_length = 37, pattern = r"^[0-9]{1,18}(\.[0-9]{1,18})?$")]
    pub after: Option<String>,
    /// A user id, as for the figures (admins and managers: anyone; sales: only themself).
    #[param(
        min_length = 1,
        max_length = 50,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub owner: Option<String>,
}

/// The scope `?owner=` selects for the caller, as for the figures.
fn owner_scope(principal: &Principal, owner: &Option<String>) -> Result<Scope, ApiError> {
    scope_for(
        principal,
        &OwnerQuery {
            owner: owner.clone(),
        },
    )
}

/// The leads behind a figure of the caller's scope: pending T+3/T+7 in due order (oldest
/// registration first), the others by lead id. Company names come from the CRM; no contact
/// person, no e-mail address; GDPR-erased leads are never listed.
#[utoipa::path(
    get,
    path = "/api/followup/leads",
    tag = "followup",
    params(LeadsQuery),
    responses(
        (status = 200, description = "One page of the list", body = LeadPage),
        (status = 400, description = "Malformed query or cursor", body = crate::error::ErrorBody),
        (status = 401, description = "Missing or invalid token", body = crate::error::ErrorBody),
        (status = 403, description = "Not allowed to see this scope", body = crate::error::ErrorBody),
        (status = 503, description = "The projection cannot be read", body = crate::error::ErrorBody),
    ),
    security(("bearer" = []), ("cookie" = []))
)]
pub async fn get_leads(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<LeadsQuery>,
) -> Result<Response, ApiError> {
    let scope = owner_scope(&principal, &query.owner)?;
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::BadRequest(format!(
            "limit must be between 1 and {MAX_PAGE}"
        )));
    }
    let after = match query.after.as_deref() {
        None => Cursor::START,
        Some(text) => Cursor::decode(text, query.figure).ok_or_else(|| {
            ApiError::BadRequest(
                "after must be the `next` of a previous page (digits, or two groups of digits \
                 joined by a dot)"
                    .to_owned(),
            )
        })?,
    };
    let mut conn = state.pool.acquire().await.map_err(ApiError::from_db)?;
    let page = load_lead_page(
        &mut conn,
        query.figure,
        &scope,
        after,
        limit,
        Utc::now(),
        state.tz,
    )
    .await
    .map_err(ApiError::from_db)?;
    Ok(no_store(Json(page)))
}

/// `?days=…&owner=…`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// How many local days up to today, 1 to 365 (default 30).
    #[param(minimum = 1, maximum = 365)]
    pub days: Option<u16>,
    /// A user id, as for the figures (admins and managers: anyone; sales: only themself).
    #[param(
        min_length = 1,
        max_length = 50,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub owner: Option<String>,
}

/// How the figures moved: per local day (`FOLLOWUP_TZ`) of the caller's scope, the T+3 and T+7
/// follow-ups sent, the final failures, the conversions of followed-up leads and the pending
/// figures at the day's end; oldest first, the last entry is today.
#[utoipa::path(
    get,
    path = "/api/followup/history",
    tag = "followup",
    params(HistoryQuery),
    responses(
        (status = 200, description = "One entry per day", body = History),
        (status = 400, description = "Malformed query", body = crate::error::ErrorBody),
        (status = 401, description = "Missing or invalid token", body = crate::error::ErrorBody),
        (status = 403, description = "Not allowed to see this scope", body = crate::error::ErrorBody),
        (status = 503, description = "The projection cannot be read", body = crate::error::ErrorBody),
    ),
    security(("bearer" = []), ("cookie" = []))
)]
pub async fn get_history(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<HistoryQuery>,
) -> Result<Response, ApiError> {
    let scope = owner_scope(&principal, &query.owner)?;
    let days = query.days.unwrap_or(30);
    if !(1..=MAX_HISTORY_DAYS).contains(&days) {
        return Err(ApiError::BadRequest(format!(
            "days must be between 1 and {MAX_HISTORY_DAYS}"
        )));
    }
    let history = load_history(&state.pool, &scope, days, Utc::now(), state.tz)
        .await
        .map_err(ApiError::from_db)?;
    Ok(no_store(Json(history)))
}
