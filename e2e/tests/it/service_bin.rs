//! The service binaries, for the tests that need a service as a process of its own, and
//! [`ServiceProcess`], one such process on a free port.
//!
//! Cargo hands a test `CARGO_BIN_EXE_<name>` only for the binaries of its own package, and these
//! tests live outside the services' packages so that no service depends on another. So the
//! binaries are built here, once per test process, with the profile and into the target
//! directory this test binary was built with: up to date, it is only a freshness check, and a
//! binary left over from an older build is never run by mistake.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::sync::OnceCell;

/// Path of the up-to-date gateway binary (built on first use).
pub async fn gateway_binary() -> &'static Path {
    service_binary("followup-gateway").await
}

/// Path of the up-to-date binary `name` (`followup-producer`, `-projector`, `-gateway`); the
/// first call builds all three in one cargo invocation. `BENCH_SERVICE_BIN_DIR` names a
/// directory of binaries built elsewhere instead (a benchmark comparing two commits).
/// The directory of the three up-to-date binaries (built on first use; see [`service_binary`]).
pub async fn service_binaries() -> &'static Path {
    static BINARIES: OnceCell<PathBuf> = OnceCell::const_new();
    BINARIES
        .get_or_init(|| async {
            match std::env::var_os("BENCH_SERVICE_BIN_DIR") {
                Some(dir) => PathBuf::from(dir),
                None => build().await,
            }
        })
        .await
}

pub async fn service_binary(name: &str) -> &'static Path {
    let binary: &'static Path = Box::leak(service_binaries().await.join(name).into_boxed_path());
    assert!(binary.exists(), "{} built", binary.display());
    binary
}

/// Builds the three binaries; returns the directory they are in.
async fn build() -> PathBuf {
    // This binary is `<target dir>/<profile dir>/deps/it-<hash>`.
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary in <target>/<profile>/deps");
    let target_dir = profile_dir.parent().expect("a target directory");
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev",
        Some(other) => other,
        None => panic!("profile directory of {}", exe.display()),
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    let status = tokio::process::Command::new(cargo)
        .args(["build", "--quiet", "--profile", profile])
        .args(["-p", "followup-gateway", "--bin", "followup-gateway"])
        .args(["-p", "followup-producer", "--bin", "followup-producer"])
        .args(["-p", "followup-projector", "--bin", "followup-projector"])
        .env("CARGO_TARGET_DIR", target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .await
        .expect("run cargo build for the service binaries");
    assert!(status.success(), "building the service binaries: {status}");
    profile_dir.to_path_buf()
}

/// A service binary running `serve` as a child process, its HTTP on a free port; SIGTERM and
/// then SIGKILL when dropped.
pub struct ServiceProcess {
    child: Child,
    pub addr: SocketAddr,
}

impl ServiceProcess {
    /// Starts `binary serve` with `env` (and `HTTP_ADDR`, `RUST_LOG=warn`) and waits until its
    /// `/readyz` answers 200.
    pub async fn start(binary: &str, env: &[(&str, &str)]) -> ServiceProcess {
        ServiceProcess::start_wrapped("", binary, env).await
    }

    /// [`ServiceProcess::start`] under `wrapper` (a command line such as `valgrind
    /// --tool=massif`; empty: none).
    pub async fn start_wrapped(
        wrapper: &str,
        binary: &str,
        env: &[(&str, &str)],
    ) -> ServiceProcess {
        let addr: SocketAddr = format!("127.0.0.1:{}", followup_testkit::free_port())
            .parse()
            .unwrap();
        let path = service_binary(binary).await;
        let mut argv: Vec<&str> = wrapper.split_whitespace().collect();
        argv.extend([path.to_str().expect("UTF-8 path"), "serve"]);
        let child = Command::new(argv[0])
            .args(&argv[1..])
            .envs(env.iter().copied())
            .env("HTTP_ADDR", addr.to_string())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {binary}: {e}"));
        let mut process = ServiceProcess { child, addr };
        let http = reqwest::Client::new();
        for _ in 0..600 {
            if let Ok(r) = http.get(format!("http://{addr}/readyz")).send().await
                && r.status() == 200
            {
                return process;
            }
            if let Ok(Some(status)) = process.child.try_wait() {
                panic!("{binary} exited before it was ready: {status}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{binary} did not become ready");
    }

    /// The process id (for `/proc`, `perf`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        // SIGTERM first: the service shuts down cleanly (and a profiler writes its report).
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..100 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
