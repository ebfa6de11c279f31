//! How the figures moved: per local day of a scope, the follow-ups sent by kind, the final
//! failures, the conversions of followed-up leads, and the pending figures at the day's end
//! ([`load_history`]). Read from `projection_scope_days` (the day counters the projector keeps)
//! and the scope's current pending figures: the pending figure at the end of day D is today's
//! value minus the net changes recorded after D.

use chrono::{DateTime, Days, NaiveDate, Utc};
use chrono_tz::Tz;
use sqlx::{PgExecutor, Row};

use crate::clock::local_date;
use crate::scope::Scope;

/// The longest history one request may ask for.
pub const MAX_HISTORY_DAYS: u16 = 365;

/// One local day of a scope.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryDay {
    /// The local day (`FOLLOWUP_TZ`).
    pub date: NaiveDate,
    pub t3_sent: i64,
    pub t7_sent: i64,
    /// Follow-ups that finally failed that day.
    pub failed: i64,
    /// Followed-up leads that became CONVERTED that day, as the projection recorded it (minus
    /// conversions undone that day).
    pub conversions: i64,
    /// Pending T+3 at the day's end (today: now).
    pub pending_t3: i64,
    /// Pending T+7 at the day's end (today: now).
    pub pending_t7: i64,
}

/// The last days of a scope, oldest first; the last one is today.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct History {
    /// `org` or `user:<id>`.
    pub scope: String,
    pub days: Vec<HistoryDay>,
}

/// The `days` (1..=[`MAX_HISTORY_DAYS`]) local days of `scope` up to today (the local day of
/// `now` in `tz`), every day present (zeros where nothing happened).
pub async fn load_history<'e>(
    db: impl PgExecutor<'e>,
    scope: &Scope,
    days: u16,
    now: DateTime<Utc>,
    tz: Tz,
) -> sqlx::Result<History> {
    let today = local_date(now, tz);
    let first = today
        .checked_sub_days(Days::new(u64::from(days.max(1)) - 1))
        .expect("a day within a year");
    // Rows after `first - 1` (later days included: a clock ahead of ours) and the current pending.
    let rows = sqlx::query(
        "SELECT d.local_date, d.t3_sent, d.t7_sent, d.failed, d.converted, d.t3_net, d.t7_net, \
                COALESCE(f.pending_t3, 0) AS pending_t3, COALESCE(f.pending_t7, 0) AS pending_t7 \
         FROM (SELECT $1::text AS scope) s \
         LEFT JOIN projection_scope_figures f ON f.scope = s.scope \
         LEFT JOIN projection_scope_days d ON d.scope = s.scope AND d.local_date >= $2 \
         ORDER BY d.local_date DESC",
    )
    .bind(scope.key())
    .bind(first)
    .fetch_all(db)
    .await?;
    let (mut pending_t3, mut pending_t7) = match rows.first() {
        Some(row) => (row.try_get("pending_t3")?, row.try_get("pending_t7")?),
        None => (0, 0),
    };
    let mut recorded = std::collections::BTreeMap::new();
    for row in &rows {
        let Some(date) = row.try_get::<Option<NaiveDate>, _>("local_date")? else {
            continue;
        };
        recorded.insert(date, row);
    }
    // Walk back from the newest recorded day: a day's end is what remains after undoing the
    // net changes of every later day.
    let newest = recorded
        .keys()
        .next_back()
        .copied()
        .unwrap_or(today)
        .max(today);
    let mut out = Vec::with_capacity(usize::from(days));
    let mut date = newest;
    while date >= first {
        let row = recorded.get(&date);
        let value = |column: &str| -> sqlx::Result<i64> {
            row.map_or(Ok(0), |r| r.try_get::<i64, _>(column))
        };
        if date <= today {
            out.push(HistoryDay {
                date,
                t3_sent: value("t3_sent")?,
                t7_sent: value("t7_sent")?,
                failed: value("failed")?,
                conversions: value("converted")?,
                pending_t3,
                pending_t7,
            });
        }
        pending_t3 -= value("t3_net")?;
        pending_t7 -= value("t7_net")?;
        date = date.pred_opt().expect("a previous day");
    }
    out.reverse();
    Ok(History {
        scope: scope.key(),
        days: out,
    })
}
