//! `MAILER=smtp` against a real SMTP server (aiosmtpd) started by each test: rendered content,
//! retries of 451, failure on 550, an outage in the middle of a run, crash recovery.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use followup_contract::{FollowupFailed, UnsubscribeParams};
use followup_infra::ensure_stream;
use followup_producer::relay::{RelayConfig, relay_pending};
use followup_producer::{Delivery, ProducerMetrics, RetryPolicy};
use followup_testkit::{NatsServer, TestDb, eventually};
use serde_json::{Value, json};

use crate::smtp_server::SmtpServer;
use crate::support::{
    MailLead, UNSUBSCRIBE_BASE_URL, UNSUBSCRIBE_SECRET, delivery_of, delivery_with,
    insert_mail_lead, jetstream_for, run_with, smtp_mailer,
};

fn utc(y: i32, m: u32, d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, 7, 0, 0).unwrap()
}

/// The accepted message to `rcpt`; panics unless there is exactly one.
fn only_message_to<'a>(accepted: &'a [Value], rcpt: &str) -> &'a Value {
    let found: Vec<&Value> = accepted
        .iter()
        .filter(|m| m["rcpt_tos"] == json!([rcpt]))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "exactly one message to {rcpt}: {accepted:#?}"
    );
    found[0]
}

/// The lead id an unsubscribe link verifies for, after checking its shape.
fn verified_link(url: &str) -> i64 {
    let (base, query) = url.split_once('?').expect("link with a query");
    assert_eq!(base, format!("{UNSUBSCRIBE_BASE_URL}/unsubscribe"));
    UnsubscribeParams::from_query(query)
        .verify(UNSUBSCRIBE_SECRET.as_bytes())
        .expect("a valid signature")
}

