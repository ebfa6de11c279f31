//! The SSE stream end to end: a lead committed in Postgres reaches the client through the
//! outbox, the relay, JetStream, the projector, its notice and the gateway; other users'
//! changes do not; reconnects with `Last-Event-ID`; periodic frames, heartbeats, shutdown.

use std::time::{Duration, Instant};

use chrono::Utc;

use crate::support::{Auth, SseClient, SseItem, Stack, insert_lead, token};

/// The value of an unlabelled metric in the Prometheus text format.
pub async fn metric(stack: &Stack, name: &str) -> f64 {
    let text = stack
        .http
        .get(stack.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| {
            l.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix(' '))
                .map(|v| v.trim().parse::<f64>().unwrap())
        })
        .unwrap_or_else(|| panic!("metric {name} not exported"))
}

#[tokio::test]
async fn a_committed_lead_change_is_pushed_and_another_users_change_is_not() {
    // Periodic frames only every 5 s, so anything sooner is a push.
    let stack = Stack::start_with(|c| c.sse_period_ms = 5000).await;
    let admin = token("boss", &["admin"]);
    let day_ago = Utc::now() - chrono::Duration::days(1);
    insert_lead(&stack.db.pool, "u1", &[], day_ago).await;
    stack
        .wait_for_figures("/api/followup/metrics?owner=u1", &admin, |f| {
            f["pendingT3"] == 1
        })
        .await;

    let sales = token("u1", &["sales"]);
    let mut sse = SseClient::connect(&stack, "", Auth::Bearer(&sales), None).await;
    let connected = Instant::now();
    let first = sse
        .next_event(Duration::from_secs(5))
        .await
        .expect("first frame");
    assert_eq!(first.json()["pendingT3"], 1);
    assert_eq!(first.json()["scope"], "user:u1");

    // Another user's lead: projected (the org figures move), but u1's stream stays silent.
    insert_lead(&stack.db.pool, "u3", &[], day_ago).await;
    stack
        .wait_for_figures("/api/followup/metrics", &admin, |f| f["pendingT3"] == 2)
        .await;
    let quiet = sse.next_event(Duration::from_millis(500)).await;
    assert!(
        connected.elapsed() < Duration::from_millis(4800),
        "too slow to tell a push from a periodic frame"
    );
    assert!(quiet.is_none(), "no frame for u3's lead, got {quiet:?}");
    assert_eq!(
        metric(&stack, "followup_sse_push_latency_seconds_count").await,
        0.0
    );

    // u1's own change arrives pushed, with the new figures.
    insert_lead(&stack.db.pool, "u1", &["u2"], day_ago).await;
    let committed = Instant::now();
    let frame = sse
        .next_event(Duration::from_secs(3))
        .await
        .expect("a frame after u1's change");
    let latency = committed.elapsed();
    assert_eq!(frame.json()["pendingT3"], 2, "{}", frame.data);
    assert!(frame.id_u64() > first.id_u64());
    assert_eq!(
        metric(&stack, "followup_sse_push_latency_seconds_count").await,
        1.0,
        "the frame was driven by the projector's notice"
    );
    eprintln!("commit → frame: {latency:?}");
}

