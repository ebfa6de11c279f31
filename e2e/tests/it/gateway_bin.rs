//! The `followup-gateway` binary, for the tests that need the gateway as a process of its own.
//!
//! Cargo hands a test `CARGO_BIN_EXE_<name>` only for the binaries of its own package, and these
//! tests live outside the gateway's package so that the gateway need not depend on the producer
//! and the projector. So the binary is built here, once per test process, with the profile and
//! into the target directory this test binary was built with: up to date, it is only a
//! freshness check, and a binary left over from an older build is never run by mistake.

use std::path::{Path, PathBuf};

use tokio::sync::OnceCell;

/// Path of the up-to-date gateway binary (built on first use).
pub async fn gateway_binary() -> &'static Path {
    static BINARY: OnceCell<PathBuf> = OnceCell::const_new();
    BINARY.get_or_init(build).await
}

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
        .args(["build", "--quiet", "-p", "followup-gateway"])
        .args(["--bin", "followup-gateway", "--profile", profile])
        .env("CARGO_TARGET_DIR", target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .await
        .expect("run cargo build for the gateway binary");
    assert!(status.success(), "building the gateway binary: {status}");
    let binary = profile_dir.join("followup-gateway");
    assert!(binary.exists(), "{} built", binary.display());
    binary
}
