//! Who sees what: the RBAC matrix for the JSON route and the SSE stream, the runs route, the
//! session cookie, and malformed requests (400 JSON, never 500).

use std::time::Duration;

use chrono::Utc;

use crate::support::{
    Auth, SseClient, Stack, expired_token, foreign_token, insert_lead, none_token, token,
};

/// u1 owns lead A with u2 as collaborator; u4 owns lead B; u3 has none.
async fn seeded() -> Stack {
    let stack = Stack::start().await;
    let day_ago = Utc::now() - chrono::Duration::days(1);
    insert_lead(&stack.db.pool, "u1", &["u2"], day_ago).await;
    insert_lead(&stack.db.pool, "u4", &[], day_ago).await;
    let admin = token("boss", &["admin"]);
    stack
        .wait_for_figures("/api/followup/metrics", &admin, |f| f["pendingT3"] == 2)
        .await;
    stack
        .wait_for_figures("/api/followup/metrics?owner=u2", &admin, |f| {
            f["pendingT3"] == 1
        })
        .await;
    stack
}

/// One row: who, token, query, expected status, scope, pendingT3.
type Case = (
    &'static str,
    Option<String>,
    &'static str,
    u16,
    &'static str,
    i64,
);

fn matrix() -> Vec<Case> {
    let admin = token("boss", &["admin"]);
    let manager = token("mgr", &["manager"]);
    let owner = token("u1", &["sales"]);
    let collaborator = token("u2", &["sales"]);
    let stranger = token("u3", &["sales"]);
    vec![
        ("admin", Some(admin.clone()), "", 200, "org", 2),
        (
            "admin, one user",
            Some(admin),
            "?owner=u2",
            200,
            "user:u2",
            1,
        ),
        ("manager", Some(manager.clone()), "", 200, "org", 2),
        (
            "manager, one user",
            Some(manager),
            "?owner=u1",
            200,
            "user:u1",
            1,
        ),
        ("sales owner", Some(owner.clone()), "", 200, "user:u1", 1),
        (
            "sales owner, self",
            Some(owner.clone()),
            "?owner=u1",
            200,
            "user:u1",
            1,
        ),
        ("sales owner, other", Some(owner), "?owner=u2", 403, "", 0),
        (
            "sales collaborator",
            Some(collaborator),
            "",
            200,
            "user:u2",
            1,
        ),
        (
            "sales stranger",
            Some(stranger.clone()),
            "",
            200,
            "user:u3",
            0,
        ),
        (
            "sales stranger, other",
            Some(stranger),
            "?owner=u1",
            403,
            "",
            0,
        ),
        ("no role", Some(token("u1", &[])), "", 403, "", 0),
        (
            "unknown role",
            Some(token("u1", &["viewer"])),
            "",
            403,
            "",
            0,
        ),
        ("no token", None, "", 401, "", 0),
        ("expired", Some(expired_token()), "", 401, "", 0),
        ("another key", Some(foreign_token()), "", 401, "", 0),
        ("alg none", Some(none_token()), "", 401, "", 0),
        ("garbage", Some("not.a.jwt".to_owned()), "", 401, "", 0),
    ]
}

fn error_code(status: u16) -> &'static str {
    match status {
        401 => "unauthorized",
        403 => "forbidden",
        _ => "?",
    }
}

/// Our paths and the CRM's (DESIGN.md "Interfaces"): the same figures, auth and RBAC.
const PATHS: [(&str, &str); 2] = [
    ("/api/followup/metrics", "/api/dashboard/followup-stream"),
    ("/metrics/followup", "/metrics/followup/stream"),
];

#[tokio::test]
async fn rbac_matrix_for_json_and_sse() {
    let stack = seeded().await;
    for (json_path, stream_path) in PATHS {
        for case in matrix() {
            check_case(&stack, json_path, stream_path, case).await;
        }
    }
}

