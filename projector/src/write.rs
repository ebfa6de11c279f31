//! Writes of the apply transaction: one statement per batch. Each table's rows travel as arrays
//! bound as parameters and expanded by UNNEST, and the tables' inserts and upserts are
//! data-modifying CTEs of one statement whose final part records the progress, so a batch's
//! writes cost one round trip. The function takes the caller's connection, which is inside the
//! caller's transaction. Table names are unqualified on purpose: `rebuild` points the same
//! statement at its shadow schema through `search_path`.
//!
//! The statement has 58 parameters. Rather than numbering them by hand, each input (a
//! table's column arrays, or the progress) is one `bind_*` function beside the list of its
//! columns' array types; [`WRITE_BATCH`] numbers the placeholders from those lists in the order
//! [`write_plan`] binds the inputs, and names each input in the SQL.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use chrono::{DateTime, NaiveDate, Utc};
use followup_contract::FollowupProcessed;
use sqlx::PgConnection;
use sqlx::postgres::PgArguments;
use sqlx::query::QueryScalar;

use crate::fold::BatchPlan;
use crate::model::{DayDelta, Delivery, LeadRecord, LeadState, TotalsDelta};
use crate::store::StoredLeads;

/// How far a batch got: the highest stream sequence and event time it applied.
pub(crate) struct Progress<'a> {
    pub time_zone: &'a str,
    pub last_sequence: i64,
    pub last_event_at: Option<DateTime<Utc>>,
}

/// The batch statement. New leads get a plain insert: the caller loaded the stored rows in this
/// transaction under the projection lock, so no row appears in between, and the plain insert
/// spares them the conflict check; stored leads are upserted.
static WRITE_BATCH: LazyLock<String> = LazyLock::new(|| write_batch(Collaborations::Keep));

/// [`WRITE_BATCH`] without the upkeep of `projection_collaborations`, for a batch in which no
/// lead has collaborators, before or after: there is nothing to copy or delete, and the upkeep
/// (the leads' rows returned, collected and searched for members) cost about a fifth of the
/// statement for 5 000 new leads (SQL alone: 63 against 51 ms).
static WRITE_BATCH_WITHOUT_COLLABORATIONS: LazyLock<String> =
    LazyLock::new(|| write_batch(Collaborations::None));

/// Whether a batch statement keeps `projection_collaborations`.
#[derive(Clone, Copy)]
enum Collaborations {
    /// Copy the written leads' columns to their collaborators' rows; delete rows of
    /// collaborators a lead no longer has.
    Keep,
    /// No lead of the batch has or had collaborators.
    None,
}

