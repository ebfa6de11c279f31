//! No cross-user reads: a sales user tries every parameter, repetition, path variation and
//! `Last-Event-ID` trick to see another user's figures; each answer is either a JSON error or
//! their own (empty) figures, never someone else's.

use std::time::Duration;

use chrono::Utc;
use serde_json::Value;

use crate::support::{Auth, SseClient, Stack, insert_lead, token};

/// Paths (with query) a sales user `u3`, who owns nothing, tries on the JSON route.
const JSON_PATHS: &[&str] = &[
    "/api/followup/metrics?owner=u1",
    "/api/followup/metrics?owner=U1",
    "/api/followup/metrics?owner=u1%20",
    "/api/followup/metrics?owner=%20u1",
    "/api/followup/metrics?owner=u3&owner=u1",
    "/api/followup/metrics?owner=u1&owner=u3",
    "/api/followup/metrics?owner[]=u1",
    "/api/followup/metrics?owner%5B0%5D=u1",
    "/api/followup/metrics?Owner=u1",
    "/api/followup/metrics?OWNER=u1",
    "/api/followup/metrics?owner=u3%00u1",
    "/api/followup/metrics?owner=u3;owner=u1",
    "/api/followup/metrics?owner=u3%26owner%3Du1",
    "/api/followup/metrics?owner=*",
    "/api/followup/metrics?owner=%25",
    "/api/followup/metrics?owner=org",
    "/api/followup/metrics?owner=user:u1",
    "/api/followup/metrics?user=u1",
    "/api/followup/metrics?userId=u1",
    "/api/followup/metrics?user_id=u1",
    "/api/followup/metrics?sub=u1",
    "/api/followup/metrics?scope=user:u1",
    "/api/followup/metrics?scope=org",
    "/api/followup/metrics?org=true",
    "/api/followup/metrics?role=admin",
    "/api/followup/metrics?owner=u3&scope=org",
    "/api/followup/metrics/u1",
    "/api/followup/metrics/",
    "/api/followup/metrics;owner=u1",
    "/api/followup/metrics%3Fowner=u1",
    "/api/followup/u1/metrics",
    "/API/followup/metrics?owner=u1",
    "//api/followup/metrics?owner=u1",
    "/api/followup/metrics?owner=u1#owner=u3",
    "/api/followup/runs",
    "/api/followup/runs?owner=u1",
];

/// Queries tried on the stream, each also with the `Last-Event-ID` values below.
const SSE_QUERIES: &[&str] = &[
    "",
    "?owner=u1",
    "?owner=u3&owner=u1",
    "?user=u1",
    "?scope=org",
    "?scope=user:u1",
];

const LAST_EVENT_IDS: &[Option<&str>] = &[
    None,
    Some("user:u1"),
    Some("u1"),
    Some("org"),
    Some("0"),
    Some("-1"),
    Some("18446744073709551615"),
    Some("99999999999999999999999"),
    Some("1; owner=u1"),
];

/// An answer to `u3` must be an error or u3's own, empty figures.
fn check_own_or_error(what: &str, status: u16, body: Option<&Value>) {
    match status {
        200 => {
            let body = body.unwrap_or_else(|| panic!("{what}: JSON body"));
            assert_eq!(body["scope"], "user:u3", "{what}: {body}");
            assert_eq!(body["pendingT3"], 0, "{what}: {body}");
        }
        400 | 403 | 404 => {
            let body = body.unwrap_or_else(|| panic!("{what}: JSON error body"));
            assert!(
                ["bad_request", "forbidden", "not_found"]
                    .contains(&body["code"].as_str().unwrap_or("")),
                "{what}: {body}"
            );
            assert!(!body.to_string().contains("pendingT3"), "{what}: {body}");
        }
        other => panic!("{what}: unexpected status {other}: {body:?}"),
    }
}

#[tokio::test]
async fn a_sales_user_cannot_read_another_users_figures_by_any_parameter() {
    let stack = Stack::start().await;
    insert_lead(
        &stack.db.pool,
        "u1",
        &[],
        Utc::now() - chrono::Duration::days(1),
    )
    .await;
    let admin = token("boss", &["admin"]);
    // Control: the figures to steal exist.
    stack
        .wait_for_figures("/api/followup/metrics?owner=u1", &admin, |f| {
            f["pendingT3"] == 1
        })
        .await;
    let u3 = token("u3", &["sales"]);
    let cookie = format!("followup_session={u3}");

    for path in JSON_PATHS {
        for via_cookie in [false, true] {
            let mut request = stack.http.get(stack.url(path));
            request = if via_cookie {
                request.header("Cookie", &cookie)
            } else {
                request.bearer_auth(&u3)
            };
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let body: Option<Value> = response.json().await.ok();
            check_own_or_error(
                &format!("{path} (cookie: {via_cookie})"),
                status,
                body.as_ref(),
            );
        }
    }

    for query in SSE_QUERIES {
        for last_event_id in LAST_EVENT_IDS {
            let what = format!("SSE {query:?} Last-Event-ID {last_event_id:?}");
            let mut sse =
                SseClient::connect(&stack, query, Auth::Bearer(&u3), *last_event_id).await;
            if sse.status == 200 {
                let frame = sse
                    .next_event(Duration::from_secs(5))
                    .await
                    .unwrap_or_else(|| panic!("{what}: a first frame"));
                check_own_or_error(&what, 200, Some(&frame.json()));
            } else {
                check_own_or_error(&what, sse.status, sse.error.as_ref());
            }
        }
    }
}