async fn check_case(stack: &Stack, json_path: &str, stream_path: &str, case: Case) {
    let (who, token, query, status, scope, pending) = case;
    let who = format!("{who} at {json_path}");
    {
        // JSON
        let (got, body) = stack
            .get_json(&format!("{json_path}{query}"), token.as_deref())
            .await;
        assert_eq!(got, status, "JSON {who}: {body}");
        if status == 200 {
            assert_eq!(body["scope"], scope, "JSON {who}");
            assert_eq!(body["pendingT3"], pending, "JSON {who}");
        } else {
            assert_eq!(body["code"], error_code(status), "JSON {who}: {body}");
            assert!(body["detail"].as_str().is_some_and(|d| !d.is_empty()));
        }

        // SSE
        let auth = token.as_deref().map_or(Auth::None, Auth::Bearer);
        let mut sse = SseClient::connect_at(stack, stream_path, query, auth, None).await;
        assert_eq!(sse.status, status, "SSE {who}: {:?}", sse.error);
        if status == 200 {
            assert_eq!(sse.content_type, "text/event-stream", "SSE {who}");
            let first = sse
                .next_event(Duration::from_secs(5))
                .await
                .unwrap_or_else(|| panic!("SSE {who}: first frame at connect"));
            assert_eq!(first.event, None, "frames carry no event name");
            assert!(first.id.is_some(), "SSE {who}: frame id");
            let figures = first.json();
            assert_eq!(figures["scope"], scope, "SSE {who}");
            assert_eq!(figures["pendingT3"], pending, "SSE {who}");
            assert_eq!(sse.retry, Some(2000));
        } else {
            let error = sse.error.expect("JSON error body");
            assert_eq!(error["code"], error_code(status), "SSE {who}");
        }
    }
}

#[tokio::test]
async fn runs_are_for_admins_and_managers() {
    let stack = Stack::start().await;
    for (who, token, status) in [
        ("admin", Some(token("boss", &["admin"])), 200),
        ("manager", Some(token("mgr", &["manager"])), 200),
        ("sales", Some(token("u1", &["sales"])), 403),
        ("no token", None, 401),
        ("expired", Some(expired_token()), 401),
        ("alg none", Some(none_token()), 401),
    ] {
        let (got, body) = stack.get_json("/api/followup/runs", token.as_deref()).await;
        assert_eq!(got, status, "{who}: {body}");
        if status == 200 {
            assert!(body["runs"].is_array(), "{who}: {body}");
        } else {
            assert_eq!(body["code"], error_code(status));
        }
    }
}

#[tokio::test]
async fn the_session_cookie_authenticates_json_and_sse() {
    let stack = seeded().await;
    let sales = token("u1", &["sales"]);
    let response = stack
        .http
        .post(stack.url("/api/session"))
        .json(&serde_json::json!({ "token": sales }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let cookie = response
        .headers()
        .get("set-cookie")
        .expect("cookie set")
        .to_str()
        .unwrap()
        .to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/;", "Max-Age="] {
        assert!(cookie.contains(attribute), "{attribute} in {cookie}");
    }
    let info: serde_json::Value = response.json().await.unwrap();
    assert_eq!(info["user"], "u1");
    assert_eq!(info["roles"], serde_json::json!(["sales"]));
    let pair = cookie.split(';').next().unwrap().to_owned();

    let (status, body) = {
        let r = stack
            .http
            .get(stack.url("/api/followup/metrics"))
            .header("Cookie", &pair)
            .send()
            .await
            .unwrap();
        (
            r.status().as_u16(),
            r.json::<serde_json::Value>().await.unwrap(),
        )
    };
    assert_eq!(status, 200);
    assert_eq!(body["scope"], "user:u1");
    let mut sse = SseClient::connect(&stack, "", Auth::Cookie(&pair), None).await;
    assert_eq!(sse.status, 200);
    let first = sse.next_event(Duration::from_secs(5)).await.unwrap();
    assert_eq!(first.json()["scope"], "user:u1");

    // A bad token gets no cookie; another origin gets none either.
    let refused = stack
        .http
        .post(stack.url("/api/session"))
        .json(&serde_json::json!({ "token": expired_token() }))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    assert!(refused.headers().get("set-cookie").is_none());
    let cross = stack
        .http
        .post(stack.url("/api/session"))
        .header("Origin", "https://evil.example")
        .json(&serde_json::json!({ "token": token("u1", &["sales"]) }))
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status(), 403);
    assert!(cross.headers().get("set-cookie").is_none());
    let form = stack
        .http
        .post(stack.url("/api/session"))
        .header("Content-Type", "text/plain")
        .body(format!("{{\"token\":\"{}\"}}", token("u1", &["sales"])))
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 400, "only a JSON body sets the cookie");

    let cleared = stack
        .http
        .delete(stack.url("/api/session"))
        .send()
        .await
        .unwrap();
    assert_eq!(cleared.status(), 204);
    let cookie = cleared
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap();
    assert!(cookie.contains("Max-Age=0"), "{cookie}");
}

