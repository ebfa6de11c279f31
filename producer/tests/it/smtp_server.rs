//! A real SMTP server per test: `producer/tests/smtp_server.py` (Python's aiosmtpd) on a free
//! port, told per recipient to answer 451 N times or 550, and stoppable/restartable on the same
//! port. It writes every event as a JSON line to a file the test reads. Missing Python or aiosmtpd
//! fails the test loudly (install with `python3 -m pip install aiosmtpd`).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use followup_testkit::free_port;
use serde_json::Value;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/smtp_server.py");

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

pub struct SmtpServer {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl SmtpServer {
    /// Starts the server on a free loopback port.
    pub fn start() -> SmtpServer {
        let check = Command::new(python())
            .args(["-c", "import aiosmtpd"])
            .output()
            .unwrap_or_else(|e| panic!("cannot run {} for the SMTP test server: {e}", python()));
        assert!(
            check.status.success(),
            "the SMTP tests need Python's aiosmtpd: run `python3 -m pip install aiosmtpd` ({})",
            String::from_utf8_lossy(&check.stderr).trim()
        );
        let mut server = SmtpServer {
            port: free_port(),
            dir: tempfile::tempdir().expect("temp dir for the SMTP log"),
            child: None,
        };
        server.restart();
        server
    }

    /// `smtp://127.0.0.1:<port>` (plain: a local relay).
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("smtp.jsonl")
    }

    /// Kills the server (SIGKILL): connections are refused until [`SmtpServer::restart`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port (same log), and waits until it listens.
    pub fn restart(&mut self) {
        self.stop();
        let child = Command::new(python())
            .arg(SCRIPT)
            .args(["--port", &self.port.to_string()])
            .arg("--log")
            .arg(self.log_path())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {SCRIPT}: {e}"));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("the SMTP test server exited with {status}");
            }
            assert!(
                Instant::now() < deadline,
                "the SMTP test server did not start listening"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every event so far, in order.
    pub fn events(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        text.lines()
            .map(|l| serde_json::from_str(l).expect("the SMTP log holds JSON lines"))
            .collect()
    }

    /// Accepted messages so far (body with `\n` line ends).
    pub fn accepted(&self) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|e| e["event"] == "accepted")
            .map(|mut e| {
                if let Some(body) = e["body"].as_str() {
                    e["body"] = Value::String(body.replace("\r\n", "\n"));
                }
                e
            })
            .collect()
    }

    /// Events of `kind` (`accepted`, `tempfail`, `rejected`) for recipient `rcpt`.
    pub fn events_for(&self, kind: &str, rcpt: &str) -> usize {
        self.events()
            .iter()
            .filter(|e| e["event"] == kind)
            .filter(|e| {
                e["rcpt"] == rcpt
                    || e["rcpt_tos"]
                        .as_array()
                        .is_some_and(|a| a.iter().any(|r| r == rcpt))
            })
            .count()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.stop();
    }
}
