//! `verify` for the history: per scope and local day, the follow-ups sent by kind and the final
//! failures the projection counted (`projection_scope_days`) against the CRM's tables — the first
//! `lead_activities` follow-up per lead and kind, on its day, and our final failure records
//! (`followup_deliveries`) of kinds never sent. Conversions and the pending figures at earlier
//! days' ends are history the CRM does not keep: verify checks that the net changes add up to
//! today's pending figures (`t3History`/`t7History` in [`crate::verify`]), not their dates.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use chrono_tz::Tz;
use sqlx::{PgConnection, Row};

use crate::verify::{Mismatch, truth_members_cte};

/// `(T+3 sent, T+7 sent, failed)` per scope and day.
type DayFacts = BTreeMap<(String, NaiveDate), (i64, i64, i64)>;

/// The CRM's side, every day; `$1` is the time zone.
const TRUTH_DAYS: &str = concat!(
    "WITH live AS (SELECT id FROM leads WHERE status <> 'DELETED' AND gdpr_deleted IS NOT TRUE), ",
    truth_members_cte!(),
    ",
sent AS (
  SELECT a.lead_id, lower(split_part(a.metadata ->> 'followup_type', '_', 1)) AS kind,
         min(a.activity_date::timestamp AT TIME ZONE 'UTC') AS at
  FROM lead_activities a
  WHERE a.metadata ? 'followup_type'
    AND a.metadata ->> 'followup_type' IN ('T3_FOLLOWUP', 'T7_FOLLOWUP')
  GROUP BY 1, 2),
facts AS (
  SELECT lead_id, kind, at, FALSE AS failed FROM sent
  UNION ALL
  SELECT d.lead_id, d.kind, d.delivered_at, TRUE FROM followup_deliveries d
  WHERE d.status = 'failed'
    AND NOT EXISTS (SELECT 1 FROM sent s WHERE s.lead_id = d.lead_id AND s.kind = d.kind)),
scoped AS (
  SELECT 'org' AS scope, f.* FROM facts f JOIN live ON live.id = f.lead_id
  UNION ALL
  SELECT m.scope, f.* FROM facts f JOIN live ON live.id = f.lead_id JOIN members m ON m.id = f.lead_id)
SELECT scope, (at AT TIME ZONE $1)::date AS day,
       count(*) FILTER (WHERE NOT failed AND kind = 't3') AS t3,
       count(*) FILTER (WHERE NOT failed AND kind = 't7') AS t7,
       count(*) FILTER (WHERE failed) AS failed
FROM scoped GROUP BY 1, 2"
);

/// The projection's side.
const PROJECTION_DAYS: &str = "
SELECT scope, local_date AS day, t3_sent AS t3, t7_sent AS t7, failed
FROM projection_scope_days WHERE t3_sent <> 0 OR t7_sent <> 0 OR failed <> 0";

async fn load(
    conn: &mut PgConnection,
    sql: &'static str,
    tz: Option<Tz>,
) -> sqlx::Result<DayFacts> {
    let mut query = sqlx::query(sql);
    if let Some(tz) = tz {
        query = query.bind(tz.name());
    }
    query
        .fetch_all(conn)
        .await?
        .iter()
        .map(|r| {
            Ok((
                (r.try_get("scope")?, r.try_get("day")?),
                (r.try_get("t3")?, r.try_get("t7")?, r.try_get("failed")?),
            ))
        })
        .collect()
}

/// The history's mismatches (figure `history`, the value `<day> t3=… t7=… failed=…`).
pub(crate) async fn verify_history(conn: &mut PgConnection, tz: Tz) -> sqlx::Result<Vec<Mismatch>> {
    let truth = load(conn, TRUTH_DAYS, Some(tz)).await?;
    let projection = load(conn, PROJECTION_DAYS, None).await?;
    let keys: std::collections::BTreeSet<&(String, NaiveDate)> =
        truth.keys().chain(projection.keys()).collect();
    let show = |day: NaiveDate, (t3, t7, failed): (i64, i64, i64)| {
        format!("{day} t3={t3} t7={t7} failed={failed}")
    };
    Ok(keys
        .into_iter()
        .filter_map(|key| {
            let p = projection.get(key).copied().unwrap_or_default();
            let t = truth.get(key).copied().unwrap_or_default();
            (p != t).then(|| Mismatch {
                scope: key.0.clone(),
                figure: "history",
                projection: show(key.1, p),
                truth: show(key.1, t),
            })
        })
        .collect())
}