#[tokio::test]
async fn odd_requests_get_json_errors_never_500() {
    let stack = Stack::start().await;
    let admin = token("boss", &["admin"]);
    let long = "x".repeat(51);
    let bad_requests = [
        "/api/followup/metrics?owner=".to_owned(),
        "/api/followup/metrics?owner=%20%20".to_owned(),
        "/api/followup/metrics?owner=a&owner=b".to_owned(),
        "/api/followup/metrics?foo=1".to_owned(),
        "/api/followup/metrics?owner=%00x".to_owned(),
        format!("/api/followup/metrics?owner={long}"),
        "/api/dashboard/followup-stream?owner=".to_owned(),
        "/api/dashboard/followup-stream?owner=a&owner=b".to_owned(),
        "/api/followup/runs?limit=abc".to_owned(),
        "/api/followup/runs?limit=0".to_owned(),
        "/api/followup/runs?limit=-1".to_owned(),
        "/api/followup/runs?limit=99999999999".to_owned(),
        "/api/followup/runs?limit=201".to_owned(),
    ];
    for path in &bad_requests {
        let (status, body) = stack.get_json(path, Some(&admin)).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["code"], "bad_request", "{path}");
    }
    // Oddities that are still well-formed: answered, not failed.
    for path in [
        "/api/followup/metrics?owner=%ZZ",
        "/api/followup/metrics?owner=%C3%BC%E2%82%AC",
        "/api/followup/metrics?owner=u1%27%3B%20DROP%20TABLE%20leads%3B--",
        "/api/followup/metrics?&&",
    ] {
        let (status, body) = stack.get_json(path, Some(&admin)).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
    let (status, body) = stack.get_json("/api/nope", Some(&admin)).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));
    let r = stack
        .http
        .post(stack.url("/api/followup/metrics"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["code"], "method_not_allowed");
    // A malformed Authorization header.
    let r = stack
        .http
        .get(stack.url("/api/followup/metrics"))
        .header("Authorization", "Basic Ym9zczpwdw==")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("www-authenticate"));
    // Auth is checked before the query: no hint about parameters to strangers.
    let (status, _) = stack.get_json("/api/followup/metrics?owner=", None).await;
    assert_eq!(status, 401);
}

const RSA_KEY: &str = include_str!("../../../gateway/tests/fixtures/rsa-test-key.pem");
const OTHER_RSA_KEY: &str = include_str!("../../../gateway/tests/fixtures/rsa-other-key.pem");
const ISSUER: &str = "https://idp.test/realms/crm";

fn rs256(pem: &str, claims: serde_json::Value) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some("k1".to_owned());
    jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
    )
    .unwrap()
}

