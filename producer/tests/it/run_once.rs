//! `followup-producer run-once` as an operator runs it: the real binary, a private nats-server.

use std::collections::HashMap;
use std::process::Output;

use chrono::{Duration, Utc};
use followup_contract::cloudevents::AttributesReader;
use followup_contract::{FollowupSent, LeadEvent};
use followup_testkit::{NatsServer, TestDb};

use crate::support::{LeadSpec, insert_lead, jetstream_for, outbox_state, stream_events};

async fn run_once_process(db: &TestDb, nats: &NatsServer) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_followup-producer"))
        .arg("run-once")
        .env("DATABASE_URL", &db.url)
        .env("NATS_URL", nats.url())
        .env("RUST_LOG", "warn")
        .env("FOLLOWUP_BATCH_SIZE", "25")
        .output()
        .await
        .expect("spawn followup-producer")
}

#[tokio::test]
async fn run_once_publishes_exactly_the_expected_cloudevents() {
    let db = TestDb::new().await;
    let nats = NatsServer::start();
    let now = Utc::now();
    let t3 = insert_lead(&db.pool, &LeadSpec::registered(now - Duration::days(4))).await;
    let t7 = insert_lead(
        &db.pool,
        &LeadSpec {
            t3_sent: true,
            ..LeadSpec::registered(now - Duration::days(8))
        },
    )
    .await;
    insert_lead(
        &db.pool,
        &LeadSpec {
            consent: None,
            ..LeadSpec::registered(now - Duration::days(4))
        },
    )
    .await;
    insert_lead(&db.pool, &LeadSpec::registered(now - Duration::days(1))).await;

    let output = run_once_process(&db, &nats).await;
    assert!(
        output.status.success(),
        "run-once failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mails: Vec<serde_json::Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("log mailer writes JSON lines"))
        .collect();
    assert_eq!(mails.len(), 2, "two e-mails rendered");

    let (waiting, rows) = outbox_state(&db.pool).await;
    assert_eq!(waiting, 0, "run-once exits only when the outbox is drained");

    let js = jetstream_for(&nats.url()).await;
    let events = stream_events(&js).await;
    assert_eq!(events.len() as i64, rows, "one message per outbox row");
    let mut sent: HashMap<i64, FollowupSent> = HashMap::new();
    let mut processed = Vec::new();
    for stored in &events {
        let env = &stored.event;
        assert_eq!(stored.body["specversion"], "1.0");
        assert_eq!(stored.body["source"], "freshplan.leads.followup");
        assert_eq!(stored.body["datacontenttype"], "application/json");
        assert_eq!(
            stored.content_type.as_deref(),
            Some("application/cloudevents+json")
        );
        assert_eq!(
            stored.msg_id.as_deref(),
            Some(env.idempotency_key.as_str()),
            "Nats-Msg-Id = idempotency key"
        );
        let time = stored.body["time"].as_str().unwrap();
        assert!(
            chrono::DateTime::parse_from_rfc3339(time).is_ok(),
            "time in RFC 3339 with an offset: {time}"
        );
        let subject = env.event.subject().map(str::to_owned);
        assert_eq!(stored.subject, env.event_type.subject());
        match &env.payload {
            LeadEvent::Sent(data) => {
                assert_eq!(subject, Some(data.lead_id.to_string()));
                assert_eq!(
                    env.idempotency_key,
                    format!("lead:{}:followup:{}", data.lead_id, data.kind.as_str())
                );
                sent.insert(data.lead_id, data.clone());
            }
            LeadEvent::Processed(data) => {
                assert_eq!(subject, None);
                assert_eq!(env.idempotency_key, format!("followup-run:{}", data.run_id));
                processed.push(data.clone());
            }
            LeadEvent::Changed(data) => {
                assert_eq!(subject, Some(data.lead_id.to_string()));
                assert_eq!(
                    env.idempotency_key,
                    format!("lead:{}:change:{}", data.lead_id, data.sequence),
                    "the relay derives the trigger's keys from lead and outbox id"
                );
            }
            other => panic!("unexpected event {other:?}"),
        }
    }
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[&t3].kind.as_str(), "t3");
    assert_eq!(sent[&t7].kind.as_str(), "t7");
    assert_eq!(processed.len(), 1, "one processed event");
    let p = &processed[0];
    assert_eq!(
        (p.t3_count, p.t7_count, p.skipped_count, p.error_count),
        (1, 1, 1, 0)
    );
    assert!(sent.values().all(|s| s.run_id == p.run_id));
}

#[tokio::test]
async fn two_run_once_processes_deliver_each_follow_up_once() {
    let db = TestDb::new().await;
    let nats = NatsServer::start();
    let now = Utc::now();
    for i in 0..300 {
        let spec = if i % 2 == 0 {
            LeadSpec::registered(now - Duration::days(4))
        } else {
            LeadSpec {
                t3_sent: true,
                ..LeadSpec::registered(now - Duration::days(9))
            }
        };
        insert_lead(&db.pool, &spec).await;
    }

    let (a, b) = tokio::join!(run_once_process(&db, &nats), run_once_process(&db, &nats));
    for out in [&a, &b] {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mails = |o: &Output| String::from_utf8_lossy(&o.stdout).lines().count();
    assert_eq!(
        mails(&a) + mails(&b),
        300,
        "every follow-up mailed exactly once across both processes"
    );

    let per_lead: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT lead_id, count(*) FROM followup_deliveries GROUP BY lead_id HAVING count(*) > 1",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert!(
        per_lead.is_empty(),
        "no lead got two follow-ups: {per_lead:?}"
    );
    let delivered: i64 =
        sqlx::query_scalar("SELECT count(*) FROM followup_deliveries WHERE status = 'sent'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(delivered, 300);

    let js = jetstream_for(&nats.url()).await;
    let events = stream_events(&js).await;
    let sent = events
        .iter()
        .filter(|e| e.event.event_type.as_str() == "lead.followup.sent.v1")
        .count();
    let processed = events
        .iter()
        .filter(|e| e.event.event_type.as_str() == "lead.followup.processed.v1")
        .count();
    assert_eq!(sent, 300, "one sent event per follow-up");
    assert_eq!(processed, 2, "each manual run reports itself");
}
