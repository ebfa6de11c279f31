//! JWT attacks, each tried on the JSON route, the SSE stream and the session cookie (set by
//! hand, as an attacker would, and through `POST /api/session`): every one is refused with a
//! 401 (or 403 for a valid token without a cockpit role) and the JSON body `{code, detail}`.

use std::time::Duration;

use base64::Engine;
use chrono::Utc;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::support::{Auth, SECRET, SseClient, Stack, insert_lead};

const ISSUER: &str = "https://idp.test/realms/crm";
const AUDIENCE: &str = "cockpit";
const RSA_KEY: &str = include_str!("../../../gateway/tests/fixtures/rsa-test-key.pem");
const RSA_PUBLIC: &str = include_str!("../../../gateway/tests/fixtures/rsa-test-key.pub.pem");

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn now() -> i64 {
    Utc::now().timestamp()
}

/// Valid claims of a sales user; cases change one thing.
fn claims() -> Value {
    json!({"sub": "0b9e4c1e-uuid", "preferred_username": "u1", "roles": ["sales"], "iss": ISSUER,
           "aud": AUDIENCE, "exp": now() + 3600})
}

fn hs(claims: &Value, secret: &[u8]) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret).unwrap(),
    )
    .unwrap()
}

fn with(change: impl FnOnce(&mut serde_json::Map<String, Value>)) -> String {
    let mut c = claims();
    change(c.as_object_mut().unwrap());
    hs(&c, SECRET.as_bytes())
}

/// A header and claims joined without a signature check: `alg` as given, signature as given.
fn unsigned(alg: &str, claims: &Value, signature: &str) -> String {
    let header = b64(json!({"alg": alg, "typ": "JWT"}).to_string().as_bytes());
    format!(
        "{header}.{}.{signature}",
        b64(claims.to_string().as_bytes())
    )
}

/// A valid sales token with its claims swapped for admin ones and the old signature kept.
fn tampered() -> String {
    let valid = hs(&claims(), SECRET.as_bytes());
    let parts: Vec<&str> = valid.split('.').collect();
    let mut admin = claims();
    admin["roles"] = json!(["admin"]);
    format!(
        "{}.{}.{}",
        parts[0],
        b64(admin.to_string().as_bytes()),
        parts[2]
    )
}

/// Who, token, expected status.
fn attacks() -> Vec<(&'static str, String, u16)> {
    let admin_claims = {
        let mut c = claims();
        c["roles"] = json!(["admin"]);
        c
    };
    vec![
        ("alg none", unsigned("none", &admin_claims, ""), 401),
        ("alg None", unsigned("None", &admin_claims, ""), 401),
        (
            "alg NONE with a signature",
            unsigned("NONE", &admin_claims, "c2ln"),
            401,
        ),
        (
            "HS512 with the right secret",
            jsonwebtoken::encode(
                &Header::new(Algorithm::HS512),
                &admin_claims,
                &EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
            )
            .unwrap(),
            401,
        ),
        (
            "RS256 from some key",
            jsonwebtoken::encode(
                &Header::new(Algorithm::RS256),
                &admin_claims,
                &EncodingKey::from_rsa_pem(RSA_KEY.as_bytes()).unwrap(),
            )
            .unwrap(),
            401,
        ),
        ("tampered payload", tampered(), 401),
        (
            "another secret",
            hs(&admin_claims, b"another-secret-0123456789"),
            401,
        ),
        (
            "expired",
            with(|c| _ = c.insert("exp".into(), json!(now() - 3600))),
            401,
        ),
        ("no exp", with(|c| _ = c.remove("exp")), 401),
        (
            "exp as a string",
            with(|c| _ = c.insert("exp".into(), json!("9999999999"))),
            401,
        ),
        (
            "not yet valid",
            with(|c| _ = c.insert("nbf".into(), json!(now() + 3600))),
            401,
        ),
        (
            "wrong issuer",
            with(|c| _ = c.insert("iss".into(), json!("https://evil.test"))),
            401,
        ),
        ("no issuer", with(|c| _ = c.remove("iss")), 401),
        (
            "wrong audience",
            with(|c| _ = c.insert("aud".into(), json!("account"))),
            401,
        ),
        ("no audience", with(|c| _ = c.remove("aud")), 401),
        (
            "no preferred_username",
            with(|c| _ = c.remove("preferred_username")),
            401,
        ),
        (
            "empty preferred_username",
            with(|c| _ = c.insert("preferred_username".into(), json!("  "))),
            401,
        ),
        (
            "preferred_username not a string",
            with(|c| _ = c.insert("preferred_username".into(), json!(["u1"]))),
            401,
        ),
        (
            "preferred_username too long",
            with(|c| _ = c.insert("preferred_username".into(), json!("u".repeat(51)))),
            401,
        ),
        ("no roles", with(|c| _ = c.remove("roles")), 403),
        (
            "unknown role",
            with(|c| _ = c.insert("roles".into(), json!(["superuser"]))),
            403,
        ),
        (
            "role as an object",
            with(|c| _ = c.insert("roles".into(), json!({"admin": true}))),
            403,
        ),
        ("garbage", "garbage".to_owned(), 401),
        ("three empty parts", "..".to_owned(), 401),
        ("huge token", format!("a.{}.b", "x".repeat(20_000)), 401),
    ]
}

