//! The gateway's limits (issue 14): CORS for an allow-list of origins, caps on open SSE streams
//! per user and per gateway, the request-header timeout and `/metrics` on a listener of its own.

use std::time::{Duration, Instant};

use followup_testkit::eventually;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{Auth, SseClient, Stack, token};

const CRM: &str = "https://crm.example.com";

/// GET `path` as a page of `origin` would send it, with `bearer`.
async fn get_from(stack: &Stack, path: &str, origin: &str, bearer: &str) -> reqwest::Response {
    stack
        .http
        .get(stack.url(path))
        .header("Origin", origin)
        .bearer_auth(bearer)
        .send()
        .await
        .unwrap()
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn listed_origins_get_cors_headers_and_others_none() {
    let stack =
        Stack::start_with(|c| c.cors_origins = format!("{CRM}, http://localhost:5173")).await;
    let admin = token("boss", &["admin"]);

    // A listed origin: allowed, with credentials, varying on Origin.
    let response = get_from(&stack, "/api/followup/metrics", CRM, &admin).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "access-control-allow-origin"), Some(CRM));
    assert_eq!(
        header(&response, "access-control-allow-credentials"),
        Some("true")
    );
    let vary: Vec<_> = response.headers().get_all("vary").iter().collect();
    assert!(
        vary.iter()
            .any(|v| v.to_str().unwrap().to_ascii_lowercase().contains("origin")),
        "{vary:?}"
    );

    // Its preflight, for both stream paths: what EventSource with a token and a Last-Event-ID sends.
    for path in [
        "/api/dashboard/followup-stream",
        "/metrics/followup/stream",
        "/metrics/followup",
    ] {
        let response = stack
            .http
            .request(reqwest::Method::OPTIONS, stack.url(path))
            .header("Origin", CRM)
            .header("Access-Control-Request-Method", "GET")
            .header(
                "Access-Control-Request-Headers",
                "authorization,last-event-id",
            )
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        assert_eq!(header(&response, "access-control-allow-origin"), Some(CRM));
        assert_eq!(
            header(&response, "access-control-allow-credentials"),
            Some("true")
        );
        assert!(
            header(&response, "access-control-allow-methods")
                .unwrap()
                .contains("GET")
        );
        let allowed = header(&response, "access-control-allow-headers")
            .unwrap()
            .to_ascii_lowercase();
        for needed in ["authorization", "last-event-id", "content-type"] {
            assert!(allowed.contains(needed), "{path}: {allowed}");
        }
    }

    // A stream from the listed origin carries the header too.
    let response = get_from(&stack, "/api/dashboard/followup-stream", CRM, &admin).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "access-control-allow-origin"), Some(CRM));
    drop(response);

    // Another origin: no CORS header at all, on GET and on the preflight.
    for evil in [
        "https://evil.example.com",
        "https://crm.example.com.evil.net",
        "null",
    ] {
        let response = get_from(&stack, "/api/followup/metrics", evil, &admin).await;
        for name in [
            "access-control-allow-origin",
            "access-control-allow-credentials",
        ] {
            assert_eq!(header(&response, name), None, "{evil}: {name}");
        }
        let response = stack
            .http
            .request(
                reqwest::Method::OPTIONS,
                stack.url("/api/dashboard/followup-stream"),
            )
            .header("Origin", evil)
            .header("Access-Control-Request-Method", "GET")
            .header("Access-Control-Request-Headers", "authorization")
            .send()
            .await
            .unwrap();
        assert!(!response.status().is_success(), "{evil}");
        for name in [
            "access-control-allow-origin",
            "access-control-allow-credentials",
            "access-control-allow-methods",
            "access-control-allow-headers",
        ] {
            assert_eq!(header(&response, name), None, "{evil} preflight: {name}");
        }
    }
}