#[tokio::test]
async fn a_run_delivers_the_rendered_follow_ups() {
    let db = TestDb::new().await;
    let smtp = SmtpServer::start();
    let delivery = delivery_with(smtp_mailer(&smtp.url()));
    // Clocks ahead of the real one (deliveries are stamped with the later of both).
    let april = utc(2027, 4, 15);
    // Registered now: the CRM refuses a registration in the future.
    let registered = chrono::Utc::now();
    // (lead, discount, minimum) for each business type, the column or metadata deciding.
    let cases = [
        (
            MailLead {
                company: "Restaurant Koch",
                contact: Some("Frau Koch"),
                ..MailLead::new("koch@restaurant.test", registered)
            },
            15,
            500,
        ),
        (
            MailLead {
                company: "Hotel Alpenblick AG",
                contact: None,
                business_type: Some("HOTEL"),
                territory: "CH",
                ..MailLead::new("info@alpenblick.test", registered)
            },
            20,
            1000,
        ),
        (
            MailLead {
                company: "Werkskantine Nord",
                business_type: Some("KANTINE"),
                ..MailLead::new("kantine@nord.test", registered)
            },
            25,
            2000,
        ),
        (
            MailLead {
                company: "Catering Süd",
                business_type: Some("CATERING"),
                ..MailLead::new("catering@sued.test", registered)
            },
            10,
            300,
        ),
        (
            MailLead {
                company: "Betriebsrestaurant Ost",
                business_type: None,
                metadata: json!({ "emailConsent": true, "businessType": "KANTINE" }),
                ..MailLead::new("ost@kantine.test", registered)
            },
            25,
            2000,
        ),
        (
            MailLead {
                company: "Bäckerei Brot",
                business_type: Some("SONSTIGES"),
                ..MailLead::new("brot@baeckerei.test", registered)
            },
            10,
            250,
        ),
    ];
    let mut ids = Vec::new();
    for (lead, _, _) in &cases {
        ids.push(insert_mail_lead(&db.pool, lead).await);
    }
    insert_mail_lead(
        &db.pool,
        &MailLead {
            metadata: json!({ "emailConsent": false }),
            ..MailLead::new("no-consent@example.test", registered)
        },
    )
    .await;

    let report = run_with(&db.pool, &delivery, &ProducerMetrics::new(), april).await;
    assert_eq!(
        (
            report.t3_count,
            report.t7_count,
            report.skipped_count,
            report.error_count
        ),
        (6, 0, 1, 0)
    );
    let accepted = smtp.accepted();
    assert_eq!(accepted.len(), 6, "one message per lead with consent");
    for ((lead, discount, minimum), id) in cases.iter().zip(&ids) {
        let m = only_message_to(&accepted, lead.email);
        assert_eq!(m["mail_from"], "followup@freshplan.test");
        assert_eq!(m["to"], lead.email);
        assert_eq!(
            m["subject"],
            format!("Ihre kostenlosen Produktproben für {}", lead.company)
        );
        assert_eq!(
            m["message_id"],
            format!("<followup-{id}-t3@freshplan.leads>")
        );
        assert_eq!(
            (m["content_type"].as_str(), m["charset"].as_str()),
            (Some("text/plain"), Some("utf-8"))
        );
        let body = m["body"].as_str().unwrap();
        match lead.contact {
            Some(name) => assert!(body.starts_with(&format!("Guten Tag {name},\n")), "{body}"),
            None => assert!(body.starts_with("Guten Tag,\n"), "{body}"),
        }
        assert!(
            body.contains(&format!(
                "Als Neukunde erhalten Sie {discount} % Rabatt ab einem Mindestbestellwert von {minimum} EUR."
            )),
            "{}: {body}",
            lead.company
        );
        assert!(
            body.contains("Aktuell empfehlen wir: Spargel-Spezialitäten und Frühlingsmenüs."),
            "April is asparagus season: {body}"
        );
        if lead.territory == "CH" {
            assert!(body.contains("FreshPlan (Schweiz) AG") && body.contains("CHE-000.000.000"));
            assert!(body.contains("Mit freundlichen Grüssen"));
            assert!(!body.contains("Amtsgericht"));
        } else {
            assert!(body.contains("FreshPlan GmbH") && body.contains("Amtsgericht"));
            assert!(body.contains("Mit freundlichen Grüßen"));
        }
        // The link in the footer and in the List-Unsubscribe header: the same, signed for
        // this lead.
        let link = body
            .lines()
            .find_map(|l| l.strip_prefix("Keine weiteren E-Mails: "))
            .expect("unsubscribe line in the footer");
        assert_eq!(verified_link(link), *id);
        assert_eq!(m["list_unsubscribe"], format!("<{link}>"));
        assert_eq!(m["list_unsubscribe_post"], "List-Unsubscribe=One-Click");
        assert_eq!(
            delivery_of(&db.pool, *id, "t3").await,
            Some(("sent".into(), 1, None))
        );
    }

    // October: their T+7, with the Oktoberfest line and its own Message-ID.
    let october = utc(2027, 10, 12);
    let report = run_with(&db.pool, &delivery, &ProducerMetrics::new(), october).await;
    assert_eq!((report.t3_count, report.t7_count), (0, 6));
    let accepted = smtp.accepted();
    assert_eq!(accepted.len(), 12);
    for ((lead, discount, minimum), id) in cases.iter().zip(&ids) {
        let t7: Vec<&Value> = accepted
            .iter()
            .filter(|m| m["message_id"] == format!("<followup-{id}-t7@freshplan.leads>"))
            .collect();
        assert_eq!(t7.len(), 1);
        let m = t7[0];
        assert_eq!(m["rcpt_tos"], json!([lead.email]));
        assert_eq!(
            m["subject"],
            format!("Wie können wir {} unterstützen?", lead.company)
        );
        let body = m["body"].as_str().unwrap();
        assert!(body.contains(&format!(
            "{discount} % Rabatt ab {minimum} EUR Mindestbestellwert"
        )));
        assert!(
            body.contains("Passend zur Saison: Oktoberfest-Spezialitäten."),
            "{body}"
        );
    }
    let pending: i64 =
        sqlx::query_scalar("SELECT count(*) FROM followup_deliveries WHERE status = 'pending'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(pending, 0, "no claim outlives its run");
}

#[tokio::test]
async fn temporary_failures_are_retried_and_permanent_ones_fail_once() {
    let db = TestDb::new().await;
    let smtp = SmtpServer::start();
    let delivery = delivery_with(smtp_mailer(&smtp.url()));
    let metrics = ProducerMetrics::new();
    let now = Utc::now();
    let at = now - chrono::Duration::days(4);
    let retried = insert_mail_lead(&db.pool, &MailLead::new("tempfail2-a@example.test", at)).await;
    let rejected = insert_mail_lead(&db.pool, &MailLead::new("reject-b@example.test", at)).await;
    let exhausted =
        insert_mail_lead(&db.pool, &MailLead::new("tempfail99-c@example.test", at)).await;
    let fine = insert_mail_lead(&db.pool, &MailLead::new("fine-d@example.test", at)).await;

    let report = run_with(&db.pool, &delivery, &metrics, now).await;
    assert_eq!((report.t3_count, report.error_count), (2, 2));

    // 451 twice, then 250: delivered once, after two retries.
    assert_eq!(smtp.events_for("tempfail", "tempfail2-a@example.test"), 2);
    assert_eq!(smtp.events_for("accepted", "tempfail2-a@example.test"), 1);
    assert_eq!(
        delivery_of(&db.pool, retried, "t3").await,
        Some(("sent".into(), 3, None))
    );
    assert_eq!(smtp.events_for("accepted", "fine-d@example.test"), 1);
    assert_eq!(
        delivery_of(&db.pool, fine, "t3").await,
        Some(("sent".into(), 1, None))
    );

    // 550: one attempt, failed record and event, lead not marked sent.
    assert_eq!(smtp.events_for("rejected", "reject-b@example.test"), 1);
    assert_eq!(smtp.events_for("accepted", "reject-b@example.test"), 0);
    let (status, attempts, reason) = delivery_of(&db.pool, rejected, "t3").await.unwrap();
    assert_eq!((status.as_str(), attempts), ("failed", 1));
    assert!(reason.as_deref().unwrap().contains("550"), "{reason:?}");
    // The server quoted the recipient; no personal data is stored or published.
    assert!(!reason.as_deref().unwrap().contains('@'), "{reason:?}");

    // 451 for ever: gives up after SMTP_MAX_ATTEMPTS (5).
    assert_eq!(smtp.events_for("tempfail", "tempfail99-c@example.test"), 5);
    let (status, attempts, reason) = delivery_of(&db.pool, exhausted, "t3").await.unwrap();
    assert_eq!((status.as_str(), attempts), ("failed", 5));
    assert!(reason.as_deref().unwrap().contains("451"), "{reason:?}");

    for (id, sent) in [
        (retried, true),
        (fine, true),
        (rejected, false),
        (exhausted, false),
    ] {
        let (flag, activities): (bool, i64) = sqlx::query_as(
            "SELECT t3_followup_sent, (SELECT count(*) FROM lead_activities WHERE lead_id = $1)
             FROM leads WHERE id = $1",
        )
        .bind(id)
        .fetch_one(&db.pool)
        .await
        .unwrap();
        assert_eq!((flag, activities), (sent, sent as i64), "lead {id}");
    }
    let failed: Vec<(String, Value)> = sqlx::query_as(
        "SELECT idempotency_key, data FROM followup_outbox
         WHERE event_type = 'lead.followup.failed.v1' ORDER BY subject::bigint",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(failed.len(), 2);
    assert_eq!(failed[0].0, format!("lead:{rejected}:followup:t3:failed"));
    let event: FollowupFailed = serde_json::from_value(failed[0].1.clone()).unwrap();
    assert_eq!((event.lead_id, event.attempts), (rejected, 1));
    assert!(event.reason.contains("550") && !event.reason.contains("reject-b"));
    let event: FollowupFailed = serde_json::from_value(failed[1].1.clone()).unwrap();
    assert_eq!((event.lead_id, event.attempts), (exhausted, 5));
    let sent_events: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM followup_outbox WHERE event_type = 'lead.followup.sent.v1'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        sent_events, 2,
        "nothing recorded sent that the server did not accept"
    );
    assert_eq!(metrics.errors.get(), 2, "followup_errors_total");
    assert_eq!(
        metrics
            .delivery_retries
            .with_label_values(&["temporary"])
            .get(),
        2 + 4
    );

    // A later run leaves the failed follow-ups alone: each kind at most once.
    let again = run_with(
        &db.pool,
        &delivery,
        &metrics,
        now + chrono::Duration::hours(1),
    )
    .await;
    assert_eq!((again.t3_count, again.error_count), (0, 0));
    assert_eq!(smtp.events_for("rejected", "reject-b@example.test"), 1);

    // Relayed, the failed events are on the stream (and, as every event a test publishes, they
    // are checked against the catalog nats/asyncapi.json when the server stops).
    let nats = NatsServer::start();
    let js = jetstream_for(&nats.url()).await;
    ensure_stream(&js).await.unwrap();
    relay_pending(&db.pool, &js, &RelayConfig::default(), &metrics)
        .await
        .unwrap();
    let checked = nats.assert_stream_matches_catalog();
    assert_eq!(
        checked.get("lead.followup.failed.v1"),
        Some(&2),
        "{checked:?}"
    );
}

#[tokio::test]
async fn an_smtp_outage_during_a_run_delays_deliveries_and_loses_none() {
    let db = TestDb::new().await;
    let mut smtp = SmtpServer::start();
    // Retries after 1 s: long enough to take the server away while some deliveries wait.
    let delivery = Delivery {
        retry: RetryPolicy {
            base: Duration::from_millis(1000),
            max_attempts: 5,
            max_delay: Duration::from_millis(1000),
            concurrency: 4,
        },
        ..delivery_with(smtp_mailer(&smtp.url()))
    };
    let metrics = ProducerMetrics::new();
    let now = Utc::now();
    let at = now - chrono::Duration::days(4);
    const EMAILS: [&str; 12] = [
        "a1@example.test",
        "tempfail1-a2@example.test",
        "a3@example.test",
        "tempfail1-a4@example.test",
        "a5@example.test",
        "tempfail1-a6@example.test",
        "a7@example.test",
        "tempfail1-a8@example.test",
        "a9@example.test",
        "tempfail1-a10@example.test",
        "a11@example.test",
        "tempfail1-a12@example.test",
    ];
    let mut ids = HashMap::new();
    for email in EMAILS {
        ids.insert(
            insert_mail_lead(&db.pool, &MailLead::new(email, at)).await,
            email,
        );
    }

    let run = {
        let (pool, delivery, metrics) = (db.pool.clone(), delivery.clone(), metrics.clone());
        tokio::spawn(async move { run_with(&pool, &delivery, &metrics, now).await })
    };
    // The six plain ones go through; the six tempfail ones got 451 and wait a second.
    let first = eventually(Duration::from_secs(20), || async {
        let n = smtp.accepted().len();
        let t = smtp
            .events()
            .iter()
            .filter(|e| e["event"] == "tempfail")
            .count();
        (n == 6 && t == 6).then_some(())
    })
    .await;
    assert!(first.is_some(), "first attempts: {:#?}", smtp.events());
    smtp.stop();

    // The retries find no server: the deliveries wait, the run does not end.
    let waiting = eventually(Duration::from_secs(20), || async {
        (metrics.mailer_unavailable.get() == 1).then_some(())
    })
    .await;
    assert!(waiting.is_some(), "deliveries notice the outage");
    assert!(!run.is_finished(), "run-once waits for its deliveries");
    let (pending, sent): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE status = 'pending'), count(*) FILTER (WHERE status = 'sent')
         FROM followup_deliveries",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        (pending, sent),
        (6, 6),
        "claims held, accepted ones recorded already"
    );
    // No row lock on a waiting lead: the CRM edits it without waiting for the mail server.
    let waiting_lead = *ids
        .iter()
        .find(|(_, e)| e.starts_with("tempfail"))
        .unwrap()
        .0;
    let mut tx = db.pool.begin().await.unwrap();
    sqlx::query("SET LOCAL lock_timeout = '1s'")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query(
        "UPDATE leads SET contact_person = 'Herr Neu', version = version + 1 WHERE id = $1",
    )
    .bind(waiting_lead)
    .execute(&mut *tx)
    .await
    .expect("a waiting delivery holds no lock on its lead");
    tx.commit().await.unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(!run.is_finished());

    smtp.restart();
    let report = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("the run ends once the server is back")
        .unwrap();
    assert_eq!((report.t3_count, report.error_count), (12, 0));
    assert_eq!(metrics.mailer_unavailable.get(), 0);
    // One probe per wait (about four waits in this outage), not one attempt per waiting delivery
    // and wait (six each time): at most the deliveries already under way join the first probe.
    let refused = metrics
        .delivery_retries
        .with_label_values(&["unavailable"])
        .get();
    assert!(
        (1..=12).contains(&refused),
        "connection attempts during the outage: {refused}"
    );
    let accepted = smtp.accepted();
    assert_eq!(
        accepted.len(),
        12,
        "every follow-up delivered once: {accepted:#?}"
    );
    for (id, email) in &ids {
        let m = only_message_to(&accepted, email);
        assert_eq!(
            m["message_id"],
            format!("<followup-{id}-t3@freshplan.leads>")
        );
        // Refused connections are not attempts: 451 once, then accepted.
        let attempts = if email.starts_with("tempfail") { 2 } else { 1 };
        assert_eq!(
            delivery_of(&db.pool, *id, "t3").await,
            Some(("sent".into(), attempts, None)),
            "{email}"
        );
    }
}

