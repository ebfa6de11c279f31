//! The service binaries, for the tests that need the gateway (or all three services) as
//! processes of their own.
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
    BINARY
        .get_or_init(|| async { build(&["followup-gateway"]).await.join("followup-gateway") })
        .await
}

/// The directory holding the up-to-date `followup-producer`, `followup-projector` and
/// `followup-gateway` binaries (built on first use), for the tests that run all three as
/// processes.
pub async fn service_binaries() -> &'static Path {
    static DIR: OnceCell<PathBuf> = OnceCell::const_new();
    DIR.get_or_init(|| {
        build(&[
            "followup-producer",
            "followup-projector",
            "followup-gateway",
        ])
    })
    .await
}

/// Builds the binaries of `packages` (one each, named like the package) and returns the
/// profile directory they are in.
async fn build(packages: &[&str]) -> PathBuf {
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
    let mut command = tokio::process::Command::new(cargo);
    command.args(["build", "--quiet"]);
    for package in packages {
        command.args(["-p", package, "--bin", package]);
    }
    let status = command
        .args(["--profile", profile])
        .env("CARGO_TARGET_DIR", target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .await
        .expect("run cargo build for the service binaries");
    assert!(status.success(), "building {packages:?}: {status}");
    for package in packages {
        let binary = profile_dir.join(package);
        assert!(binary.exists(), "{} built", binary.display());
    }
    profile_dir.to_path_buf()
}
