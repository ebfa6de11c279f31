//! `verify`: recomputes every figure of every scope from the source of truth (`leads` and
//! `followup_deliveries`) and compares it with the projection.
//!
//! Trends are history (the value at the previous local midnight), which the current truth does
//! not hold, so they are not compared with it. Verify checks what can be checked about them:
//! the per-day net changes a scope's trends are read from must add up to its current pending
//! figures (`t3History` / `t7History`), which catches a hand-edited or half-written day row.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use followup_readmodel::{conversion_percent, local_date, local_midnight};
use sqlx::{AssertSqlSafe, PgConnection, Row};

/// One figure that differs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// `org` or `user:<id>`.
    pub scope: String,
    /// `pendingT3`, `pendingT7`, `sentToday`, `conversionRate`, `t3History`, `t7History`, or a
    /// drill-down list: `pendingT3List`, `pendingT7List`, `sentTodayList`, `convertedList`,
    /// `failedList`, or `history` (a day's sent and failed counts).
    pub figure: &'static str,
    pub projection: String,
    pub truth: String,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} projection={} truth={}",
            self.scope, self.figure, self.projection, self.truth
        )
    }
}

/// The result of a verification: empty `mismatches` means the projection is exact.
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    pub scopes_checked: usize,
    pub mismatches: Vec<Mismatch>,
}

impl VerifyReport {
    /// Whether every figure matched.
    pub fn is_exact(&self) -> bool {
        self.mismatches.is_empty()
    }
}

/// Raw counters of one scope; missing scopes count as all zero.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Counts {
    pending_t3: i64,
    pending_t7: i64,
    sent_today: i64,
    followed: i64,
    converted: i64,
}

/// Compares projection and truth for every scope either side knows, at `now` in `tz`.
pub async fn verify_projection(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
    tz: Tz,
) -> sqlx::Result<VerifyReport> {
    let today = local_date(now, tz);
    let from = local_midnight(today, tz);
    let until = local_midnight(today.succ_opt().expect("a next day"), tz);
    let truth = load_truth(conn, from, until).await?;
    let projection = load_projection(conn, today).await?;
    let history: BTreeMap<String, (i64, i64)> = sqlx::query(
        "SELECT scope, SUM(t3_net)::int8 AS t3, SUM(t7_net)::int8 AS t7 \
         FROM projection_scope_days GROUP BY scope",
    )
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|r| Ok((r.try_get("scope")?, (r.try_get("t3")?, r.try_get("t7")?))))
    .collect::<sqlx::Result<_>>()?;

    let scopes: BTreeSet<&String> = truth
        .keys()
        .chain(projection.keys())
        .chain(history.keys())
        .collect();
    let list_scopes: BTreeSet<String> = scopes.iter().map(|s| (*s).clone()).collect();
    let mut report = VerifyReport {
        scopes_checked: scopes.len(),
        mismatches: Vec::new(),
    };
    for scope in scopes {
        let p = projection.get(scope).copied().unwrap_or_default();
        let t = truth.get(scope).copied().unwrap_or_default();
        let (h3, h7) = history.get(scope).copied().unwrap_or_default();
        let rate = |c: Counts| format!("{:.2}", conversion_percent(c.converted, c.followed));
        let checks = [
            (
                "pendingT3",
                p.pending_t3.to_string(),
                t.pending_t3.to_string(),
            ),
            (
                "pendingT7",
                p.pending_t7.to_string(),
                t.pending_t7.to_string(),
            ),
            (
                "sentToday",
                p.sent_today.to_string(),
                t.sent_today.to_string(),
            ),
            ("conversionRate", rate(p), rate(t)),
            ("t3History", h3.to_string(), p.pending_t3.to_string()),
            ("t7History", h7.to_string(), p.pending_t7.to_string()),
        ];
        for (figure, projection, truth) in checks {
            if projection != truth {
                report.mismatches.push(Mismatch {
                    scope: scope.clone(),
                    figure,
                    projection,
                    truth,
                });
            }
        }
    }
    report
        .mismatches
        .extend(crate::verify_lists::verify_lists(conn, &list_scopes, now, tz).await?);
    report
        .mismatches
        .extend(crate::verify_history::verify_history(conn, tz).await?);
    Ok(report)
}

