use chrono::Utc;
use followup_projector::verify_projection;
use followup_readmodel::Scope;

use crate::crm::seed_and_publish;
use crate::helpers::{Harness, TZ};
use crate::kill::run_projector_binary;

#[tokio::test]
async fn verify_names_scope_and_figure_of_a_projection_row_altered_by_hand() {
    let h = Harness::start().await;
    seed_and_publish(&h, 120).await;
    let projector = h.spawn_projector(h.config()).await;
    h.wait_until_caught_up().await;
    projector.stop().await;
    let mut conn = h.db.pool.acquire().await.unwrap();
    let report = verify_projection(&mut conn, Utc::now(), TZ).await.unwrap();
    assert!(report.is_exact(), "{:#?}", report.mismatches);
    let u1 = h.figures(&Scope::User("u1".into()), Utc::now()).await;
    assert!(
        u1.pending_t3 > 0 && u1.sent_today > 0 && u1.conversion_rate > 0.0,
        "{u1:?}"
    );

    sqlx::query(
        "UPDATE projection_scope_figures SET pending_t3 = pending_t3 + 1 WHERE scope = 'user:u1'",
    )
    .execute(&h.db.pool)
    .await
    .unwrap();
    let output = run_projector_binary(&h, &["verify"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    let expected = format!(
        "user:u1 pendingT3 projection={} truth={}",
        u1.pending_t3 + 1,
        u1.pending_t3
    );
    assert!(
        stdout.lines().any(|l| l == expected),
        "no line {expected:?} in:\n{stdout}"
    );
    // The trend history of that scope no longer adds up to its pending figure either.
    assert!(stdout.contains("user:u1 t3History"), "{stdout}");
    assert!(
        !stdout.contains("org "),
        "only the altered scope differs:\n{stdout}"
    );
}