fn write_batch(collaborations: Collaborations) -> String {
    let (returning, upkeep) = match collaborations {
        Collaborations::Keep => (format!(" RETURNING {LEAD_ROW}"), COLLABORATIONS),
        Collaborations::None => (String::new(), ""),
    };
    let mut params = Params::default();
    let new_leads = insert_leads(&params.arrays(&LEAD_TYPES));
    let stored_leads = insert_leads(&params.arrays(&LEAD_TYPES));
    let deliveries = params.arrays(&DELIVERY_TYPES);
    let totals = params.arrays(&TOTALS_TYPES);
    let days = params.arrays(&DAY_TYPES);
    let runs = params.arrays(&RUN_TYPES);
    let (time_zone, last_sequence, last_event_at) =
        (params.scalar(), params.scalar(), params.scalar());
    format!(
        "WITH new_leads AS ({new_leads}{returning}), \
         stored_leads AS ({stored_leads} \
           ON CONFLICT (lead_id) DO UPDATE SET sequence = EXCLUDED.sequence, \
           owner_user_id = EXCLUDED.owner_user_id, \
           collaborator_user_ids = EXCLUDED.collaborator_user_ids, status = EXCLUDED.status, \
           registered_at = EXCLUDED.registered_at, clock_stopped_at = EXCLUDED.clock_stopped_at, \
           t3_sent = EXCLUDED.t3_sent, t7_sent = EXCLUDED.t7_sent, \
           contactable = EXCLUDED.contactable, deleted = EXCLUDED.deleted, \
           changed_at = EXCLUDED.changed_at, failed = EXCLUDED.failed, \
           followed = EXCLUDED.followed{returning}), \
         {upkeep} \
         deliveries AS (INSERT INTO projection_deliveries AS pd \
             (lead_id, kind, sent_at, run_id, status, reason) \
           SELECT * FROM UNNEST({deliveries}) \
           ON CONFLICT (lead_id, kind) DO UPDATE SET sent_at = EXCLUDED.sent_at, \
             run_id = EXCLUDED.run_id, status = EXCLUDED.status, reason = EXCLUDED.reason \
           WHERE pd.status = 'failed' AND EXCLUDED.status = 'sent'), \
         totals AS (INSERT INTO projection_scope_figures AS f \
             (scope, pending_t3, pending_t7, followed, converted) \
           SELECT * FROM UNNEST({totals}) \
           ON CONFLICT (scope) DO UPDATE SET pending_t3 = f.pending_t3 + EXCLUDED.pending_t3, \
             pending_t7 = f.pending_t7 + EXCLUDED.pending_t7, \
             followed = f.followed + EXCLUDED.followed, \
             converted = f.converted + EXCLUDED.converted), \
         days AS (INSERT INTO projection_scope_days AS d (scope, local_date, sent, t3_net, t7_net, \
             t3_sent, t7_sent, failed, converted) \
           SELECT * FROM UNNEST({days}) \
           ON CONFLICT (scope, local_date) DO UPDATE SET sent = d.sent + EXCLUDED.sent, \
             t3_net = d.t3_net + EXCLUDED.t3_net, t7_net = d.t7_net + EXCLUDED.t7_net, \
             t3_sent = d.t3_sent + EXCLUDED.t3_sent, t7_sent = d.t7_sent + EXCLUDED.t7_sent, \
             failed = d.failed + EXCLUDED.failed, converted = d.converted + EXCLUDED.converted), \
         runs AS (INSERT INTO projection_runs (run_id, t3_count, t7_count, skipped_count, \
             error_count, processed_at, duration_ms) \
           SELECT * FROM UNNEST({runs}) ON CONFLICT DO NOTHING) \
         INSERT INTO projection_state (id, time_zone, last_stream_sequence, last_event_at) \
         VALUES (TRUE, {time_zone}, {last_sequence}, {last_event_at}) ON CONFLICT (id) DO UPDATE SET \
           last_stream_sequence = \
             GREATEST(projection_state.last_stream_sequence, EXCLUDED.last_stream_sequence), \
           last_event_at = GREATEST(projection_state.last_event_at, EXCLUDED.last_event_at) \
         RETURNING time_zone"
    )
}

/// The lead columns the collaborations copy (migration 20261205000001), returned by the lead
/// inserts with the lead's collaborators trimmed, without blanks or repeats (`co_members`).
/// Computed here and only for a lead that has collaborators: as a generated column it cost
/// every lead write an aggregate (migration 20261206000002). Qualified: `rebuild` runs this
/// statement with its shadow schema as the search path, and the function lives in `public`.
const LEAD_ROW: &str = "lead_id, owner_user_id, status, registered_at, clock_stopped_at, t3_sent, \
     t7_sent, contactable, deleted, changed_at, failed, followed, \
     CASE WHEN cardinality(collaborator_user_ids) = 0 THEN '{}'::text[] \
          ELSE public.followup_lead_members(NULL, collaborator_user_ids) END AS co_members";

