//! Test harness: a fresh database and a private nats-server per test, the projector started in
//! process (or as the real binary), and builders that publish contract events.

use std::net::SocketAddr;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, consumer::PullConsumer};
use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use followup_contract::{
    CONTENT_TYPE, EventParts, EventType, FollowupFailed, FollowupKind, FollowupProcessed,
    FollowupSent, LeadChanged, PROJECTOR_CONSUMER, STREAM_NAME, change_key, failed_key, outbox_key,
    run_key, sent_key,
};
use followup_projector::{Config, run_until_stopped};
use followup_readmodel::{Figures, Scope, load_figures};
use followup_testkit::{NatsServer, TestDb, eventually};
use sqlx::Row;
use tokio_util::sync::CancellationToken;

pub const TZ: Tz = chrono_tz::Europe::Berlin;

pub struct Harness {
    pub db: TestDb,
    pub nats: NatsServer,
    pub client: async_nats::Client,
    pub js: jetstream::Context,
}

impl Harness {
    pub async fn start() -> Harness {
        let db = TestDb::new().await;
        let nats = NatsServer::start();
        let client = async_nats::connect(nats.url())
            .await
            .expect("connect to nats");
        let js = jetstream::new(client.clone());
        followup_infra::ensure_stream(&js).await.expect("stream");
        Harness {
            db,
            nats,
            client,
            js,
        }
    }

    /// A projector configuration for this test's servers: small batches, short idle waits.
    pub fn config(&self) -> Config {
        let mut config = Config::new(self.db.url.clone(), self.nats.url());
        config.batch_size = 100;
        config.fetch_wait_ms = 100;
        config
    }

    pub async fn spawn_projector(&self, config: Config) -> RunningProjector {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let token = CancellationToken::new();
        let handle = tokio::spawn(run_until_stopped(config, listener, token.clone()));
        RunningProjector {
            addr,
            token,
            handle,
        }
    }

    pub async fn publish(&self, event: &EventParts) {
        self.publish_with_msg_id(event, &event.idempotency_key)
            .await;
    }

    pub async fn publish_with_msg_id(&self, event: &EventParts, msg_id: &str) {
        let body = event.clone().encode();
        self.publish_raw(event.event_type.subject(), body, msg_id)
            .await;
    }

    pub async fn publish_raw(&self, subject: &str, body: Vec<u8>, msg_id: &str) {
        let mut headers = HeaderMap::new();
        headers.insert("Content-Type", CONTENT_TYPE);
        headers.insert("Nats-Msg-Id", msg_id);
        self.js
            .publish_with_headers(subject.to_owned(), headers, body.into())
            .await
            .expect("publish")
            .await
            .expect("puback");
    }

    /// The projector's durable consumer, once the projector has created it.
    pub async fn consumer(&self) -> Option<PullConsumer> {
        let stream = self.js.get_stream(STREAM_NAME).await.ok()?;
        stream.get_consumer(PROJECTOR_CONSUMER).await.ok()
    }

    /// Waits until the projector's consumer has every stream message delivered and acked. The
    /// bound covers two `ack_wait` rounds (30 s each): after a SIGKILL, what the dead projector
    /// had been delivered comes back after one round, and a message the server handed to it as
    /// it died can take a second (seen: the last of 2 000 messages at 60.0 s).
    pub async fn wait_until_caught_up(&self) {
        let caught_up = eventually(Duration::from_secs(120), || async {
            let mut consumer = self.consumer().await?;
            let info = consumer.info().await.ok()?;
            (info.num_pending == 0
                && info.num_ack_pending == 0
                && info.delivered.stream_sequence > 0)
                .then_some(())
        })
        .await;
        assert!(
            caught_up.is_some(),
            "projector did not catch up with the stream"
        );
    }

    pub async fn figures(&self, scope: &Scope, now: DateTime<Utc>) -> Figures {
        load_figures(&self.db.pool, scope, now, TZ)
            .await
            .expect("figures")
    }

    pub async fn count(&self, sql: &'static str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(&self.db.pool)
            .await
            .unwrap()
    }