/// `verify`'s truth of the pending figures, `(pendingT3, pendingT7)` per scope (`org`,
/// `user:<id>`), at `now` in `tz`: the SQL form of the cockpit's pending rule, for the tests that
/// pin it to the one table of the rules (`followup_testkit::due_cases`).
pub async fn truth_pending(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
    tz: Tz,
) -> sqlx::Result<BTreeMap<String, (i64, i64)>> {
    let today = local_date(now, tz);
    let from = local_midnight(today, tz);
    let until = local_midnight(today.succ_opt().expect("a next day"), tz);
    Ok(load_truth(conn, from, until)
        .await?
        .into_iter()
        .map(|(scope, c)| (scope, (c.pending_t3, c.pending_t7)))
        .collect())
}

/// The CRM's members of the user scopes (`members`: lead id, `user:<id>` for the trimmed,
/// non-blank owner and each `lead_collaborators` user): one definition for every truth query.
macro_rules! truth_members_cte {
    () => {
        "members AS ( \
           SELECT DISTINCT m.id, 'user:' || btrim(m.u) AS scope \
           FROM (SELECT id, owner_user_id AS u FROM leads \
                 UNION ALL SELECT lead_id, user_id FROM lead_collaborators) m \
           WHERE m.u IS NOT NULL AND btrim(m.u) <> '')"
    };
}
pub(crate) use truth_members_cte;

/// The truth's common part: per lead (`live`) its facts from the CRM's tables, and per scope the
/// leads it holds (`scoped`); `$1`/`$2` bound the local day. See [`load_truth`].
pub(crate) const TRUTH_CTES: &str = concat!(
    "WITH live AS ( \
           SELECT l.id, l.status, \
                  l.status = 'ACTIVE' AND l.clock_stopped_at IS NULL \
                    AND followup_contactable_row(l.email, l.metadata, l.contact_blocked, \
                          l.consent_revoked_at IS NOT NULL, l.gdpr_deleted) \
                    AND NOT followup_email_opted_out(l.id) AS may_send, \
                  l.t3_followup_sent IS TRUE AS t3, l.t7_followup_sent IS TRUE AS t7, \
                  COALESCE(x.t3_failed, FALSE) AS t3_failed, \
                  COALESCE(x.t7_failed, FALSE) AS t7_failed, \
                  COALESCE(d.sent, 0) > 0 AS followed, COALESCE(d.today, 0) AS today \
           FROM leads l \
           LEFT JOIN (SELECT lead_id, count(*) AS sent, \
                             count(*) FILTER (WHERE sent_at >= $1 AND sent_at < $2) AS today \
                      FROM (SELECT a.lead_id, a.metadata ->> 'followup_type', \
                                   min(a.activity_date::timestamp AT TIME ZONE 'UTC') \
                                     AS sent_at \
                            FROM lead_activities a \
                            WHERE a.metadata ? 'followup_type' \
                              AND a.metadata ->> 'followup_type' IN ('T3_FOLLOWUP', 'T7_FOLLOWUP') \
                            GROUP BY 1, 2) f \
                      GROUP BY lead_id) d \
             ON d.lead_id = l.id \
           LEFT JOIN (SELECT fd.lead_id, \
                             bool_or(fd.kind = 't3') AS t3_failed, \
                             bool_or(fd.kind = 't7') AS t7_failed \
                      FROM followup_deliveries fd \
                      WHERE fd.status = 'failed' \
                        AND NOT EXISTS (SELECT 1 FROM lead_activities a \
                                        WHERE a.lead_id = fd.lead_id \
                                          AND a.metadata ? 'followup_type' \
                                          AND a.metadata ->> 'followup_type' \
                                              = upper(fd.kind) || '_FOLLOWUP') \
                      GROUP BY fd.lead_id) x \
             ON x.lead_id = l.id \
           WHERE l.status <> 'DELETED' AND l.gdpr_deleted IS NOT TRUE), \
         ",
    truth_members_cte!(),
    ", \
         scoped AS ( \
           SELECT 'org' AS scope, live.* FROM live \
           UNION ALL SELECT m.scope, live.* FROM live JOIN members m ON m.id = live.id) \
        "
);

