//! The drill-down lists (issue 15) through the real pipeline: CRM rows written as the CRM writes
//! them, follow-ups delivered (and one finally failed) by real producer runs, the relay and the
//! projector in between. Per scope — an admin (organisation), a manager with `owner`, sales users
//! who own and who only collaborate — every list, paged through two leads at a time, must equal
//! what the CRM's tables give (`followup_projector::truth_lists`, the truth `verify` uses), and
//! the dataset's own expectations pin that truth.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::Utc;
use followup_producer::Delivery;
use followup_producer::mailer::{Mailer, SmtpSettings};
use followup_readmodel::LeadFigure;
use followup_testkit::crm::{CrmLead, withdraw_consent_gdpr};
use serde_json::Value;

use crate::browser::{producer_run, producer_run_with};
use crate::support::{Stack, insert_lead, token};

const FIGURES: [(&str, LeadFigure); 5] = [
    ("pendingT3", LeadFigure::PendingT3),
    ("pendingT7", LeadFigure::PendingT7),
    ("sentToday", LeadFigure::SentToday),
    ("converted", LeadFigure::Converted),
    ("failed", LeadFigure::Failed),
];

/// A run whose SMTP server does not exist: an invalid address fails permanently before any
/// connection is tried, which is the final failure the `failed` list shows.
async fn failing_run(pool: &sqlx::PgPool) {
    let mut delivery = Delivery::log_to_stdout(b"gateway-test-unsubscribe-secret").unwrap();
    delivery.mailer = Mailer::smtp(&SmtpSettings {
        url: "smtp://127.0.0.1:1".into(),
        from: "Follow-up <noreply@example.com>".into(),
        timeout: Duration::from_secs(2),
        pool_size: 1,
    })
    .unwrap();
    producer_run_with(pool, &delivery).await;
}

/// Every item of a list, two a page; checks the paging on the way.
async fn list_all(stack: &Stack, token: &str, figure: &str, owner: Option<&str>) -> Vec<Value> {
    let mut items = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..100 {
        let mut path = format!("/api/followup/leads?figure={figure}&limit=2");
        if let Some(owner) = owner {
            path.push_str(&format!("&owner={owner}"));
        }
        if let Some(after) = &after {
            path.push_str(&format!("&after={after}"));
        }
        let (status, page) = stack.get_json(&path, Some(token)).await;
        assert_eq!(status, 200, "{path}: {page}");
        let page_items = page["items"].as_array().unwrap();
        assert!(page_items.len() <= 2);
        items.extend(page_items.iter().cloned());
        match page["next"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => return items,
        }
    }
    panic!("{figure}: more than 100 pages");
}

/// GET that must answer 200; its JSON.
async fn get_ok(stack: &Stack, path: &str, bearer: &str) -> Value {
    let (status, body) = stack.get_json(path, Some(bearer)).await;
    assert_eq!(status, 200, "{path}: {body}");
    body
}

