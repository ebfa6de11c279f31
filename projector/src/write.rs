//! Writes of the apply transaction: one statement per table and batch, with arrays bound as
//! parameters and expanded by UNNEST. Every function takes the caller's connection, which is
//! inside the caller's transaction. Table names are unqualified on purpose: `rebuild` points the
//! same statements at its shadow schema through `search_path`.

use std::collections::HashSet;

use chrono::NaiveDate;
use sqlx::PgConnection;

use crate::fold::BatchPlan;
use crate::model::{DayDelta, LeadState};

/// Writes a batch plan: lead states, deliveries, figure deltas and runs. `stored` are the leads
/// that already have a row.
pub(crate) async fn write_plan(
    conn: &mut PgConnection,
    plan: &BatchPlan,
    stored: &HashSet<i64>,
) -> sqlx::Result<()> {
    write_leads(conn, plan, stored).await?;
    if !plan.deliveries.is_empty() {
        let deliveries = &plan.deliveries;
        sqlx::query(
            "INSERT INTO projection_deliveries (lead_id, kind, sent_at, run_id) \
             SELECT * FROM UNNEST($1::int8[], $2::text[], $3::timestamptz[], $4::text[]) \
             ON CONFLICT DO NOTHING",
        )
        .bind(deliveries.iter().map(|(lead, _)| *lead).collect::<Vec<_>>())
        .bind(
            deliveries
                .iter()
                .map(|(_, d)| d.kind.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            deliveries
                .iter()
                .map(|(_, d)| d.sent_at)
                .collect::<Vec<_>>(),
        )
        .bind(
            deliveries
                .iter()
                .map(|(_, d)| d.run_id.as_str())
                .collect::<Vec<_>>(),
        )
        .execute(&mut *conn)
        .await?;
    }
    write_figure_deltas(conn, plan).await?;
    if !plan.runs.is_empty() {
        let runs = &plan.runs;
        sqlx::query(
            "INSERT INTO projection_runs (run_id, t3_count, t7_count, skipped_count, error_count, \
             processed_at, duration_ms) \
             SELECT * FROM UNNEST($1::text[], $2::int8[], $3::int8[], $4::int8[], $5::int8[], \
             $6::timestamptz[], $7::int8[]) ON CONFLICT DO NOTHING",
        )
        .bind(runs.iter().map(|r| r.run_id.as_str()).collect::<Vec<_>>())
        .bind(runs.iter().map(|r| r.t3_count).collect::<Vec<_>>())
        .bind(runs.iter().map(|r| r.t7_count).collect::<Vec<_>>())
        .bind(runs.iter().map(|r| r.skipped_count).collect::<Vec<_>>())
        .bind(runs.iter().map(|r| r.error_count).collect::<Vec<_>>())
        .bind(runs.iter().map(|r| r.processed_at).collect::<Vec<_>>())
        .bind(runs.iter().map(|r| r.duration_ms).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Lead rows: new leads with a plain insert, stored ones with an upsert. The caller loaded the
/// stored rows in this transaction under the projection lock, so no row appears in between;
/// the plain insert spares the new rows the conflict check.
async fn write_leads(
    conn: &mut PgConnection,
    plan: &BatchPlan,
    stored: &HashSet<i64>,
) -> sqlx::Result<()> {
    let (known, new): (Vec<_>, Vec<_>) = plan.leads.iter().partition(|(id, _)| stored.contains(id));
    for (rows, sql) in [(new, INSERT_LEADS), (known, UPSERT_LEADS)] {
        if !rows.is_empty() {
            write_lead_rows(conn, sql, &rows).await?;
        }
    }
    Ok(())
}

macro_rules! insert_leads_sql {
    () => {
        "INSERT INTO projection_leads (lead_id, sequence, owner_user_id, collaborator_user_ids, \
         status, registered_at, clock_stopped_at, t3_sent, t7_sent, deleted, changed_at) \
         SELECT l.lead_id, l.sequence, l.owner, l.collaborators::text[], \
                l.status, l.registered_at, l.clock_stopped_at, l.t3, l.t7, l.deleted, l.changed_at \
         FROM UNNEST($1::int8[], $2::int8[], $3::text[], $4::text[], $5::text[], \
                     $6::timestamptz[], $7::timestamptz[], $8::bool[], $9::bool[], $10::bool[], \
                     $11::timestamptz[]) \
              AS l(lead_id, sequence, owner, collaborators, status, registered_at, \
                   clock_stopped_at, t3, t7, deleted, changed_at)"
    };
}
const INSERT_LEADS: &str = insert_leads_sql!();
const UPSERT_LEADS: &str = concat!(
    insert_leads_sql!(),
    " ON CONFLICT (lead_id) DO UPDATE SET sequence = EXCLUDED.sequence, \
     owner_user_id = EXCLUDED.owner_user_id, \
     collaborator_user_ids = EXCLUDED.collaborator_user_ids, status = EXCLUDED.status, \
     registered_at = EXCLUDED.registered_at, clock_stopped_at = EXCLUDED.clock_stopped_at, \
     t3_sent = EXCLUDED.t3_sent, t7_sent = EXCLUDED.t7_sent, deleted = EXCLUDED.deleted, \
     changed_at = EXCLUDED.changed_at"
);

async fn write_lead_rows(
    conn: &mut PgConnection,
    sql: &'static str,
    leads: &[(&i64, &LeadState)],
) -> sqlx::Result<()> {
    // Collaborator lists travel as array literals cast per row: UNNEST would flatten a
    // two-dimensional array, and a cast is much cheaper than unpacking JSON in a subquery.
    let collaborators: Vec<String> = leads
        .iter()
        .map(|(_, s)| text_array_literal(&s.collaborator_user_ids))
        .collect();
    sqlx::query(sql)
        .bind(leads.iter().map(|(id, _)| **id).collect::<Vec<_>>())
        .bind(leads.iter().map(|(_, s)| s.sequence).collect::<Vec<_>>())
        .bind(
            leads
                .iter()
                .map(|(_, s)| s.owner_user_id.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(collaborators)
        .bind(
            leads
                .iter()
                .map(|(_, s)| s.status.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            leads
                .iter()
                .map(|(_, s)| s.registered_at)
                .collect::<Vec<_>>(),
        )
        .bind(
            leads
                .iter()
                .map(|(_, s)| s.clock_stopped_at)
                .collect::<Vec<_>>(),
        )
        .bind(leads.iter().map(|(_, s)| s.t3_sent).collect::<Vec<_>>())
        .bind(leads.iter().map(|(_, s)| s.t7_sent).collect::<Vec<_>>())
        .bind(leads.iter().map(|(_, s)| s.deleted).collect::<Vec<_>>())
        .bind(leads.iter().map(|(_, s)| s.changed_at).collect::<Vec<_>>())
        .execute(conn)
        .await?;
    Ok(())
}

async fn write_figure_deltas(conn: &mut PgConnection, plan: &BatchPlan) -> sqlx::Result<()> {
    let totals = &plan.deltas.totals;
    if !totals.is_empty() {
        sqlx::query(
            "INSERT INTO projection_scope_figures AS f \
               (scope, pending_t3, pending_t7, followed, converted) \
             SELECT * FROM UNNEST($1::text[], $2::int8[], $3::int8[], $4::int8[], $5::int8[]) \
             ON CONFLICT (scope) DO UPDATE SET pending_t3 = f.pending_t3 + EXCLUDED.pending_t3, \
               pending_t7 = f.pending_t7 + EXCLUDED.pending_t7, \
               followed = f.followed + EXCLUDED.followed, \
               converted = f.converted + EXCLUDED.converted",
        )
        .bind(totals.keys().map(String::as_str).collect::<Vec<_>>())
        .bind(totals.values().map(|t| t.pending_t3).collect::<Vec<_>>())
        .bind(totals.values().map(|t| t.pending_t7).collect::<Vec<_>>())
        .bind(totals.values().map(|t| t.followed).collect::<Vec<_>>())
        .bind(totals.values().map(|t| t.converted).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await?;
    }
    let days: Vec<(&str, NaiveDate, &DayDelta)> = plan
        .deltas
        .days
        .iter()
        .flat_map(|(scope, days)| days.iter().map(move |(day, d)| (scope.as_str(), *day, d)))
        .collect();
    if !days.is_empty() {
        sqlx::query(
            "INSERT INTO projection_scope_days AS d (scope, local_date, sent, t3_net, t7_net) \
             SELECT * FROM UNNEST($1::text[], $2::date[], $3::int8[], $4::int8[], $5::int8[]) \
             ON CONFLICT (scope, local_date) DO UPDATE SET sent = d.sent + EXCLUDED.sent, \
               t3_net = d.t3_net + EXCLUDED.t3_net, t7_net = d.t7_net + EXCLUDED.t7_net",
        )
        .bind(days.iter().map(|(scope, _, _)| *scope).collect::<Vec<_>>())
        .bind(days.iter().map(|(_, day, _)| *day).collect::<Vec<_>>())
        .bind(days.iter().map(|(_, _, d)| d.sent).collect::<Vec<_>>())
        .bind(days.iter().map(|(_, _, d)| d.t3_net).collect::<Vec<_>>())
        .bind(days.iter().map(|(_, _, d)| d.t7_net).collect::<Vec<_>>())
        .execute(conn)
        .await?;
    }
    Ok(())
}

/// A Postgres array literal (`{"a","b\\"c"}`) for a list of strings: every element quoted,
/// backslashes and double quotes escaped.
fn text_array_literal(items: &[String]) -> String {
    let mut literal = String::from("{");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            literal.push(',');
        }
        literal.push('"');
        for c in item.chars() {
            if c == '"' || c == '\\' {
                literal.push('\\');
            }
            literal.push(c);
        }
        literal.push('"');
    }
    literal.push('}');
    literal
}

#[cfg(test)]
mod tests {
    #[test]
    fn array_literals_quote_and_escape() {
        let items = vec!["u1".to_owned(), "a \"b\" \\c".to_owned(), String::new()];
        assert_eq!(
            super::text_array_literal(&items),
            r#"{"u1","a \"b\" \\c",""}"#
        );
        assert_eq!(super::text_array_literal(&[]), "{}");
    }
}
