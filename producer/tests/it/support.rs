//! Shared helpers: inserting CRM-style leads, running the producer in-process, reading the stream.

use std::time::Duration;

use async_nats::jetstream;
use chrono::{DateTime, Utc};
use followup_contract::{ReceivedEvent, STREAM_NAME, parse_event};
use followup_producer::{
    Delivery, Mailer, ProducerMetrics, Renderer, RetryPolicy, RunOutcome, RunReport, RunRequest,
    RunTrigger, UnsubscribeLinks, execute_run,
};
use followup_testkit::crm::CrmLead;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// A lead as the CRM would insert it; defaults make it due for T+3 at `now`.
#[derive(Debug, Clone)]
pub struct LeadSpec {
    pub status: &'static str,
    pub email: Option<&'static str>,
    pub consent: Option<bool>,
    pub registered_at: DateTime<Utc>,
    pub clock_stopped: bool,
    pub t3_sent: bool,
    pub t7_sent: bool,
    pub owner: &'static str,
    pub business_type: &'static str,
    /// Anything else the CRM may hold (NULLs, GDPR fields), applied last.
    pub crm: fn(&mut CrmLead),
}

impl LeadSpec {
    pub fn registered(at: DateTime<Utc>) -> LeadSpec {
        LeadSpec {
            status: "ACTIVE",
            email: Some("lead@example.com"),
            consent: Some(true),
            registered_at: at,
            clock_stopped: false,
            t3_sent: false,
            t7_sent: false,
            owner: "u1",
            business_type: "RESTAURANT",
            crm: |_| {},
        }
    }
}

/// Inserts the lead as the CRM does (naive UTC timestamps from a Europe/Berlin session).
pub async fn insert_lead(pool: &PgPool, spec: &LeadSpec) -> i64 {
    let mut lead = CrmLead::active(spec.owner, spec.registered_at);
    lead.status = spec.status.to_owned();
    lead.email = spec.email.map(str::to_owned);
    lead.metadata = Some(match spec.consent {
        Some(c) => serde_json::json!({ "emailConsent": c }),
        None => serde_json::json!({}),
    });
    lead.clock_stopped_at = spec.clock_stopped.then_some(spec.registered_at);
    lead.t3_followup_sent = Some(spec.t3_sent);
    lead.t7_followup_sent = Some(spec.t7_sent);
    lead.business_type = Some(spec.business_type.to_owned());
    (spec.crm)(&mut lead);
    lead.insert(pool).await
}

/// The key unsubscribe links are signed with in tests.
pub const UNSUBSCRIBE_SECRET: &str = "test-unsubscribe-secret-0123456789";
/// Where unsubscribe links point in tests.
pub const UNSUBSCRIBE_BASE_URL: &str = "https://crm.test/followup";

/// The built-in templates, test links, fast retries.
pub fn delivery_with(mailer: Mailer) -> Delivery {
    let links = UnsubscribeLinks::new(UNSUBSCRIBE_BASE_URL, UNSUBSCRIBE_SECRET.as_bytes().to_vec());
    Delivery {
        mailer,
        renderer: std::sync::Arc::new(Renderer::embedded(links).expect("built-in templates")),
        retry: RetryPolicy {
            base: Duration::from_millis(50),
            max_attempts: 5,
            max_delay: Duration::from_millis(400),
            concurrency: 16,
        },
        claim_timeout: Duration::from_secs(30),
    }
}

/// Runs a run in-process with an injected clock and `delivery`.
pub async fn run_with(
    pool: &PgPool,
    delivery: &Delivery,
    metrics: &ProducerMetrics,
    now: DateTime<Utc>,
) -> RunReport {
    let request = RunRequest {
        trigger: RunTrigger::Manual,
        now,
        tz: chrono_tz::Europe::Berlin,
        batch_size: 7,
    };
    match execute_run(pool, delivery, metrics, &request, &CancellationToken::new())
        .await
        .expect("run")
    {
        RunOutcome::Completed(report) => report,
        other => panic!("unexpected outcome {other:?}"),
    }
}

/// Runs the producer's run in-process with an injected clock and the log mailer.
pub async fn run_at(pool: &PgPool, now: DateTime<Utc>) -> RunReport {
    run_with(
        pool,
        &delivery_with(Mailer::Log),
        &ProducerMetrics::new(),
        now,
    )
    .await
}

