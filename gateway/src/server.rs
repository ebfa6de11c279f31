//! [`run_until_stopped`]: connect, migrate, start the hub and the notice listener, and serve until shutdown.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::http::{HeaderValue, header};
use axum::middleware;
use axum::response::IntoResponse;
use axum::routing::get;
use chrono::Utc;
use chrono_tz::Tz;
use followup_contract::COCKPIT_CHANGED_SUBJECT;
use followup_infra::ops::{health_router, metrics_router, ops_router};
use followup_infra::{
    Backoff, Readiness, connect_database, connect_nats, prepare_database, retry_until,
};
use followup_readmodel::{ChangeNotice, FiguresError, Scope, load_figures};
use futures::StreamExt;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::catch_panic::CatchPanicLayer;

use crate::api;
use crate::auth::Authenticator;
use crate::config::{GatewayConfig, parse_cors_origins};
use crate::cors::{self, CorsOrigins};
use crate::error::ApiError;
use crate::hub::{Hub, HubConfig, Loader};
use crate::limits::SseLimits;
use crate::listen::{Connections, serve_connections};
use crate::metrics::{GatewayMetrics, track_http};
use crate::page;
use crate::state::AppState;
use crate::unsubscribe;

/// Runs the gateway on `listener` until `shutdown` fires; then open streams end cleanly,
/// in-flight requests finish, and it returns. Bind port 0 in tests. When `METRICS_ADDR` is set,
/// `/metrics` is served on a listener bound to it here (and not on `listener`); tests that
/// need to know its port bind it themselves and call [`run_with_metrics_listener`].
pub async fn run_until_stopped(
    config: GatewayConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let metrics_listener = match config.metrics_addr {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding METRICS_ADDR {addr}"))?,
        ),
        None => None,
    };
    run_with_metrics_listener(config, listener, metrics_listener, shutdown).await
}

/// [`run_until_stopped`] with the `/metrics` listener bound by the caller: `Some` serves
/// `/metrics` there only (`METRICS_ADDR` is then not read), `None` serves it on `listener`.
pub async fn run_with_metrics_listener(
    config: GatewayConfig,
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let cors_origins = parse_cors_origins(&config.cors_origins)?;
    let cors = (!cors_origins.is_empty())
        .then(|| CorsOrigins::new(&cors_origins))
        .transpose()?;
    let auth = Authenticator::from_config(&config.jwt, &shutdown).await?;
    let metrics = GatewayMetrics::new();
    let readiness = Readiness::default();
    let db_ready = readiness.check("database");
    let nats_ready = readiness.check("nats");

    let pool = connect_database(
        config.common.database_url()?,
        config.db_connections,
        &shutdown,
    )
    .await?;
    prepare_database(&pool).await?;
    check_time_zone(&pool, config.common.followup_tz).await?;
    db_ready.store(true, Ordering::Relaxed);

    let hub = Hub::new(
        HubConfig {
            period: config.sse_period(),
            coalesce: config.sse_coalesce(),
            client_buffer: config.sse_client_buffer as usize,
            heartbeat: config.sse_heartbeat(),
        },
        loader(pool.clone(), config.common.followup_tz),
        metrics.clone(),
    );
    let worker = tokio::spawn(hub.clone().run(shutdown.clone()));
    let notices = tokio::spawn(listen_for_notices(
        config.common.nats_url.clone(),
        hub.clone(),
        nats_ready,
        shutdown.clone(),
    ));
    let watcher = tokio::spawn(watch_database(pool.clone(), db_ready, shutdown.clone()));

    let state = AppState {
        pool: pool.clone(),
        tz: config.common.followup_tz,
        auth,
        hub,
        sse_limits: SseLimits::new(
            usize::try_from(config.sse_max_connections).unwrap_or(usize::MAX),
            usize::try_from(config.sse_max_connections_per_user).unwrap_or(usize::MAX),
        ),
        metrics: metrics.clone(),
        cookie_secure: config.cookie_secure,
        shutdown: shutdown.clone(),
        unsubscribe_secret: config
            .unsubscribe_secret
            .as_ref()
            .map(|s| s.as_bytes().into()),
    };
    let options = RouterOptions {
        cors,
        metrics_on_main: metrics_listener.is_none(),
    };
    let app = router_with(state, readiness, options);
    let addr = listener.local_addr().context("listener address")?;
    let connections = Connections {
        header_timeout: config.http_header_timeout(),
        user_timeout: config.tcp_user_timeout(),
    };
    let metrics_served = match metrics_listener {
        Some(metrics_listener) => {
            let metrics_addr = metrics_listener
                .local_addr()
                .context("metrics listener address")?;
            tracing::info!(addr = %metrics_addr, "gateway serving /metrics");
            Some(tokio::spawn(serve_connections(
                metrics_listener,
                metrics_router(metrics.registry.clone())
                    .fallback(api::not_found)
                    .method_not_allowed_fallback(api::method_not_allowed),
                connections,
                shutdown.clone(),
            )))
        }
        None => None,
    };
    tracing::info!(
        addr = %addr,
        tz = config.common.followup_tz.name(),
        "gateway serving"
    );
    let served = serve_connections(listener, app, connections, shutdown.clone())
        .await
        .context("serving HTTP");
    shutdown.cancel();
    if let Some(metrics_served) = metrics_served {
        let _ = metrics_served.await;
    }
    let _ = worker.await;
    let _ = notices.await;
    let _ = watcher.await;
    pool.close().await;
    tracing::info!("gateway stopped");
    served
}

