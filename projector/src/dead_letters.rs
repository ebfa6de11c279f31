//! Dead letters: messages that are not valid events of the contract. They are stored with the
//! reason and the raw message, acked so they never block the stream, and can be listed and
//! replayed by an operator (e.g. after a fix of the producer's data or of this projector).

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use followup_contract::parse_event;
use sqlx::{PgConnection, PgExecutor, PgPool, Row};

use crate::apply::{ApplyError, BatchReport, apply_messages, lock_projection};
use crate::parse::InboundMessage;

/// One stored dead letter (`projection_dead_letters`).
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    pub id: i64,
    pub stream_sequence: i64,
    pub subject: String,
    pub headers: serde_json::Value,
    /// The raw message body, lossily decoded for display.
    pub body: String,
    pub reason: String,
    pub deliveries: i64,
    pub dead_lettered_at: DateTime<Utc>,
}

/// Which dead letters to replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplaySelection {
    All,
    One(i64),
}

/// The result of replaying one dead letter.
#[derive(Debug)]
pub enum ReplayOutcome {
    /// Applied (possibly as a duplicate) and removed from the table.
    Applied { id: i64, report: BatchReport },
    /// Still not a valid event; kept, with the current reason.
    StillFailing { id: i64, reason: String },
    /// No dead letter with this id.
    NotFound { id: i64 },
}

/// Stores a message that cannot be applied, inside the caller's transaction. The same stream
/// message stored twice (a redelivery after a crash between commit and ack) is kept once.
pub(crate) async fn insert_dead_letter(
    conn: &mut PgConnection,
    message: &InboundMessage,
    reason: &str,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO projection_dead_letters \
           (stream_sequence, subject, headers, body, reason, deliveries) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (stream_sequence) DO NOTHING",
    )
    .bind(i64::try_from(message.stream_sequence).unwrap_or(i64::MAX))
    .bind(&message.subject)
    .bind(serde_json::Value::Object(message.headers.clone()))
    .bind(message.body.as_ref())
    .bind(reason)
    .bind(message.deliveries)
    .execute(conn)
    .await
    .map(|_| ())
}

const SELECT_DEAD_LETTERS: &str = "SELECT id, stream_sequence, subject, headers, body, reason, \
     deliveries, dead_lettered_at FROM projection_dead_letters";

fn dead_letter_from_row(row: &sqlx::postgres::PgRow) -> sqlx::Result<(DeadLetter, Vec<u8>)> {
    let body: Vec<u8> = row.try_get("body")?;
    let letter = DeadLetter {
        id: row.try_get("id")?,
        stream_sequence: row.try_get("stream_sequence")?,
        subject: row.try_get("subject")?,
        headers: row.try_get("headers")?,
        body: String::from_utf8_lossy(&body).into_owned(),
        reason: row.try_get("reason")?,
        deliveries: row.try_get("deliveries")?,
        dead_lettered_at: row.try_get("dead_lettered_at")?,
    };
    Ok((letter, body))
}

/// Every stored dead letter, oldest first.
pub async fn list_dead_letters<'e>(db: impl PgExecutor<'e>) -> sqlx::Result<Vec<DeadLetter>> {
    let sql = sqlx::AssertSqlSafe(format!("{SELECT_DEAD_LETTERS} ORDER BY id"));
    let rows = sqlx::query(sql).fetch_all(db).await?;
    rows.iter()
        .map(|r| dead_letter_from_row(r).map(|(l, _)| l))
        .collect()
}

/// Re-applies stored dead letters, each in its own transaction under the projection lock. A
/// letter that now parses is applied like a fresh message (the inbox still dedups) and removed;
/// one that still fails stays, with its reason updated.
pub async fn replay_dead_letters(
    pool: &PgPool,
    tz: Tz,
    selection: ReplaySelection,
) -> Result<Vec<ReplayOutcome>, ApplyError> {
    let ids: Vec<i64> = match selection {
        ReplaySelection::All => {
            sqlx::query_scalar("SELECT id FROM projection_dead_letters ORDER BY id")
                .fetch_all(pool)
                .await?
        }
        ReplaySelection::One(id) => vec![id],
    };
    let mut outcomes = Vec::with_capacity(ids.len());
    for id in ids {
        let mut tx = pool.begin().await?;
        lock_projection(&mut tx).await?;
        let sql = sqlx::AssertSqlSafe(format!("{SELECT_DEAD_LETTERS} WHERE id = $1 FOR UPDATE"));
        let Some(row) = sqlx::query(sql).bind(id).fetch_optional(&mut *tx).await? else {
            outcomes.push(ReplayOutcome::NotFound { id });
            continue;
        };
        let (letter, body) = dead_letter_from_row(&row)?;
        if let Err(reason) = parse_event(&body) {
            let reason = reason.to_string();
            sqlx::query("UPDATE projection_dead_letters SET reason = $2 WHERE id = $1")
                .bind(id)
                .bind(&reason)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            outcomes.push(ReplayOutcome::StillFailing { id, reason });
            continue;
        }
        let message = InboundMessage {
            stream_sequence: u64::try_from(letter.stream_sequence).unwrap_or(0),
            subject: letter.subject,
            headers: letter.headers.as_object().cloned().unwrap_or_default(),
            body: body.into(),
            deliveries: letter.deliveries,
        };
        let report = apply_messages(&mut tx, tz, &[message]).await?;
        sqlx::query("DELETE FROM projection_dead_letters WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        outcomes.push(ReplayOutcome::Applied { id, report });
    }
    Ok(outcomes)
}
