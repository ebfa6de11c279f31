//! The API handlers: figures as JSON, the SSE stream, the recent runs and the session cookie.

use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use chrono_tz::Tz;
use followup_readmodel::{Figures, FiguresError, RecentRun, Scope, load_figures, load_recent_runs};
use serde::Deserialize;
use sqlx::PgPool;

use crate::auth::{Principal, SESSION_COOKIE};
use crate::error::ApiError;
use crate::hub::Snapshot;
use crate::limits::{Refused, SSE_RETRY_AFTER_SECS};
use futures::StreamExt;
// Re-exported for code written against the path `AppState` had before it got its own module.
pub use crate::state::AppState;

/// `Query<T>` with the rejection as a 400 JSON error.
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::try_from_uri(&parts.uri)
            .map(|Query(q)| ApiQuery(q))
            .map_err(|rejection| ApiError::BadRequest(rejection.body_text()))
    }
}

/// `?owner=<user>`: whose figures (admins and managers: anyone; sales: only themself).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct OwnerQuery {
    /// A user id (`leads.owner_user_id`, 1 to 50 characters). Without it: the organisation for
    /// admins and managers, the caller's own leads for sales users.
    // The bounds the handler enforces (400 otherwise), so clients and fuzzers see them: not
    // blank, no control characters, at most 50 characters.
    #[param(
        min_length = 1,
        max_length = 50,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub owner: Option<String>,
}

impl OwnerQuery {
    fn owner(&self) -> Result<Option<&str>, ApiError> {
        match self.owner.as_deref() {
            None => Ok(None),
            Some(owner)
                if !owner.trim().is_empty()
                    && owner.chars().count() <= crate::auth::MAX_USER_ID_CHARS
                    && !owner.chars().any(char::is_control) =>
            {
                Ok(Some(owner))
            }
            Some(_) => Err(ApiError::BadRequest(
                "owner must be a user id of 1 to 50 printable characters".to_owned(),
            )),
        }
    }
}

/// `?limit=` of the runs list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RunsQuery {
    /// How many runs, newest first (1 to 200, default 20).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

/// The recent runs, newest first.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Runs {
    /// At most `limit` runs (default 20).
    pub runs: Vec<RecentRun>,
}

/// The scope a caller asked for, after the role check.
pub(crate) fn scope_for(principal: &Principal, query: &OwnerQuery) -> Result<Scope, ApiError> {
    let owner = principal.figures_owner(query.owner()?)?;
    Ok(owner.map_or(Scope::Org, Scope::User))
}

fn figures_error(err: FiguresError) -> ApiError {
    match err {
        FiguresError::Database(err) => ApiError::from_db(err),
        other => ApiError::Internal(other.into()),
    }
}

/// Loads a scope's figures for the hub (`scope` is a key such as `org` or `user:u1`).
pub async fn load_snapshot(pool: &PgPool, tz: Tz, scope: &str) -> anyhow::Result<Snapshot> {
    let scope =
        Scope::from_key(scope).ok_or_else(|| anyhow::anyhow!("not a scope key: {scope:?}"))?;
    let figures = load_figures(pool, &scope, Utc::now(), tz).await?;
    snapshot_of(&figures)
}

/// The JSON of `figures`, and the same without `asOf` as the change fingerprint.
pub fn snapshot_of(figures: &Figures) -> anyhow::Result<Snapshot> {
    let mut value = serde_json::to_value(figures)?;
    let json = serde_json::to_string(&value)?;
    if let Some(object) = value.as_object_mut() {
        object.remove("asOf");
    }
    Ok(Snapshot {
        json,
        fingerprint: serde_json::to_string(&value)?,
    })
}

pub(crate) fn no_store<T: IntoResponse>(body: T) -> Response {
    let mut response = body.into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The cockpit figures of the caller's scope.
#[utoipa::path(
    get,
    path = "/api/followup/metrics",
    tag = "followup",
    params(OwnerQuery),
    responses(
        (status = 200, description = "The figures", body = Figures),
        (status = 400, description = "Malformed query", body = crate::error::ErrorBody),
        (status = 401, description = "Missing or invalid token", body = crate::error::ErrorBody),
        (status = 403, description = "Not allowed to see this scope", body = crate::error::ErrorBody),
        (status = 503, description = "The projection cannot be read", body = crate::error::ErrorBody),
    ),
    security(("bearer" = []), ("cookie" = []))
)]
pub async fn get_metrics(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<OwnerQuery>,
) -> Result<Response, ApiError> {
    let scope = scope_for(&principal, &query)?;
    let figures = load_figures(&state.pool, &scope, Utc::now(), state.tz)
        .await
        .map_err(figures_error)?;
    Ok(no_store(Json(figures)))
}