    /// Acts as the producer's relay: publishes every unpublished outbox row (the trigger's
    /// lead.changed.v1 events) and removes it from the outbox, as the relay does. Returns how many
    /// it published.
    pub async fn relay_outbox(&self) -> usize {
        let rows = sqlx::query(
            "SELECT id, event_id, event_type, subject, idempotency_key, data, occurred_at \
             FROM followup_outbox ORDER BY id",
        )
        .fetch_all(&self.db.pool)
        .await
        .unwrap();
        for row in &rows {
            let ty = EventType::parse(row.get("event_type")).unwrap();
            let subject: Option<String> = row.get("subject");
            let stored_key: Option<String> = row.get("idempotency_key");
            let key = outbox_key(ty, subject.as_deref(), stored_key.as_deref(), row.get("id"));
            let event = EventParts {
                id: row.get("event_id"),
                event_type: ty,
                subject,
                idempotency_key: key.expect("every outbox row has or derives a key"),
                time: row.get("occurred_at"),
                data: row.get("data"),
            };
            self.publish(&event).await;
            sqlx::query("DELETE FROM followup_outbox WHERE id = $1")
                .bind(row.get::<i64, _>("id"))
                .execute(&self.db.pool)
                .await
                .unwrap();
        }
        rows.len()
    }
}

pub struct RunningProjector {
    pub addr: SocketAddr,
    pub token: CancellationToken,
    pub handle: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl RunningProjector {
    pub async fn stop(self) {
        self.token.cancel();
        self.handle.await.unwrap().expect("projector ends cleanly");
    }

    /// GET /metrics, as text.
    pub async fn metrics(&self) -> String {
        http_get(self.addr, "/metrics").await
    }
}

/// A minimal HTTP/1.0 GET: the tests need no HTTP client crate for three endpoints.
pub async fn http_get(addr: SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

/// The value of the sample whose line contains every one of `parts`, or 0 when there is none.
pub fn sample(metrics: &str, name: &str, parts: &[&str]) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && parts.iter().all(|p| l.contains(p)))
        .filter(|l| l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .next()
        .unwrap_or(0.0)
}

/// A Berlin wall-clock instant.
pub fn berlin(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
    TZ.with_ymd_and_hms(y, m, d, h, min, 0)
        .unwrap()
        .with_timezone(&Utc)
}

/// Builder for a lead.changed.v1 event.
#[derive(Clone)]
pub struct Change {
    pub data: LeadChanged,
    pub at: DateTime<Utc>,
}

pub fn change(lead_id: i64, sequence: i64, status: &str, owner: &str) -> Change {
    Change {
        data: LeadChanged {
            lead_id,
            owner_user_id: Some(owner.to_owned()),
            collaborator_user_ids: Vec::new(),
            status: status.to_owned(),
            registered_at: berlin(2026, 11, 20, 10, 0),
            clock_stopped_at: None,
            t3_sent: false,
            t7_sent: false,
            contactable: Some(true),
            deleted: status == "DELETED",
            sequence,
        },
        at: Utc::now(),
    }
}

impl Change {
    pub fn collaborators(mut self, users: &[&str]) -> Change {
        self.data.collaborator_user_ids = users.iter().map(|u| u.to_string()).collect();
        self
    }
    pub fn t3_sent(mut self) -> Change {
        self.data.t3_sent = true;
        self
    }
    pub fn deleted(mut self) -> Change {
        self.data.deleted = true;
        self
    }
    pub fn at(mut self, at: DateTime<Utc>) -> Change {
        self.at = at;
        self
    }
    pub fn event(&self) -> EventParts {
        EventParts::new(
            Some(self.data.lead_id.to_string()),
            change_key(self.data.lead_id, self.data.sequence),
            self.at,
            &self.data,
        )
    }
}

pub fn sent(lead_id: i64, kind: FollowupKind, sent_at: DateTime<Utc>) -> EventParts {
    EventParts::new(
        Some(lead_id.to_string()),
        sent_key(lead_id, kind),
        sent_at,
        &FollowupSent {
            lead_id,
            owner_user_id: None,
            kind,
            sent_at,
            run_id: "run-1".into(),
        },
    )
}

pub fn failed(lead_id: i64, kind: FollowupKind, at: DateTime<Utc>) -> EventParts {
    EventParts::new(
        Some(lead_id.to_string()),
        failed_key(lead_id, kind),
        at,
        &FollowupFailed {
            lead_id,
            owner_user_id: None,
            kind,
            reason: "550 mailbox unavailable".into(),
            attempts: 3,
        },
    )
}

pub fn processed(run_id: &str, at: DateTime<Utc>) -> EventParts {
    EventParts::new(
        None,
        run_key(run_id),
        at,
        &FollowupProcessed {
            run_id: run_id.to_owned(),
            t3_count: 2,
            t7_count: 1,
            skipped_count: 0,
            error_count: 0,
            processed_at: at,
            duration_ms: 12,
        },
    )
}

/// An event's body as JSON, for tests that publish a broken copy of it.
pub fn wire(event: EventParts) -> serde_json::Value {
    serde_json::from_slice(&event.encode()).unwrap()
}
