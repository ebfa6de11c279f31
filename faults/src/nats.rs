//! A private NATS deployment for the suite: one node, or a three-node JetStream cluster on
//! loopback (routes between all nodes, a temporary store each), whose nodes can be killed and
//! brought back individually or all at once.

use std::fs::File;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use followup_testkit::free_port;

struct Node {
    name: String,
    port: u16,
    cluster_port: u16,
    store: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Node {
    /// Why the node is not down, if it is not: its client port still accepts connections.
    fn down(&self) -> Result<(), String> {
        match std::net::TcpStream::connect(("127.0.0.1", self.port)) {
            Ok(_) => Err(format!(
                "{} still accepts connections on port {}",
                self.name, self.port
            )),
            Err(_) => Ok(()),
        }
    }
}

/// The signal number of SIGKILL.
const SIGKILL: i32 = 9;

/// The NATS servers of one suite run.
pub struct NatsCluster {
    nodes: Vec<Node>,
}

impl NatsCluster {
    /// Starts `size` nodes (1 = a single server, 3 = a cluster) under `dir`.
    pub fn start(size: usize, dir: &Path) -> anyhow::Result<NatsCluster> {
        let nodes = (0..size)
            .map(|i| Node {
                name: format!("faults-n{i}"),
                port: free_port(),
                cluster_port: free_port(),
                store: dir.join(format!("nats-n{i}")),
                log: dir.join(format!("nats-n{i}.log")),
                child: None,
            })
            .collect();
        let mut cluster = NatsCluster { nodes };
        for i in 0..size {
            cluster.start_node(i)?;
        }
        Ok(cluster)
    }

    /// Number of nodes.
    pub fn size(&self) -> usize {
        self.nodes.len()
    }

    /// Every node's client URL, comma-separated (what `NATS_URL` takes).
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Starts node `i` (again) with its store, and waits until it listens.
    pub fn start_node(&mut self, i: usize) -> anyhow::Result<()> {
        let routes: Vec<String> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, n)| format!("nats://127.0.0.1:{}", n.cluster_port))
            .collect();
        let node = &mut self.nodes[i];
        let mut command = Command::new("nats-server");
        command
            .args(["-a", "127.0.0.1", "-p", &node.port.to_string()])
            .args(["-n", &node.name, "-js", "-sd"])
            .arg(&node.store);
        if !routes.is_empty() {
            command
                .args(["--cluster_name", "faults"])
                .args([
                    "--cluster",
                    &format!("nats://127.0.0.1:{}", node.cluster_port),
                ])
                .args(["--routes", &routes.join(",")]);
        }
        let log = File::options().create(true).append(true).open(&node.log)?;
        let child = command
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting nats-server (install Debian's nats-server)")?;
        node.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", node.port)).is_err() {
            anyhow::ensure!(Instant::now() < deadline, "{} did not listen", node.name);
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// SIGKILLs node `i`; its store stays. Returns why the kill is not confirmed, if it is not:
    /// the node must have been running, have ended by this SIGKILL (reaped) and no longer accept
    /// client connections.
    pub fn kill_node(&mut self, i: usize) -> Result<(), String> {
        let node = &mut self.nodes[i];
        let Some(mut child) = node.child.take() else {
            return Err(format!("{} was not started", node.name));
        };
        let running = matches!(child.try_wait(), Ok(None));
        let _ = child.kill();
        let status = child.wait();
        if !running {
            return Err(format!("{} had already exited ({status:?})", node.name));
        }
        if !matches!(status, Ok(s) if s.signal() == Some(SIGKILL)) {
            return Err(format!("{} did not end by SIGKILL ({status:?})", node.name));
        }
        node.down()
    }

    /// Stops every node with SIGTERM (nats-server's graceful shutdown), SIGKILL after 20 s.
    /// Returns why the outage is not confirmed, if it is not: every node must have been running,
    /// have exited (reaped) and no longer accept client connections.
    pub fn stop_all(&mut self) -> Result<(), String> {
        let mut problems = Vec::new();
        let mut running = Vec::new();
        for node in &mut self.nodes {
            match &mut node.child {
                Some(child) => {
                    running.push(matches!(child.try_wait(), Ok(None)));
                    let _ = Command::new("kill")
                        .args(["-TERM", &child.id().to_string()])
                        .status();
                }
                None => running.push(false),
            }
        }
        for (node, running) in self.nodes.iter_mut().zip(running) {
            if !running {
                problems.push(format!("{} was not running", node.name));
            }
            if let Some(mut child) = node.child.take() {
                let deadline = Instant::now() + Duration::from_secs(20);
                while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                    std::thread::sleep(Duration::from_millis(20));
                }
                let _ = child.kill();
                let _ = child.wait();
            }
            if let Err(problem) = node.down() {
                problems.push(problem);
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }

    /// Why the nodes are not all down right now, if they are not (every client port refuses).
    pub fn all_down(&self) -> Result<(), String> {
        self.nodes.iter().try_for_each(Node::down)
    }

    /// SIGKILLs every node.
    pub fn kill_all(&mut self) {
        for i in 0..self.nodes.len() {
            let _ = self.kill_node(i);
        }
    }

    /// Starts every node that is down.
    pub fn start_all(&mut self) -> anyhow::Result<()> {
        for i in 0..self.nodes.len() {
            if self.nodes[i].child.is_none() {
                self.start_node(i)?;
            }
        }
        Ok(())
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        self.kill_all();
    }
}
