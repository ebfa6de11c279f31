//! The exact oracle: after the load stops and the pipeline is quiet, every committed change must
//! be in the stream exactly once, every `lead.followup.sent` key exactly once and matching the
//! `sent` delivery records, every poison message dead-lettered, the projection exact
//! (`followup-projector verify`), the mail log shows how often each follow-up went out, and no
//! follow-up went to a lead that never gave e-mail consent.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use sqlx::PgPool;

/// Cumulative findings at one moment.
#[derive(Debug, Default, Clone)]
pub struct Findings {
    /// Messages in the stream.
    pub stream_messages: u64,
    /// Expected events missing from the stream (committed changes, sent deliveries), outbox
    /// rows left behind, poison messages not dead-lettered.
    pub lost: u64,
    /// Idempotency keys found more than once in the stream, plus sent events without a record.
    pub duplicated: u64,
    /// Figures `verify` found different (or 1 when it could not run).
    pub diff: u64,
    /// Follow-ups whose mail went out more than once (lead+kind with more than one log line).
    pub mail_resends: u64,
    /// Sent deliveries without any mail line (would be a lie in the records).
    pub sent_without_mail: u64,
    /// Follow-ups mailed or recorded sent to a lead that never had e-mail consent (its
    /// `metadata.emailConsent` was never true: the load never changes `metadata`).
    pub without_consent: u64,
    /// Human-readable notes on what differed.
    pub notes: Vec<String>,
}

/// Waits until nothing moves: no outbox backlog, no claim, no due lead, no running run, the
/// projector's consumer has nothing pending or unacked. Returns whether that happened in `limit`.
pub async fn quiesce(pool: &PgPool, js: &jetstream::Context, limit: Duration) -> bool {
    let started = Instant::now();
    let mut quiet_in_a_row = 0;
    while started.elapsed() < limit {
        if is_quiet(pool, js).await.unwrap_or(false) {
            quiet_in_a_row += 1;
            if quiet_in_a_row >= 3 {
                return true;
            }
        } else {
            quiet_in_a_row = 0;
        }
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    false
}

async fn is_quiet(pool: &PgPool, js: &jetstream::Context) -> anyhow::Result<bool> {
    // A due lead is busy until it has a delivery record of that kind. Read as the producer reads
    // the CRM's schema: NULL flags mean false, `registered_at` is naive UTC (compared with the
    // database clock as naive UTC, whatever this session's TimeZone), and a lead that is not
    // contactable is skipped by every run and never gets a record, so it is not busy.
    let busy: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM followup_outbox) \
              + (SELECT count(*) FROM followup_deliveries WHERE status = 'pending') \
              + (SELECT count(*) FROM followup_runs WHERE finished_at IS NULL \
                   AND heartbeat_at > now() - interval '10 seconds') \
              + (SELECT count(*) FROM leads l WHERE status = 'ACTIVE' AND clock_stopped_at IS NULL \
                   AND t7_followup_sent IS NOT TRUE AND followup_contactable(to_jsonb(l)) AND ( \
                     (t3_followup_sent IS NOT TRUE \
                      AND registered_at <= (now() AT TIME ZONE 'UTC') - interval '3 days' \
                      AND NOT EXISTS (SELECT 1 FROM followup_deliveries d \
                                      WHERE d.lead_id = l.id AND d.kind = 't3')) \
                  OR (t3_followup_sent IS TRUE \
                      AND registered_at <= (now() AT TIME ZONE 'UTC') - interval '7 days' \
                      AND NOT EXISTS (SELECT 1 FROM followup_deliveries d \
                                      WHERE d.lead_id = l.id AND d.kind = 't7'))))",
    )
    .fetch_one(pool)
    .await?;
    if busy > 0 {
        return Ok(false);
    }
    let mut stream = js.get_stream("FOLLOWUP").await?;
    let last = stream.info().await?.state.last_sequence;
    let mut consumer: consumer::PullConsumer = stream
        .get_consumer("projector")
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    let info = consumer.info().await?;
    let applied: i64 = sqlx::query_scalar(
        "SELECT COALESCE((SELECT last_stream_sequence FROM projection_state), 0)",
    )
    .fetch_one(pool)
    .await?;
    let dead: i64 =
        sqlx::query_scalar("SELECT COALESCE(max(stream_sequence), 0) FROM projection_dead_letters")
            .fetch_one(pool)
            .await?;
    Ok(info.num_pending == 0
        && info.num_ack_pending == 0
        && info.delivered.stream_sequence == last
        && (applied.max(dead) as u64 >= last || last == 0))
}