fn ids(items: &[Value]) -> BTreeSet<i64> {
    items
        .iter()
        .map(|i| i["leadId"].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn lists_per_scope_equal_the_crm_tables() {
    let stack = Stack::start().await;
    let pool = &stack.db.pool;
    let days = |n: i64| Utc::now() - chrono::Duration::days(n) - chrono::Duration::minutes(5);
    let fresh = insert_lead(pool, "u1", &[], days(0)).await;
    let shared = insert_lead(pool, "u2", &["u3"], days(1)).await;
    let t3_due = insert_lead(pool, "u1", &[], days(4)).await;
    let converts = insert_lead(pool, "u2", &["u1"], days(4)).await;
    let withdrawn = insert_lead(pool, "u1", &[], days(2)).await;
    let erased = insert_lead(pool, "u2", &[], days(0)).await;
    // Handed over later: its collaborator u3 becomes the owner, u1 is taken off it.
    let handed = insert_lead(pool, "u2", &["u3", "u1"], days(1)).await;
    producer_run(pool).await; // T+3 to t3_due and converts
    let mut bad = CrmLead::active("u3", days(4));
    bad.email = Some("not an address".into());
    bad.company_name = "Bistro Fehlschlag".into();
    let fails = bad.insert(pool).await;
    failing_run(pool).await; // T+3 to `fails` fails for good
    sqlx::query("UPDATE leads SET status = 'CONVERTED', version = version + 1 WHERE id = $1")
        .bind(converts)
        .execute(pool)
        .await
        .unwrap();
    withdraw_consent_gdpr(pool, withdrawn, "dsb").await;
    followup_testkit::crm::remove_collaborator(pool, handed, "u1").await;
    sqlx::query("UPDATE leads SET owner_user_id = 'u3', version = version + 1 WHERE id = $1")
        .bind(handed)
        .execute(pool)
        .await
        .unwrap();
    sqlx::query("UPDATE leads SET gdpr_deleted = TRUE, version = version + 1 WHERE id = $1")
        .bind(erased)
        .execute(pool)
        .await
        .unwrap();

    // The dataset's own truth, so the truth SQL is pinned too.
    let want: BTreeMap<&str, BTreeSet<i64>> = BTreeMap::from([
        ("pendingT3", BTreeSet::from([fresh, shared, handed])),
        ("pendingT7", BTreeSet::from([t3_due])),
        ("sentToday", BTreeSet::from([t3_due, converts])),
        ("converted", BTreeSet::from([converts])),
        ("failed", BTreeSet::from([fails])),
    ]);
    let mut conn = pool.acquire().await.unwrap();
    let truth = followup_projector::truth_lists(&mut conn, Utc::now(), chrono_tz::Europe::Berlin)
        .await
        .unwrap();
    for (name, figure) in FIGURES {
        let org = truth
            .get(&("org".to_owned(), figure))
            .cloned()
            .unwrap_or_default();
        assert_eq!(org, want[name], "the truth of {name}");
    }

    // Per scope: what the gateway lists = what the CRM's tables give.
    let admin = token("boss", &["admin"]);
    let manager = token("mgr", &["manager"]);
    let scopes: [(&str, String, Option<&str>); 5] = [
        ("org", admin.clone(), None),
        ("user:u1", manager.clone(), Some("u1")),
        ("user:u2", manager, Some("u2")),
        ("user:u1", token("u1", &["sales"]), None),
        ("user:u3", token("u3", &["sales"]), None),
    ];
    let expected = |scope: &str, figure: LeadFigure| {
        truth
            .get(&(scope.to_owned(), figure))
            .cloned()
            .unwrap_or_default()
    };
    // Wait until `verify` is exact — it pages every scope's lists as the gateway serves them
    // and checks the figures against this truth — not only for the organisation's lists: the
    // last changes (u1 taken off `handed`, its new owner, `erased`) move no organisation list
    // the gateway serves (an erased lead is hidden at request time from the CRM's own flag),
    // so those lists can match while these changes are still on their way. The gateway's
    // answers are checked below.
    let caught_up = followup_testkit::eventually(Duration::from_secs(30), || async {
        let mut conn = pool.acquire().await.ok()?;
        followup_projector::verify_projection(&mut conn, Utc::now(), chrono_tz::Europe::Berlin)
            .await
            .ok()?
            .is_exact()
            .then_some(())
    })
    .await;
    assert!(
        caught_up.is_some(),
        "the projection never matched the CRM's tables (verify)"
    );
    for (scope, bearer, owner) in &scopes {
        for (name, figure) in FIGURES {
            let items = list_all(&stack, bearer, name, *owner).await;
            let expected = expected(scope, figure);
            assert_eq!(ids(&items), expected, "{scope} {name}");
            assert_eq!(items.len(), expected.len(), "{scope} {name}: no lead twice");
            if matches!(figure, LeadFigure::PendingT3 | LeadFigure::PendingT7) {
                let registered: Vec<&str> = items
                    .iter()
                    .map(|i| i["registeredAt"].as_str().unwrap())
                    .collect();
                assert!(
                    registered.is_sorted(),
                    "{scope} {name} in due order: {registered:?}"
                );
            }
            for item in &items {
                let keys: Vec<&String> = item.as_object().unwrap().keys().collect();
                assert!(
                    !keys
                        .iter()
                        .any(|k| k.contains("mail") || k.contains("contact")),
                    "no personal data: {keys:?}"
                );
                assert_ne!(item["leadId"], erased, "GDPR-erased leads are never listed");
            }
        }
    }
    // u3 collaborates on `shared`, owns `fails` and now `handed` (still listed on it as a
    // collaborator); u1 was taken off `handed`.
    assert_eq!(
        truth[&("user:u3".to_owned(), LeadFigure::PendingT3)],
        BTreeSet::from([shared, handed])
    );
    assert_eq!(
        truth[&("user:u1".to_owned(), LeadFigure::PendingT3)],
        BTreeSet::from([fresh])
    );

    // What a manager reads in the rows.
    let failed = list_all(&stack, &admin, "failed", None).await;
    assert_eq!(failed[0]["company"], "Bistro Fehlschlag");
    assert_eq!(failed[0]["failure"]["kind"], "t3");
    let reason = failed[0]["failure"]["reason"].as_str().unwrap();
    assert!(reason.contains("invalid recipient address"), "{reason}");
    assert!(
        failed[0]["nextFollowUp"].is_null(),
        "a failed T+3 is not coming"
    );
    let pending = list_all(&stack, &admin, "pendingT7", None).await;
    let row = pending.iter().find(|i| i["leadId"] == t3_due).unwrap();
    assert_eq!(row["lastFollowUp"]["kind"], "t3");
    assert_eq!(row["nextFollowUp"]["kind"], "t7");
    assert_eq!(
        row["nextFollowUp"]["due"], "later",
        "T+7 of a lead registered 4 days ago"
    );
    let fresh_row = list_all(&stack, &admin, "pendingT3", None).await;
    let fresh_row = fresh_row.iter().find(|i| i["leadId"] == fresh).unwrap();
    assert_eq!(fresh_row["company"], "Gasthaus Test");
    assert_eq!(fresh_row["owner"], "u1");

    // The same RBAC as the figures, and clear errors for bad input.
    let sales = token("u3", &["sales"]);
    for (path, bearer, status) in [
        ("/api/followup/leads?figure=failed&owner=u1", &sales, 403),
        ("/api/followup/leads?figure=failed", &String::new(), 401),
        ("/api/followup/leads?figure=everything", &admin, 400),
        ("/api/followup/leads", &admin, 400),
        ("/api/followup/leads?figure=failed&limit=0", &admin, 400),
        ("/api/followup/leads?figure=failed&limit=201", &admin, 400),
        (
            "/api/followup/leads?figure=pendingT3&after=12x",
            &admin,
            400,
        ),
        ("/api/followup/leads?figure=failed&after=-1", &admin, 400),
        ("/api/followup/leads?figure=failed&color=red", &admin, 400),
    ] {
        let bearer = (!bearer.is_empty()).then_some(bearer.as_str());
        let (got, body) = stack.get_json(path, bearer).await;
        assert_eq!(got, status, "{path}: {body}");
        assert!(
            body["code"].is_string() && body["detail"].is_string(),
            "{body}"
        );
    }

    // History: today's bucket per scope from the same rows; yesterday ended before any of it.
    let history_cases = [
        (admin.clone(), None, (2, 0, 1, 1)),
        (token("mgr", &["manager"]), Some("u1"), (2, 0, 0, 1)),
        (token("u3", &["sales"]), None, (0, 0, 1, 0)),
    ];
    for (bearer, owner, expected) in history_cases {
        let query = owner.map(|o| format!("owner={o}")).unwrap_or_default();
        let history = get_ok(
            &stack,
            &format!("/api/followup/history?days=3&{query}"),
            &bearer,
        )
        .await;
        let days = history["days"].as_array().unwrap();
        assert_eq!(days.len(), 3, "{history}");
        let today = &days[2];
        let counts = |key: &str| today[key].as_i64().unwrap();
        assert_eq!(
            (
                counts("t3Sent"),
                counts("t7Sent"),
                counts("failed"),
                counts("conversions")
            ),
            expected,
            "{owner:?}: {today}"
        );
        let now = get_ok(&stack, &format!("/api/followup/metrics?{query}"), &bearer).await;
        assert_eq!(
            today["pendingT3"], now["pendingT3"],
            "today ends with the current figures"
        );
        assert_eq!(today["pendingT7"], now["pendingT7"]);
        assert_eq!(
            days[1]["pendingT3"], 0,
            "nothing was pending before today: {history}"
        );
        assert_eq!(days[1]["t3Sent"], 0);
    }
    let (status, body) = stack
        .get_json("/api/followup/history?days=366", Some(&admin))
        .await;
    assert_eq!(status, 400, "{body}");

    // `verify` checks the lists as served, and the days' sent and failed counts, against the
    // same truth.
    let report =
        followup_projector::verify_projection(&mut conn, Utc::now(), chrono_tz::Europe::Berlin)
            .await
            .unwrap();
    assert!(report.is_exact(), "{:?}", report.mismatches);
}