/// Serves a JWK set the way an identity provider does, on a loopback port.
async fn serve_jwks() -> String {
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(RSA_KEY.as_bytes()).unwrap();
    let mut jwk =
        jsonwebtoken::jwk::Jwk::from_encoding_key(&key, jsonwebtoken::Algorithm::RS256).unwrap();
    jwk.common.key_id = Some("k1".to_owned());
    let set = serde_json::json!({ "keys": [jwk] });
    let app = axum::Router::new().route(
        "/realms/crm/protocol/openid-connect/certs",
        axum::routing::get(move || {
            let set = set.clone();
            async move { axum::Json(set) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/realms/crm/protocol/openid-connect/certs")
}

#[tokio::test]
async fn rs256_tokens_checked_against_a_jwks_url() {
    let jwks = serve_jwks().await;
    let stack = Stack::start_with(|c| {
        c.jwt.jwt_secret = None;
        c.jwt.jwt_jwks = Some(jwks);
        c.jwt.jwt_issuer = Some(ISSUER.to_owned());
        c.jwt.jwt_audience = Some("cockpit".to_owned());
        c.jwt.jwt_user_claim = "preferred_username".to_owned();
    })
    .await;
    let exp = Utc::now().timestamp() + 600;
    let keycloak = |aud: &str, roles: &[&str]| {
        serde_json::json!({
            "sub": "5f0c-uuid", "preferred_username": "u1", "iss": ISSUER, "aud": aud, "exp": exp,
            "realm_access": {"roles": roles}
        })
    };
    let manager = rs256(RSA_KEY, keycloak("cockpit", &["manager", "offline_access"]));
    let sales = rs256(RSA_KEY, keycloak("cockpit", &["sales"]));
    for (who, token, status, scope) in [
        ("manager", manager.clone(), 200, "org"),
        (
            "sales (user from preferred_username)",
            sales.clone(),
            200,
            "user:u1",
        ),
        (
            "wrong audience",
            rs256(RSA_KEY, keycloak("account", &["admin"])),
            401,
            "",
        ),
        (
            "another key",
            rs256(OTHER_RSA_KEY, keycloak("cockpit", &["admin"])),
            401,
            "",
        ),
        (
            "HS256 with the old secret",
            token("u1", &["admin"]),
            401,
            "",
        ),
        ("alg none", none_token(), 401, ""),
    ] {
        let (got, body) = stack.get_json("/api/followup/metrics", Some(&token)).await;
        assert_eq!(got, status, "{who}: {body}");
        if status == 200 {
            assert_eq!(body["scope"], scope, "{who}");
        }
        let mut sse = SseClient::connect(&stack, "", Auth::Bearer(&token), None).await;
        assert_eq!(sse.status, status, "SSE {who}");
        if status == 200 {
            let first = sse.next_event(Duration::from_secs(5)).await.unwrap();
            assert_eq!(first.json()["scope"], scope, "SSE {who}");
        }
    }
}

/// The CRM keeps collaborators in `lead_collaborators`: a sales user who collaborates on two
/// leads due for T+7 sees them, and stops seeing one when removed from it.
#[tokio::test]
async fn a_sales_user_collaborating_through_lead_collaborators_sees_their_pending_t7() {
    use followup_testkit::crm::{self, CrmLead};
    let stack = Stack::start().await;
    let nine_days_ago = Utc::now() - chrono::Duration::days(9);
    let mut ids = Vec::new();
    for _ in 0..2 {
        let mut lead = CrmLead::active("owner.x", nine_days_ago);
        lead.t3_followup_sent = Some(true);
        let id = lead.insert(&stack.db.pool).await;
        crm::add_collaborator(&stack.db.pool, id, "vertrieb.y").await;
        ids.push(id);
    }
    let sales = token("vertrieb.y", &["sales"]);
    let figures = stack
        .wait_for_figures("/api/followup/metrics", &sales, |f| f["pendingT7"] == 2)
        .await;
    assert_eq!(figures["scope"], "user:vertrieb.y");
    crm::remove_collaborator(&stack.db.pool, ids[0], "vertrieb.y").await;
    stack
        .wait_for_figures("/api/followup/metrics", &sales, |f| f["pendingT7"] == 1)
        .await;
}
