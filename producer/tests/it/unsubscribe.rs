//! The unsubscribe link: what the gateway route does (verify the signature, then withdraw consent
//! with a plain UPDATE), tested through the shared functions it calls.

use std::time::Duration;

use chrono::Utc;
use followup_contract::{UnsubscribeError, UnsubscribeParams, unsubscribe_url};
use followup_infra::{ConsentWithdrawal, withdraw_consent};
use followup_producer::{Delivery, ProducerMetrics, RetryPolicy};
use followup_testkit::{TestDb, eventually};
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::smtp_server::SmtpServer;
use crate::support::{
    MailLead, UNSUBSCRIBE_BASE_URL, UNSUBSCRIBE_SECRET, delivery_of, delivery_with,
    insert_mail_lead, run_with, smtp_mailer,
};

/// Exactly what the gateway's `/unsubscribe` route does with a request's query string.
async fn unsubscribe(pool: &PgPool, query: &str) -> Result<ConsentWithdrawal, UnsubscribeError> {
    let lead_id = UnsubscribeParams::from_query(query).verify(UNSUBSCRIBE_SECRET.as_bytes())?;
    Ok(withdraw_consent(pool, lead_id).await.expect("database"))
}

async fn lead_state(pool: &PgPool, id: i64) -> (Value, i64, i64) {
    sqlx::query_as(
        "SELECT metadata, version,
                (SELECT count(*) FROM followup_outbox
                 WHERE event_type = 'lead.changed.v1' AND subject = $1::text)
         FROM leads WHERE id = $1",
    )
    .bind(id)
    .fetch_one(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_tampered_link_is_refused_and_a_valid_one_withdraws_consent_for_the_next_run() {
    let db = TestDb::new().await;
    let smtp = SmtpServer::start();
    let delivery = delivery_with(smtp_mailer(&smtp.url()));
    let now = Utc::now();
    let at = now - chrono::Duration::days(4);
    let metadata = json!({ "emailConsent": true, "businessType": "HOTEL", "source": "fair" });
    let leaving = insert_mail_lead(
        &db.pool,
        &MailLead {
            metadata: metadata.clone(),
            ..MailLead::new("leaving@example.test", at)
        },
    )
    .await;
    let staying = insert_mail_lead(&db.pool, &MailLead::new("staying@example.test", at)).await;
    let report = run_with(&db.pool, &delivery, &ProducerMetrics::new(), now).await;
    assert_eq!(report.t3_count, 2);

    // The link as the lead received it (List-Unsubscribe header, same as in the footer).
    let mail = smtp
        .accepted()
        .into_iter()
        .find(|m| m["rcpt_tos"] == json!(["leaving@example.test"]))
        .unwrap();
    let link = mail["list_unsubscribe"]
        .as_str()
        .unwrap()
        .trim_matches(['<', '>'])
        .to_owned();
    assert!(link.starts_with(&format!(
        "{UNSUBSCRIBE_BASE_URL}/unsubscribe?lead={leaving}&sig="
    )));
    let query = link.split_once('?').unwrap().1.to_owned();
    let sig = query.split_once("&sig=").unwrap().1.to_owned();
    let before = lead_state(&db.pool, leaving).await;

    // Tampered links change nothing.
    let mut flipped = sig.clone().into_bytes();
    flipped[10] = if flipped[10] == b'a' { b'b' } else { b'a' };
    let flipped = String::from_utf8(flipped).unwrap();
    let foreign = unsubscribe_url(UNSUBSCRIBE_BASE_URL, b"someone else's secret!", leaving);
    for (bad, why) in [
        (
            format!("lead={staying}&sig={sig}"),
            UnsubscribeError::BadSignature,
        ),
        (
            format!("lead={leaving}&sig={flipped}"),
            UnsubscribeError::BadSignature,
        ),
        (
            format!("lead={leaving}&sig={}", &sig[..40]),
            UnsubscribeError::BadSignature,
        ),
        (
            foreign.split_once('?').unwrap().1.to_owned(),
            UnsubscribeError::BadSignature,
        ),
        (
            format!("lead={leaving}"),
            UnsubscribeError::MissingSignature,
        ),
        (
            format!("lead=x{leaving}&sig={sig}"),
            UnsubscribeError::BadLead,
        ),
    ] {
        assert_eq!(unsubscribe(&db.pool, &bad).await, Err(why), "{bad}");
    }
    assert_eq!(lead_state(&db.pool, leaving).await, before);
    assert_eq!(lead_state(&db.pool, staying).await.0["emailConsent"], true);

    // The valid link withdraws consent where the CRM looks for it (consent_revoked_at/_by, an
    // EMAIL OPT_OUT in lead_consent; metadata.emailConsent for older readers, other metadata
    // kept), increments the CRM's version, and the change stream says the lead is no longer
    // contactable.
    assert_eq!(
        unsubscribe(&db.pool, &query).await,
        Ok(ConsentWithdrawal::Withdrawn)
    );
    let (metadata_after, version, changes) = lead_state(&db.pool, leaving).await;
    let mut expected = metadata.clone();
    expected["emailConsent"] = json!(false);
    assert_eq!(metadata_after, expected);
    assert_eq!(version, before.1 + 1, "version incremented");
    assert!(changes > before.2, "the withdrawal is a change of the lead");
    let (revoked_by, revoked_at, opt_out, contactable): (
        Option<String>,
        Option<chrono::NaiveDateTime>,
        Option<String>,
        Value,
    ) = sqlx::query_as(
        "SELECT l.consent_revoked_by, l.consent_revoked_at,
                (SELECT status FROM lead_consent c WHERE c.lead_id = l.id AND c.channel = 'EMAIL'),
                (SELECT data -> 'contactable' FROM followup_outbox
                 WHERE subject = l.id::text AND event_type = 'lead.changed.v1'
                 ORDER BY id DESC LIMIT 1)
         FROM leads l WHERE l.id = $1",
    )
    .bind(leaving)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        revoked_by.as_deref(),
        Some(followup_infra::consent::REVOKED_BY)
    );
    let revoked_at = revoked_at.expect("consent_revoked_at set").and_utc();
    assert!(
        (revoked_at - chrono::Utc::now()).num_minutes().abs() < 5,
        "consent_revoked_at {revoked_at} holds UTC"
    );
    assert_eq!(opt_out.as_deref(), Some("OPT_OUT"));
    assert_eq!(contactable, json!(false));
    assert_eq!(
        unsubscribe(&db.pool, &query).await,
        Ok(ConsentWithdrawal::AlreadyWithdrawn),
        "a second click is harmless"
    );
    let gone = 987_654_321;
    let gone_query = unsubscribe_url(UNSUBSCRIBE_BASE_URL, UNSUBSCRIBE_SECRET.as_bytes(), gone);
    assert_eq!(
        unsubscribe(&db.pool, gone_query.split_once('?').unwrap().1).await,
        Ok(ConsentWithdrawal::UnknownLead)
    );

    // A week later both are due for their T+7: only the one who stayed gets it.
    let later = now + chrono::Duration::days(8);
    let report = run_with(&db.pool, &delivery, &ProducerMetrics::new(), later).await;
    assert_eq!((report.t7_count, report.skipped_count), (1, 1));
    assert_eq!(
        smtp.events_for("accepted", "leaving@example.test"),
        1,
        "T+3 only"
    );
    assert_eq!(smtp.events_for("accepted", "staying@example.test"), 2);
    assert_eq!(delivery_of(&db.pool, leaving, "t7").await, None);
}

#[tokio::test]
async fn consent_withdrawn_while_a_delivery_waits_for_its_retry_stops_it() {
    let db = TestDb::new().await;
    let smtp = SmtpServer::start();
    let delivery = Delivery {
        retry: RetryPolicy {
            base: Duration::from_millis(1500),
            max_delay: Duration::from_millis(1500),
            ..delivery_with(smtp_mailer(&smtp.url())).retry
        },
        ..delivery_with(smtp_mailer(&smtp.url()))
    };
    let now = Utc::now();
    let lead = insert_mail_lead(
        &db.pool,
        &MailLead::new("tempfail1-w@example.test", now - chrono::Duration::days(4)),
    )
    .await;
    let run = {
        let (pool, delivery) = (db.pool.clone(), delivery.clone());
        tokio::spawn(async move { run_with(&pool, &delivery, &ProducerMetrics::new(), now).await })
    };
    let answered = eventually(Duration::from_secs(20), || async {
        (smtp.events_for("tempfail", "tempfail1-w@example.test") == 1).then_some(())
    })
    .await;
    assert!(answered.is_some(), "first attempt answered 451");
    assert_eq!(
        withdraw_consent(&db.pool, lead).await.unwrap(),
        ConsentWithdrawal::Withdrawn,
        "no lock held on the lead while its delivery waits"
    );
    let report = tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (report.t3_count, report.skipped_count, report.error_count),
        (0, 1, 0)
    );
    assert_eq!(smtp.events_for("accepted", "tempfail1-w@example.test"), 0);
    assert_eq!(
        delivery_of(&db.pool, lead, "t3").await,
        None,
        "claim released"
    );
}