/// `projection_collaborations` follows the leads just written: rows of collaborators a lead no
/// longer has (or who now own it) go, the others are upserted with the lead's new columns, and
/// left as they are when no column a list reads changed (`changed_at` is read only for whether
/// it is set, so a row may keep an older one). The two CTEs touch disjoint rows, as one
/// statement must.
const COLLABORATIONS: &str = "\
    written AS (SELECT * FROM new_leads UNION ALL SELECT * FROM stored_leads), \
    collaborations_gone AS (DELETE FROM projection_collaborations c USING stored_leads s \
      WHERE c.lead_id = s.lead_id \
        AND NOT (c.user_id = ANY (s.co_members) \
                 AND c.user_id IS DISTINCT FROM btrim(s.owner_user_id))), \
    collaborations AS (INSERT INTO projection_collaborations AS pc (user_id, lead_id, \
        owner_user_id, status, registered_at, clock_stopped_at, t3_sent, t7_sent, contactable, \
        deleted, changed_at, failed, followed) \
      SELECT m.user_id, w.lead_id, w.owner_user_id, w.status, w.registered_at, \
             w.clock_stopped_at, w.t3_sent, w.t7_sent, w.contactable, w.deleted, w.changed_at, \
             w.failed, w.followed \
      FROM written w, unnest(w.co_members) AS m(user_id) \
      WHERE m.user_id IS DISTINCT FROM btrim(w.owner_user_id) \
      ON CONFLICT (user_id, lead_id) DO UPDATE SET owner_user_id = EXCLUDED.owner_user_id, \
        status = EXCLUDED.status, registered_at = EXCLUDED.registered_at, \
        clock_stopped_at = EXCLUDED.clock_stopped_at, t3_sent = EXCLUDED.t3_sent, \
        t7_sent = EXCLUDED.t7_sent, contactable = EXCLUDED.contactable, \
        deleted = EXCLUDED.deleted, changed_at = EXCLUDED.changed_at, failed = EXCLUDED.failed, \
        followed = EXCLUDED.followed \
      WHERE (pc.owner_user_id, pc.status, pc.registered_at, pc.clock_stopped_at, pc.t3_sent, \
             pc.t7_sent, pc.contactable, pc.deleted, pc.changed_at IS NULL, pc.failed, \
             pc.followed) \
        IS DISTINCT FROM (EXCLUDED.owner_user_id, EXCLUDED.status, EXCLUDED.registered_at, \
             EXCLUDED.clock_stopped_at, EXCLUDED.t3_sent, EXCLUDED.t7_sent, \
             EXCLUDED.contactable, EXCLUDED.deleted, EXCLUDED.changed_at IS NULL, \
             EXCLUDED.failed, EXCLUDED.followed)),";

/// The insert of the lead rows whose column arrays are `arrays` (the placeholders).
fn insert_leads(arrays: &str) -> String {
    format!(
        "INSERT INTO projection_leads (lead_id, sequence, owner_user_id, \
         collaborator_user_ids, status, registered_at, clock_stopped_at, t3_sent, t7_sent, \
         contactable, deleted, changed_at, failed, followed) \
         SELECT l.lead_id, l.sequence, l.owner, l.collaborators::text[], l.status, \
                l.registered_at, l.clock_stopped_at, l.t3, l.t7, l.contactable, l.deleted, \
                l.changed_at, l.failed, l.followed \
         FROM UNNEST({arrays}) AS l(lead_id, sequence, owner, collaborators, status, \
              registered_at, clock_stopped_at, t3, t7, contactable, deleted, changed_at, \
              failed, followed)"
    )
}

/// Numbers the statement's placeholders in the order they are bound.
#[derive(Default)]
struct Params(usize);

impl Params {
    /// One cast placeholder per array type: the arguments of one UNNEST.
    fn arrays(&mut self, types: &[&str]) -> String {
        let placeholders: Vec<String> = types
            .iter()
            .map(|ty| format!("{}::{ty}", self.scalar()))
            .collect();
        placeholders.join(", ")
    }

    /// The next placeholder.
    fn scalar(&mut self) -> String {
        self.0 += 1;
        format!("${}", self.0)
    }
}