async fn sse_gauge(stack: &Stack) -> Option<f64> {
    let text = stack
        .http
        .get(stack.url("/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("followup_sse_clients "))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test]
async fn streams_are_capped_per_user_and_per_gateway() {
    let stack = Stack::start_with(|c| {
        c.sse_max_connections = 3;
        c.sse_max_connections_per_user = 2;
        c.sse_heartbeat_ms = 100;
    })
    .await;
    let boss = token("boss", &["admin"]);
    let first = SseClient::connect(&stack, "", Auth::Bearer(&boss), None).await;
    let second = SseClient::connect(&stack, "", Auth::Bearer(&boss), None).await;
    assert_eq!((first.status, second.status), (200, 200));

    // The user's third: 429 with Retry-After and the JSON error body.
    let third = SseClient::connect(&stack, "", Auth::Bearer(&boss), None).await;
    assert_eq!(third.status, 429);
    assert!(
        third
            .retry_after
            .as_deref()
            .is_some_and(|s| s.parse::<u64>().is_ok())
    );
    let error = third.error.expect("JSON body");
    assert_eq!(error["code"], "too_many_requests", "{error}");
    assert!(error["detail"].as_str().is_some_and(|d| !d.is_empty()));
    // Also on the CRM's stream path: the cap is per user, not per route.
    let crm_path = SseClient::connect_at(
        &stack,
        "/metrics/followup/stream",
        "",
        Auth::Bearer(&boss),
        None,
    )
    .await;
    assert_eq!(crm_path.status, 429);

    // Another user fills the gateway; the next one gets 503.
    let other = token("u2", &["sales"]);
    let other_stream = SseClient::connect(&stack, "", Auth::Bearer(&other), None).await;
    assert_eq!(other_stream.status, 200);
    let fourth = token("u3", &["sales"]);
    let refused = SseClient::connect(&stack, "", Auth::Bearer(&fourth), None).await;
    assert_eq!(refused.status, 503);
    assert!(refused.retry_after.is_some());
    assert_eq!(refused.error.expect("JSON body")["code"], "unavailable");
    assert_eq!(sse_gauge(&stack).await, Some(3.0));

    // Refusals are not kept: closing one stream makes room.
    drop(first);
    let again = eventually(Duration::from_secs(10), || async {
        let client = SseClient::connect(&stack, "", Auth::Bearer(&boss), None).await;
        (client.status == 200).then_some(client)
    })
    .await;
    let mut again = again.expect("a stream is accepted after one closed");
    assert!(again.next_event(Duration::from_secs(5)).await.is_some());
    assert_eq!(sse_gauge(&stack).await, Some(3.0));

    // No CORS_ORIGINS: no CORS headers, whatever the origin.
    let response = get_from(&stack, "/api/followup/metrics", CRM, &boss).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "access-control-allow-origin"), None);
    drop((second, other_stream));
}

#[tokio::test]
async fn metrics_move_to_their_own_listener() {
    let stack = Stack::start_full(|_| {}, true).await;
    let metrics_addr = stack.metrics_addr.expect("metrics listener");
    let response = stack
        .http
        .get(format!("http://{metrics_addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        header(&response, "content-type")
            .unwrap()
            .starts_with("text/plain")
    );
    let text = response.text().await.unwrap();
    assert!(text.contains("# TYPE followup_sse_clients gauge"), "{text}");
    assert!(text.contains("http_requests_total"), "{text}");

    let (status, body) = stack.get_json("/metrics", None).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["code"], "not_found");
    // The rest of the public port is unchanged.
    let healthz = stack.http.get(stack.url("/healthz")).send().await.unwrap();
    assert_eq!(healthz.status(), 200);
    let (status, _) = stack
        .get_json("/metrics/followup", Some(&token("boss", &["admin"])))
        .await;
    assert_eq!(status, 200);
    // And the metrics listener serves nothing else.
    let other = stack
        .http
        .get(format!("http://{metrics_addr}/api/followup/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 404);
}

#[tokio::test]
async fn a_client_without_complete_headers_is_disconnected() {
    let stack = Stack::start_with(|c| c.http_header_timeout_ms = 300).await;
    let mut tcp = tokio::net::TcpStream::connect(stack.addr).await.unwrap();
    let started = Instant::now();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut buf)).await;
    let waited = started.elapsed();
    assert!(ended.is_ok(), "still connected after 10 s");
    assert!(
        waited >= Duration::from_millis(250),
        "closed after {waited:?}"
    );
    assert!(
        !String::from_utf8_lossy(&buf).contains("200 OK"),
        "{:?}",
        String::from_utf8_lossy(&buf)
    );

    // A complete request in time is answered as always, and a stream outlives the timeout.
    let healthz = stack.http.get(stack.url("/healthz")).send().await.unwrap();
    assert_eq!(healthz.status(), 200);
    let boss = token("boss", &["admin"]);
    let mut stream = SseClient::connect(&stack, "", Auth::Bearer(&boss), None).await;
    assert_eq!(stream.status, 200);
    assert!(stream.next_event(Duration::from_secs(5)).await.is_some());
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        stream.next_event(Duration::from_secs(6)).await.is_some(),
        "the stream ended after the header timeout"
    );
}