/// The figures from [`TRUTH_CTES`].
const TRUTH_COUNTS: &str = "SELECT scope, \
           count(*) FILTER (WHERE may_send AND NOT t3 AND NOT t3_failed) AS pending_t3, \
           count(*) FILTER (WHERE may_send AND t3 AND NOT t7 AND NOT t3_failed \
                                  AND NOT t7_failed) AS pending_t7, \
           COALESCE(sum(today), 0)::int8 AS sent_today, \
           count(*) FILTER (WHERE followed) AS followed, \
           count(*) FILTER (WHERE followed AND status = 'CONVERTED') AS converted \
         FROM scoped GROUP BY scope";

async fn load_projection(
    conn: &mut PgConnection,
    today: chrono::NaiveDate,
) -> sqlx::Result<BTreeMap<String, Counts>> {
    let rows = sqlx::query(
        "SELECT COALESCE(f.scope, d.scope) AS scope, COALESCE(f.pending_t3, 0) AS pending_t3, \
                COALESCE(f.pending_t7, 0) AS pending_t7, COALESCE(f.followed, 0) AS followed, \
                COALESCE(f.converted, 0) AS converted, COALESCE(d.sent, 0) AS sent_today \
         FROM projection_scope_figures f \
         FULL JOIN (SELECT scope, sent FROM projection_scope_days WHERE local_date = $1) d \
           ON d.scope = f.scope",
    )
    .bind(today)
    .fetch_all(conn)
    .await?;
    rows.iter().map(counts_from_row).collect()
}

/// The figures' definitions, in SQL over the CRM's tables as production has them (DESIGN.md
/// "Domain"). A lead belongs to the organisation and to its (trimmed, non-blank) owner and
/// collaborators from `lead_collaborators`; DELETED and GDPR-erased leads count nowhere, and
/// neither do deliveries of leads that no longer exist. Pending means ACTIVE, clock running and
/// contactable (`followup_contactable_row`, `followup_email_opted_out`: the rule's one SQL
/// definition); NULL flags read as
/// false; a lead whose follow-up of a kind finally failed (a `failed` delivery record, and no
/// follow-up of that kind after all) is not pending for it, nor for T+7 when its T+3 failed.
/// A follow-up is a `lead_activities` row with a `followup_type`, whoever wrote it (the
/// CRM's older automation too); per lead and kind the first one counts, on its day.
async fn load_truth(
    conn: &mut PgConnection,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
) -> sqlx::Result<BTreeMap<String, Counts>> {
    let rows = sqlx::query(AssertSqlSafe(format!("{TRUTH_CTES} {TRUTH_COUNTS}")))
        .bind(from)
        .bind(until)
        .fetch_all(conn)
        .await?;
    rows.iter().map(counts_from_row).collect()
}

fn counts_from_row(row: &sqlx::postgres::PgRow) -> sqlx::Result<(String, Counts)> {
    Ok((
        row.try_get("scope")?,
        Counts {
            pending_t3: row.try_get("pending_t3")?,
            pending_t7: row.try_get("pending_t7")?,
            sent_today: row.try_get("sent_today")?,
            followed: row.try_get("followed")?,
            converted: row.try_get("converted")?,
        },
    ))
}