fn code(status: u16) -> &'static str {
    if status == 401 {
        "unauthorized"
    } else {
        "forbidden"
    }
}

fn assert_error(what: &str, status: u16, expected: u16, body: Option<&Value>) {
    assert_eq!(status, expected, "{what}: {body:?}");
    let body = body.unwrap_or_else(|| panic!("{what}: JSON error body"));
    assert_eq!(body["code"], code(expected), "{what}: {body}");
    assert!(
        body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{what}: {body}"
    );
}

async fn get_with_cookie(stack: &Stack, path: &str, token: &str) -> (u16, Option<Value>) {
    let r = stack
        .http
        .get(stack.url(path))
        .header("Cookie", format!("followup_session={token}"))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.ok())
}

#[tokio::test]
async fn jwt_attacks_are_refused_on_json_sse_and_cookie() {
    let stack = Stack::start_with(|c| {
        c.jwt.jwt_issuer = Some(ISSUER.to_owned());
        c.jwt.jwt_audience = Some(AUDIENCE.to_owned());
    })
    .await;
    insert_lead(
        &stack.db.pool,
        "u1",
        &[],
        Utc::now() - chrono::Duration::days(1),
    )
    .await;
    // The valid token works on every path, so each refusal below is the attack's doing.
    let valid = hs(&claims(), SECRET.as_bytes());
    let (status, body) = stack.get_json("/api/followup/metrics", Some(&valid)).await;
    assert_eq!((status, &body["scope"]), (200, &json!("user:u1")), "{body}");
    assert_eq!(
        get_with_cookie(&stack, "/api/followup/metrics", &valid)
            .await
            .0,
        200
    );

    for (what, token, expected) in attacks() {
        let (status, body) = stack.get_json("/api/followup/metrics", Some(&token)).await;
        assert_error(&format!("JSON {what}"), status, expected, Some(&body));
        let (status, body) = stack.get_json("/api/followup/runs", Some(&token)).await;
        assert_error(&format!("runs {what}"), status, expected, Some(&body));

        let sse = SseClient::connect(&stack, "", Auth::Bearer(&token), None).await;
        assert_error(
            &format!("SSE {what}"),
            sse.status,
            expected,
            sse.error.as_ref(),
        );

        let (status, body) = get_with_cookie(&stack, "/api/followup/metrics", &token).await;
        assert_error(
            &format!("cookie JSON {what}"),
            status,
            expected,
            body.as_ref(),
        );
        let cookie = format!("followup_session={token}");
        let sse = SseClient::connect(&stack, "", Auth::Cookie(&cookie), None).await;
        assert_error(
            &format!("cookie SSE {what}"),
            sse.status,
            expected,
            sse.error.as_ref(),
        );

        // A token that does not verify never becomes a session cookie.
        if expected == 401 {
            let r = stack
                .http
                .post(stack.url("/api/session"))
                .json(&json!({ "token": token }))
                .send()
                .await
                .unwrap();
            assert!(r.headers().get("set-cookie").is_none(), "session {what}");
            let status = r.status().as_u16();
            let body: Option<Value> = r.json().await.ok();
            assert_error(&format!("session {what}"), status, 401, body.as_ref());
        }
    }
}

