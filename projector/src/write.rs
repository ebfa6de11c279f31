//! Writes of the apply transaction: one statement per batch. Each table's rows travel as arrays
//! bound as parameters and expanded by UNNEST, and the tables' inserts and upserts are
//! data-modifying CTEs of one statement whose final part records the progress, so a batch's
//! writes cost one round trip. The function takes the caller's connection, which is inside the
//! caller's transaction. Table names are unqualified on purpose: `rebuild` points the same
//! statement at its shadow schema through `search_path`.

use std::collections::HashSet;

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::PgConnection;
use sqlx::postgres::PgArguments;
use sqlx::query::QueryScalar;

use crate::fold::BatchPlan;
use crate::model::{DayDelta, LeadState};

/// How far a batch got: the highest stream sequence and event time it applied.
pub(crate) struct Progress<'a> {
    pub time_zone: &'a str,
    pub last_sequence: i64,
    pub last_event_at: Option<DateTime<Utc>>,
}

macro_rules! lead_rows {
    ($a:literal) => {
        concat!(
            "INSERT INTO projection_leads (lead_id, sequence, owner_user_id, \
             collaborator_user_ids, status, registered_at, clock_stopped_at, t3_sent, t7_sent, \
             contactable, deleted, changed_at) \
             SELECT l.lead_id, l.sequence, l.owner, l.collaborators::text[], l.status, \
                    l.registered_at, l.clock_stopped_at, l.t3, l.t7, l.contactable, l.deleted, \
                    l.changed_at \
             FROM UNNEST($",
            $a,
            ") AS l(lead_id, sequence, owner, collaborators, status, \
                  registered_at, clock_stopped_at, t3, t7, contactable, deleted, changed_at)"
        )
    };
}

/// Parameters: $1–$12 new lead rows (a plain insert: the caller loaded the stored rows in this
/// transaction under the projection lock, so no row appears in between, and the plain insert
/// spares them the conflict check), $13–$24 stored lead rows (upsert), $25–$29 deliveries and
/// final failures, $30–$34 scope totals, $35–$39 day counters, $40–$46 runs, $47–$49 progress.
const WRITE_BATCH: &str = concat!(
    "WITH new_leads AS (",
    lead_rows!(
        "1::int8[], $2::int8[], $3::text[], $4::text[], $5::text[], $6::timestamptz[], \
                $7::timestamptz[], $8::bool[], $9::bool[], $10::bool[], $11::bool[], \
                $12::timestamptz[]"
    ),
    "), stored_leads AS (",
    lead_rows!(
        "13::int8[], $14::int8[], $15::text[], $16::text[], $17::text[], \
                $18::timestamptz[], $19::timestamptz[], $20::bool[], $21::bool[], $22::bool[], \
                $23::bool[], $24::timestamptz[]"
    ),
    " ON CONFLICT (lead_id) DO UPDATE SET sequence = EXCLUDED.sequence, \
     owner_user_id = EXCLUDED.owner_user_id, \
     collaborator_user_ids = EXCLUDED.collaborator_user_ids, status = EXCLUDED.status, \
     registered_at = EXCLUDED.registered_at, clock_stopped_at = EXCLUDED.clock_stopped_at, \
     t3_sent = EXCLUDED.t3_sent, t7_sent = EXCLUDED.t7_sent, \
     contactable = EXCLUDED.contactable, deleted = EXCLUDED.deleted, \
     changed_at = EXCLUDED.changed_at), \
     deliveries AS (INSERT INTO projection_deliveries AS pd (lead_id, kind, sent_at, run_id, status) \
       SELECT * FROM UNNEST($25::int8[], $26::text[], $27::timestamptz[], $28::text[], \
         $29::text[]) \
       ON CONFLICT (lead_id, kind) DO UPDATE SET sent_at = EXCLUDED.sent_at, \
         run_id = EXCLUDED.run_id, status = EXCLUDED.status \
       WHERE pd.status = 'failed' AND EXCLUDED.status = 'sent'), \
     totals AS (INSERT INTO projection_scope_figures AS f \
         (scope, pending_t3, pending_t7, followed, converted) \
       SELECT * FROM UNNEST($30::text[], $31::int8[], $32::int8[], $33::int8[], $34::int8[]) \
       ON CONFLICT (scope) DO UPDATE SET pending_t3 = f.pending_t3 + EXCLUDED.pending_t3, \
         pending_t7 = f.pending_t7 + EXCLUDED.pending_t7, \
         followed = f.followed + EXCLUDED.followed, \
         converted = f.converted + EXCLUDED.converted), \
     days AS (INSERT INTO projection_scope_days AS d (scope, local_date, sent, t3_net, t7_net) \
       SELECT * FROM UNNEST($35::text[], $36::date[], $37::int8[], $38::int8[], $39::int8[]) \
       ON CONFLICT (scope, local_date) DO UPDATE SET sent = d.sent + EXCLUDED.sent, \
         t3_net = d.t3_net + EXCLUDED.t3_net, t7_net = d.t7_net + EXCLUDED.t7_net), \
     runs AS (INSERT INTO projection_runs (run_id, t3_count, t7_count, skipped_count, \
         error_count, processed_at, duration_ms) \
       SELECT * FROM UNNEST($40::text[], $41::int8[], $42::int8[], $43::int8[], $44::int8[], \
         $45::timestamptz[], $46::int8[]) ON CONFLICT DO NOTHING) \
     INSERT INTO projection_state (id, time_zone, last_stream_sequence, last_event_at) \
     VALUES (TRUE, $47, $48, $49) ON CONFLICT (id) DO UPDATE SET \
       last_stream_sequence = \
         GREATEST(projection_state.last_stream_sequence, EXCLUDED.last_stream_sequence), \
       last_event_at = GREATEST(projection_state.last_event_at, EXCLUDED.last_event_at) \
     RETURNING time_zone"
);

