//! The cockpit's pending rule, pinned to the one table of the rules (`followup_testkit::due_cases`,
//! also run against the producer's claim): every case's lead is inserted into the CRM, then
//! `verify`'s truth SQL and the projection (the snapshot of the CRM, folded by the pure model)
//! must count it as the table says, lead by lead (each case has its own owner, so its user scope
//! holds that lead alone) and for the organisation.

use chrono::Utc;
use followup_projector::{ensure_snapshot, truth_pending, verify_projection};
use followup_readmodel::{Scope, load_figures};
use followup_testkit::TestDb;
use followup_testkit::due_cases::{Due, DueCase, due_cases};

use crate::helpers::TZ;

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
    let truth = truth_pending(&mut conn, now, TZ).await.unwrap();
    ensure_snapshot(&mut conn, TZ)
        .await
        .unwrap()
        .expect("a fresh projection takes the snapshot");

    let mut wrong = Vec::new();
    for case in &cases {
        let want = expected(case);
        let scope = Scope::User(case.owner());
        let truth = truth.get(&scope.key()).copied().unwrap_or_default();
        let figures = load_figures(&db.pool, &scope, now, TZ).await.unwrap();
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
    let org = load_figures(&db.pool, &Scope::Org, now, TZ).await.unwrap();
    assert_eq!((org.pending_t3, org.pending_t7), sum, "org projection");
    let report = verify_projection(&mut conn, now, TZ).await.unwrap();
    assert!(report.is_exact(), "{:#?}", report.mismatches);
}
