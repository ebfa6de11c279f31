//! The page, the operational endpoints and the generated OpenAPI document, served by the real
//! server.

use std::time::Duration;

use crate::support::{Auth, SseClient, Stack, token};

#[tokio::test]
async fn page_openapi_health_and_metrics() {
    let stack = Stack::start().await;

    let page = stack.http.get(stack.url("/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let csp = page
        .headers()
        .get("content-security-policy")
        .expect("CSP")
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert_eq!(page.headers()["referrer-policy"], "no-referrer");
    let html = page.text().await.unwrap();
    for figure in ["pendingT3", "pendingT7", "sentToday", "conversionRate"] {
        assert!(
            html.contains(&format!("data-figure=\"{figure}\"")),
            "{figure} tile"
        );
    }
    assert!(html.contains("name=\"viewport\""));
    for (path, kind) in [
        ("/assets/cockpit.js", "text/javascript"),
        ("/assets/cockpit.css", "text/css"),
    ] {
        let r = stack.http.get(stack.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with(kind)
        );
        assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    }

    let (status, doc) = stack.get_json("/openapi.json", None).await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/api/followup/metrics",
        "/api/dashboard/followup-stream",
        "/api/followup/runs",
        "/api/session",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} in the document");
    }
    assert_eq!(
        doc["paths"]["/api/followup/metrics"]["get"]["parameters"][0]["name"],
        "owner"
    );

    let health = stack.http.get(stack.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let ready = stack.http.get(stack.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);

    // Traffic, then the metrics that describe it.
    let admin = token("boss", &["admin"]);
    stack.get_json("/api/followup/metrics", Some(&admin)).await;
    stack.get_json("/api/followup/metrics", None).await;
    stack.get_json("/no/such/path/12345", None).await;
    let mut sse = SseClient::connect(&stack, "", Auth::Bearer(&admin), None).await;
    sse.next_event(Duration::from_secs(5)).await.unwrap();
    let text = stack
        .http
        .get(stack.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        r#"http_requests_total{method="GET",route="/api/followup/metrics",status="200"} 1"#,
        r#"http_requests_total{method="GET",route="/api/followup/metrics",status="401"} 1"#,
        r#"http_requests_total{method="GET",route="unmatched",status="404"} 1"#,
        "followup_sse_clients 1",
        "followup_sse_frames_total 1",
    ] {
        assert!(text.lines().any(|l| l == line), "{line:?} in\n{text}");
    }
    for name in [
        "http_request_duration_seconds_bucket{method=\"GET\",route=\"/api/dashboard/followup-stream\"",
        "followup_sse_push_latency_seconds_bucket",
        "followup_sse_clients_dropped_total",
        "followup_change_notices_total",
    ] {
        assert!(text.contains(name), "{name} exported");
    }
    assert!(
        !text.contains("/no/such/path"),
        "raw paths never become labels"
    );
    drop(sse);
}

#[tokio::test]
async fn the_binary_prints_dev_tokens_and_refuses_bad_jwt_settings() {
    let stack = Stack::start().await;
    let binary = crate::service_bin::gateway_binary().await;
    let out = std::process::Command::new(binary)
        .env_clear()
        .env("JWT_SECRET", crate::support::SECRET)
        .args(["dev-token", "--sub", "u9", "--role", "manager"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let (status, body) = stack.get_json("/api/followup/metrics", Some(&token)).await;
    assert_eq!((status, body["scope"].as_str()), (200, Some("org")));

    let out = std::process::Command::new(binary)
        .env_clear()
        .env("JWT_SECRET", crate::support::SECRET)
        .args(["dev-token", "--url", "http://localhost:8080/"])
        .output()
        .unwrap();
    let url = String::from_utf8(out.stdout).unwrap();
    assert!(url.starts_with("http://localhost:8080/#token=ey"), "{url}");

    for (env, expected) in [
        (
            vec![
                ("JWT_SECRET", "0123456789abcdef0"),
                ("JWT_JWKS", "/tmp/k.json"),
            ],
            "both are set",
        ),
        (vec![], "neither is set"),
        (vec![("JWT_SECRET", "short")], "at least 16 bytes"),
    ] {
        let out = std::process::Command::new(binary)
            .env_clear()
            .env("DATABASE_URL", &stack.db.url)
            .env("HTTP_ADDR", "127.0.0.1:0")
            .envs(env)
            .arg("serve")
            .output()
            .unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{expected:?} in {stderr}");
    }
}

#[tokio::test]
async fn a_broken_projection_gives_a_json_500_without_internals() {
    let stack = Stack::start().await;
    let admin = token("boss", &["admin"]);
    sqlx::query("ALTER TABLE projection_scope_figures RENAME TO projection_scope_figures_gone")
        .execute(&stack.db.pool)
        .await
        .unwrap();
    let (status, body) = stack.get_json("/api/followup/metrics", Some(&admin)).await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["code"], "internal");
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.starts_with("internal error (reference "), "{detail}");
    assert!(!detail.contains("projection"), "{detail}");
    let sse = SseClient::connect(&stack, "?owner=u1", Auth::Bearer(&admin), None).await;
    assert_eq!(sse.status, 500);
    assert_eq!(sse.error.unwrap()["code"], "internal");
}
