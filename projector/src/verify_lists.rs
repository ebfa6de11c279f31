//! `verify` for the drill-down lists: per scope and figure, the leads the gateway lists (paged
//! through `followup_readmodel::load_lead_page`, exactly as served) against the leads the CRM's
//! tables give ([`crate::verify`]'s truth, per lead instead of counted).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use followup_readmodel::{Cursor, LeadFigure, Scope, load_lead_page, local_date, local_midnight};
use sqlx::{AssertSqlSafe, PgConnection, Row};

use crate::verify::{Mismatch, TRUTH_CTES};

/// Per scope key and figure, the lead ids listed.
pub type LeadLists = BTreeMap<(String, LeadFigure), BTreeSet<i64>>;

/// The lists as the CRM's tables give them (leads, `lead_collaborators`, consent,
/// `lead_activities`, `followup_deliveries`) at `now` in `tz`: the truth the tests and `verify`
/// compare the served lists with.
pub async fn truth_lists(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
    tz: Tz,
) -> sqlx::Result<LeadLists> {
    let today = local_date(now, tz);
    let rows = sqlx::query(AssertSqlSafe(format!(
        "{TRUTH_CTES} SELECT scope, id, \
           may_send AND NOT t3 AND NOT t3_failed AS pending_t3, \
           may_send AND t3 AND NOT t7 AND NOT t3_failed AND NOT t7_failed AS pending_t7, \
           today > 0 AS sent_today, followed AND status = 'CONVERTED' AS converted, \
           t3_failed OR t7_failed AS failed \
         FROM scoped"
    )))
    .bind(local_midnight(today, tz))
    .bind(local_midnight(today.succ_opt().expect("a next day"), tz))
    .fetch_all(conn)
    .await?;
    let mut lists = LeadLists::new();
    for row in rows {
        let scope: String = row.try_get("scope")?;
        let id: i64 = row.try_get("id")?;
        for (figure, column) in [
            (LeadFigure::PendingT3, "pending_t3"),
            (LeadFigure::PendingT7, "pending_t7"),
            (LeadFigure::SentToday, "sent_today"),
            (LeadFigure::Converted, "converted"),
            (LeadFigure::Failed, "failed"),
        ] {
            if row.try_get(column)? {
                lists.entry((scope.clone(), figure)).or_default().insert(id);
            }
        }
    }
    Ok(lists)
}

/// Every lead of one list, paging through it as a client would (200 a page).
pub async fn served_list(
    conn: &mut PgConnection,
    figure: LeadFigure,
    scope: &Scope,
    now: DateTime<Utc>,
    tz: Tz,
) -> sqlx::Result<Vec<i64>> {
    let mut ids = Vec::new();
    let mut after = Cursor::START;
    loop {
        let page = load_lead_page(conn, figure, scope, after, 200, now, tz).await?;
        ids.extend(page.items.iter().map(|item| item.lead_id));
        match page.next.as_deref().and_then(|n| Cursor::decode(n, figure)) {
            Some(next) => after = next,
            None => return Ok(ids),
        }
    }
}

/// The lists' mismatches for `scopes` (figure `<figure>List`; the values name the counts and
/// the first ids only one side has).
pub(crate) async fn verify_lists(
    conn: &mut PgConnection,
    scopes: &BTreeSet<String>,
    now: DateTime<Utc>,
    tz: Tz,
) -> sqlx::Result<Vec<Mismatch>> {
    let truth = truth_lists(conn, now, tz).await?;
    let mut mismatches = Vec::new();
    for key in scopes {
        let Some(scope) = Scope::from_key(key) else {
            continue;
        };
        for figure in LeadFigure::ALL {
            let served: BTreeSet<i64> = served_list(conn, figure, &scope, now, tz)
                .await?
                .into_iter()
                .collect();
            let expected = truth
                .get(&(key.clone(), figure))
                .cloned()
                .unwrap_or_default();
            if served != expected {
                let only = |a: &BTreeSet<i64>, b: &BTreeSet<i64>| {
                    let ids: Vec<String> = a.difference(b).take(5).map(i64::to_string).collect();
                    format!("{} leads (only here: [{}])", a.len(), ids.join(", "))
                };
                mismatches.push(Mismatch {
                    scope: key.clone(),
                    figure: list_name(figure),
                    projection: only(&served, &expected),
                    truth: only(&expected, &served),
                });
            }
        }
    }
    Ok(mismatches)
}

fn list_name(figure: LeadFigure) -> &'static str {
    match figure {
        LeadFigure::PendingT3 => "pendingT3List",
        LeadFigure::PendingT7 => "pendingT7List",
        LeadFigure::SentToday => "sentTodayList",
        LeadFigure::Converted => "convertedList",
        LeadFigure::Failed => "failedList",
    }
}
