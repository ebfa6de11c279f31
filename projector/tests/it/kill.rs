use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use chrono::Utc;
use followup_projector::verify_projection;
use followup_testkit::eventually;

use crate::crm::seed_and_publish;
use crate::helpers::{Harness, TZ};

pub fn projector_command(h: &Harness, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_followup-projector"));
    command
        .args(args)
        .env("DATABASE_URL", &h.db.url)
        .env("NATS_URL", h.nats.url())
        .env("HTTP_ADDR", "127.0.0.1:0")
        .env("FOLLOWUP_TZ", TZ.name())
        .env("PROJECTOR_BATCH_SIZE", "50")
        .env("PROJECTOR_FETCH_WAIT_MS", "100")
        .env("RUST_LOG", "warn");
    command
}

pub fn run_projector_binary(h: &Harness, args: &[&str]) -> Output {
    projector_command(h, args)
        .stdin(Stdio::null())
        .output()
        .expect("run followup-projector")
}

fn spawn_serve(h: &Harness) -> Child {
    projector_command(h, &["serve"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn followup-projector serve")
}

#[tokio::test]
async fn a_projector_killed_mid_stream_and_restarted_ends_exact() {
    let h = Harness::start().await;
    let events = seed_and_publish(&h, 1500).await as i64;
    assert!(
        events > 2000,
        "a stream long enough to kill the projector inside it: {events}"
    );

    let mut serve = spawn_serve(&h);
    let started = eventually(Duration::from_secs(60), || async {
        let applied = h.count("SELECT count(*) FROM projection_inbox").await;
        (applied >= 300).then_some(applied)
    })
    .await;
    serve.kill().expect("SIGKILL the projector");
    serve.wait().unwrap();
    let applied_at_kill = h.count("SELECT count(*) FROM projection_inbox").await;
    assert!(started.is_some(), "the projector applied nothing");
    assert!(
        applied_at_kill < events,
        "killed after it had finished ({applied_at_kill} of {events})"
    );

    let mut serve = spawn_serve(&h);
    h.wait_until_caught_up().await;
    serve.kill().unwrap();
    serve.wait().unwrap();
    assert_eq!(
        h.count("SELECT count(*) FROM projection_inbox").await,
        events
    );

    let report = verify_projection(&mut h.db.pool.acquire().await.unwrap(), Utc::now(), TZ)
        .await
        .unwrap();
    assert!(report.is_exact(), "{:#?}", report.mismatches);
    assert!(report.scopes_checked >= 6, "org and five users: {report:?}");
    let verify = run_projector_binary(&h, &["verify"]);
    let stdout = String::from_utf8_lossy(&verify.stdout);
    assert!(verify.status.success(), "verify failed: {stdout}");
    assert!(stdout.contains("projection exact"), "{stdout}");
}
