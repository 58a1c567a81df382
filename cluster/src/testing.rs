//! A real etcd for tests (docs/testing.md "Cluster tests"): `etcd` from Debian's etcd-server, started on loopback
//! ports chosen here, with a temporary data directory, killed (and its directory removed) on drop.
//!
//! Start waits for etcd's `/health` to answer, polling with a deadline; a process that exits, or a port taken
//! between choosing and binding, is retried on new ports a few times. When no `etcd` binary is installed,
//! [`EtcdServer::start_or_skip`] returns `None` with a message, so developers without etcd can still run the test
//! suite — except under `CI=true`, where a missing etcd fails the test.

use crate::alloc::Allocation;
use crate::settings::EtcdSettings;
use crate::write::Incoming;
use ironlb_api::ObjectKey;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The repository's examples/ directory, loaded, as objects to write (unpinned). Panics if any fails to load.
pub fn examples() -> Vec<Incoming> {
    let (objects, errors) = ironlb_api::load::load_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples"));
    assert!(errors.is_empty(), "examples/ does not load: {errors:?}");
    Incoming::unpinned(objects)
}

/// Allocation records for the two load balancers of [`examples`] (as a controller would write them: the public
/// one's lb_id 7 with the example VIPs, the internal one's lb_id 9 with its IPv6 VIP from `my-lb-prefix-v6`).
pub fn example_allocations() -> Vec<(ObjectKey, Allocation)> {
    let ip = |s: &str| s.parse::<std::net::IpAddr>().expect("example address");
    vec![
        (
            ObjectKey::new("default", "my-load-balancer"),
            Allocation {
                lb_id: 7,
                public_ips: vec![ip("203.0.113.10"), ip("2001:db8:ff::10")],
                prefix_ips: Default::default(),
            },
        ),
        (
            ObjectKey::new("default", "my-loadbalancer"),
            Allocation {
                lb_id: 9,
                public_ips: Vec::new(),
                prefix_ips: [(
                    ObjectKey::new("default", "my-lb-prefix-v6"),
                    ip("2607:f0d0:1002:51::4"),
                )]
                .into(),
            },
        ),
    ]
}

/// How long etcd may take to become healthy.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The etcd binary: `$IRONLB_ETCD`, else `etcd` on `PATH`.
pub fn etcd_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("IRONLB_ETCD") {
        return Some(PathBuf::from(p));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("etcd"))
            .find(|p| p.is_file())
    })
}

/// Why etcd did not start.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// No etcd binary.
    #[error("etcd is not installed (apt-get install etcd-server, or set IRONLB_ETCD)")]
    NotInstalled,
    /// I/O (temporary directory, spawning).
    #[error("etcd harness: {what}: {source}")]
    Io {
        /// What failed.
        what: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// etcd did not become healthy.
    #[error("etcd did not become healthy within {waited:?} ({attempts} attempt(s)); its log:\n{log}")]
    Unhealthy {
        /// Time spent on the last attempt.
        waited: Duration,
        /// Attempts made.
        attempts: usize,
        /// The tail of etcd's log.
        log: String,
    },
}

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> HarnessError {
    move |source| HarnessError::Io { what, source }
}

/// A free loopback port (free when chosen; etcd binds it soon after, and a lost race is retried).
fn free_port() -> Result<u16, HarnessError> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(io("choosing a port"))?;
    Ok(l.local_addr().map_err(io("choosing a port"))?.port())
}

/// One running single-member etcd.
#[derive(Debug)]
pub struct EtcdServer {
    child: Option<Child>,
    dir: tempfile::TempDir,
    client_port: u16,
    peer_port: u16,
}

impl EtcdServer {
    /// Starts etcd, or returns `None` after printing why the calling test is skipped when etcd is not installed.
    /// Under `CI=true` a missing etcd panics instead: CI installs it, so its absence is a broken CI.
    pub fn start_or_skip(test: &str) -> Option<EtcdServer> {
        match EtcdServer::start() {
            Ok(s) => Some(s),
            Err(HarnessError::NotInstalled) if std::env::var("CI").as_deref() != Ok("true") => {
                eprintln!("SKIPPED {test}: {}", HarnessError::NotInstalled);
                None
            }
            Err(e) => panic!("{test}: {e}"),
        }
    }

    /// Starts etcd on free loopback ports and waits until it is healthy.
    pub fn start() -> Result<EtcdServer, HarnessError> {
        let bin = etcd_binary().ok_or(HarnessError::NotInstalled)?;
        let dir = tempfile::Builder::new()
            .prefix("ironlb-etcd-")
            .tempdir()
            .map_err(io("creating the data directory"))?;
        let mut server = EtcdServer {
            child: None,
            dir,
            client_port: 0,
            peer_port: 0,
        };
        let mut last = None;
        for attempt in 1..=3 {
            server.client_port = free_port()?;
            server.peer_port = free_port()?;
            match server.spawn(&bin, attempt) {
                Ok(()) => return Ok(server),
                Err(e @ HarnessError::Unhealthy { .. }) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.expect("three attempts"))
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    fn spawn(&mut self, bin: &Path, attempt: usize) -> Result<(), HarnessError> {
        self.kill();
        let data = self.dir.path().join("data");
        let log = std::fs::File::create(self.log_path()).map_err(io("creating the log"))?;
        let client = format!("http://127.0.0.1:{}", self.client_port);
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let child = Command::new(bin)
            .arg("--name=ironlb-test")
            .arg(format!("--data-dir={}", data.display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=ironlb-test={peer}"))
            .arg("--logger=zap")
            .arg("--log-outputs=stderr")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(io("starting etcd"))?;
        self.child = Some(child);
        let start = Instant::now();
        while start.elapsed() < START_TIMEOUT {
            if self.healthy() {
                return Ok(());
            }
            if let Some(c) = &mut self.child {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let waited = start.elapsed();
        self.kill();
        Err(HarnessError::Unhealthy {
            waited,
            attempts: attempt,
            log: self.log_tail(),
        })
    }

    /// The last lines of etcd's log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// `GET /health` answers `"health":"true"` (bounded by short socket timeouts).
    fn healthy(&self) -> bool {
        let Ok(mut s) = TcpStream::connect_timeout(
            &([127, 0, 0, 1], self.client_port).into(),
            Duration::from_millis(200),
        ) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        let _ = s.set_write_timeout(Some(Duration::from_secs(1)));
        let req = format!(
            "GET /health HTTP/1.0\r\nHost: 127.0.0.1:{}\r\n\r\n",
            self.client_port
        );
        if s.write_all(req.as_bytes()).is_err() {
            return false;
        }
        let mut body = String::new();
        let _ = s.take(4096).read_to_string(&mut body);
        body.contains("\"health\":\"true\"")
    }

    /// The client URL.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// Settings reaching this server under `prefix`.
    pub fn settings(&self, prefix: &str) -> EtcdSettings {
        EtcdSettings {
            endpoints: Some(vec![self.endpoint()]),
            prefix: Some(prefix.to_string()),
            ..EtcdSettings::default()
        }
    }

    /// Stops etcd (SIGKILL), keeping its data: [`EtcdServer::restart`] brings it back with the same state.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts a stopped etcd again on the same ports and data.
    pub fn restart(&mut self) -> Result<(), HarnessError> {
        let bin = etcd_binary().ok_or(HarnessError::NotInstalled)?;
        self.spawn(&bin, 1)
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.kill();
    }
}