/// Writes a batch plan (lead states, deliveries, figure deltas, runs) and the progress in one
/// statement; returns the time zone the projection was built for. `stored` are the leads that
/// already have a row.
pub(crate) async fn write_plan(
    conn: &mut PgConnection,
    plan: &BatchPlan,
    stored: &StoredLeads,
    progress: &Progress<'_>,
) -> sqlx::Result<String> {
    let (known, new): (Vec<_>, Vec<_>) = plan
        .leads
        .iter()
        .partition(|(id, _)| stored.ids.contains(id));
    let collaborators = stored.with_collaborators
        || plan
            .leads
            .values()
            .any(|r| !r.state.collaborator_user_ids.is_empty());
    let statement = if collaborators {
        &WRITE_BATCH
    } else {
        &WRITE_BATCH_WITHOUT_COLLABORATIONS
    };
    // The inputs in the order both statements number them.
    let query = sqlx::query_scalar(statement.as_str());
    let query = bind_leads(query, &new);
    let query = bind_leads(query, &known);
    let query = bind_deliveries(query, &plan.deliveries);
    let query = bind_totals(query, &plan.deltas.totals);
    let query = bind_days(query, &plan.deltas.days);
    let query = bind_runs(query, &plan.runs);
    bind_progress(query, progress).fetch_one(conn).await
}

type Scalar<'q> = QueryScalar<'q, sqlx::Postgres, String, PgArguments>;

/// Array types of a lead input, in the order [`bind_leads`] binds them.
const LEAD_TYPES: [&str; 14] = [
    "int8[]",
    "int8[]",
    "text[]",
    "text[]",
    "text[]",
    "timestamptz[]",
    "timestamptz[]",
    "bool[]",
    "bool[]",
    "bool[]",
    "bool[]",
    "timestamptz[]",
    "bool[]",
    "bool[]",
];

/// Binds the fourteen column arrays of these leads' rows: the state's columns and the list
/// flags of the record.
fn bind_leads<'q>(query: Scalar<'q>, records: &[(&'q i64, &'q LeadRecord)]) -> Scalar<'q> {
    let leads: Vec<(&i64, &LeadState)> = records.iter().map(|(id, r)| (*id, &r.state)).collect();
    let flags: Vec<(bool, bool)> = records.iter().map(|(_, r)| r.list_flags()).collect();
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
        .bind(flags.iter().map(|f| f.0).collect::<Vec<_>>())
        .bind(flags.iter().map(|f| f.1).collect::<Vec<_>>())
}

/// Array types of the deliveries input, in the order [`bind_deliveries`] binds them.
const DELIVERY_TYPES: [&str; 6] = [
    "int8[]",
    "text[]",
    "timestamptz[]",
    "text[]",
    "text[]",
    "text[]",
];

/// Binds lead id, kind, sent at, run id, status and failure reason of the new deliveries.
fn bind_deliveries<'q>(query: Scalar<'q>, deliveries: &'q [(i64, Delivery)]) -> Scalar<'q> {
    query
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
        )
        .bind(
            deliveries
                .iter()
                .map(|(_, d)| d.reason.as_deref())
                .collect::<Vec<_>>(),
        )
}

/// Array types of the totals input, in the order [`bind_totals`] binds them.
const TOTALS_TYPES: [&str; 5] = ["text[]", "int8[]", "int8[]", "int8[]", "int8[]"];

/// Binds scope, pending T+3, pending T+7, followed and converted of the scope totals' deltas.
fn bind_totals<'q>(query: Scalar<'q>, totals: &'q BTreeMap<String, TotalsDelta>) -> Scalar<'q> {
    query
        .bind(totals.keys().map(String::as_str).collect::<Vec<_>>())
        .bind(totals.values().map(|t| t.pending_t3).collect::<Vec<_>>())
        .bind(totals.values().map(|t| t.pending_t7).collect::<Vec<_>>())
        .bind(totals.values().map(|t| t.followed).collect::<Vec<_>>())
        .bind(totals.values().map(|t| t.converted).collect::<Vec<_>>())
}

