//! The SQL of the drill-down lists ([`load_lead_page`]): one statement per figure and scope kind,
//! each a keyset scan an index serves (the partial indexes of migrations 20261204000002 and
//! 20261205000001, for the organisation, per owner and per collaborator), then the company
//! names of the page's ids from the CRM's `leads`.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use sqlx::{PgConnection, Row};

use crate::clock::{local_date, local_midnight};
use crate::leads::{Cursor, DeliveryFacts, FIRST_REGISTRATION, LeadFacts, LeadFigure, LeadPage};
use crate::scope::Scope;

/// One scope's candidates of a figure from `$source` (aliased `l`), in list order, at most `$2`:
/// only `projection_leads` and index probes, so the planner can walk an index in list order and
/// stop early.
macro_rules! candidates {
    ($source:literal, $scope:literal, $figure:literal, $keyset:literal, $order:literal) => {
        concat!(
            "SELECT l.lead_id, l.owner_user_id, l.status, l.registered_at, l.clock_stopped_at, \
                    l.contactable, l.t3_sent, l.t7_sent \
             FROM ", $source, " l \
             WHERE l.changed_at IS NOT NULL AND NOT l.deleted AND l.registered_at IS NOT NULL AND ",
            $scope, " AND ", $figure, " AND ", $keyset, " ORDER BY ", $order, " LIMIT $2"
        )
    };
}

/// The page's rows with their two follow-up rows, in list order.
macro_rules! with_deliveries {
    ($page:expr, $order:literal) => {
        concat!(
            "WITH page AS (", $page, ") \
             SELECT page.lead_id, page.owner_user_id, page.status, page.registered_at, \
                    (page.status = 'ACTIVE' AND page.clock_stopped_at IS NULL AND page.contactable) \
                      AS may_send, \
                    page.t3_sent, page.t7_sent, \
                    d3.status AS t3_status, d3.sent_at AS t3_at, d3.reason AS t3_reason, \
                    d7.status AS t7_status, d7.sent_at AS t7_at, d7.reason AS t7_reason \
             FROM page \
             LEFT JOIN projection_deliveries d3 ON d3.lead_id = page.lead_id AND d3.kind = 't3' \
             LEFT JOIN projection_deliveries d7 ON d7.lead_id = page.lead_id AND d7.kind = 't7' \
             ORDER BY ", $order
        )
    };
}

/// One figure's statements, for the organisation and for one user. A user's leads are the ones
/// they own (`projection_leads` through the owner's partial index of the list) and the ones they
/// collaborate on without owning them (`projection_collaborations`, the same columns per
/// collaborator): two scans in list order that stop after a page, merged.
macro_rules! figure_sql {
    ($figure:literal, $keyset:literal, $order:literal, $page_order:literal) => {
        [
            with_deliveries!(
                candidates!(
                    "projection_leads",
                    "($1::text IS NULL)",
                    $figure,
                    $keyset,
                    $order
                ),
                $page_order
            ),
            with_deliveries!(
                concat!(
                    "SELECT * FROM ((",
                    candidates!(
                        "projection_leads",
                        "btrim(l.owner_user_id) = $1::text",
                        $figure,
                        $keyset,
                        $order
                    ),
                    ") UNION ALL (",
                    candidates!(
                        "projection_collaborations",
                        "l.user_id = $1::text",
                        $figure,
                        $keyset,
                        $order
                    ),
                    ")) l ORDER BY ",
                    $order,
                    " LIMIT $2"
                ),
                $page_order
            ),
        ]
    };
}

// The conditions repeat the partial indexes' predicates (migrations 20261204000002 and
// 20261205000001) so the planner can use them. The failure checks are `projector::model`'s (a
// failed row is the only row of its kind): no failed T+3 for T+3, no failure at all for T+7.
// `failed` (any finally failed follow-up) and `followed` (any sent one) are written with the
// lead's row by the projector (`LeadRecord::list_flags`); `verify` compares every list with the
// CRM's records.
const PENDING_T3: [&str; 2] = figure_sql!(
    "l.status = 'ACTIVE' AND l.clock_stopped_at IS NULL AND l.contactable AND NOT l.t3_sent \
     AND NOT EXISTS (SELECT 1 FROM projection_deliveries f WHERE f.lead_id = l.lead_id \
                     AND f.kind = 't3' AND f.status = 'failed')",
    "(l.registered_at, l.lead_id) > ($3::timestamptz, $4::int8)",
    "l.registered_at, l.lead_id",
    "page.registered_at, page.lead_id"
);
const PENDING_T7: [&str; 2] = figure_sql!(
    "l.status = 'ACTIVE' AND l.clock_stopped_at IS NULL AND l.contactable AND l.t3_sent \
     AND NOT l.t7_sent AND NOT l.failed",
    "(l.registered_at, l.lead_id) > ($3::timestamptz, $4::int8)",
    "l.registered_at, l.lead_id",
    "page.registered_at, page.lead_id"
);
const SENT_TODAY: [&str; 2] = figure_sql!(
    "l.lead_id IN (SELECT s.lead_id FROM projection_deliveries s WHERE s.status = 'sent' \
       AND s.sent_at >= $5 AND s.sent_at < $6)",
    "l.lead_id > $4::int8 AND $3::timestamptz IS NULL",
    "l.lead_id",
    "page.lead_id"
);
const CONVERTED: [&str; 2] = figure_sql!(
    "l.status = 'CONVERTED' AND l.followed",
    "l.lead_id > $4::int8 AND $3::timestamptz IS NULL",
    "l.lead_id",
    "page.lead_id"
);
const FAILED: [&str; 2] = figure_sql!(
    "l.failed",
    "l.lead_id > $4::int8 AND $3::timestamptz IS NULL",
    "l.lead_id",
    "page.lead_id"
);

