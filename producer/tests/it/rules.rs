//! The CRM's due rules, table-driven, with an injected clock.

use chrono::{Duration, Utc};
use followup_testkit::TestDb;

use crate::support::{LeadSpec, insert_lead, run_at};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    Nothing,
    Skipped,
    T3,
    T7,
}

#[tokio::test]
async fn due_rules_decide_who_gets_which_follow_up() {
    let db = TestDb::new().await;
    // The run clock is injected; deliveries are stamped with the later of it and the real clock,
    // so the test's clock is the real one, fixed once.
    let now = Utc::now();
    let day = Duration::days(1);
    let sec = Duration::seconds(1);
    let base = |at| LeadSpec::registered(at);
    let cases: Vec<(&str, LeadSpec, Expect)> = vec![
        ("exactly 3 days", base(now - day * 3), Expect::T3),
        (
            "one second short of 3 days",
            base(now - day * 3 + sec),
            Expect::Nothing,
        ),
        (
            "status REGISTERED",
            LeadSpec {
                status: "REGISTERED",
                ..base(now - day * 5)
            },
            Expect::Nothing,
        ),
        (
            "status CONVERTED",
            LeadSpec {
                status: "CONVERTED",
                ..base(now - day * 5)
            },
            Expect::Nothing,
        ),
        (
            "clock stopped",
            LeadSpec {
                clock_stopped: true,
                ..base(now - day * 5)
            },
            Expect::Nothing,
        ),
        (
            "consent missing",
            LeadSpec {
                consent: None,
                ..base(now - day * 5)
            },
            Expect::Skipped,
        ),
        (
            "consent false",
            LeadSpec {
                consent: Some(false),
                ..base(now - day * 5)
            },
            Expect::Skipped,
        ),
        (
            "blank e-mail",
            LeadSpec {
                email: Some("   "),
                ..base(now - day * 5)
            },
            Expect::Skipped,
        ),
        (
            "no e-mail",
            LeadSpec {
                email: None,
                ..base(now - day * 5)
            },
            Expect::Skipped,
        ),
        (
            "overdue 7 days without T+3 gets T+3 first",
            base(now - day * 7),
            Expect::T3,
        ),
        (
            "exactly 7 days after T+3",
            LeadSpec {
                t3_sent: true,
                ..base(now - day * 7)
            },
            Expect::T7,
        ),
        (
            "one second short of 7 days",
            LeadSpec {
                t3_sent: true,
                ..base(now - day * 7 + sec)
            },
            Expect::Nothing,
        ),
        (
            "both sent",
            LeadSpec {
                t3_sent: true,
                t7_sent: true,
                ..base(now - day * 10)
            },
            Expect::Nothing,
        ),
        (
            "T+7 due but no consent",
            LeadSpec {
                t3_sent: true,
                consent: None,
                ..base(now - day * 8)
            },
            Expect::Skipped,
        ),
    ];
    let mut ids = Vec::new();
    for (_, spec, _) in &cases {
        ids.push(insert_lead(&db.pool, spec).await);
    }

    let report = run_at(&db.pool, now).await;

    let count = |e: Expect| cases.iter().filter(|(_, _, x)| *x == e).count() as i64;
    assert_eq!(report.t3_count, count(Expect::T3), "t3Count");
    assert_eq!(report.t7_count, count(Expect::T7), "t7Count");
    assert_eq!(report.skipped_count, count(Expect::Skipped), "skippedCount");
    assert_eq!(report.error_count, 0);
    for ((name, _, expect), id) in cases.iter().zip(&ids) {
        let kinds: Vec<String> = sqlx::query_scalar(
            "SELECT kind FROM followup_deliveries WHERE lead_id = $1 AND status = 'sent' ORDER BY kind",
        )
        .bind(id)
        .fetch_all(&db.pool)
        .await
        .unwrap();
        let wanted: Vec<String> = match expect {
            Expect::T3 => vec!["t3".into()],
            Expect::T7 => vec!["t7".into()],
            Expect::Nothing | Expect::Skipped => vec![],
        };
        assert_eq!(kinds, wanted, "case {name:?}");
    }

    // The T+7 lead became REMINDER with the CRM's bookkeeping and one activity row.
    let t7_id = ids[10];
    let (status, followups, reminder, sent): (String, i32, Option<chrono::DateTime<Utc>>, bool) = sqlx::query_as(
        "SELECT status, followup_count, reminder_sent_at, t7_followup_sent FROM leads WHERE id = $1",
    )
    .bind(t7_id)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!((status.as_str(), followups, sent), ("REMINDER", 1, true));
    assert!(reminder.is_some());
    let activity: (String, String, serde_json::Value) = sqlx::query_as(
        "SELECT user_id, activity_type, metadata FROM lead_activities WHERE lead_id = $1",
    )
    .bind(t7_id)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        (activity.0.as_str(), activity.1.as_str()),
        ("SYSTEM", "NOTE")
    );
    assert_eq!(activity.2["followup_type"], "T7_FOLLOWUP");
    assert_eq!(activity.2["automated"], true);

    // An hour later: the overdue lead gets its T+7, the two leads that were a second short are
    // due now; nothing is sent twice; skips count again.
    let later = run_at(&db.pool, now + Duration::hours(1)).await;
    assert_eq!((later.t3_count, later.t7_count), (1, 2));
    assert_eq!(later.skipped_count, count(Expect::Skipped));
    let overdue_kinds: Vec<String> =
        sqlx::query_scalar("SELECT kind FROM followup_deliveries WHERE lead_id = $1 ORDER BY kind")
            .bind(ids[9])
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(overdue_kinds, vec!["t3".to_owned(), "t7".to_owned()]);
    let third = run_at(&db.pool, now + Duration::hours(2)).await;
    assert_eq!(
        (third.t3_count, third.t7_count),
        (0, 0),
        "each kind at most once"
    );
}
