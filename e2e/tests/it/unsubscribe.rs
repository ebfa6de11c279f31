//! The unsubscribe link of the follow-up e-mails, against the real gateway and producer.

use chrono::{Duration, Utc};
use followup_contract::unsubscribe_url;

use crate::browser::producer_run;
use crate::support::{Stack, insert_lead};

const UNSUBSCRIBE_SECRET: &str = "gateway-test-unsubscribe-secret";

async fn consent(stack: &Stack, lead: i64) -> Option<bool> {
    sqlx::query_scalar("SELECT (metadata ->> 'emailConsent')::bool FROM leads WHERE id = $1")
        .bind(lead)
        .fetch_one(&stack.db.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_signed_link_withdraws_consent_and_a_tampered_one_is_refused() {
    let stack =
        Stack::start_with(|c| c.unsubscribe_secret = Some(UNSUBSCRIBE_SECRET.to_owned())).await;
    let lead = insert_lead(&stack.db.pool, "u1", &[], Utc::now() - Duration::days(4)).await;
    let link = unsubscribe_url(&stack.url(""), UNSUBSCRIBE_SECRET.as_bytes(), lead);
    let other = unsubscribe_url(&stack.url(""), UNSUBSCRIBE_SECRET.as_bytes(), lead + 1);
    let foreign = unsubscribe_url(&stack.url(""), b"another secret of some length", lead);

    // Tampered: another lead's signature, another key, a flipped digit, no signature.
    let flipped = {
        let mut s = link.clone();
        let last = s.pop().unwrap();
        s.push(if last == '0' { '1' } else { '0' });
        s
    };
    let swapped = format!(
        "{}&sig={}",
        link.split("&sig=").next().unwrap(),
        other.split("&sig=").nth(1).unwrap()
    );
    for (bad, status) in [
        (swapped.as_str(), 403),
        (foreign.as_str(), 403),
        (flipped.as_str(), 403),
        (link.split("&sig=").next().unwrap(), 400),
    ] {
        let response = stack.http.post(bad).send().await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{bad}");
    }
    assert_eq!(
        consent(&stack, lead).await,
        Some(true),
        "refused links change nothing"
    );

    // GET (a mail scanner prefetching) shows the confirmation only.
    let page = stack.http.get(&link).send().await.unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert_eq!(page.headers()["cache-control"], "no-store");
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("<form method=\"post\">")
    );
    assert_eq!(
        consent(&stack, lead).await,
        Some(true),
        "GET does not unsubscribe"
    );

    // The button (or an RFC 8058 one-click POST) withdraws consent, idempotently.
    for _ in 0..2 {
        let done = stack
            .http
            .post(&link)
            .body("List-Unsubscribe=One-Click")
            .send()
            .await
            .unwrap();
        assert_eq!(done.status().as_u16(), 200);
    }
    assert_eq!(consent(&stack, lead).await, Some(false));

    // The next run skips the lead.
    let report = producer_run(&stack.db.pool).await;
    assert_eq!((report.t3_count, report.skipped_count), (0, 1));
}

#[tokio::test]
async fn without_a_configured_secret_the_route_says_so() {
    let stack = Stack::start().await;
    let link = unsubscribe_url(&stack.url(""), UNSUBSCRIBE_SECRET.as_bytes(), 1);
    let response = stack.http.post(&link).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 503);
}
