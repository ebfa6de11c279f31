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
        // The CRM's production schema: consent withdrawn through its GDPR function (metadata
        // untouched), erasure, NULL in every nullable column (NULL means the column's default).
        (
            "GDPR withdrawal: contact_blocked and consent_revoked_at, metadata untouched",
            LeadSpec {
                crm: |l| {
                    l.contact_blocked = Some(true);
                    l.consent_revoked_at = Some(Utc::now() - Duration::hours(1));
                },
                ..base(now - day * 5)
            },
            Expect::Skipped,
        ),
        (
            "consent_revoked_at alone",
            LeadSpec {
                crm: |l| l.consent_revoked_at = Some(Utc::now() - Duration::hours(1)),
                ..base(now - day * 5)
            },
            Expect::Skipped,
        ),
        (
            "contact_blocked alone",
            LeadSpec {
                crm: |l| l.contact_blocked = Some(true),
                ..base(now - day * 5)
            },
            Expect::Skipped,
        ),
        (
            "GDPR-erased",
            LeadSpec {
                crm: |l| l.gdpr_deleted = Some(true),
                ..base(now - day * 5)
            },
            Expect::Skipped,
        ),
        (
            "metadata NULL (no consent) does not stop the run",
            LeadSpec {
                crm: |l| l.metadata = None,
                ..base(now - day * 5)
            },
            Expect::Skipped,
        ),
        (
            "every nullable flag NULL: T+3 due",
            LeadSpec {
                crm: |l| {
                    l.t3_followup_sent = None;
                    l.t7_followup_sent = None;
                    l.followup_count = None;
                    l.contact_blocked = None;
                    l.gdpr_deleted = None;
                },
                ..base(now - day * 5)
            },
            Expect::T3,
        ),
        (
            "T+3 sent, T+7 flag NULL: T+7 due",
            LeadSpec {
                t3_sent: true,
                crm: |l| {
                    l.t7_followup_sent = None;
                    l.followup_count = None;
                },
                ..base(now - day * 8)
            },
            Expect::T7,
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
    assert_eq!(later.skipped_count, count(Expect::Skipped));
    let overdue_kinds: Vec<String> =
        sqlx::query_scalar("SELECT kind FROM followup_deliveries WHERE lead_id = $1 ORDER BY kind")
            .bind(ids[9])
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(overdue_kinds, vec!["t3".to_owned(), "t7".to_owned()]);
    // A NULL followup_count reads as 0: one follow-up makes it 1.
    let nulls = ids[cases.len() - 1];
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
