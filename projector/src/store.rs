//! Reads of the apply transaction: the inbox and the stored records of the touched leads. Like
//! `write`, set-based (arrays bound as parameters), on the caller's connection inside its
//! transaction, with unqualified table names so `rebuild` can aim them at its shadow schema
//! through `search_path`.

use std::collections::{HashMap, HashSet};

use followup_contract::FollowupKind;
use sqlx::{Connection, PgConnection, Row};
use uuid::Uuid;

use crate::model::{Delivery, LeadRecord, LeadState};

/// Inserts event ids into the inbox and returns those that were not there yet. Duplicates are
/// rare (redeliveries after a crash), so a plain insert is tried first inside a savepoint; only
/// when it hits a known id does the slower `ON CONFLICT ... RETURNING` form sort them out.
pub(crate) async fn insert_inbox_ids(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> sqlx::Result<Vec<Uuid>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut savepoint = conn.begin().await?;
    let plain =
        sqlx::query("INSERT INTO projection_inbox (event_id) SELECT * FROM UNNEST($1::uuid[])")
            .bind(ids)
            .execute(&mut *savepoint)
            .await;
    match plain {
        Ok(_) => {
            savepoint.commit().await?;
            return Ok(ids.to_vec());
        }
        Err(sqlx::Error::Database(err)) if err.is_unique_violation() => {
            savepoint.rollback().await?;
        }
        Err(err) => return Err(err),
    }
    sqlx::query_scalar(
        "INSERT INTO projection_inbox (event_id) SELECT * FROM UNNEST($1::uuid[]) \
         ON CONFLICT DO NOTHING RETURNING event_id",
    )
    .bind(ids)
    .fetch_all(conn)
    .await
}

/// Which of a batch's leads already have a row in `projection_leads`.
#[derive(Debug, Default)]
pub(crate) struct StoredLeads {
    /// The leads with a row.
    pub ids: HashSet<i64>,
    /// Whether any of those rows lists collaborators, i.e. may have rows in
    /// `projection_collaborations` that the write must keep or delete.
    pub with_collaborators: bool,
}

/// Loads the stored records (state and deliveries) of these leads, and which of them have a row.
/// One round trip: the lead rows and the delivery rows come as one result (a delivery row has a
/// `kind`, a lead row has none).
pub(crate) async fn load_lead_records(
    conn: &mut PgConnection,
    lead_ids: &[i64],
) -> sqlx::Result<(HashMap<i64, LeadRecord>, StoredLeads)> {
    let rows = sqlx::query(
        "SELECT lead_id, sequence, owner_user_id, collaborator_user_ids, status, registered_at, \
           clock_stopped_at, t3_sent, t7_sent, contactable, deleted, changed_at, \
           NULL::text AS kind, NULL::timestamptz AS sent_at, NULL::text AS run_id, \
           NULL::text AS delivery_status, NULL::text AS reason \
         FROM projection_leads WHERE lead_id = ANY($1) \
         UNION ALL \
         SELECT lead_id, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, \
           kind, sent_at, run_id, status, reason \
         FROM projection_deliveries WHERE lead_id = ANY($1) \
         ORDER BY lead_id, kind NULLS FIRST",
    )
    .bind(lead_ids)
    .fetch_all(&mut *conn)
    .await?;
    let mut records = HashMap::with_capacity(rows.len());
    let mut stored = StoredLeads {
        ids: HashSet::with_capacity(rows.len()),
        with_collaborators: false,
    };
    for row in rows {
        let lead_id: i64 = row.try_get("lead_id")?;
        let kind: Option<String> = row.try_get("kind")?;
        let Some(kind) = kind else {
            let state = LeadState {
                sequence: row.try_get("sequence")?,
                owner_user_id: row.try_get("owner_user_id")?,
                collaborator_user_ids: row.try_get("collaborator_user_ids")?,
                status: row.try_get("status")?,
                registered_at: row.try_get("registered_at")?,
                clock_stopped_at: row.try_get("clock_stopped_at")?,
                t3_sent: row.try_get("t3_sent")?,
                t7_sent: row.try_get("t7_sent")?,
                contactable: row.try_get("contactable")?,
                deleted: row.try_get("deleted")?,
                changed_at: row.try_get("changed_at")?,
            };
            stored.ids.insert(lead_id);
            stored.with_collaborators |= !state.collaborator_user_ids.is_empty();
            records
                .entry(lead_id)
                .or_insert_with(LeadRecord::unknown)
                .state = state;
            continue;
        };
        let delivery = Delivery {
            kind: FollowupKind::parse(&kind).unwrap_or(FollowupKind::T3),
            sent_at: row.try_get("sent_at")?,
            run_id: row.try_get("run_id")?,
            failed: row
                .try_get::<Option<String>, _>("delivery_status")?
                .as_deref()
                == Some("failed"),
            reason: row.try_get("reason")?,
        };
        records
            .entry(lead_id)
            .or_insert_with(LeadRecord::unknown)
            .deliveries
            .push(delivery);
    }
    Ok((records, stored))
}
