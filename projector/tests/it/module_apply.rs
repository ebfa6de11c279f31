//! `followup-projector consumers apply`, the real binary against a fresh nats-server and without
//! `DATABASE_URL`: creates the durables of a directory, is a no-op when applied again, updates a
//! tunable, and refuses a changed deliver policy unless told to recreate the durable. And the
//! commands that need the database name `DATABASE_URL` when it is missing.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use followup_contract::{DLQ_STREAM_NAME, STREAM_NAME};
use followup_testkit::NatsServer;

fn apply(nats: &NatsServer, dir: &Path, extra: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_followup-projector"))
        .args(["consumers", "apply", "--dir"])
        .arg(dir)
        .args(extra)
        .env("NATS_URL", nats.url())
        // A module's operator applies durables with NATS only.
        .env_remove("DATABASE_URL")
        .env("RUST_LOG", "warn")
        .output()
        .expect("run followup-projector");
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
    (
        output.status.success(),
        text(output.stdout),
        text(output.stderr),
    )
}

async fn live(
    js: &async_nats::jetstream::Context,
    stream: &str,
    durable: &str,
) -> async_nats::jetstream::consumer::Info {
    let stream = js.get_stream(stream).await.unwrap();
    stream.consumer_info(durable).await.unwrap()
}

/// Writes `<dir>/<durable>.json`: a module durable with a short `ack_wait` (1 s) for tests.
pub fn write_definition(dir: &Path, durable: &str, deliver_policy: &str, max_deliver: i64) {
    let json = serde_json::json!({
        "durable_name": durable,
        "description": format!("test module {durable}"),
        "deliver_policy": deliver_policy,
        "ack_policy": "explicit",
        "ack_wait": 1_000_000_000u64,
        "max_deliver": max_deliver,
        "filter_subject": "freshplan.lead.>",
        "replay_policy": "instant",
        "max_waiting": 512,
        "max_ack_pending": 1000
    });
    std::fs::write(dir.join(format!("{durable}.json")), json.to_string()).unwrap();
}

#[tokio::test]
async fn apply_creates_is_idempotent_updates_tunables_and_refuses_a_changed_deliver_policy() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    write_definition(dir.path(), "mod-a", "all", 3);
    write_definition(dir.path(), "mod-b", "all", 3);

    let (ok, out, err) = apply(&nats, dir.path(), &[]);
    assert!(ok, "{out}{err}");
    for line in [
        "FOLLOWUP/mod-a: created",
        "FOLLOWUP_DLQ/mod-a: created",
        "FOLLOWUP/mod-b: created",
    ] {
        assert!(out.contains(line), "{out}");
    }
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let info = live(&js, STREAM_NAME, "mod-a").await;
    assert_eq!(info.config.max_deliver, 3);
    let replay = live(&js, DLQ_STREAM_NAME, "mod-a").await;
    assert_eq!(replay.config.filter_subject, "followup.dlq.replay.mod-a");

    // A live stream is the services' business (STREAM_* settings): apply leaves it alone.
    let mut stream = js.get_stream(STREAM_NAME).await.unwrap();
    let mut config = stream.info().await.unwrap().config.clone();
    config.max_age = std::time::Duration::from_secs(86_400);
    js.update_stream(config).await.unwrap();

    let (ok, out, _) = apply(&nats, dir.path(), &[]);
    assert!(ok);
    assert_eq!(out.matches(": unchanged").count(), 4, "{out}");
    let info = stream.info().await.unwrap();
    assert_eq!(info.config.max_age, std::time::Duration::from_secs(86_400));

    write_definition(dir.path(), "mod-b", "all", 7);
    let (ok, out, _) = apply(&nats, dir.path(), &[]);
    assert!(ok);
    assert!(out.contains("FOLLOWUP/mod-b: updated max_deliver"), "{out}");

    write_definition(dir.path(), "mod-a", "new", 3);
    let (ok, out, err) = apply(&nats, dir.path(), &[]);
    assert!(!ok, "a changed deliver policy must be refused: {out}");
    assert!(
        err.contains("durable \"mod-a\" on FOLLOWUP: deliver_policy"),
        "{err}"
    );
    let info = live(&js, STREAM_NAME, "mod-a").await;
    assert_eq!(
        info.config.deliver_policy,
        async_nats::jetstream::consumer::DeliverPolicy::All,
        "refused means unchanged"
    );

    let (ok, out, err) = apply(&nats, dir.path(), &["--allow-policy-change"]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("FOLLOWUP/mod-a: recreated (deliver_policy)"),
        "{out}"
    );
}

/// The commands that work on the database name the missing setting before anything else:
/// before NATS (nothing listens at `NATS_URL`; connecting would retry, not fail) and before the
/// port (`HTTP_ADDR` is taken, so binding first would fail with another error).
#[test]
fn a_database_command_without_database_url_names_the_setting() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let http_addr = taken.local_addr().unwrap().to_string();
    for command in [&["verify"][..], &["dead-letters", "list"], &["serve"]] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_followup-projector"))
            .args(command)
            .env_remove("DATABASE_URL")
            .env("NATS_URL", "nats://127.0.0.1:1")
            .env("HTTP_ADDR", &http_addr)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run followup-projector");
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                child.kill().unwrap();
                panic!("{command:?} still running after 20 s without DATABASE_URL");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        assert!(!status.success(), "{command:?} succeeded: {stderr}");
        assert!(
            stderr.contains("DATABASE_URL (or --database-url) is not set"),
            "{command:?}: {stderr}"
        );
    }
}
