//! The cockpit page's lists and 30-day chart in headless Chromium (issue 15), in German, driven
//! by `gateway/browser-test/insights.mjs`: a tile opened by keyboard pages through its leads
//! (three a page, `?pageSize=3`), Esc gives the focus back, the footer opens the failed ones, the
//! chart's bars carry exactly what the history endpoint and the dataset say, and today's bucket
//! follows a conversion without a reload. Screenshots: `target/artifacts/cockpit-list.png` and
//! `cockpit-chart.png` (copied to `docs/images/`).

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::Utc;
use followup_testkit::crm::CrmLead;
use serde_json::{Value, json};

use crate::browser::{Driver, artifacts_dir, browser_ready, browser_test_dir, producer_run};
use crate::support::{Stack, insert_lead, token};

/// The non-zero bars of a history answer, as the chart draws them (T+3, T+7, conversions).
fn bars_of(history: &Value) -> Vec<Value> {
    let mut bars = Vec::new();
    for day in history["days"].as_array().unwrap() {
        for series in ["t3Sent", "t7Sent", "conversions"] {
            let value = day[series].as_i64().unwrap();
            if value > 0 {
                bars.push(json!({"date": day["date"], "series": series, "value": value}));
            }
        }
    }
    bars
}

async fn convert(pool: &sqlx::PgPool, lead: i64) {
    sqlx::query("UPDATE leads SET status = 'CONVERTED', version = version + 1 WHERE id = $1")
        .bind(lead)
        .execute(pool)
        .await
        .unwrap();
}

