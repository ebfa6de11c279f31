use chrono::Duration;
use followup_contract::FollowupKind;
use followup_projector::rebuild_projection;
use followup_readmodel::Scope;

use crate::helpers::{Harness, TZ, berlin, change, processed, sent};

/// Every table of the projection, in a stable order, as JSON text.
async fn snapshot(h: &Harness) -> Vec<String> {
    let queries: [&'static str; 7] = [
        // When an id was applied differs by nature; which ids were is compared.
        "SELECT jsonb_agg(event_id ORDER BY event_id)::text FROM projection_inbox t",
        "SELECT jsonb_agg(t ORDER BY lead_id)::text FROM projection_leads t",
        "SELECT jsonb_agg(t ORDER BY lead_id, kind)::text FROM projection_deliveries t",
        "SELECT jsonb_agg(t ORDER BY scope)::text FROM projection_scope_figures t",
        "SELECT jsonb_agg(t ORDER BY scope, local_date)::text FROM projection_scope_days t",
        "SELECT jsonb_agg(t ORDER BY run_id)::text FROM projection_runs t",
        // When the snapshot was taken differs by nature; that one was taken is checked.
        "SELECT jsonb_agg(to_jsonb(t) - 'snapshot_at' \
                          || jsonb_build_object('snapshot', t.snapshot_at IS NOT NULL))::text \
         FROM projection_state t",
    ];
    let mut tables = Vec::new();
    for sql in queries {
        let json: Option<String> = sqlx::query_scalar(sql).fetch_one(&h.db.pool).await.unwrap();
        tables.push(json.unwrap_or_default());
    }
    tables
}

#[tokio::test]
async fn rebuild_produces_exactly_the_incrementally_built_projection() {
    let h = Harness::start().await;
    h.nats
        .skip_catalog_check("mixes poison and republished duplicates into the history on purpose");
    let start = berlin(2026, 11, 27, 8, 0);
    let owners = ["u1", "u2", "u3", "u4"];
    // Three days of activity: creations, out-of-order changes, moves, deliveries, conversions,
    // deletions, duplicates and a poison message.
    for i in 0..240_i64 {
        let lead = i % 60 + 1;
        let at = start + Duration::minutes(i * 17);
        let owner = owners[(i as usize / 60 + lead as usize) % 4];
        let status = match i % 9 {
            0 => "CONVERTED",
            5 => "LOST",
            _ => "ACTIVE",
        };
        // Per lead, sequences 10, 30, 20, 40: the third change arrives late and is stale.
        let sequence = [10, 30, 20, 40][(i / 60) as usize];
        let mut c = change(lead, sequence, status, owner).at(at);
        if i % 4 == 1 {
            c = c.collaborators(&[owners[(lead as usize + 1) % 4]]);
        }
        if i >= 120 {
            c = c.t3_sent();
        }
        if i % 37 == 0 {
            c = c.deleted();
        }
        let event = c.event();
        h.publish(&event).await;
        if i % 23 == 0 {
            h.publish_with_msg_id(&event, &format!("again-{i}")).await;
        }
        if i >= 120 && i % 3 == 0 {
            h.publish(&sent(
                lead,
                if i % 2 == 0 {
                    FollowupKind::T3
                } else {
                    FollowupKind::T7
                },
                at,
            ))
            .await;
        }
        if i % 50 == 0 {
            h.publish(&processed(&format!("run-{i}"), at)).await;
            h.publish_raw(
                "freshplan.lead.changed",
                b"poison".to_vec(),
                &format!("poison-{i}"),
            )
            .await;
        }
    }
    let mut config = h.config();
    config.batch_size = 7;
    let projector = h.spawn_projector(config).await;
    h.wait_until_caught_up().await;
    let incremental = snapshot(&h).await;
    assert!(
        incremental[4].len() > 100,
        "several days of counters: {}",
        incremental[4]
    );

    // Rebuild with another batch size while `serve` keeps running.
    let mut phases = Vec::new();
    let mut progress = |p: &followup_projector::RebuildProgress| phases.push((p.phase, p.position));
    let done = rebuild_projection(&h.db.pool, &h.js, TZ, 1000, &mut progress)
        .await
        .unwrap();
    assert_eq!(done.skipped, 5, "the poison messages");
    assert!(
        phases.iter().any(|(phase, _)| *phase == "build"),
        "{phases:?}"
    );
    let rebuilt = snapshot(&h).await;
    for (table, (a, b)) in incremental.iter().zip(&rebuilt).enumerate() {
        assert_eq!(a, b, "table #{table} differs after rebuild");
    }
    let leftover: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_namespace WHERE nspname IN ('projection_rebuild', 'projection_retired')",
    )
    .fetch_one(&h.db.pool)
    .await
    .unwrap();
    assert_eq!(leftover, 0, "shadow schemas are dropped");

    // `serve` goes on writing into the swapped-in tables.
    let at = start + Duration::days(3);
    let before = h.figures(&Scope::Org, at).await.pending_t3;
    h.publish(&change(500, 1, "ACTIVE", "u1").at(at).event())
        .await;
    h.wait_until_caught_up().await;
    assert_eq!(h.figures(&Scope::Org, at).await.pending_t3, before + 1);
    projector.stop().await;
}

/// What the CRM does not keep — conversions per day and the pending figures at earlier days'
/// ends — survives a rebuild, even when the stream no longer holds the events that made it
/// (here: recorded history the stream never had); the nets still add up to today's pending.
#[tokio::test]
async fn rebuild_keeps_the_recorded_history() {
    let h = Harness::start().await;
    let start = berlin(2026, 11, 20, 9, 0);
    h.publish(&change(1, 1, "ACTIVE", "u1").at(start).event())
        .await;
    h.publish(
        &change(2, 1, "ACTIVE", "u1")
            .at(start + Duration::days(1))
            .event(),
    )
    .await;
    h.publish(&sent(2, FollowupKind::T3, start + Duration::days(2)))
        .await;
    let projector = h.spawn_projector(h.config()).await;
    h.wait_until_caught_up().await;
    // Recorded history the stream does not hold: two conversions on the 18th, and a lead that
    // was pending from the 18th to the 19th.
    for sql in [
        "INSERT INTO projection_scope_days (scope, local_date, converted, t3_net) \
         VALUES ('org', '2026-11-18', 2, 1)",
        "INSERT INTO projection_scope_days (scope, local_date, t3_net) VALUES ('org', '2026-11-19', -1)",
    ] {
        sqlx::query(sql).execute(&h.db.pool).await.unwrap();
    }
    let days = |h: &Harness| {
        let pool = h.db.pool.clone();
        async move {
            sqlx::query_as::<_, (chrono::NaiveDate, i64, i64)>(
                "SELECT local_date, converted, t3_net FROM projection_scope_days \
                 WHERE scope = 'org' ORDER BY local_date",
            )
            .fetch_all(&pool)
            .await
            .unwrap()
        }
    };
    let before = days(&h).await;
    rebuild_projection(&h.db.pool, &h.js, TZ, 100, &mut |_| {})
        .await
        .unwrap();
    let after = days(&h).await;
    assert_eq!(after, before, "the recorded days are kept");
    let mut conn = h.db.pool.acquire().await.unwrap();
    let report = followup_projector::verify_projection(&mut conn, chrono::Utc::now(), TZ)
        .await
        .unwrap();
    let history: Vec<_> = report
        .mismatches
        .iter()
        .filter(|m| m.figure.ends_with("History"))
        .collect();
    assert!(
        history.is_empty(),
        "nets add up to the pending figures: {history:?}"
    );
    projector.stop().await;
}