/// The cockpit figures under the CRM's own resource path: the same as `/api/followup/metrics`.
#[utoipa::path(
    get,
    path = "/metrics/followup",
    tag = "followup",
    params(OwnerQuery),
    responses(
        (status = 200, description = "The figures", body = Figures),
        (status = 400, description = "Malformed query", body = crate::error::ErrorBody),
        (status = 401, description = "Missing or invalid token", body = crate::error::ErrorBody),
        (status = 403, description = "Not allowed to see this scope", body = crate::error::ErrorBody),
        (status = 503, description = "The projection cannot be read", body = crate::error::ErrorBody),
    ),
    security(("bearer" = []), ("cookie" = []))
)]
pub async fn get_metrics_crm_path(
    state: State<AppState>,
    principal: Principal,
    query: ApiQuery<OwnerQuery>,
) -> Result<Response, ApiError> {
    get_metrics(state, principal, query).await
}

/// The recent producer runs, newest first (admin and manager).
#[utoipa::path(
    get,
    path = "/api/followup/runs",
    tag = "followup",
    params(RunsQuery),
    responses(
        (status = 200, description = "The runs", body = Runs),
        (status = 400, description = "Malformed query", body = crate::error::ErrorBody),
        (status = 401, description = "Missing or invalid token", body = crate::error::ErrorBody),
        (status = 403, description = "Not admin or manager", body = crate::error::ErrorBody),
    ),
    security(("bearer" = []), ("cookie" = []))
)]
pub async fn get_runs(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<RunsQuery>,
) -> Result<Response, ApiError> {
    principal.require_org()?;
    let limit = query.limit.unwrap_or(20);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::BadRequest(
            "limit must be between 1 and 200".to_owned(),
        ));
    }
    let runs = load_recent_runs(&state.pool, i64::from(limit))
        .await
        .map_err(ApiError::from_db)?;
    Ok(no_store(Json(Runs { runs })))
}

/// The live figures as Server-Sent Events.
#[utoipa::path(
    get,
    path = "/api/dashboard/followup-stream",
    tag = "followup",
    params(
        OwnerQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "Id of the last frame seen; the first frame then has a higher id and the current figures"),
    ),
    responses(
        (status = 200, description = "`text/event-stream`: `retry`, then frames without an event name (the default `message` event) with an `id:` and the figures JSON as `data:` (one at connect, one whenever the figures change, at least one every 5 s) and `: keep-alive` comments", content_type = "text/event-stream", body = String),
        (status = 400, description = "Malformed query", body = crate::error::ErrorBody),
        (status = 401, description = "Missing or invalid token", body = crate::error::ErrorBody),
        (status = 403, description = "Not allowed to see this scope", body = crate::error::ErrorBody),
        (status = 429, description = "The user holds SSE_MAX_CONNECTIONS_PER_USER streams already (`Retry-After`)", body = crate::error::ErrorBody),
        (status = 503, description = "The projection cannot be read, or the gateway holds SSE_MAX_CONNECTIONS streams (then with `Retry-After`)", body = crate::error::ErrorBody),
    ),
    security(("bearer" = []), ("cookie" = []))
)]
pub async fn get_stream(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<OwnerQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let scope = scope_for(&principal, &query)?;
    let last_event_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    // Taken before the first frame is loaded and held by the body: refused streams cost nothing.
    let slot = state
        .sse_limits
        .acquire(&principal.user_id)
        .map_err(|refused| match refused {
            Refused::Gateway { max } => ApiError::Saturated {
                detail: format!("this gateway holds its maximum of {max} streams; retry later"),
                retry_after: SSE_RETRY_AFTER_SECS,
            },
            Refused::User { max } => ApiError::TooManyRequests {
                detail: format!(
                    "at most {max} open streams per user; close one (another tab?) or retry later"
                ),
                retry_after: SSE_RETRY_AFTER_SECS,
            },
        })?;
    let subscription = state
        .hub
        .subscribe(scope.key(), last_event_id)
        .await
        .map_err(|err| match err.downcast::<FiguresError>() {
            Ok(err) => figures_error(err),
            Err(err) => ApiError::Internal(err),
        })?;
    // The stream ends when the token does; EventSource reconnects and meets a 401.
    let expires_in = u64::try_from(principal.expires_at - Utc::now().timestamp())
        .map(Duration::from_secs)
        .unwrap_or_default();
    let body = subscription.into_body_stream(
        state.hub.config().heartbeat,
        Some(expires_in),
        state.metrics.clone(),
        state.shutdown.clone(),
    );
    // The slot goes back when the body is dropped: client gone, token expired, shutdown.
    let body = body.map(move |item| {
        let _held = &slot;
        item
    });
    Ok((
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache, no-store"),
            (header::HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        Body::from_stream(body),
    )
        .into_response())
}

/// The live figures under the CRM's own resource path: the same stream as
/// `/api/dashboard/followup-stream`.
#[utoipa::path(
    get,
    path = "/metrics/followup/stream",
    tag = "followup",
    params(
        OwnerQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "Id of the last frame seen; the first frame then has a higher id and the current figures"),
    ),
    responses(
        (status = 200, description = "`text/event-stream`, as `/api/dashboard/followup-stream`", content_type = "text/event-stream", body = String),
        (status = 400, description = "Malformed query", body = crate::error::ErrorBody),
        (status = 401, description = "Missing or invalid token", body = crate::error::ErrorBody),
        (status = 403, description = "Not allowed to see this scope", body = crate::error::ErrorBody),
        (status = 429, description = "The user holds SSE_MAX_CONNECTIONS_PER_USER streams already (`Retry-After`)", body = crate::error::ErrorBody),
        (status = 503, description = "The projection cannot be read, or the gateway holds SSE_MAX_CONNECTIONS streams (then with `Retry-After`)", body = crate::error::ErrorBody),
    ),
    security(("bearer" = []), ("cookie" = []))
)]
pub async fn get_stream_crm_path(
    state: State<AppState>,
    principal: Principal,
    query: ApiQuery<OwnerQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    get_stream(state, principal, query, headers).await
}

