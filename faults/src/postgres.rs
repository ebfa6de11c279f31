//! A private PostgreSQL 15 instance (initdb into a temporary directory, a free port), so the
//! suite can restart it without touching the system server other people use. initdb refuses to
//! run as root, so as root everything runs as the `postgres` user through `runuser`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;
use followup_testkit::free_port;

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// The suite's own Postgres server.
pub struct PrivatePostgres {
    data: PathBuf,
    log: PathBuf,
    sockets: PathBuf,
    pub port: u16,
    running: bool,
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// `pg_ctl`/`initdb` as the right user.
fn pg_command(tool: &str) -> Command {
    let binary = format!("{PG_BIN}/{tool}");
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", &binary]);
        c
    } else {
        Command::new(binary)
    }
}

fn run(mut command: Command, what: &str) -> anyhow::Result<()> {
    let out = command
        .output()
        .with_context(|| format!("running {what}"))?;
    anyhow::ensure!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

impl PrivatePostgres {
    /// initdb under `dir` and start the server.
    pub fn start(dir: &Path) -> anyhow::Result<PrivatePostgres> {
        let root = dir.join("pg");
        std::fs::create_dir_all(&root)?;
        if is_root() {
            // The temporary directory is root's and 0700: let postgres in, and own its part.
            run(
                {
                    let mut c = Command::new("chmod");
                    c.args(["755"]).arg(dir);
                    c
                },
                "chmod",
            )?;
            run(
                {
                    let mut c = Command::new("chown");
                    c.args(["-R", "postgres:postgres"]).arg(&root);
                    c
                },
                "chown",
            )?;
        }
        let pg = PrivatePostgres {
            data: root.join("data"),
            log: root.join("postgres.log"),
            sockets: root.clone(),
            port: free_port(),
            running: false,
        };
        let mut initdb = pg_command("initdb");
        initdb
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(&pg.data);
        run(initdb, "initdb")?;
        let mut pg = pg;
        pg.start_server()?;
        Ok(pg)
    }

    /// URL of database `name` on this server.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Starts the server and waits until it accepts connections.
    pub fn start_server(&mut self) -> anyhow::Result<()> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port,
            self.sockets.display()
        );
        let mut c = pg_command("pg_ctl");
        c.args(["-D"])
            .arg(&self.data)
            .args(["-l"])
            .arg(&self.log)
            .args(["-o", &options, "-w", "-t", "60", "start"]);
        run(c, "pg_ctl start")?;
        self.running = true;
        Ok(())
    }

    /// Stops the server: `fast` disconnects every client and shuts down cleanly, `immediate`
    /// is a crash (recovery from WAL on the next start).
    pub fn stop_server(&mut self, mode: &str) -> anyhow::Result<()> {
        let mut c = pg_command("pg_ctl");
        c.args(["-D"])
            .arg(&self.data)
            .args(["-m", mode, "-w", "-t", "60", "stop"]);
        run(c, "pg_ctl stop")?;
        self.running = false;
        Ok(())
    }
}

impl PrivatePostgres {
    /// Why the server is not down, if it is not: its port still accepts connections, or
    /// `pg_ctl status` finds it running.
    pub fn down(&self) -> Result<(), String> {
        if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            return Err(format!(
                "Postgres still accepts connections on port {}",
                self.port
            ));
        }
        let mut c = pg_command("pg_ctl");
        c.args(["-D"]).arg(&self.data).arg("status");
        match c.output() {
            // Exit code 3: no server running.
            Ok(out) if out.status.code() == Some(3) => Ok(()),
            Ok(out) => Err(format!(
                "pg_ctl status: {}{}",
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            )),
            Err(err) => Err(format!("pg_ctl status: {err}")),
        }
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        if self.running {
            let _ = self.stop_server("immediate");
        }
    }
}
