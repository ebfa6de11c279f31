//! The three service binaries as child processes, each with its environment and a log file
//! (appended across restarts), so the suite can SIGKILL and restart them like an operator's
//! supervisor would.

use std::fs::File;
use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::Context;

/// The signal number of SIGKILL.
const SIGKILL: i32 = 9;

/// One service process.
pub struct Service {
    pub name: &'static str,
    binary: PathBuf,
    env: Vec<(String, String)>,
    log: PathBuf,
    pub http: SocketAddr,
    child: Option<Child>,
}

impl Service {
    /// `<bin_dir>/<binary> serve` with `env` (HTTP_ADDR is added).
    pub fn new(
        name: &'static str,
        bin_dir: &Path,
        binary: &str,
        mut env: Vec<(String, String)>,
        log_dir: &Path,
    ) -> Service {
        let http = SocketAddr::from(([127, 0, 0, 1], followup_testkit::free_port()));
        env.push(("HTTP_ADDR".into(), http.to_string()));
        Service {
            name,
            binary: bin_dir.join(binary),
            env,
            log: log_dir.join(format!("{name}.log")),
            http,
            child: None,
        }
    }

    /// Starts the process (it connects and retries by itself).
    pub fn start(&mut self) -> anyhow::Result<()> {
        let log = File::options().create(true).append(true).open(&self.log)?;
        let child = Command::new(&self.binary)
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.binary.display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// SIGKILL: no shutdown code runs. Returns why the kill is not confirmed, if it is not: the
    /// process must have been running and have ended by this SIGKILL (its exit status reaped, so
    /// its pid is gone).
    pub fn kill(&mut self) -> Result<(), String> {
        let Some(mut child) = self.child.take() else {
            return Err(format!("{} was not started", self.name));
        };
        let running = matches!(child.try_wait(), Ok(None));
        let _ = child.kill();
        let status = child.wait();
        if !running {
            return Err(format!(
                "{} had already exited when SIGKILLed ({status:?})",
                self.name
            ));
        }
        match status {
            Ok(s) if s.signal() == Some(SIGKILL) => Ok(()),
            other => Err(format!("{} did not end by SIGKILL ({other:?})", self.name)),
        }
    }

    /// SIGTERM, then waits up to `limit` for the exit. Returns how long the exit took, or `None`
    /// when the process had to be SIGKILLed after `limit` (a shutdown hang).
    pub fn terminate(&mut self, limit: Duration) -> Option<Duration> {
        let mut child = self.child.take()?;
        let started = Instant::now();
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        while started.elapsed() < limit {
            if let Ok(Some(_)) = child.try_wait() {
                return Some(started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    /// Whether `GET path` answers 200.
    pub async fn answers(&self, path: &str) -> bool {
        matches!(
            followup_testkit::http_get(self.http, path).await,
            Ok((200, _))
        )
    }

    /// The log's path.
    pub fn log_path(&self) -> &Path {
        &self.log
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}