/// Body of `POST /api/session`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionRequest {
    /// The access token (from the page's URL fragment).
    pub token: String,
}

/// Who the session belongs to.
#[derive(Debug, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionInfo {
    pub user: String,
    pub roles: Vec<String>,
    /// Unix time at which the token, and the cookie, expire.
    pub expires_at: i64,
}

/// Refuses requests whose `Origin` names another host than the one they were sent to.
fn same_origin(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let origin_host = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, rest)| rest.trim_end_matches('/'));
    match (origin_host, host) {
        (Some(o), Some(h)) if o.eq_ignore_ascii_case(h) => Ok(()),
        _ => Err(ApiError::Forbidden(
            "cross-origin session requests are refused".to_owned(),
        )),
    }
}

/// Trades a token for a same-origin HttpOnly cookie, so the page's EventSource can
/// authenticate without the token in any URL.
#[utoipa::path(
    post,
    path = "/api/session",
    tag = "session",
    request_body = SessionRequest,
    responses(
        (status = 200, description = "Cookie `followup_session` set (HttpOnly, SameSite=Strict, Path=/ — the API and the CRM's paths `/metrics/followup…` — until the token expires)", body = SessionInfo),
        (status = 400, description = "Not a JSON body `{token}`", body = crate::error::ErrorBody),
        (status = 401, description = "Invalid token", body = crate::error::ErrorBody),
        (status = 403, description = "Cross-origin request", body = crate::error::ErrorBody),
    )
)]
pub async fn create_session(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<SessionRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    same_origin(&headers)?;
    let Json(request) = body.map_err(|rejection| ApiError::BadRequest(rejection.body_text()))?;
    let token = request.token.trim();
    let principal = state.auth.verify(token).await?;
    let max_age = (principal.expires_at - Utc::now().timestamp()).max(0);
    let cookie = format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{}",
        if state.cookie_secure { "; Secure" } else { "" }
    );
    let mut roles = Vec::new();
    for (has, name) in [
        (principal.roles.admin, "admin"),
        (principal.roles.manager, "manager"),
        (principal.roles.sales, "sales"),
    ] {
        if has {
            roles.push(name.to_owned());
        }
    }
    let info = SessionInfo {
        user: principal.user_id,
        roles,
        expires_at: principal.expires_at,
    };
    let mut response = no_store(Json(info));
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie)
            .map_err(|_| ApiError::Unauthorized("malformed token".to_owned()))?,
    );
    Ok(response)
}

/// Clears the session cookie.
#[utoipa::path(
    delete,
    path = "/api/session",
    tag = "session",
    responses((status = 204, description = "Cookie cleared"))
)]
pub async fn delete_session(State(state): State<AppState>) -> Response {
    let cookie = format!(
        "{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{}",
        if state.cookie_secure { "; Secure" } else { "" }
    );
    (StatusCode::NO_CONTENT, [(header::SET_COOKIE, cookie)]).into_response()
}

/// JSON 404 for unknown routes.
pub async fn not_found() -> ApiError {
    ApiError::NotFound
}

/// JSON 405 for a known route with another method.
pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
