//! The read API of the projection: the cockpit figures of a scope and the recent runs. The
//! gateway calls these and nothing else; they only read, and each is one statement, so any
//! executor (a pool or a connection) will do.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use sqlx::{PgExecutor, Row};

use crate::clock::local_date;
use crate::scope::Scope;

/// Direction of a pending figure against its value at the previous local midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Trend {
    /// More pending than at local midnight.
    Up,
    /// Fewer pending than at local midnight.
    Down,
    /// As many pending as at local midnight.
    Flat,
}

impl Trend {
    /// The trend of a figure that changed by `net` since local midnight.
    pub fn from_net_change(net: i64) -> Trend {
        match net.signum() {
            1 => Trend::Up,
            -1 => Trend::Down,
            _ => Trend::Flat,
        }
    }
}

/// The cockpit figures of one scope.
// The doc comments here are also the gateway's OpenAPI descriptions (`ToSchema`), so the document
// cannot drift from what is served: the contract's JSON
// `{pendingT3, pendingT7, sentToday, conversionRate, t3Trend, t7Trend, scope, asOf}`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Figures {
    /// ACTIVE leads, clock running, contactable, T+3 neither sent nor finally failed.
    pub pending_t3: i64,
    /// ACTIVE leads, clock running, contactable, T+3 sent, T+7 not sent, neither finally failed.
    pub pending_t7: i64,
    /// Follow-ups delivered since local midnight (`FOLLOWUP_TZ`).
    pub sent_today: i64,
    /// Percent, two decimals, of the leads that got a follow-up and are now CONVERTED.
    pub conversion_rate: f64,
    /// `pendingT3` against its value at the previous local midnight.
    pub t3_trend: Trend,
    /// `pendingT7` against its value at the previous local midnight.
    pub t7_trend: Trend,
    /// `org` or `user:<id>`.
    // Serialised as its key, a plain string.
    #[schema(value_type = String)]
    pub scope: Scope,
    /// The instant the figures are for.
    pub as_of: DateTime<Utc>,
}

/// A producer run, from `lead.followup.processed.v1`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecentRun {
    /// Id of the run (`followup_runs.id`).
    pub run_id: String,
    /// T+3 follow-ups sent by the run.
    pub t3_count: i64,
    /// T+7 follow-ups sent by the run.
    pub t7_count: i64,
    /// Due leads skipped (no e-mail address or no consent).
    pub skipped_count: i64,
    /// Follow-ups that finally failed in the run.
    pub error_count: i64,
    /// When the run finished.
    pub processed_at: DateTime<Utc>,
    /// Run duration in milliseconds.
    pub duration_ms: i64,
}

/// Why figures could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FiguresError {
    /// The query failed.
    #[error("reading the projection: {0}")]
    Database(#[from] sqlx::Error),
    /// The projection keys its days in another zone than the caller's `tz`.
    #[error("the projection counts days in {stored}, the caller asked for {requested}")]
    TimeZoneMismatch { stored: String, requested: String },
}

/// `converted / followed` in percent, rounded to two decimals; 0 when no lead got a follow-up.
pub fn conversion_percent(converted: i64, followed: i64) -> f64 {
    if followed <= 0 {
        return 0.0;
    }
    (converted as f64 * 10_000.0 / followed as f64).round() / 100.0
}

/// Loads the figures of `scope` at `now`. "Today" is the local day of `now` in `tz`, which must
/// be the projector's `FOLLOWUP_TZ` (day counters are keyed by it; a different zone is refused
/// rather than answered wrongly). A scope without leads gets zeros.
pub async fn load_figures<'e>(
    db: impl PgExecutor<'e>,
    scope: &Scope,
    now: DateTime<Utc>,
    tz: Tz,
) -> Result<Figures, FiguresError> {
    let row = sqlx::query(
        "SELECT (SELECT time_zone FROM projection_state) AS time_zone, \
                COALESCE(f.pending_t3, 0) AS pending_t3, COALESCE(f.pending_t7, 0) AS pending_t7, \
                COALESCE(f.followed, 0) AS followed, COALESCE(f.converted, 0) AS converted, \
                COALESCE(d.sent, 0) AS sent, COALESCE(d.t3_net, 0) AS t3_net, \
                COALESCE(d.t7_net, 0) AS t7_net \
         FROM (SELECT $1::text AS scope) s \
         LEFT JOIN projection_scope_figures f ON f.scope = s.scope \
         LEFT JOIN projection_scope_days d ON d.scope = s.scope AND d.local_date = $2",
    )
    .bind(scope.key())
    .bind(local_date(now, tz))
    .fetch_one(db)
    .await?;
    let stored: Option<String> = row.try_get("time_zone")?;
    if let Some(stored) = stored.filter(|s| s != tz.name()) {
        return Err(FiguresError::TimeZoneMismatch {
            stored,
            requested: tz.name().to_owned(),
        });
    }
    Ok(Figures {
        pending_t3: row.try_get("pending_t3")?,
        pending_t7: row.try_get("pending_t7")?,
        sent_today: row.try_get("sent")?,
        conversion_rate: conversion_percent(row.try_get("converted")?, row.try_get("followed")?),
        t3_trend: Trend::from_net_change(row.try_get("t3_net")?),
        t7_trend: Trend::from_net_change(row.try_get("t7_net")?),
        scope: scope.clone(),
        as_of: now,
    })
}

/// The `limit` most recent producer runs, newest first.
pub async fn load_recent_runs<'e>(
    db: impl PgExecutor<'e>,
    limit: i64,
) -> sqlx::Result<Vec<RecentRun>> {
    let rows = sqlx::query(
        "SELECT run_id, t3_count, t7_count, skipped_count, error_count, processed_at, duration_ms \
         FROM projection_runs ORDER BY processed_at DESC, run_id LIMIT $1",
    )
    .bind(limit)
    .fetch_all(db)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(RecentRun {
                run_id: r.try_get("run_id")?,
                t3_count: r.try_get("t3_count")?,
                t7_count: r.try_get("t7_count")?,
                skipped_count: r.try_get("skipped_count")?,
                error_count: r.try_get("error_count")?,
                processed_at: r.try_get("processed_at")?,
                duration_ms: r.try_get("duration_ms")?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversion_is_a_rounded_percentage() {
        assert_eq!(conversion_percent(0, 0), 0.0);
        assert_eq!(conversion_percent(1, 3), 33.33);
        assert_eq!(conversion_percent(2, 3), 66.67);
        assert_eq!(conversion_percent(3, 3), 100.0);
    }

    #[test]
    fn figures_serialise_to_the_contract_json() {
        let figures = Figures {
            pending_t3: 4,
            pending_t7: 2,
            sent_today: 1,
            conversion_rate: 12.5,
            t3_trend: Trend::Up,
            t7_trend: Trend::Flat,
            scope: Scope::User("u1".into()),
            as_of: DateTime::from_timestamp(0, 0).unwrap(),
        };
        let json = serde_json::to_value(&figures).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"pendingT3": 4, "pendingT7": 2, "sentToday": 1,
                "conversionRate": 12.5, "t3Trend": "up", "t7Trend": "flat",
                "scope": "user:u1", "asOf": "1970-01-01T00:00:00Z"})
        );
    }
}