/// One message of the stream, as the oracle needs it.
struct Seen {
    sequence: u64,
    key: Option<String>,
}

async fn read_stream(js: &jetstream::Context) -> anyhow::Result<Vec<Seen>> {
    let mut stream = js.get_stream("FOLLOWUP").await?;
    let total = stream.info().await?.state.messages;
    let reader: consumer::PullConsumer = stream
        .create_consumer(consumer::pull::Config {
            deliver_policy: consumer::DeliverPolicy::All,
            ack_policy: consumer::AckPolicy::None,
            inactive_threshold: Duration::from_secs(60),
            // A reader, not part of the system under test: one replica in memory.
            num_replicas: 1,
            memory_storage: true,
            ..Default::default()
        })
        .await
        .map_err(|e| anyhow::anyhow!(e))
        .context("creating a reader of the stream")?;
    let mut seen = Vec::with_capacity(total as usize);
    let mut idle = 0;
    while (seen.len() as u64) < total && idle < 5 {
        let mut batch = reader
            .fetch()
            .max_messages(5000)
            .expires(Duration::from_secs(2))
            .messages()
            .await
            .map_err(|e| anyhow::anyhow!(e))?;
        let before = seen.len();
        while let Some(message) = batch.next().await {
            let message = message.map_err(|e| anyhow::anyhow!(e))?;
            let sequence = message.info().map(|i| i.stream_sequence).unwrap_or(0);
            let key = message
                .headers
                .as_ref()
                .and_then(|h| h.get("Nats-Msg-Id"))
                .map(|v| v.as_str().to_owned());
            seen.push(Seen { sequence, key });
        }
        idle = if seen.len() == before { idle + 1 } else { 0 };
    }
    anyhow::ensure!(
        seen.len() as u64 >= total,
        "read {} of {total} messages of the stream",
        seen.len()
    );
    Ok(seen)
}

/// Everything the suite checks, cumulative since the start.
pub struct Expectations<'a> {
    pub committed: &'a [String],
    pub uncertain: &'a HashSet<String>,
    pub poison_sequences: &'a [u64],
    pub mail_log: &'a Path,
    pub projector_bin: &'a Path,
    pub database_url: &'a str,
}

