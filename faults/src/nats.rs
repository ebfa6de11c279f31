//! A private NATS deployment for the suite: one node, or a three-node JetStream cluster on
//! loopback (routes between all nodes, a temporary store each), whose nodes can be killed and
//! brought back individually or all at once.

use std::fs::File;
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

    /// SIGKILLs node `i`; its store stays.
    pub fn kill_node(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops every node with SIGTERM (nats-server's graceful shutdown), SIGKILL after 20 s.
    pub fn stop_all(&mut self) {
        for node in &mut self.nodes {
            if let Some(child) = &node.child {
                let _ = Command::new("kill")
                    .args(["-TERM", &child.id().to_string()])
                    .status();
            }
        }
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let deadline = Instant::now() + Duration::from_secs(20);
                while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                    std::thread::sleep(Duration::from_millis(20));
                }
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    /// SIGKILLs every node.
    pub fn kill_all(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill_node(i);
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