/// What [`router_with`] adds beyond the routes.
#[derive(Debug, Clone)]
pub struct RouterOptions {
    /// `CORS_ORIGINS`; `None`: no CORS headers.
    pub cors: Option<CorsOrigins>,
    /// Serve `/metrics` on this router (no `METRICS_ADDR`).
    pub metrics_on_main: bool,
}

impl Default for RouterOptions {
    fn default() -> Self {
        RouterOptions {
            cors: None,
            metrics_on_main: true,
        }
    }
}

/// All routes, with request metrics, JSON 404/405 and panics turned into a JSON 500; `/metrics`
/// included, no CORS.
pub fn router(state: AppState, readiness: Readiness) -> Router {
    router_with(state, readiness, RouterOptions::default())
}

/// [`router`] with CORS on the API and stream routes and `/metrics` as `options` say.
pub fn router_with(state: AppState, readiness: Readiness, options: RouterOptions) -> Router {
    let metrics = state.metrics.clone();
    let openapi: Arc<str> = crate::openapi::openapi_json().into();
    let hosts = options
        .cors
        .as_ref()
        .map(CorsOrigins::origins)
        .unwrap_or_default();
    let pages = Arc::new(page::Pages::new(state.tz.name(), &hosts));
    let api = Router::new()
        .route("/api/followup/metrics", get(api::get_metrics))
        .route("/api/followup/runs", get(api::get_runs))
        .route("/api/followup/leads", get(crate::insights::get_leads))
        .route("/api/followup/history", get(crate::insights::get_history))
        .route("/api/dashboard/followup-stream", get(api::get_stream))
        // The CRM's resource paths for the same figures and stream (DESIGN.md "Interfaces").
        .route("/metrics/followup", get(api::get_metrics_crm_path))
        .route("/metrics/followup/stream", get(api::get_stream_crm_path))
        .with_state(state.clone());
    let ops = if options.metrics_on_main {
        ops_router(metrics.registry.clone(), readiness)
    } else {
        health_router(readiness)
    };
    let app = Router::new()
        .route(
            "/",
            get(move |query, headers: axum::http::HeaderMap| async move {
                page::index(&pages, &query, &headers)
            }),
        )
        .route("/assets/cockpit.js", get(page::script))
        .route("/assets/cockpit.css", get(page::style))
        .route("/assets/early.js", get(page::early_script))
        .route(
            "/unsubscribe",
            get(unsubscribe::confirm_unsubscribe).post(unsubscribe::unsubscribe),
        )
        .route(
            "/api/session",
            axum::routing::post(api::create_session).delete(api::delete_session),
        )
        .route(
            "/openapi.json",
            get(move || {
                let openapi = openapi.clone();
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            HeaderValue::from_static("application/json"),
                        )],
                        openapi.to_string(),
                    )
                }
            }),
        )
        .with_state(state)
        .merge(api)
        .merge(ops)
        .fallback(api::not_found)
        .method_not_allowed_fallback(api::method_not_allowed)
        .layer(middleware::from_fn(nosniff))
        .layer(middleware::from_fn_with_state(metrics, track_http))
        .layer(CatchPanicLayer::custom(
            |_panic: Box<dyn std::any::Any + Send>| {
                ApiError::Internal(anyhow::anyhow!("handler panicked")).into_response()
            },
        ));
    // Outside everything else, so preflights are answered before routing (which would say 405).
    match options.cors {
        Some(origins) => app.layer(middleware::from_fn_with_state(origins, cors::cors)),
        None => app,
    }
}

