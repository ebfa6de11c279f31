//! Start-up before JetStream is ready (a server still starting, a cluster still electing its
//! leader): the projector waits for it instead of exiting (found by the fault suite: after a
//! restart of a three-node cluster the projector exited with "jetstream request timed out").

use std::process::{Command, Stdio};
use std::time::Duration;

use followup_testkit::eventually;

use crate::helpers::{Harness, change};

#[tokio::test]
async fn a_projector_started_before_jetstream_is_ready_waits_for_it() {
    let mut h = Harness::start().await;
    h.publish(&change(1, 1, "ACTIVE", "u1").event()).await;
    h.nats.stop();
    // The same port without JetStream: connecting works, every JetStream request fails.
    let mut plain = Command::new("nats-server")
        .args(["-a", "127.0.0.1", "-p", &h.nats.port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nats-server without JetStream");
    let listening = eventually(Duration::from_secs(10), || async {
        std::net::TcpStream::connect(("127.0.0.1", h.nats.port))
            .is_ok()
            .then_some(())
    })
    .await;
    assert!(
        listening.is_some(),
        "nats-server without JetStream did not start"
    );

    let projector = h.spawn_projector(h.config()).await;
    // Long enough for the projector to connect and meet a server without JetStream.
    tokio::time::sleep(Duration::from_secs(2)).await;
    plain.kill().unwrap();
    plain.wait().unwrap();
    h.nats.restart();

    let projected = eventually(Duration::from_secs(60), || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM projection_leads WHERE lead_id = 1")
            .fetch_one(&h.db.pool)
            .await
            .ok()?;
        (n == 1).then_some(())
    })
    .await;
    assert!(
        projected.is_some(),
        "the projector gave up before JetStream was ready"
    );
    projector.stop().await;
}
