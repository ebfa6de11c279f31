//! Test support for the services' integration tests: a freshly migrated Postgres database per
//! test, and a private `nats-server` with JetStream on a free port and a temporary store that a
//! test can stop and restart to inject faults. Real servers, no mocks. When a test ends, its
//! nats-server's stream is validated against the event catalog `nats/asyncapi.json`
//! ([`catalog`]), so every event published in the tests is checked against the contract.

pub mod catalog;
pub mod crm;
pub mod crm_fill;
pub mod due_cases;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::ConnectOptions;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

/// Base URL of the Postgres server used for test databases (`TEST_DATABASE_URL`, default
/// `postgres://postgres@127.0.0.1:5432/postgres`).
pub fn admin_database_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A uniquely named, migrated database. Test databases are named `followup_test_*`; `.ci/run`
/// drops leftovers before a run. `FOLLOWUP_TEST_DB_PREFIX` replaces `followup_test` (the
/// benchmark suite uses `followup_bench`, so a test run beside it does not drop its databases).
pub struct TestDb {
    pub name: String,
    pub url: String,
    pub pool: PgPool,
}

impl TestDb {
    /// Creates a database holding the CRM's production schema ([`crm`]) and applies our
    /// migrations on top, as an install into the CRM's database does.
    pub async fn new() -> TestDb {
        TestDb::create(Schema::Crm, true).await
    }

    /// Creates a database without any CRM table and applies our migrations (a CRM-less install).
    pub async fn without_crm() -> TestDb {
        TestDb::create(Schema::Empty, true).await
    }

    /// Creates a database holding the CRM's production schema, without our migrations.
    pub async fn crm_only() -> TestDb {
        TestDb::create(Schema::Crm, false).await
    }

    async fn create(schema: Schema, migrate: bool) -> TestDb {
        let admin_url = admin_database_url();
        let prefix = std::env::var("FOLLOWUP_TEST_DB_PREFIX")
            .ok()
            .filter(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
            .unwrap_or_else(|| "followup_test".to_owned());
        let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
        let admin = PgPoolOptions::new()
            .max_connections(1)
            .connect(&admin_url)
            .await
            .expect("connect to the test Postgres server (TEST_DATABASE_URL)");
        crm::ensure_roles(&admin).await;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&admin)
            .await
            .expect("create test database");
        admin.close().await;
        let options: PgConnectOptions = admin_url
            .parse()
            .expect("TEST_DATABASE_URL is a Postgres URL");
        let options = options.database(&name);
        let url = options.to_url_lossy().to_string();
        // The tests write as the CRM does: from sessions in Europe/Berlin (a JVM in Germany),
        // naive timestamps holding UTC. Our code must not depend on the session's time zone.
        let pool = PgPoolOptions::new()
            .max_connections(10)
            .connect_with(options.options([("TimeZone", crm::CRM_SESSION_TIME_ZONE)]))
            .await
            .expect("connect to test database");
        if schema == Schema::Crm {
            crm::create_crm_schema(&pool).await;
        }
        if migrate {
            followup_infra::migrate_database(&pool)
                .await
                .expect("migrate test database");
        }
        TestDb { name, url, pool }
    }

