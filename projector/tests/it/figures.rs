use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::DateTime;
use followup_contract::{COCKPIT_CHANGED_SUBJECT, FollowupKind};
use followup_readmodel::{ChangeNotice, Clock, Scope, Trend, load_recent_runs};
use followup_testkit::eventually;
use futures::StreamExt;

use crate::helpers::{Harness, berlin, change, processed, sample, sent};

fn user(id: &str) -> Scope {
    Scope::User(id.to_owned())
}

#[tokio::test]
async fn user_figures_include_collaborated_leads_and_deleted_leads_count_nowhere() {
    let h = Harness::start().await;
    let at = berlin(2026, 11, 29, 10, 0);
    let events = [
        change(1, 1, "ACTIVE", "u1").at(at), // u1 owns: pending T+3
        change(2, 2, "ACTIVE", "u2")
            .collaborators(&["u1"])
            .t3_sent()
            .at(at), // u1 shares: T+7
        change(3, 3, "ACTIVE", "u2").at(at), // only u2's
        change(4, 4, "ACTIVE", "u1").at(at), // deleted by status below
        change(4, 5, "DELETED", "u1").at(at),
        change(5, 6, "ACTIVE", "u1").t3_sent().at(at), // hard-deleted below
        change(5, 7, "ACTIVE", "u1").t3_sent().deleted().at(at),
        change(6, 8, "CONVERTED", "u2")
            .collaborators(&["u1"])
            .t3_sent()
            .at(at),
        change(7, 9, "ACTIVE", "u1")
            .t3_sent()
            .at(at)
            .collaborators(&[]),
    ];
    for e in &events {
        h.publish(&e.event()).await;
    }
    h.publish(&sent(5, FollowupKind::T3, at)).await; // to a deleted lead: counts nowhere
    h.publish(&sent(6, FollowupKind::T3, at)).await;
    h.publish(&sent(7, FollowupKind::T3, at)).await;
    h.publish(&processed("run-1", at)).await;
    let projector = h.spawn_projector(h.config()).await;
    h.wait_until_caught_up().await;

    let now = berlin(2026, 11, 29, 18, 0);
    let u1 = h.figures(&user("u1"), now).await;
    assert_eq!(
        (u1.pending_t3, u1.pending_t7, u1.sent_today),
        (1, 2, 2),
        "{u1:?}"
    );
    assert_eq!(u1.conversion_rate, 50.0, "lead 6 converted, lead 7 not");
    let u2 = h.figures(&user("u2"), now).await;
    assert_eq!(
        (u2.pending_t3, u2.pending_t7, u2.sent_today),
        (1, 1, 1),
        "{u2:?}"
    );
    assert_eq!(u2.conversion_rate, 100.0);
    let org = h.figures(&Scope::Org, now).await;
    assert_eq!(
        (org.pending_t3, org.pending_t7, org.sent_today),
        (2, 2, 2),
        "{org:?}"
    );
    let nobody = h.figures(&user("u9"), now).await;
    assert_eq!(
        (nobody.pending_t3, nobody.sent_today, nobody.conversion_rate),
        (0, 0, 0.0)
    );
    let runs = load_recent_runs(&h.db.pool, 10).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].run_id, "run-1");

    // Moving lead 1 from u1 to u3 is announced to both.
    let mut notices = h.client.subscribe(COCKPIT_CHANGED_SUBJECT).await.unwrap();
    h.client.flush().await.unwrap();
    h.publish(&change(1, 10, "ACTIVE", "u3").at(at).event())
        .await;
    let message = tokio::time::timeout(Duration::from_secs(10), notices.next())
        .await
        .unwrap()
        .unwrap();
    let notice: ChangeNotice = serde_json::from_slice(&message.payload).unwrap();
    assert_eq!(notice.users, ["u1", "u3"]);
    assert!(notice.org);
    h.wait_until_caught_up().await;
    assert_eq!(h.figures(&user("u1"), now).await.pending_t3, 0);
    assert_eq!(h.figures(&user("u3"), now).await.pending_t3, 1);
    projector.stop().await;
}

#[tokio::test]
async fn sent_today_and_trends_roll_over_at_local_midnight() {
    let h = Harness::start().await;
    // 23:30 in Berlin is 22:30 UTC: still the 29th locally.
    let late = berlin(2026, 11, 29, 23, 30);
    h.publish(
        &change(1, 1, "ACTIVE", "u1")
            .at(berlin(2026, 11, 29, 9, 0))
            .event(),
    )
    .await;
    h.publish(&change(1, 2, "ACTIVE", "u1").t3_sent().at(late).event())
        .await;
    h.publish(&sent(1, FollowupKind::T3, late)).await;

    let clock_at = Arc::new(AtomicI64::new(berlin(2026, 11, 29, 23, 45).timestamp()));
    let clock = {
        let clock_at = clock_at.clone();
        Clock::from_fn(move || {
            DateTime::from_timestamp(clock_at.load(Ordering::SeqCst), 0).unwrap()
        })
    };
    let mut config = h.config();
    config.clock = clock.clone();
    let projector = h.spawn_projector(config).await;
    h.wait_until_caught_up().await;

    let before = h.figures(&user("u1"), clock.now()).await;
    assert_eq!(before.sent_today, 1);
    assert_eq!(
        (before.t3_trend, before.t7_trend),
        (Trend::Flat, Trend::Up),
        "{before:?}"
    );
    let gauge = eventually(Duration::from_secs(10), || async {
        let m = projector.metrics().await;
        (sample(&m, "followup_sent_today", &[]) == 1.0).then_some(())
    })
    .await;
    assert!(gauge.is_some(), "sent-today gauge before midnight");

    // Half an hour later it is the 30th in Berlin (though still the 29th in UTC).
    clock_at.store(berlin(2026, 11, 30, 0, 15).timestamp(), Ordering::SeqCst);
    let after = h.figures(&user("u1"), clock.now()).await;
    assert_eq!(after.sent_today, 0);
    assert_eq!((after.t3_trend, after.t7_trend), (Trend::Flat, Trend::Flat));
    assert_eq!(after.pending_t7, 1);
    let gauge = eventually(Duration::from_secs(10), || async {
        let m = projector.metrics().await;
        (sample(&m, "followup_sent_today", &[]) == 0.0).then_some(())
    })
    .await;
    assert!(
        gauge.is_some(),
        "the idle projector rolls its gauge over at local midnight"
    );
    projector.stop().await;
}