#[tokio::test]
async fn reconnect_with_last_event_id_gets_the_current_figures_at_once() {
    let stack = Stack::start().await;
    let admin = token("boss", &["admin"]);
    let sales = token("u1", &["sales"]);
    let mut sse = SseClient::connect(&stack, "", Auth::Bearer(&sales), None).await;
    let first = sse.next_event(Duration::from_secs(5)).await.unwrap();
    assert_eq!(first.json()["pendingT3"], 0);
    let last_id = first.id.clone().unwrap();
    drop(sse);

    // While the client is away, u1 gets a lead.
    insert_lead(&stack.db.pool, "u1", &[], Utc::now()).await;
    stack
        .wait_for_figures("/api/followup/metrics?owner=u1", &admin, |f| {
            f["pendingT3"] == 1
        })
        .await;

    let started = Instant::now();
    let mut again = SseClient::connect(&stack, "", Auth::Bearer(&sales), Some(&last_id)).await;
    assert_eq!(again.status, 200);
    let frame = again
        .next_event(Duration::from_secs(1))
        .await
        .expect("at once");
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(
        frame.json()["pendingT3"],
        1,
        "current figures, not the old ones"
    );
    assert!(frame.id_u64() > first.id_u64(), "ids keep growing");

    // An id from the future (another replica's clock) is still exceeded.
    let future = (first.id_u64() + 1_000_000_000_000).to_string();
    let mut ahead = SseClient::connect(&stack, "", Auth::Bearer(&sales), Some(&future)).await;
    let frame = ahead.next_event(Duration::from_secs(1)).await.unwrap();
    assert!(frame.id_u64() > first.id_u64() + 1_000_000_000_000);
    // A garbled id is ignored, not an error.
    let mut garbled = SseClient::connect(&stack, "", Auth::Bearer(&sales), Some("x1")).await;
    assert_eq!(garbled.status, 200);
    assert_eq!(
        garbled
            .next_event(Duration::from_secs(1))
            .await
            .unwrap()
            .json()["pendingT3"],
        1
    );
}

#[tokio::test]
async fn periodic_frames_heartbeats_and_a_clean_end_on_shutdown() {
    let mut stack = Stack::start_with(|c| {
        c.sse_period_ms = 300;
        c.sse_heartbeat_ms = 100;
    })
    .await;
    let admin = token("boss", &["admin"]);
    let mut sse = SseClient::connect(&stack, "", Auth::Bearer(&admin), None).await;
    let mut events = Vec::new();
    let mut comments = 0;
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(1500) {
        match sse.next_item(Duration::from_millis(500)).await {
            Some(SseItem::Event(e)) => events.push(e),
            Some(SseItem::Comment(c)) => {
                assert_eq!(c, "keep-alive");
                comments += 1;
            }
            other => panic!("stream broke: {other:?}"),
        }
    }
    assert!(
        events.len() >= 4,
        "first + periodic frames: {}",
        events.len()
    );
    assert!(comments >= 2, "heartbeats: {comments}");
    assert!(events.windows(2).all(|w| w[0].id_u64() < w[1].id_u64()));
    assert_eq!(
        crate::sse::metric(&stack, "followup_sse_clients").await,
        1.0
    );

    stack.stop_gateway().await.expect("run returns Ok");
    let mut ended = false;
    for _ in 0..50 {
        match sse.next_item(Duration::from_secs(2)).await {
            Some(SseItem::End) => {
                ended = true;
                break;
            }
            Some(SseItem::Event(_) | SseItem::Comment(_)) => continue,
            Some(SseItem::Error(err)) => panic!("stream broke instead of ending: {err}"),
            None => panic!("stream still open after shutdown"),
        }
    }
    assert!(ended);
}

#[tokio::test]
async fn a_burst_of_changes_gives_few_frames() {
    let stack = Stack::start_with(|c| c.sse_coalesce_ms = 100).await;
    let sales = token("u1", &["sales"]);
    let mut sse = SseClient::connect(&stack, "", Auth::Bearer(&sales), None).await;
    sse.next_event(Duration::from_secs(5)).await.unwrap();
    let burst = 300;
    for _ in 0..burst {
        insert_lead(&stack.db.pool, "u1", &[], Utc::now()).await;
    }
    let mut frames = 0;
    loop {
        let frame = sse
            .next_event(Duration::from_secs(20))
            .await
            .expect("frames until the last figures");
        frames += 1;
        if frame.json()["pendingT3"] == burst {
            break;
        }
    }
    eprintln!("{burst} committed changes → {frames} frames");
    assert!(frames <= burst / 5, "{frames} frames for {burst} changes");
}

