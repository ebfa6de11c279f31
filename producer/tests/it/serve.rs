//! `serve`: the scheduler fires runs, the relay publishes them, the ops endpoints answer.

use std::time::Duration;

use chrono::Utc;
use clap::Parser;
use followup_producer::{Cli, run_until_stopped};
use followup_testkit::{NatsServer, TestDb, eventually, http_get};
use tokio_util::sync::CancellationToken;

use crate::support::{LeadSpec, insert_lead, jetstream_for, stream_events};

/// `followup-producer serve` in-process with `cron`, its ops endpoints on a free port.
async fn start_serve(
    db: &TestDb,
    nats: &NatsServer,
    cron: &str,
) -> (
    std::net::SocketAddr,
    CancellationToken,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let cli = Cli::try_parse_from([
        "followup-producer",
        "--database-url",
        &db.url,
        "--nats-url",
        &nats.url(),
        "--followup-cron",
        cron,
        "serve",
    ])
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(run_until_stopped(cli.config, listener, shutdown.clone()));
    (addr, shutdown, server)
}

#[tokio::test]
async fn serve_runs_on_schedule_relays_and_reports_metrics() {
    let db = TestDb::new().await;
    let nats = NatsServer::start();
    for _ in 0..3 {
        insert_lead(
            &db.pool,
            &LeadSpec::registered(Utc::now() - chrono::Duration::days(4)),
        )
        .await;
    }
    let (addr, shutdown, server) = start_serve(&db, &nats, "*/2 * * * * *").await;

    let js = jetstream_for(&nats.url()).await;
    let sent = eventually(Duration::from_secs(30), || async {
        let Ok(_) = js.get_stream("FOLLOWUP").await else {
            return None;
        };
        let events = stream_events(&js).await;
        let n = events
            .iter()
            .filter(|e| e.event.event_type.as_str() == "lead.followup.sent.v1")
            .count();
        (n == 3).then_some(n)
    })
    .await;
    assert_eq!(
        sent,
        Some(3),
        "a scheduled run delivered and the relay published"
    );

    let ready = eventually(Duration::from_secs(10), || async {
        let (status, _) = http_get(addr, "/readyz").await.ok()?;
        (status == 200).then_some(())
    })
    .await;
    assert!(
        ready.is_some(),
        "/readyz turns 200 with database and NATS up"
    );
    // The relay may publish a recorded batch's events before the run counts them: wait for it.
    let counted = eventually(Duration::from_secs(10), || async {
        let (status, body) = http_get(addr, "/metrics").await.ok()?;
        (status == 200 && body.contains(r#"followup_processed_total{kind="t3",type="email"} 3"#))
            .then_some(body)
    })
    .await;
    let (status, body) = http_get(addr, "/metrics").await.unwrap();
    assert!(counted.is_some(), "{body}");
    assert_eq!(status, 200);
    assert!(body.contains("followup_processing_duration_seconds_count"));
    assert!(body.contains("followup_relay_published_total"));
    // The relay's time per stage: each stage of a published batch has counted some.
    for stage in ["read", "encode", "publish", "ack_wait", "delete"] {
        let line = body
            .lines()
            .find(|l| {
                l.starts_with(&format!(
                    "followup_relay_stage_seconds_total{{stage=\"{stage}\"}}"
                ))
            })
            .unwrap_or_else(|| panic!("stage {stage} in {body}"));
        let seconds: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(seconds > 0.0, "{line}");
    }
    assert!(body.contains("followup_outbox_backlog"));

    // Several slots fired by now; the runs table holds one row per slot.
    let dup_slots: i64 =
        sqlx::query_scalar("SELECT count(*) - count(DISTINCT run_key) FROM followup_runs")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(dup_slots, 0);

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(15), server)
        .await
        .expect("serve stops on shutdown")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn serve_started_while_nats_is_down_runs_and_catches_up() {
    let db = TestDb::new().await;
    let mut nats = NatsServer::start();
    nats.stop();
    for _ in 0..2 {
        insert_lead(
            &db.pool,
            &LeadSpec::registered(Utc::now() - chrono::Duration::days(4)),
        )
        .await;
    }
    let (addr, shutdown, server) = start_serve(&db, &nats, "* * * * * *").await;

    let delivered = eventually(Duration::from_secs(20), || async {
        let n: i64 =
            sqlx::query_scalar("SELECT count(*) FROM followup_deliveries WHERE status = 'sent'")
                .fetch_one(&db.pool)
                .await
                .ok()?;
        (n == 2).then_some(())
    })
    .await;
    assert!(delivered.is_some(), "runs go on without NATS");
    let (status, body) = http_get(addr, "/readyz").await.unwrap();
    assert_eq!(status, 503);
    assert!(
        body.contains("nats"),
        "readiness names the missing dependency: {body}"
    );

    nats.restart();
    let js = jetstream_for(&nats.url()).await;
    let sent = eventually(Duration::from_secs(40), || async {
        let Ok(_) = js.get_stream("FOLLOWUP").await else {
            return None;
        };
        let n = stream_events(&js)
            .await
            .iter()
            .filter(|e| e.event.event_type.as_str() == "lead.followup.sent.v1")
            .count();
        (n == 2).then_some(())
    })
    .await;
    assert!(
        sent.is_some(),
        "the relay connected later and published the backlog"
    );
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(15), server)
        .await
        .expect("stops")
        .unwrap()
        .unwrap();
}

/// A probe already waiting when the process starts (in the listen backlog: the binary binds
/// before it serves) must not be told "ready" before database and NATS answer. The binary did
/// (200, then 503: the ops server started before the checks were registered); in process the
/// race is rarely lost, so `followup_infra::ops` also has a deterministic unit test.
#[tokio::test]
async fn readyz_is_not_200_before_database_and_nats_answer() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let nowhere = format!("127.0.0.1:{}", followup_testkit::free_port());
    let cli = Cli::try_parse_from([
        "followup-producer",
        "--database-url",
        &format!("postgres://postgres@{nowhere}/none"),
        "--nats-url",
        &format!("nats://{nowhere}"),
        "serve",
    ])
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut probe = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    probe
        .write_all(b"GET /readyz HTTP/1.1\r\nHost: producer\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(run_until_stopped(cli.config, listener, shutdown.clone()));
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(10), probe.read_to_string(&mut answer))
        .await
        .expect("an answer")
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
}