/// Array types of the days input, in the order [`bind_days`] binds them.
const DAY_TYPES: [&str; 9] = [
    "text[]", "date[]", "int8[]", "int8[]", "int8[]", "int8[]", "int8[]", "int8[]", "int8[]",
];

/// Binds scope, local date, sent, T+3 net, T+7 net, T+3 sent, T+7 sent, failed and converted of
/// the day counters' deltas.
fn bind_days<'q>(
    query: Scalar<'q>,
    days: &'q BTreeMap<String, BTreeMap<NaiveDate, DayDelta>>,
) -> Scalar<'q> {
    let days: Vec<(&str, NaiveDate, &DayDelta)> = days
        .iter()
        .flat_map(|(scope, days)| days.iter().map(move |(day, d)| (scope.as_str(), *day, d)))
        .collect();
    query
        .bind(days.iter().map(|(scope, _, _)| *scope).collect::<Vec<_>>())
        .bind(days.iter().map(|(_, day, _)| *day).collect::<Vec<_>>())
        .bind(days.iter().map(|(_, _, d)| d.sent).collect::<Vec<_>>())
        .bind(days.iter().map(|(_, _, d)| d.t3_net).collect::<Vec<_>>())
        .bind(days.iter().map(|(_, _, d)| d.t7_net).collect::<Vec<_>>())
        .bind(days.iter().map(|(_, _, d)| d.t3_sent).collect::<Vec<_>>())
        .bind(days.iter().map(|(_, _, d)| d.t7_sent).collect::<Vec<_>>())
        .bind(days.iter().map(|(_, _, d)| d.failed).collect::<Vec<_>>())
        .bind(days.iter().map(|(_, _, d)| d.converted).collect::<Vec<_>>())
}

/// Array types of the runs input, in the order [`bind_runs`] binds them.
const RUN_TYPES: [&str; 7] = [
    "text[]",
    "int8[]",
    "int8[]",
    "int8[]",
    "int8[]",
    "timestamptz[]",
    "int8[]",
];

/// Binds the columns of the processed runs.
fn bind_runs<'q>(query: Scalar<'q>, runs: &'q [FollowupProcessed]) -> Scalar<'q> {
    query
        .bind(runs.iter().map(|r| r.run_id.as_str()).collect::<Vec<_>>())
        .bind(runs.iter().map(|r| r.t3_count).collect::<Vec<_>>())
        .bind(runs.iter().map(|r| r.t7_count).collect::<Vec<_>>())
        .bind(runs.iter().map(|r| r.skipped_count).collect::<Vec<_>>())
        .bind(runs.iter().map(|r| r.error_count).collect::<Vec<_>>())
        .bind(runs.iter().map(|r| r.processed_at).collect::<Vec<_>>())
        .bind(runs.iter().map(|r| r.duration_ms).collect::<Vec<_>>())
}

/// Binds time zone, last stream sequence and last event time: the three scalars that end the
/// statement.
fn bind_progress<'q>(query: Scalar<'q>, progress: &Progress<'q>) -> Scalar<'q> {
    query
        .bind(progress.time_zone)
        .bind(progress.last_sequence)
        .bind(progress.last_event_at)
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

    #[test]
    fn both_statements_number_each_placeholder_once_in_order() {
        for sql in [
            super::WRITE_BATCH.as_str(),
            super::WRITE_BATCH_WITHOUT_COLLABORATIONS.as_str(),
        ] {
            let numbers: Vec<usize> = sql
                .split('$')
                .skip(1)
                .map(|rest| {
                    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                    digits.parse().unwrap()
                })
                .collect();
            assert_eq!(numbers, (1..=58).collect::<Vec<_>>());
        }
        assert!(super::WRITE_BATCH.contains("projection_collaborations"));
        assert!(!super::WRITE_BATCH_WITHOUT_COLLABORATIONS.contains("projection_collaborations"));
    }
}