#[tokio::test]
async fn a_crashed_runs_claims_are_sent_again_with_the_same_message_id() {
    let db = TestDb::new().await;
    let smtp = SmtpServer::start();
    let delivery = delivery_with(smtp_mailer(&smtp.url()));
    let now = Utc::now();
    let at = now - chrono::Duration::days(4);
    let orphaned = insert_mail_lead(&db.pool, &MailLead::new("orphan@example.test", at)).await;
    let busy = insert_mail_lead(&db.pool, &MailLead::new("busy@example.test", at)).await;
    // A run that crashed an hour ago holding a claim, and a live one (fresh heartbeat).
    for (lead, heartbeat) in [(orphaned, "now() - interval '1 hour'"), (busy, "now()")] {
        let run_id = uuid::Uuid::new_v4();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO followup_runs (run_id, run_key, trigger, heartbeat_at)
             VALUES ($1, 'followup-run:' || $1, 'manual', {heartbeat})"
        )))
        .bind(run_id)
        .execute(&db.pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO followup_deliveries (lead_id, kind, status, run_id, attempts, message_id, delivered_at)
             VALUES ($1, 't3', 'pending', $2, 0, $3, now())",
        )
        .bind(lead)
        .bind(run_id)
        .bind(format!("<followup-{lead}-t3@freshplan.leads>"))
        .execute(&db.pool)
        .await
        .unwrap();
    }

    let report = run_with(&db.pool, &delivery, &ProducerMetrics::new(), now).await;
    assert_eq!(
        report.t3_count, 1,
        "the stale claim is taken over, the live one is not"
    );
    let accepted = smtp.accepted();
    assert_eq!(accepted.len(), 1);
    assert_eq!(accepted[0]["rcpt_tos"], json!(["orphan@example.test"]));
    assert_eq!(
        accepted[0]["message_id"],
        format!("<followup-{orphaned}-t3@freshplan.leads>"),
        "a resend carries the Message-ID the crashed run used"
    );
    assert_eq!(
        delivery_of(&db.pool, orphaned, "t3").await,
        Some(("sent".into(), 1, None))
    );
    assert_eq!(
        delivery_of(&db.pool, busy, "t3").await.map(|d| d.0),
        Some("pending".into()),
        "a live run's claim is left alone"
    );
}