#[tokio::test]
async fn pushes_resume_after_a_nats_restart() {
    let mut stack = Stack::start_with(|c| c.sse_period_ms = 5000).await;
    let sales = token("u1", &["sales"]);
    let mut sse = SseClient::connect(&stack, "", Auth::Bearer(&sales), None).await;
    assert_eq!(
        sse.next_event(Duration::from_secs(5)).await.unwrap().json()["pendingT3"],
        0
    );

    stack.nats.stop();
    let not_ready = followup_testkit::eventually(Duration::from_secs(10), || async {
        let r = stack.http.get(stack.url("/readyz")).send().await.ok()?;
        (r.status() == 503).then_some(r.text().await.ok()?)
    })
    .await
    .expect("readyz reports the NATS outage");
    assert!(not_ready.contains("nats"), "{not_ready}");
    // The API keeps answering from the projection meanwhile.
    let (status, _) = stack.get_json("/api/followup/metrics", Some(&sales)).await;
    assert_eq!(status, 200);

    stack.nats.restart();
    followup_testkit::eventually(Duration::from_secs(20), || async {
        let r = stack.http.get(stack.url("/readyz")).send().await.ok()?;
        (r.status() == 200).then_some(())
    })
    .await
    .expect("ready again after the restart");

    // The relay and the projector are back once another user's lead gets projected.
    let admin = token("boss", &["admin"]);
    insert_lead(&stack.db.pool, "u9", &[], Utc::now()).await;
    stack
        .wait_for_figures("/api/followup/metrics?owner=u9", &admin, |f| {
            f["pendingT3"] == 1
        })
        .await;
    let pushed_before = metric(&stack, "followup_sse_push_latency_seconds_count").await;

    insert_lead(&stack.db.pool, "u1", &[], Utc::now()).await;
    let committed = Instant::now();
    let frame = loop {
        let frame = sse
            .next_event(Duration::from_secs(10))
            .await
            .expect("frames keep coming on the same connection");
        if frame.json()["pendingT3"] == 1 {
            break frame;
        }
    };
    assert_eq!(frame.json()["scope"], "user:u1");
    assert!(
        committed.elapsed() < Duration::from_secs(3),
        "pushed, not periodic"
    );
    assert!(
        metric(&stack, "followup_sse_push_latency_seconds_count").await > pushed_before,
        "driven by a notice received over the resubscribed connection"
    );
}