/// The classic confusion: the gateway trusts an RS256 key set; the attacker signs HS256 with
/// the published public key (PEM or DER-ish bytes) as the HMAC secret.
#[tokio::test]
async fn hs256_signed_with_the_public_rsa_key_is_refused_by_a_jwks_gateway() {
    let key = EncodingKey::from_rsa_pem(RSA_KEY.as_bytes()).unwrap();
    let mut jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&key, Algorithm::RS256).unwrap();
    jwk.common.key_id = Some("k1".to_owned());
    let jwks = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(jwks.path(), json!({ "keys": [jwk] }).to_string()).unwrap();
    let path = jwks.path().display().to_string();
    let stack = Stack::start_with(|c| {
        c.jwt.jwt_secret = None;
        c.jwt.jwt_jwks = Some(path);
    })
    .await;
    let admin = json!({"preferred_username": "boss", "roles": ["admin"], "exp": now() + 3600});
    let rs = |claims: &Value| {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some("k1".into());
        jsonwebtoken::encode(&header, claims, &key).unwrap()
    };
    // Control: the real RS256 token is accepted.
    let (status, body) = stack
        .get_json("/api/followup/metrics", Some(&rs(&admin)))
        .await;
    assert_eq!((status, &body["scope"]), (200, &json!("org")), "{body}");

    let confused = |secret: &[u8], kid: Option<&str>| {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, &admin, &EncodingKey::from_secret(secret).unwrap()).unwrap()
    };
    let modulus = match &jwk.algorithm {
        jsonwebtoken::jwk::AlgorithmParameters::RSA(rsa) => rsa.n.clone(),
        _ => unreachable!("an RSA key"),
    };
    let cases = [
        (
            "HS256 with the PEM public key",
            confused(RSA_PUBLIC.as_bytes(), Some("k1")),
        ),
        (
            "HS256 with the PEM, no kid",
            confused(RSA_PUBLIC.as_bytes(), None),
        ),
        (
            "HS256 with the JWK modulus",
            confused(modulus.as_bytes(), Some("k1")),
        ),
        ("alg none, kid k1", unsigned("none", &admin, "")),
        ("RS256 header, HS256 signature", {
            let hs_token = confused(RSA_PUBLIC.as_bytes(), Some("k1"));
            let rs_token = rs(&admin);
            let sig = hs_token.rsplit('.').next().unwrap();
            let (head, _) = rs_token.rsplit_once('.').unwrap();
            format!("{head}.{sig}")
        }),
    ];
    for (what, token) in cases {
        let (status, body) = stack.get_json("/api/followup/metrics", Some(&token)).await;
        assert_error(&format!("JSON {what}"), status, 401, Some(&body));
        let sse = SseClient::connect(&stack, "", Auth::Bearer(&token), None).await;
        assert_error(&format!("SSE {what}"), sse.status, 401, sse.error.as_ref());
        let (status, body) = get_with_cookie(&stack, "/api/followup/metrics", &token).await;
        assert_error(&format!("cookie {what}"), status, 401, body.as_ref());
    }
    // A stream opened with a valid token still works after all that.
    let admin_token = rs(&admin);
    let mut sse = SseClient::connect(&stack, "", Auth::Bearer(&admin_token), None).await;
    assert_eq!(sse.status, 200);
    assert!(sse.next_event(Duration::from_secs(5)).await.is_some());
}