async fn producer_run_once(envs: &[(&str, String)]) -> std::process::Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_followup-producer"));
    cmd.arg("run-once").env("RUST_LOG", "warn");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().await.expect("spawn followup-producer")
}

#[tokio::test]
async fn run_once_with_mailer_smtp_delivers_and_refuses_bad_settings_at_start_up() {
    let db = TestDb::new().await;
    let nats = followup_testkit::NatsServer::start();
    let smtp = SmtpServer::start();
    let now = Utc::now();
    let id = insert_mail_lead(
        &db.pool,
        &MailLead::new("run-once@example.test", now - chrono::Duration::days(4)),
    )
    .await;
    let base = [
        ("DATABASE_URL", db.url.clone()),
        ("NATS_URL", nats.url()),
        ("MAILER", "smtp".to_owned()),
        ("SMTP_URL", smtp.url()),
        ("SMTP_FROM", "Vertrieb <vertrieb@freshplan.test>".to_owned()),
        ("SMTP_RETRY_BASE_MS", "50".to_owned()),
        ("UNSUBSCRIBE_BASE_URL", UNSUBSCRIBE_BASE_URL.to_owned()),
        ("UNSUBSCRIBE_SECRET", UNSUBSCRIBE_SECRET.to_owned()),
    ];
    let with = |extra: &[(&'static str, String)], without: &str| {
        let mut envs: Vec<(&str, String)> = base
            .iter()
            .filter(|(k, _)| *k != without)
            .cloned()
            .collect();
        envs.extend(extra.iter().cloned());
        envs
    };

    // Refused before anything is claimed: missing secret, a template with an unknown field.
    let out = producer_run_once(&with(&[], "UNSUBSCRIBE_SECRET")).await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("MAILER=smtp needs UNSUBSCRIBE_SECRET"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "t3_sample_request.subject.txt",
        "t3_sample_request.body.txt",
        "t7_followup.subject.txt",
        "t7_followup.body.txt",
        "footer_de.txt",
        "footer_ch.txt",
    ] {
        let text = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../templates")
                .join(name),
        )
        .unwrap();
        let text = if name == "t7_followup.body.txt" {
            text.replace("{{ company }}", "{{ firmenname }}")
        } else {
            text
        };
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let out = producer_run_once(&with(
        &[("FOLLOWUP_TEMPLATE_DIR", dir.path().display().to_string())],
        "",
    ))
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("t7_followup.body.txt") && stderr.contains("`firmenname`"),
        "{stderr}"
    );
    assert!(
        smtp.accepted().is_empty(),
        "nothing sent by a refused start"
    );

    let out = producer_run_once(&with(&[], "")).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let accepted = smtp.accepted();
    assert_eq!(accepted.len(), 1);
    assert_eq!(accepted[0]["from"], "Vertrieb <vertrieb@freshplan.test>");
    assert_eq!(
        accepted[0]["message_id"],
        format!("<followup-{id}-t3@freshplan.leads>")
    );
    assert_eq!(
        verified_link(
            accepted[0]["list_unsubscribe"]
                .as_str()
                .unwrap()
                .trim_matches(['<', '>'])
        ),
        id
    );
    assert_eq!(
        delivery_of(&db.pool, id, "t3").await,
        Some(("sent".into(), 1, None))
    );
}