/// Checks the stream, the records, the mail log and the projection.
pub async fn check(
    pool: &PgPool,
    js: &jetstream::Context,
    expect: &Expectations<'_>,
) -> anyhow::Result<Findings> {
    let mut f = Findings::default();
    let seen = read_stream(js).await?;
    f.stream_messages = seen.len() as u64;
    let poison: HashSet<u64> = expect.poison_sequences.iter().copied().collect();
    let mut by_key: HashMap<&str, u64> = HashMap::new();
    for message in seen.iter().filter(|m| !poison.contains(&m.sequence)) {
        match &message.key {
            Some(key) => *by_key.entry(key.as_str()).or_default() += 1,
            None => f
                .notes
                .push(format!("message {} has no Nats-Msg-Id", message.sequence)),
        }
    }
    for (key, count) in &by_key {
        if *count > 1 {
            f.duplicated += count - 1;
            f.notes
                .push(format!("{key} is {count} times in the stream"));
        }
    }
    for key in expect.committed {
        if !by_key.contains_key(key.as_str()) {
            f.lost += 1;
            f.notes
                .push(format!("committed change {key} is not in the stream"));
        }
    }
    let _ = expect.uncertain; // may or may not be there: nothing to check

    // lead.followup.sent: the stream's keys against the `sent` delivery records.
    let records: Vec<(i64, String)> =
        sqlx::query_as("SELECT lead_id, kind FROM followup_deliveries WHERE status = 'sent'")
            .fetch_all(pool)
            .await?;
    let recorded: HashSet<String> = records
        .iter()
        .map(|(lead, kind)| format!("lead:{lead}:followup:{kind}"))
        .collect();
    for key in &recorded {
        if !by_key.contains_key(key.as_str()) {
            f.lost += 1;
            f.notes.push(format!("sent delivery {key} has no event"));
        }
    }
    for key in by_key.keys().filter(|k| is_sent_key(k)) {
        if !recorded.contains(*key) {
            f.duplicated += 1;
            f.notes
                .push(format!("sent event {key} has no delivery record"));
        }
    }
    let outbox: i64 = sqlx::query_scalar("SELECT count(*) FROM followup_outbox")
        .fetch_one(pool)
        .await?;
    if outbox > 0 {
        f.lost += outbox as u64;
        f.notes
            .push(format!("{outbox} outbox rows never published"));
    }

    // Poison: each one dead-lettered, exactly by its stream sequence.
    let dead: HashSet<i64> =
        sqlx::query_scalar::<_, i64>("SELECT stream_sequence FROM projection_dead_letters")
            .fetch_all(pool)
            .await?
            .into_iter()
            .collect();
    for sequence in expect.poison_sequences {
        if !dead.contains(&(*sequence as i64)) {
            f.lost += 1;
            f.notes
                .push(format!("poison message {sequence} was not dead-lettered"));
        }
    }
    if dead.len() > expect.poison_sequences.len() {
        let extra = dead.len() - expect.poison_sequences.len();
        f.lost += extra as u64;
        f.notes
            .push(format!("{extra} good message(s) dead-lettered"));
    }

    // Mail: lines per lead and kind.
    let mut mails: HashMap<(i64, String), u64> = HashMap::new();
    if let Ok(text) = std::fs::read_to_string(expect.mail_log) {
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                // A process killed in the middle of a write leaves a torn line.
                f.notes.push(format!("torn mail log line: {:.80}", line));
                continue;
            };
            let lead = v["leadId"].as_i64().unwrap_or(-1);
            let kind = v["kind"].as_str().unwrap_or("?").to_lowercase();
            *mails.entry((lead, kind)).or_default() += 1;
        }
    }
    for ((lead, kind), count) in &mails {
        if *count > 1 {
            f.mail_resends += count - 1;
            f.notes.push(format!(
                "follow-up {kind} of lead {lead} mailed {count} times"
            ));
        }
    }
    for (lead, kind) in &records {
        if !mails.contains_key(&(*lead, kind.to_lowercase())) {
            f.sent_without_mail += 1;
            f.notes
                .push(format!("{kind} of lead {lead} recorded sent, never mailed"));
        }
    }

    // Consent: no follow-up for a lead whose metadata never held `emailConsent = true` (NULL
    // metadata included). Consent withdrawn later (GDPR fields) races with a send in flight, so
    // only consent that never existed is checked here.
    let never_consented: HashSet<i64> = sqlx::query_scalar(
        "SELECT id FROM leads \
         WHERE COALESCE(metadata -> 'emailConsent' = 'true'::jsonb, FALSE) IS NOT TRUE",
    )
    .fetch_all(pool)
    .await?
    .into_iter()
    .collect();
    let mailed: HashSet<(i64, String)> = mails
        .keys()
        .cloned()
        .chain(records.iter().map(|(l, k)| (*l, k.to_lowercase())))
        .collect();
    for (lead, kind) in &mailed {
        if never_consented.contains(lead) {
            f.without_consent += 1;
            f.notes.push(format!(
                "{kind} of lead {lead} sent although the lead never gave e-mail consent"
            ));
        }
    }

    let (diff, output) = run_verify(expect.projector_bin, expect.database_url)?;
    f.diff = diff;
    if diff > 0 {
        f.notes.push(format!("verify: {output}"));
    }
    Ok(f)
}

fn is_sent_key(key: &str) -> bool {
    key.starts_with("lead:") && (key.ends_with(":followup:t3") || key.ends_with(":followup:t7"))
}

/// `followup-projector verify`: the number of differing figures and its output.
fn run_verify(binary: &Path, database_url: &str) -> anyhow::Result<(u64, String)> {
    let out = std::process::Command::new(binary)
        .arg("verify")
        .env("DATABASE_URL", database_url)
        .env("RUST_LOG", "warn")
        .output()
        .context("running followup-projector verify")?;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    if out.status.success() {
        return Ok((0, stdout));
    }
    let differing = stdout.lines().filter(|l| l.contains("projection=")).count() as u64;
    Ok((
        differing.max(1),
        format!("{stdout}{}", String::from_utf8_lossy(&out.stderr)),
    ))
}
