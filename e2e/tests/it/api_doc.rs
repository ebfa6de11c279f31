//! `/openapi.json` declares the bounds the handlers enforce (found by schemathesis: the document
//! allowed `?owner=` and `?limit=2147483646`, which are answered 400), and the boundaries behave
//! as declared.

use serde_json::Value;

use crate::support::{Stack, token};

fn param<'a>(doc: &'a Value, path: &str, name: &str) -> &'a Value {
    doc["paths"][path]["get"]["parameters"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == name))
        .unwrap_or_else(|| panic!("{path} documents ?{name}"))
}

#[tokio::test]
async fn the_document_declares_the_enforced_bounds_and_they_hold() {
    let stack = Stack::start().await;
    let (status, doc) = stack.get_json("/openapi.json", None).await;
    assert_eq!(status, 200);
    for path in ["/api/followup/metrics", "/api/dashboard/followup-stream"] {
        let owner = &param(&doc, path, "owner")["schema"];
        assert_eq!(owner["minLength"], 1, "{path}: {owner}");
        assert_eq!(owner["maxLength"], 50, "{path}: {owner}");
        assert!(owner["pattern"].is_string(), "{path}: {owner}");
    }
    let limit = &param(&doc, "/api/followup/runs", "limit")["schema"];
    assert_eq!(limit["minimum"], 1, "{limit}");
    assert_eq!(limit["maximum"], 200, "{limit}");

    let admin = token("boss", &["admin"]);
    let fifty = "u".repeat(50);
    for (path, status) in [
        (format!("/api/followup/metrics?owner={fifty}"), 200),
        (format!("/api/followup/metrics?owner={fifty}u"), 400),
        ("/api/followup/metrics?owner=%C2%A0".to_owned(), 400),
        ("/api/followup/metrics?owner=%C2%85".to_owned(), 400),
        ("/api/followup/metrics?owner=%C2%A0u1".to_owned(), 200),
        ("/api/followup/runs?limit=1".to_owned(), 200),
        ("/api/followup/runs?limit=200".to_owned(), 200),
        ("/api/followup/runs?limit=201".to_owned(), 400),
    ] {
        let (got, body) = stack.get_json(&path, Some(&admin)).await;
        assert_eq!(got, status, "{path}: {body}");
    }
}

#[tokio::test]
async fn unsubscribe_links_in_the_documented_form_are_never_a_bad_request() {
    let stack =
        Stack::start_with(|c| c.unsubscribe_secret = Some("doc-secret-0123456789".into())).await;
    let (_, doc) = stack.get_json("/openapi.json", None).await;
    for method in ["get", "post"] {
        let params = doc["paths"]["/unsubscribe"][method]["parameters"]
            .as_array()
            .unwrap();
        for p in params {
            assert!(p["schema"]["pattern"].is_string(), "{method} {p}");
        }
    }
    // Well-formed but wrongly signed: 403, not 400 (the document promises the form is enough).
    let sig = "0".repeat(64);
    let r = stack
        .http
        .get(stack.url(&format!("/unsubscribe?lead=1&sig={sig}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // Outside the documented form: 400.
    let r = stack
        .http
        .get(stack.url("/unsubscribe?lead=&sig="))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}