#[tokio::test]
async fn shutdown_while_the_server_is_down_leaves_the_follow_ups_due() {
    let db = TestDb::new().await;
    let mut smtp = SmtpServer::start();
    smtp.stop();
    let delivery = delivery_with(smtp_mailer(&smtp.url()));
    let metrics = ProducerMetrics::new();
    let now = Utc::now();
    let at = now - chrono::Duration::days(4);
    let a = insert_mail_lead(&db.pool, &MailLead::new("a@example.test", at)).await;
    let b = insert_mail_lead(&db.pool, &MailLead::new("b@example.test", at)).await;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let request = followup_producer::RunRequest {
        trigger: followup_producer::RunTrigger::Manual,
        now,
        tz: chrono_tz::Europe::Berlin,
        batch_size: 10,
    };
    let run = {
        let (pool, delivery, metrics, shutdown) = (
            db.pool.clone(),
            delivery.clone(),
            metrics.clone(),
            shutdown.clone(),
        );
        tokio::spawn(async move {
            followup_producer::execute_run(&pool, &delivery, &metrics, &request, &shutdown).await
        })
    };
    let waiting = eventually(Duration::from_secs(20), || async {
        (metrics.mailer_unavailable.get() == 1).then_some(())
    })
    .await;
    assert!(waiting.is_some());
    shutdown.cancel();
    let outcome = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("shutdown ends the wait")
        .unwrap()
        .unwrap();
    let followup_producer::RunOutcome::Completed(report) = outcome else {
        panic!("manual run")
    };
    assert_eq!((report.t3_count, report.error_count), (0, 0));
    for id in [a, b] {
        assert_eq!(
            delivery_of(&db.pool, id, "t3").await,
            None,
            "claim released"
        );
    }

    // The next run, server back, delivers both.
    smtp.restart();
    let report = run_with(&db.pool, &delivery, &ProducerMetrics::new(), now).await;
    assert_eq!(report.t3_count, 2);
    assert_eq!(smtp.accepted().len(), 2);
}