/// A client that stops reading (a raw socket with a tiny receive buffer) is cut off once its
/// buffer is full (no more frames are queued for it), while a reading client on the same scope
/// keeps getting frames. To make
/// thousands of distinct frames quickly, the test bumps the org figure in the projection and
/// publishes the projector's notice itself (real NATS, real server; only the projector is
/// bypassed).
#[tokio::test]
async fn a_client_that_stops_reading_is_dropped_and_others_keep_receiving() {
    use tokio::io::AsyncWriteExt;

    let stack = Stack::start_with(|c| {
        c.sse_coalesce_ms = 0;
        c.sse_client_buffer = 4;
        // Keep the kernel from closing the stalled connection first (see the next test).
        c.tcp_user_timeout_ms = 600_000;
    })
    .await;
    let admin = token("boss", &["admin"]);
    insert_lead(&stack.db.pool, "u1", &[], Utc::now()).await;
    stack
        .wait_for_figures("/api/followup/metrics", &admin, |f| f["pendingT3"] == 1)
        .await;

    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(1024).unwrap();
    let mut stalled = socket.connect(stack.addr).await.unwrap();
    stalled
        .write_all(
            format!(
                "GET /api/dashboard/followup-stream HTTP/1.1\r\nHost: {}\r\n\
                 Authorization: Bearer {admin}\r\nAccept: text/event-stream\r\n\r\n",
                stack.addr
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut healthy = SseClient::connect(&stack, "", Auth::Bearer(&admin), None).await;
    healthy.next_event(Duration::from_secs(5)).await.unwrap();
    followup_testkit::eventually(Duration::from_secs(5), || async {
        (metric(&stack, "followup_sse_clients").await == 2.0).then_some(())
    })
    .await
    .expect("both clients connected");
    let (seen_tx, mut seen_rx) = tokio::sync::watch::channel(0i64);
    let reader = tokio::spawn(async move {
        while let Some(frame) = healthy.next_event(Duration::from_secs(30)).await {
            let _ = seen_tx.send(frame.json()["pendingT3"].as_i64().unwrap());
        }
    });

    let nats = async_nats::connect(stack.nats.url()).await.unwrap();
    let mut value = 1;
    let mut dropped = false;
    while value < 20_000 {
        value += 1;
        sqlx::query("UPDATE projection_scope_figures SET pending_t3 = $1 WHERE scope = 'org'")
            .bind(value)
            .execute(&stack.db.pool)
            .await
            .unwrap();
        let notice = serde_json::json!({"users": [], "org": true, "committedAt": Utc::now()});
        nats.publish(
            followup_contract::COCKPIT_CHANGED_SUBJECT,
            notice.to_string().into(),
        )
        .await
        .unwrap();
        // Keep pace with the reading client, so only the stalled one falls behind.
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            seen_rx.wait_for(|seen| *seen >= value),
        )
        .await;
        if value % 50 == 0 && metric(&stack, "followup_sse_clients_dropped_total").await >= 1.0 {
            dropped = true;
            break;
        }
    }
    assert!(
        dropped,
        "the stalled client was never dropped ({value} frames)"
    );
    eprintln!("stalled client dropped after about {value} frames");
    assert_eq!(
        metric(&stack, "followup_sse_clients_dropped_total").await,
        1.0
    );

    // The reading client is unaffected.
    value += 1;
    sqlx::query("UPDATE projection_scope_figures SET pending_t3 = $1 WHERE scope = 'org'")
        .bind(value)
        .execute(&stack.db.pool)
        .await
        .unwrap();
    nats.publish(
        followup_contract::COCKPIT_CHANGED_SUBJECT,
        serde_json::json!({"users": [], "org": true, "committedAt": Utc::now()})
            .to_string()
            .into(),
    )
    .await
    .unwrap();
    tokio::time::timeout(
        Duration::from_secs(5),
        seen_rx.wait_for(|seen| *seen >= value),
    )
    .await
    .expect("the reading client still gets frames")
    .unwrap();
    reader.abort();
}

/// A stream client whose receive window stays shut is disconnected by the kernel after
/// `TCP_USER_TIMEOUT_MS`, which ends its stream and frees what is buffered for it.
#[tokio::test]
async fn a_stalled_connection_is_closed_after_the_tcp_user_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let stack = Stack::start_with(|c| {
        c.sse_period_ms = 100;
        c.sse_heartbeat_ms = 100;
        c.tcp_user_timeout_ms = 2000;
    })
    .await;
    let admin = token("boss", &["admin"]);
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(1024).unwrap();
    let mut stalled = socket.connect(stack.addr).await.unwrap();
    stalled
        .write_all(
            format!(
                "GET /api/dashboard/followup-stream HTTP/1.1\r\nHost: {}\r\n\
                 Authorization: Bearer {admin}\r\n\r\n",
                stack.addr
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    followup_testkit::eventually(Duration::from_secs(5), || async {
        (metric(&stack, "followup_sse_clients").await == 1.0).then_some(())
    })
    .await
    .expect("the client is connected");
    let started = Instant::now();
    followup_testkit::eventually(Duration::from_secs(30), || async {
        (metric(&stack, "followup_sse_clients").await == 0.0).then_some(())
    })
    .await
    .expect("the stalled stream ended");
    eprintln!("stalled connection closed after {:?}", started.elapsed());
    let mut sink = vec![0u8; 64 * 1024];
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match stalled.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(_) => continue,
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the socket is closed");
}