fn statement(figure: LeadFigure, scope: &Scope) -> &'static str {
    let set = match figure {
        LeadFigure::PendingT3 => &PENDING_T3,
        LeadFigure::PendingT7 => &PENDING_T7,
        LeadFigure::SentToday => &SENT_TODAY,
        LeadFigure::Converted => &CONVERTED,
        LeadFigure::Failed => &FAILED,
    };
    set[usize::from(matches!(scope, Scope::User(_)))]
}

/// One page of `figure`'s leads in `scope`, starting after `after`, at most `limit` (1..=200)
/// items; "today" is the local day of `now` in `tz`. Leads the CRM no longer has, or erased under
/// GDPR since the projection last heard of them, are left out.
pub async fn load_lead_page(
    conn: &mut PgConnection,
    figure: LeadFigure,
    scope: &Scope,
    after: Cursor,
    limit: u16,
    now: DateTime<Utc>,
    tz: Tz,
) -> sqlx::Result<LeadPage> {
    let today = local_date(now, tz);
    let from = local_midnight(today, tz);
    let until = local_midnight(today.succ_opt().expect("a next day"), tz);
    let user = match scope {
        Scope::Org => None,
        Scope::User(id) => Some(id.as_str()),
    };
    let mut query = sqlx::query(statement(figure, scope))
        .bind(user)
        // One more than the page: whether there is a next page.
        .bind(i64::from(limit) + 1)
        // Lists in lead-id order check `$3 IS NULL`, so every statement names the same four
        // parameters; due-order lists start before any registration Postgres can hold.
        .bind(
            after
                .registered_at
                .or_else(|| figure.in_due_order().then_some(FIRST_REGISTRATION)),
        )
        .bind(after.lead_id);
    if figure == LeadFigure::SentToday {
        query = query.bind(from).bind(until);
    }
    let rows = query.fetch_all(&mut *conn).await?;
    let more = rows.len() > usize::from(limit);
    let facts: Vec<LeadFacts> = rows
        .iter()
        .take(usize::from(limit))
        .map(facts_of)
        .collect::<sqlx::Result<_>>()?;
    let next = more.then(|| {
        let last = facts.last().expect("a full page");
        Cursor {
            registered_at: figure.in_due_order().then_some(last.registered_at),
            lead_id: last.lead_id,
        }
        .encode()
    });
    let ids: Vec<i64> = facts.iter().map(|f| f.lead_id).collect();
    let mut names = load_company_names(conn, &ids).await?;
    let items = facts
        .into_iter()
        .filter_map(|f| {
            let company = names.remove(&f.lead_id)?;
            Some(f.into_item(company, now, tz))
        })
        .collect();
    Ok(LeadPage {
        figure,
        scope: scope.key(),
        items,
        next,
    })
}

fn facts_of(row: &sqlx::postgres::PgRow) -> sqlx::Result<LeadFacts> {
    let mut deliveries = Vec::new();
    for kind in ["t3", "t7"] {
        let status: Option<String> = row.try_get(format!("{kind}_status").as_str())?;
        if let Some(status) = status {
            deliveries.push(DeliveryFacts {
                kind,
                failed: status == "failed",
                at: row.try_get(format!("{kind}_at").as_str())?,
                reason: row.try_get(format!("{kind}_reason").as_str())?,
            });
        }
    }
    Ok(LeadFacts {
        lead_id: row.try_get("lead_id")?,
        owner: row.try_get("owner_user_id")?,
        status: row.try_get("status")?,
        registered_at: row.try_get("registered_at")?,
        may_send: row.try_get("may_send")?,
        t3_sent: row.try_get("t3_sent")?,
        t7_sent: row.try_get("t7_sent")?,
        deliveries,
    })
}

/// The CRM's company names of these leads (by primary key): the one CRM read on the request
/// path. Leads erased under GDPR or gone are missing from the answer.
async fn load_company_names(
    conn: &mut PgConnection,
    ids: &[i64],
) -> sqlx::Result<HashMap<i64, String>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = sqlx::query(
        "SELECT id, company_name FROM leads \
         WHERE id = ANY($1) AND gdpr_deleted IS NOT TRUE AND status <> 'DELETED'",
    )
    .bind(ids)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("id")?, r.try_get("company_name")?)))
        .collect()
}