    /// A connection URL of this database for `role` (a role of [`crm`]: `crm_owner`,
    /// `followup_app`).
    pub fn url_as(&self, role: &str) -> String {
        let options: PgConnectOptions = self.url.parse().expect("test database URL");
        options
            .username(role)
            .password(crm::ROLE_PASSWORD)
            .to_url_lossy()
            .to_string()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Schema {
    Crm,
    Empty,
}

/// A private nats-server with JetStream, killed when dropped.
pub struct NatsServer {
    pub port: u16,
    store: tempfile::TempDir,
    child: Option<Child>,
    check_catalog: std::sync::atomic::AtomicBool,
}

impl NatsServer {
    /// Starts `nats-server -js` on a free loopback port with a temporary store.
    pub fn start() -> NatsServer {
        // A free port can be taken by a parallel test between `free_port` and the server's bind:
        // then this server exits and another port is tried.
        for _ in 0..5 {
            let store = tempfile::tempdir().expect("temp dir for JetStream store");
            let mut server = NatsServer {
                port: free_port(),
                store,
                child: None,
                check_catalog: std::sync::atomic::AtomicBool::new(true),
            };
            if server.spawn_and_wait() {
                return server;
            }
        }
        panic!("nats-server did not start listening on any of 5 free ports");
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The JetStream store directory (survives [`NatsServer::stop`]).
    pub fn store_dir(&self) -> PathBuf {
        self.store.path().to_path_buf()
    }

    /// Kills the server (SIGKILL). The store is kept for [`NatsServer::restart`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port with the same store, and waits until it listens.
    pub fn restart(&mut self) {
        assert!(
            self.spawn_and_wait(),
            "nats-server could not listen on its port {} again",
            self.port
        );
    }

    /// Starts the server and waits until it listens. `false`: it exited instead (its port was
    /// taken). Listening is checked by the server's own name in the `INFO` line it greets with,
    /// so another process on the port is not taken for it.
    fn spawn_and_wait(&mut self) -> bool {
        use std::io::{BufRead, BufReader};
        self.stop();
        let binary = std::env::var("NATS_SERVER_BIN").unwrap_or_else(|_| "nats-server".to_owned());
        let name = format!("testkit-{}-{}", std::process::id(), self.port);
        let mut child = Command::new(&binary)
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-n",
                &name,
                "-js",
                "-sd",
            ])
            .arg(self.store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {binary} (install Debian's nats-server): {e}")
            });
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                return false;
            }
            let ours = std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok_and(|tcp| {
                let _ = tcp.set_read_timeout(Some(Duration::from_secs(1)));
                let mut info = String::new();
                BufReader::new(tcp).read_line(&mut info).is_ok()
                    && info.contains(&format!("\"server_name\":\"{name}\""))
            });
            if ours {
                self.child = Some(child);
                return true;
            }
            assert!(
                Instant::now() < deadline,
                "nats-server did not start listening"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl NatsServer {
    /// Turns off the end-of-test catalog check, for a test that publishes messages outside the
    /// contract on purpose (poison messages, hand-made duplicates). `why` documents the reason.
    pub fn skip_catalog_check(&self, why: &str) {
        let _ = why;
        self.check_catalog
            .store(false, std::sync::atomic::Ordering::Relaxed);
    }

    /// Validates every message of the stream against `nats/asyncapi.json` now; panics naming each
    /// violating message. Also runs when the server is dropped (unless skipped or already
    /// panicking), so a test does not need to call it.
    pub fn assert_stream_matches_catalog(&self) -> std::collections::BTreeMap<String, usize> {
        self.check_stream_against_catalog().unwrap_or_else(|violations| {
            panic!("events on the stream do not match the catalog nats/asyncapi.json:\n{violations}")
        })
    }

    fn check_stream_against_catalog(
        &self,
    ) -> Result<std::collections::BTreeMap<String, usize>, String> {
        let url = self.url();
        // A separate thread with its own runtime: callers are inside a tokio test runtime.
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime for the catalog check")
                .block_on(catalog::validate_stream(&url))
        })
        .join()
        .expect("catalog check thread")
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let check = self
            .check_catalog
            .load(std::sync::atomic::Ordering::Relaxed);
        let outcome = (check && self.child.is_some() && !std::thread::panicking())
            .then(|| self.check_stream_against_catalog());
        // Stop the server before failing the test, so no nats-server outlives it.
        self.stop();
        match outcome {
            Some(Ok(checked)) => {
                eprintln!("catalog: the stream's events match nats/asyncapi.json: {checked:?}")
            }
            Some(Err(violations)) => panic!(
                "events on the stream do not match the catalog nats/asyncapi.json:\n{violations}"
            ),
            None => {}
        }
    }
}

/// A loopback port that was free a moment ago, from 20000–31999: below Linux's ephemeral range
/// (32768–60999), because a port the kernel hands out for `:0` can be given to an outgoing
/// connection before the process it was picked for binds it (the fault suite's projector once
/// failed to start that way). Each call in a process tries the next port from a start that
/// differs per process.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const COUNT: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    static START: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    let start = *START.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        std::process::id().wrapping_mul(7919).wrapping_add(nanos) % COUNT
    });
    for _ in 0..COUNT {
        let offset = (start + NEXT.fetch_add(1, Ordering::Relaxed)) % COUNT;
        let port = u16::try_from(FIRST + offset).expect("a port");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {FIRST}..{}", FIRST + COUNT)
}

/// Polls `check` every 20 ms until it returns `Some` or `timeout` passes. Tests wait for
/// asynchronous outcomes with this instead of fixed sleeps.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A minimal HTTP/1.0 GET against a local test server: `(status, body)`. Enough for health and
/// metrics checks without pulling an HTTP client into every test binary.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

#[cfg(test)]
mod catalog_tests;
