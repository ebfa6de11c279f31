//! The cockpit's pending rule, pinned to the one table of the rules (`followup_testkit::due_cases`,
//! also run against the producer's claim): every case's lead is inserted into the CRM, then
//! `verify`'s truth SQL and the projection (the snapshot of the CRM, folded by the pure model)
//! must count it as the table says, lead by lead (each case has its own owner, so its user scope
//! holds that lead alone) and for the organisation. The projection is built twice: from the
//! snapshot of the CRM, and from the events the CRM's triggers wrote (plus the earlier final
//! failures as `lead.followup.failed.v1`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use followup_contract::{EventParts, FollowupFailed, FollowupKind, failed_key};
use followup_projector::{ensure_snapshot, truth_pending, verify_projection};
use followup_readmodel::{Scope, load_figures};
use followup_testkit::due_cases::{Due, DueCase, due_cases};
use followup_testkit::{TestDb, eventually};
use sqlx::PgPool;

use crate::helpers::{Harness, TZ};

/// `(pendingT3, pendingT7)` the table expects of a case.
fn expected(case: &DueCase) -> (i64, i64) {
    match case.pending {
        Due::Neither => (0, 0),
        Due::T3 => (1, 0),
        Due::T7 => (0, 1),
    }
}

#[tokio::test]
async fn due_cases_pending_in_verify_truth_and_snapshot() {
    let db = TestDb::new().await;
    let now = Utc::now();
    let cases = due_cases(now);
    for case in &cases {
        case.insert(&db.pool).await;
    }
    let mut conn = db.pool.acquire().await.unwrap();
    ensure_snapshot(&mut conn, TZ)
        .await
        .unwrap()
        .expect("a fresh projection takes the snapshot");

    assert_forms_match(&db.pool, &cases, now).await;
    let report = verify_projection(&mut conn, now, TZ).await.unwrap();
    assert!(report.is_exact(), "{:#?}", report.mismatches);
}

/// `verify`'s truth and the projection count every case's lead as the table says.
async fn assert_forms_match(pool: &PgPool, cases: &[DueCase], now: DateTime<Utc>) {
    let mut conn = pool.acquire().await.unwrap();
    let truth = truth_pending(&mut conn, now, TZ).await.unwrap();
    let mut wrong = Vec::new();
    for case in cases {
        let want = expected(case);
        let scope = Scope::User(case.owner());
        let truth = truth.get(&scope.key()).copied().unwrap_or_default();
        let figures = load_figures(pool, &scope, now, TZ).await.unwrap();
        let projection = (figures.pending_t3, figures.pending_t7);
        if truth != want || projection != want {
            wrong.push(format!(
                "{:?}: table {want:?}, verify truth {truth:?}, projection {projection:?}",
                case.name
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "forms disagree with the table:\n{}",
        wrong.join("\n")
    );

    let sum = cases
        .iter()
        .map(expected)
        .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    assert_eq!(
        truth.get("org").copied().unwrap_or_default(),
        sum,
        "org truth"
    );
    let org = load_figures(pool, &Scope::Org, now, TZ).await.unwrap();
    assert_eq!((org.pending_t3, org.pending_t7), sum, "org projection");
}

#[tokio::test]
async fn due_cases_pending_in_verify_truth_and_events() {
    let h = Harness::start().await;
    let projector = h.spawn_projector(h.config()).await;
    // The (empty) snapshot first, so every case reaches the projection as events.
    let snapshot = eventually(Duration::from_secs(30), || async {
        sqlx::query_scalar::<_, bool>("SELECT snapshot_at IS NOT NULL FROM projection_state")
            .fetch_optional(&h.db.pool)
            .await
            .ok()
            .flatten()
            .filter(|taken| *taken)
    })
    .await;
    assert!(snapshot.is_some(), "no snapshot on first start");
    let now = Utc::now();
    let cases = due_cases(now);
    let mut failures = Vec::new();
    for case in &cases {
        let id = case.insert(&h.db.pool).await;
        if let Some(kind) = case.failed_earlier {
            let kind = FollowupKind::parse(kind).expect("t3 or t7");
            failures.push(EventParts::new(
                Some(id.to_string()),
                failed_key(id, kind),
                now,
                &FollowupFailed {
                    lead_id: id,
                    owner_user_id: case.lead.owner_user_id.clone(),
                    kind,
                    reason: "550 mailbox unavailable".into(),
                    attempts: 5,
                },
            ));
        }
    }
    assert!(h.relay_outbox().await >= cases.len(), "one event per lead");
    for event in &failures {
        h.publish(event).await;
    }
    h.wait_until_caught_up().await;
    assert_forms_match(&h.db.pool, &cases, now).await;
    let mut conn = h.db.pool.acquire().await.unwrap();
    let report = verify_projection(&mut conn, now, TZ).await.unwrap();
    assert!(report.is_exact(), "{:#?}", report.mismatches);
    drop(conn);
    projector.stop().await;
}
