//! The CRM's due rules, driven by the shared table (`followup_testkit::due_cases`), with an
//! injected clock.

use chrono::{Duration, Utc};
use followup_testkit::TestDb;
use followup_testkit::due_cases::{Due, due_cases};

use crate::support::run_at;

#[tokio::test]
async fn due_rules_decide_who_gets_which_follow_up() {
    let db = TestDb::new().await;
    // The run clock is injected; deliveries are stamped with the later of it and the real clock,
    // so the test's clock is the real one, fixed once.
    let now = Utc::now();
    // The one table of the rules (testkit `due_cases`), shared with the projector's tests.
    let cases = due_cases(now);
    let mut ids = Vec::new();
    for case in &cases {
        ids.push(case.insert(&db.pool).await);
    }
    let id_of = |name: &str| {
        let at = cases
            .iter()
            .position(|c| c.name == name)
            .unwrap_or_else(|| panic!("no case {name:?}"));
        ids[at]
    };

    let report = run_at(&db.pool, now).await;

    let mailed = |d: Due| cases.iter().filter(|c| c.mailed() == Some(d)).count() as i64;
    let skipped = cases.iter().filter(|c| c.skipped()).count() as i64;
    assert_eq!(report.t3_count, mailed(Due::T3), "t3Count");
    assert_eq!(report.t7_count, mailed(Due::T7), "t7Count");
    assert_eq!(report.skipped_count, skipped, "skippedCount");
    assert_eq!(report.error_count, 0);
    for (case, id) in cases.iter().zip(&ids) {
        let kinds: Vec<String> = sqlx::query_scalar(
            "SELECT kind FROM followup_deliveries WHERE lead_id = $1 AND status = 'sent' ORDER BY kind",
        )
        .bind(id)
        .fetch_all(&db.pool)
        .await
        .unwrap();
        let wanted: Vec<String> = match case.mailed() {
            Some(Due::T3) => vec!["t3".into()],
            Some(Due::T7) => vec!["t7".into()],
            Some(Due::Neither) | None => vec![],
        };
        assert_eq!(kinds, wanted, "case {:?}", case.name);
    }

    // The T+7 lead became REMINDER with the CRM's bookkeeping and one activity row.
    let t7_id = id_of("exactly 7 days after T+3");
    let (status, followups, reminder, sent): (String, i32, Option<chrono::NaiveDateTime>, bool) = sqlx::query_as(
        "SELECT status, followup_count, reminder_sent_at, t7_followup_sent FROM leads WHERE id = $1",
    )
    .bind(t7_id)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!((status.as_str(), followups, sent), ("REMINDER", 1, true));
    // A naive timestamp holding UTC, although the test's session is in Europe/Berlin.
    let reminder = reminder.expect("reminder_sent_at set").and_utc();
    assert!(
        (reminder - Utc::now()).num_minutes().abs() < 5,
        "reminder_sent_at {reminder} is UTC"
    );
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
    assert_eq!(later.skipped_count, skipped);
    let overdue_kinds: Vec<String> =
        sqlx::query_scalar("SELECT kind FROM followup_deliveries WHERE lead_id = $1 ORDER BY kind")
            .bind(id_of("overdue 7 days without T+3 gets T+3 first"))
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(overdue_kinds, vec!["t3".to_owned(), "t7".to_owned()]);
    // A NULL followup_count reads as 0: one follow-up makes it 1.
    let nulls = id_of("T+3 sent, T+7 flag NULL: T+7 due");
    let (count_after, version): (Option<i32>, i64) =
        sqlx::query_as("SELECT followup_count, version FROM leads WHERE id = $1")
            .bind(nulls)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(count_after, Some(1), "NULL followup_count + one T+7");
    assert_eq!(
        version, 1,
        "our update incremented the CRM's optimistic-lock version"
    );
    let third = run_at(&db.pool, now + Duration::hours(2)).await;
    assert_eq!(
        (third.t3_count, third.t7_count),
        (0, 0),
        "each kind at most once"
    );
}