async fn nosniff(
    request: axum::extract::Request,
    next: middleware::Next,
) -> axum::response::Response {
    let mut response = next.run(request).await;
    response.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// The hub's loader: the read model's figures, serialised once per reload.
fn loader(pool: PgPool, tz: Tz) -> Loader {
    Arc::new(move |scope: String| {
        let pool = pool.clone();
        Box::pin(async move { api::load_snapshot(&pool, tz, &scope).await })
    })
}

/// Refuses to start when the projection counts days in another zone than `FOLLOWUP_TZ`:
/// every answer would be an error.
async fn check_time_zone(pool: &PgPool, tz: Tz) -> anyhow::Result<()> {
    match load_figures(pool, &Scope::Org, Utc::now(), tz).await {
        Ok(_) => Ok(()),
        Err(err @ FiguresError::TimeZoneMismatch { .. }) => {
            Err(anyhow::anyhow!(err)).context("FOLLOWUP_TZ must equal the projector's")
        }
        Err(err) => Err(anyhow::anyhow!(err)).context("reading the projection at start-up"),
    }
}

/// Subscribes to the projector's notices and marks the affected scopes dirty. NATS being away
/// only delays pushes (the hub's periodic frames go on); after a reconnect every scope is
/// reloaded, since notices sent meanwhile are lost.
async fn listen_for_notices(
    url: String,
    hub: Hub,
    ready: Arc<AtomicBool>,
    shutdown: CancellationToken,
) {
    let client = match connect_nats(&url, "followup-gateway", &shutdown).await {
        Ok(client) => client,
        Err(err) => {
            tracing::warn!(
                error = format!("{err:#}"),
                "no NATS: pushes only every period"
            );
            return;
        }
    };
    let subscribed = retry_until(
        &shutdown,
        "cannot subscribe to change notices yet",
        None,
        Backoff::new(Duration::from_secs(1), Duration::from_secs(1)),
        || client.subscribe(COCKPIT_CHANGED_SUBJECT),
    )
    .await;
    let Ok(mut subscription) = subscribed else {
        return; // shut down before NATS took the subscription
    };
    // Make sure the server has the subscription before calling ourselves ready.
    let _ = client.flush().await;
    ready.store(true, Ordering::Relaxed);
    hub.mark_all_dirty();
    tracing::info!(
        subject = COCKPIT_CHANGED_SUBJECT,
        "listening for change notices"
    );
    let mut check = tokio::time::interval(Duration::from_millis(500));
    let mut was_connected = true;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            message = subscription.next() => {
                let Some(message) = message else {
                    tracing::warn!("notice subscription closed");
                    ready.store(false, Ordering::Relaxed);
                    break;
                };
                match serde_json::from_slice::<ChangeNotice>(&message.payload) {
                    Ok(notice) => hub.notify(
                        notice.users.iter().map(String::as_str),
                        notice.org,
                        Some(notice.committed_at),
                    ),
                    Err(err) => {
                        tracing::warn!(error = %err, "unreadable change notice; reloading every scope");
                        hub.mark_all_dirty();
                    }
                }
            }
            _ = check.tick() => {
                let connected = matches!(
                    client.connection_state(),
                    async_nats::connection::State::Connected
                );
                ready.store(connected, Ordering::Relaxed);
                if connected && !was_connected {
                    tracing::info!("NATS reconnected; reloading every scope");
                    hub.mark_all_dirty();
                }
                was_connected = connected;
            }
        }
    }
    let _ = subscription.unsubscribe().await;
}

/// Keeps the `database` readiness flag current.
async fn watch_database(pool: PgPool, ready: Arc<AtomicBool>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {
                let ok = tokio::time::timeout(
                    Duration::from_secs(2),
                    sqlx::query("SELECT 1").execute(&pool),
                )
                .await
                .is_ok_and(|r| r.is_ok());
                ready.store(ok, Ordering::Relaxed);
            }
        }
    }
}