pub async fn jetstream_for(url: &str) -> jetstream::Context {
    let client = async_nats::connect(url)
        .await
        .expect("connect to test nats");
    jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(2))
        .ack_timeout(Duration::from_secs(3))
        .build(client)
}

/// A message read back from the stream.
#[derive(Debug)]
pub struct StoredEvent {
    pub subject: String,
    pub msg_id: Option<String>,
    pub content_type: Option<String>,
    /// The body as JSON, as a consumer without an SDK sees it.
    pub body: serde_json::Value,
    /// The body as the contract (the CloudEvents SDK plus our checks) reads it.
    pub event: ReceivedEvent,
}

/// Every message in the stream, in stream order, parsed as CloudEvents.
pub async fn stream_events(js: &jetstream::Context) -> Vec<StoredEvent> {
    let mut stream = js.get_stream(STREAM_NAME).await.expect("stream exists");
    let info = stream.info().await.expect("stream info").clone();
    let mut out = Vec::new();
    for seq in info.state.first_sequence..=info.state.last_sequence {
        if info.state.messages == 0 {
            break;
        }
        let Ok(msg) = stream.get_raw_message(seq).await else {
            continue;
        };
        let header = |name: &str| msg.headers.get(name).map(|v| v.as_str().to_owned());
        out.push(StoredEvent {
            subject: msg.subject.to_string(),
            msg_id: header("Nats-Msg-Id"),
            content_type: header("Content-Type"),
            body: serde_json::from_slice(&msg.payload).expect("stored message is JSON"),
            event: parse_event(&msg.payload).expect("stored message is an event of the contract"),
        });
    }
    out
}

/// `(rows waiting in the outbox, highest outbox id ever used)`: the relay deletes what JetStream
/// acknowledged, so the second figure is how many events the database produced.
pub async fn outbox_state(pool: &PgPool) -> (i64, i64) {
    sqlx::query_as(
        "SELECT (SELECT count(*) FROM followup_outbox),
                COALESCE((SELECT last_value FROM followup_outbox_id_seq WHERE is_called), 0)",
    )
    .fetch_one(pool)
    .await
    .expect("outbox state")
}

/// A lead with every field the e-mail uses chosen by the test.
#[derive(Debug, Clone)]
pub struct MailLead {
    pub company: &'static str,
    pub contact: Option<&'static str>,
    pub email: &'static str,
    pub business_type: Option<&'static str>,
    pub territory: &'static str,
    pub metadata: serde_json::Value,
    pub registered_at: DateTime<Utc>,
    pub t3_sent: bool,
}

impl MailLead {
    /// An ACTIVE lead with consent, registered at `at`.
    pub fn new(email: &'static str, at: DateTime<Utc>) -> MailLead {
        MailLead {
            company: "Gasthaus Test",
            contact: Some("Frau Test"),
            email,
            business_type: Some("RESTAURANT"),
            territory: "DE",
            metadata: serde_json::json!({ "emailConsent": true }),
            registered_at: at,
            t3_sent: false,
        }
    }
}

pub async fn insert_mail_lead(pool: &PgPool, mail: &MailLead) -> i64 {
    let mut lead = CrmLead::active("u1", mail.registered_at);
    lead.company_name = mail.company.to_owned();
    lead.contact_person = mail.contact.map(str::to_owned);
    lead.email = Some(mail.email.to_owned());
    lead.business_type = mail.business_type.map(str::to_owned);
    lead.territory_id = Some(mail.territory.to_owned());
    lead.t3_followup_sent = Some(mail.t3_sent);
    lead.metadata = Some(mail.metadata.clone());
    lead.insert(pool).await
}

/// An SMTP mailer for `url` with a short timeout.
pub fn smtp_mailer(url: &str) -> Mailer {
    Mailer::smtp(&followup_producer::mailer::SmtpSettings {
        url: url.to_owned(),
        from: "FreshPlan Test <followup@freshplan.test>".to_owned(),
        timeout: Duration::from_secs(5),
        pool_size: 16,
    })
    .expect("SMTP mailer")
}

/// `(status, attempts, reason)` of each delivery record of `lead_id` and `kind`.
pub async fn delivery_of(
    pool: &PgPool,
    lead_id: i64,
    kind: &str,
) -> Option<(String, i32, Option<String>)> {
    sqlx::query_as(
        "SELECT status, attempts, reason FROM followup_deliveries WHERE lead_id = $1 AND kind = $2",
    )
    .bind(lead_id)
    .bind(kind)
    .fetch_optional(pool)
    .await
    .expect("delivery record")
}