/// Writes a batch plan (lead states, deliveries, figure deltas, runs) and the progress in one
/// statement; returns the time zone the projection was built for. `stored` are the leads that
/// already have a row.
pub(crate) async fn write_plan(
    conn: &mut PgConnection,
    plan: &BatchPlan,
    stored: &HashSet<i64>,
    progress: &Progress<'_>,
) -> sqlx::Result<String> {
    let (known, new): (Vec<_>, Vec<_>) = plan.leads.iter().partition(|(id, _)| stored.contains(id));
    let query = sqlx::query_scalar(WRITE_BATCH);
    let query = bind_leads(bind_leads(query, &new), &known);
    let deliveries = &plan.deliveries;
    let query = query
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
        .bind(
            deliveries
                .iter()
                .map(|(_, d)| if d.failed { "failed" } else { "sent" })
                .collect::<Vec<_>>(),
        );
    let totals = &plan.deltas.totals;
    let query = query
        .bind(totals.keys().map(String::as_str).collect::<Vec<_>>())
        .bind(totals.values().map(|t| t.pending_t3).collect::<Vec<_>>())
        .bind(totals.values().map(|t| t.pending_t7).collect::<Vec<_>>())
        .bind(totals.values().map(|t| t.followed).collect::<Vec<_>>())
        .bind(totals.values().map(|t| t.converted).collect::<Vec<_>>());
    let days: Vec<(&str, NaiveDate, &DayDelta)> = plan
        .deltas
        .days
        .iter()
        .flat_map(|(scope, days)| days.iter().map(move |(day, d)| (scope.as_str(), *day, d)))
        .collect();
    let query = query
        .bind(days.iter().map(|(scope, _, _)| *scope).collect::<Vec<_>>())
        .bind(days.iter().map(|(_, day, _)| *day).collect::<Vec<_>>())
        .bind(days.iter().map(|(_, _, d)| d.sent).collect::<Vec<_>>())
        .bind(days.iter().map(|(_, _, d)| d.t3_net).collect::<Vec<_>>())
        .bind(days.iter().map(|(_, _, d)| d.t7_net).collect::<Vec<_>>());
    let runs = &plan.runs;
    query
        .bind(runs.iter().map(|r| r.run_id.as_str()).collect::<Vec<_>>())
        .bind(runs.iter().map(|r| r.t3_count).collect::<Vec<_>>())
        .bind(runs.iter().map(|r| r.t7_count).collect::<Vec<_>>())
        .bind(runs.iter().map(|r| r.skipped_count).collect::<Vec<_>>())
        .bind(runs.iter().map(|r| r.error_count).collect::<Vec<_>>())
        .bind(runs.iter().map(|r| r.processed_at).collect::<Vec<_>>())
        .bind(runs.iter().map(|r| r.duration_ms).collect::<Vec<_>>())
        .bind(progress.time_zone)
        .bind(progress.last_sequence)
        .bind(progress.last_event_at)
        .fetch_one(conn)
        .await
}

type Scalar<'q> = QueryScalar<'q, sqlx::Postgres, String, PgArguments>;

/// Binds the twelve column arrays of these lead rows.
fn bind_leads<'q>(query: Scalar<'q>, leads: &[(&'q i64, &'q LeadState)]) -> Scalar<'q> {
    // Collaborator lists travel as array literals cast per row: UNNEST would flatten a
    // two-dimensional array, and a cast is much cheaper than unpacking JSON in a subquery.
    let collaborators: Vec<String> = leads
        .iter()
        .map(|(_, s)| text_array_literal(&s.collaborator_user_ids))
        .collect();
    query
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
        .bind(leads.iter().map(|(_, s)| s.contactable).collect::<Vec<_>>())
        .bind(leads.iter().map(|(_, s)| s.deleted).collect::<Vec<_>>())
        .bind(leads.iter().map(|(_, s)| s.changed_at).collect::<Vec<_>>())
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