#[tokio::test]
async fn cockpit_lists_and_chart_in_chromium() {
    if !browser_ready() {
        return;
    }
    let stack = Stack::start().await;
    let pool = &stack.db.pool;
    let admin = token("boss", &["admin"]);
    let ago = |days: i64| Utc::now() - chrono::Duration::days(days) - chrono::Duration::minutes(5);

    // Seven fresh leads pending T+3 (three pages of three), three due for T+3, two for T+3 and
    // then T+7: today 5 T+3 and 2 T+7 sent; one followed-up lead converts.
    let mut fresh = Vec::new();
    let registered = ago(0);
    for i in 1..=7 {
        let mut lead = CrmLead::active(if i % 2 == 0 { "u2" } else { "u1" }, registered);
        lead.company_name = format!("Bäckerei Nummer {i}");
        fresh.push(lead.insert(pool).await);
    }
    let mut t3_due = Vec::new();
    for _ in 0..3 {
        t3_due.push(insert_lead(pool, "u1", &[], ago(4)).await);
    }
    for _ in 0..2 {
        insert_lead(pool, "u2", &[], ago(8)).await;
    }
    let first = producer_run(pool).await; // T+3 to all five
    let second = producer_run(pool).await; // T+7 to the two of 8 days
    assert_eq!(
        (first.t3_count, second.t7_count),
        (5, 2),
        "{first:?} {second:?}"
    );
    convert(pool, t3_due[0]).await;
    stack
        .wait_for_figures("/api/followup/metrics", &admin, |f| {
            f["pendingT3"] == 7 && f["pendingT7"] == 2 && f["sentToday"] == 7
        })
        .await;
    let today = Utc::now()
        .with_timezone(&chrono_tz::Europe::Berlin)
        .date_naive()
        .to_string();
    let expected_bars = json!([
        {"date": today, "series": "t3Sent", "value": 5},
        {"date": today, "series": "t7Sent", "value": 2},
        {"date": today, "series": "conversions", "value": 1},
    ]);
    let history = followup_testkit::eventually(Duration::from_secs(20), || async {
        let (status, history) = stack
            .get_json("/api/followup/history?days=30", Some(&admin))
            .await;
        assert_eq!(status, 200, "{history}");
        (Value::Array(bars_of(&history)) == expected_bars).then_some(history)
    })
    .await
    .expect("the history shows today's follow-ups and the conversion");
    // The page lists pending T+3 in the gateway's order.
    let (_, page) = stack
        .get_json(
            "/api/followup/leads?figure=pendingT3&limit=200",
            Some(&admin),
        )
        .await;
    let listed: Vec<i64> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["leadId"].as_i64().unwrap())
        .collect();
    assert_eq!(
        listed.iter().copied().collect::<BTreeSet<_>>(),
        fresh.iter().copied().collect::<BTreeSet<_>>()
    );

    let list_shot = artifacts_dir().join("cockpit-list.png");
    let chart_shot = artifacts_dir().join("cockpit-chart.png");
    let _ = std::fs::remove_file(&list_shot);
    let _ = std::fs::remove_file(&chart_shot);
    let mut driver = Driver::start(
        &browser_test_dir(),
        "insights.mjs",
        &[
            ("GATEWAY_URL", stack.url("")),
            ("TOKEN", admin.clone()),
            ("PAGE_SIZE", "3".to_owned()),
            ("LIST_SHOT", list_shot.display().to_string()),
            ("CHART_SHOT", chart_shot.display().to_string()),
        ],
    );

    // The chart: 30 days, exactly the bars the history has, named in German, not colour alone.
    let chart = driver.expect("CHART").await;
    eprintln!("[browser] chart: {chart}");
    assert_eq!(chart["lang"], "de");
    assert_eq!(chart["days"], 30);
    assert_eq!(chart["tableRows"], 30, "a row per day in the hidden table");
    assert_eq!(chart["bars"], Value::Array(bars_of(&history)));
    assert_eq!(chart["bars"], expected_bars);
    assert_eq!(chart["caption"], "Letzte 30 Tage");
    assert_eq!(chart["svgRole"], "img");
    assert_eq!(
        chart["summary"],
        "In den letzten 30 Tagen 5 T+3 und 2 T+7 Follow-ups versendet, 1 Konversionen."
    );
    assert_eq!(
        chart["legend"],
        json!(["T+3 versendet", "T+7 versendet", "Konversionen"])
    );
    let last_row = chart["lastRow"].as_array().unwrap();
    assert_eq!(
        &last_row[1..],
        &[json!("5"), json!("2"), json!("1"), json!("0")]
    );
    assert!(
        chart["fills"]["t3Sent"]
            .as_str()
            .unwrap()
            .starts_with("rgb")
    );
    for patterned in ["t7Sent", "conversions"] {
        let fill = chart["fills"][patterned].as_str().unwrap();
        assert!(fill.starts_with("url("), "{patterned} by pattern: {fill}");
    }

    // The list: opened by Enter on the tile, three a page, to the end.
    let list = driver.expect("LIST").await;
    eprintln!("[browser] list: {list}");
    assert_eq!(list["title"], "T+3 ausstehend");
    assert_eq!(list["role"], "dialog");
    assert_eq!(
        list["focusAfterOpen"], "list-title",
        "the focus moved into the panel"
    );
    assert_eq!(list["expanded"], "true");
    assert_eq!(list["pages"], json!([3, 6, 7]));
    assert_eq!(
        list["moreHidden"], true,
        "no more button after the last page"
    );
    assert_eq!(
        list["headers"],
        json!([
            "Firma",
            "Verantwortlich",
            "Status",
            "Fällig",
            "Letztes Follow-up"
        ])
    );
    let rows = list["rows"].as_array().unwrap();
    let shown: Vec<i64> = rows.iter().map(|r| r["leadId"].as_i64().unwrap()).collect();
    assert_eq!(shown, listed, "every lead once, in the gateway's order");
    // From the registration, not from now: near local midnight the two are different days.
    let due_date = (registered
        .with_timezone(&chrono_tz::Europe::Berlin)
        .date_naive()
        + chrono::Duration::days(3))
    .format("%d.%m.%Y")
    .to_string();
    for row in rows {
        let cells = &row["cells"];
        assert!(
            cells["company"]
                .as_str()
                .unwrap()
                .starts_with("Bäckerei Nummer ")
        );
        assert_eq!(cells["status"], "aktiv");
        assert_eq!(cells["due"], format!("T+3 später, {due_date}"));
        assert_eq!(cells["last"], "–");
    }
    assert_eq!(list["status"], "7 Leads geladen");
    assert_eq!(list["statusLive"], "polite");
    let requests = list["requests"].as_array().unwrap();
    assert_eq!(requests.len(), 3, "{requests:?}");
    assert!(
        requests
            .iter()
            .all(|r| r.as_str().unwrap().contains("limit=3"))
    );
    assert!(requests[1].as_str().unwrap().contains("after="));

    let closed = driver.expect("CLOSED").await;
    assert_eq!(
        closed["focus"], "pendingT3",
        "Esc gives the focus back to the tile"
    );
    assert_eq!(closed["expanded"], "false");
    assert_eq!(closed["failedTitle"], "Fehlgeschlagen");
    assert_eq!(closed["failedHeaders"].as_array().unwrap().len(), 6);
    assert_eq!(closed["failedHeaders"][5], "Fehlergrund");

    // Another followed-up lead converts: today's bucket follows the frames.
    convert(pool, t3_due[1]).await;
    driver
        .send(&format!(
            r#"EXPECT {{"series":"conversions","date":"{today}","value":2}}"#
        ))
        .await;
    let done = driver.expect("DONE").await;
    eprintln!("[browser] after the conversion: {done}");
    assert_eq!(done["sameDocument"], true);
    assert_eq!(done["navigations"], 0);
    assert_eq!(done["consoleErrors"], json!([]));
    let history_requests = done["historyRequests"].as_array().unwrap();
    assert!(
        history_requests
            .iter()
            .any(|r| r.as_str().unwrap().contains("days=1")),
        "today reloaded alone: {history_requests:?}"
    );
    driver.finish().await;
    for shot in [&list_shot, &chart_shot] {
        let size = std::fs::metadata(shot).expect("screenshot saved").len();
        assert!(
            size > 10_000,
            "{} has content ({size} bytes)",
            shot.display()
        );
    }
}
