//! A real etcd for tests (docs/testing.md "Cluster tests"): `etcd` from Debian's etcd-server, started on loopback
//! ports chosen here, with a temporary data directory, killed (and its directory removed) on drop — one member
//! ([`EtcdServer`]) or a cluster of three ([`EtcdCluster`]).
//!
//! Start waits for every member's `/health` to answer, polling with a deadline; a process that exits, or a port
//! taken between choosing and binding, is retried on new ports (and fresh data) a few times. When no `etcd` binary
//! is installed, `start_or_skip` returns `None` with a message, so developers without etcd can still run the test
//! suite — except under `CI=true`, where a missing etcd fails the test.

use crate::alloc::Allocation;
use crate::settings::EtcdSettings;
use crate::store::Listing;
use crate::write::Incoming;
use crate::Client;
use ironlb_api::ObjectKey;
use std::collections::BTreeSet;
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

/// Allocation records for the two load balancers of [`examples`] (as a controller would write them, with lb_ids no
/// allocator of ours would choose first: the public one's lb_id 7 with the example VIPs, the internal one's lb_id 9
/// with its IPv6 VIP from `my-lb-prefix-v6`).
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

/// A Network `net` (VNI 100) and the public dual-stack LoadBalancers `lb-<i>` for each `i` in `lbs`, without
/// status (the controller chooses every address), as objects to write.
pub fn fleet(lbs: std::ops::Range<usize>) -> Vec<Incoming> {
    let mut text = String::from(
        "apiVersion: networking.ironcore.dev/v1alpha1\nkind: Network\nmetadata: {name: net}\nspec: {vni: 100}\n",
    );
    for i in lbs {
        text.push_str(&format!(
            "---\napiVersion: networking.ironcore.dev/v1alpha1\nkind: LoadBalancer\nmetadata: {{name: lb-{i}}}\nspec:\n  type: Public\n  ipFamilies: [IPv4, IPv6]\n  ports: [{{protocol: TCP, port: 80}}]\n  networkRef: {{name: net}}\n"
        ));
    }
    let (objects, errors) = ironlb_api::load::load_str("fleet.yaml", &text);
    assert!(errors.is_empty(), "{errors:?}");
    Incoming::unpinned(objects)
}

/// How many allocation records the store holds: one count-only range request, cheap enough to poll while a
/// controller allocates thousands (a [`Client::list`] reads and decodes every object).
pub fn allocation_count(client: &Client) -> usize {
    let prefix = client.store().layout().record_prefix(crate::alloc::AREA);
    let mut etcd = client.store().client().clone();
    let options = etcd_client::GetOptions::new().with_prefix().with_count_only();
    let answer = client
        .block_on(etcd.get(prefix, Some(options)))
        .expect("a count of the allocation records");
    usize::try_from(answer.count()).expect("a count fits usize")
}

/// Checks what the controller handed out to a [`fleet`] of `n` LoadBalancers (issue 17 test 2): every one has a
/// record, no lb_id and no IP is in two records, each record has one public IP per family, and each
/// LoadBalancer's `status.ips` says the same as its record. Panics naming `what` and the value given twice.
pub fn assert_allocated_once(listing: &Listing, n: usize, what: &str) {
    assert_eq!(listing.allocations.len(), n, "{what}: every LB allocated");
    let mut ids = BTreeSet::new();
    let mut ips = BTreeSet::new();
    for (k, (a, _)) in &listing.allocations {
        assert!(ids.insert(a.lb_id), "{what}: lb_id {} twice ({k})", a.lb_id);
        assert_eq!(a.public_ips.len(), 2, "{what}: {k}: one per family");
        for ip in &a.public_ips {
            assert!(ips.insert(*ip), "{what}: {ip} twice ({k})");
        }
        let lb = &listing.objects[&k.clone().of(ironlb_api::Kind::LoadBalancer)];
        let ironlb_api::Object::LoadBalancer(o) = &lb.object else {
            unreachable!("a LoadBalancer's key holds a LoadBalancer")
        };
        let status: Vec<String> = o.status.ips.iter().map(|s| s.ip.clone()).collect();
        let want: Vec<String> = a.public_ips.iter().map(ToString::to_string).collect();
        assert_eq!(status, want, "{what}: {k}: status.ips and the record differ");
    }
}

/// How long etcd (every member) may take to become healthy.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Attempts of a start (each on new ports and fresh data).
const START_ATTEMPTS: usize = 3;

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
        /// The tail of etcd's log (of each member, for a cluster).
        log: String,
    },
    /// A question to etcd (which member leads) found no answer.
    #[error("etcd harness: {0}")]
    Query(String),
}

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> HarnessError {
    move |source| HarnessError::Io { what, source }
}

/// A free loopback port (free when chosen; etcd binds it soon after, and a lost race is retried).
fn free_port() -> Result<u16, HarnessError> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(io("choosing a port"))?;
    Ok(l.local_addr().map_err(io("choosing a port"))?.port())
}

/// `Ok(None)` with a `SKIPPED` line when etcd is not installed (outside CI); a panic naming `test` on any other
/// failure, and under `CI=true` (CI installs etcd, so its absence is a broken CI).
fn or_skip<T>(test: &str, started: Result<T, HarnessError>) -> Option<T> {
    match started {
        Ok(s) => Some(s),
        Err(HarnessError::NotInstalled) if std::env::var("CI").as_deref() != Ok("true") => {
            eprintln!("SKIPPED {test}: {}", HarnessError::NotInstalled);
            None
        }
        Err(e) => panic!("{test}: {e}"),
    }
}

/// One etcd process: its name, ports, directory (data and log) and the running child.
#[derive(Debug)]
struct Member {
    name: String,
    dir: PathBuf,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
}

impl Member {
    fn client_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("etcd.log")
    }

    /// Starts the process (not waiting for it) with `initial_cluster` (`name=peer-url,...`). A restart reuses the
    /// data directory, where etcd keeps its membership; the flags only matter on the first start.
    fn spawn(&mut self, bin: &Path, initial_cluster: &str) -> Result<(), HarnessError> {
        self.kill();
        std::fs::create_dir_all(&self.dir).map_err(io("creating the member directory"))?;
        let log = std::fs::File::create(self.log_path()).map_err(io("creating the log"))?;
        let (client, peer) = (self.client_url(), self.peer_url());
        let child = Command::new(bin)
            .arg(format!("--name={}", self.name))
            .arg(format!("--data-dir={}", self.dir.join("data").display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster={initial_cluster}"))
            .arg("--logger=zap")
            .arg("--log-outputs=stderr")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(io("starting etcd"))?;
        self.child = Some(child);
        Ok(())
    }

    /// The process ran and has exited.
    fn exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))))
    }

    /// The last lines of its log.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// `GET /health` answers `"health":"true"`. etcd answers so only while the cluster has a leader: a member of a
    /// cluster without quorum is not healthy.
    fn healthy(&self) -> bool {
        self.http_get("/health")
            .is_some_and(|body| body.contains("\"health\":\"true\""))
    }

    /// The answer (headers and body, up to 1 MiB) to `GET path` on the client port, bounded by short socket
    /// timeouts; `None` when the member does not answer.
    fn http_get(&self, path: &str) -> Option<String> {
        let mut s = TcpStream::connect_timeout(
            &([127, 0, 0, 1], self.client_port).into(),
            Duration::from_millis(200),
        )
        .ok()?;
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        let _ = s.set_write_timeout(Some(Duration::from_secs(1)));
        let req = format!(
            "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{}\r\n\r\n",
            self.client_port
        );
        s.write_all(req.as_bytes()).ok()?;
        let mut body = String::new();
        let _ = s.take(1 << 20).read_to_string(&mut body);
        Some(body)
    }

    /// Stops the process (SIGKILL), keeping its data.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Members of one etcd cluster in one temporary directory (removed on drop, after every member is killed).
#[derive(Debug)]
struct Members {
    members: Vec<Member>,
    dir: tempfile::TempDir,
}

impl Members {
    /// Starts `n` members (`ironlb-test`, or `ironlb-test-0..n` for a cluster) and waits until all are healthy.
    fn start(n: usize) -> Result<Members, HarnessError> {
        let bin = etcd_binary().ok_or(HarnessError::NotInstalled)?;
        let dir = tempfile::Builder::new()
            .prefix("ironlb-etcd-")
            .tempdir()
            .map_err(io("creating the data directory"))?;
        let mut m = Members {
            members: Vec::with_capacity(n),
            dir,
        };
        let mut last = None;
        for attempt in 1..=START_ATTEMPTS {
            // New ports and a fresh data directory per attempt.
            m.members.clear();
            for i in 0..n {
                let name = match n {
                    1 => "ironlb-test".to_string(),
                    _ => format!("ironlb-test-{i}"),
                };
                m.members.push(Member {
                    dir: m.dir.path().join(format!("{name}.{attempt}")),
                    name,
                    client_port: free_port()?,
                    peer_port: free_port()?,
                    child: None,
                });
            }
            let initial = m.initial_cluster();
            for member in &mut m.members {
                member.spawn(&bin, &initial)?;
            }
            match m.wait_healthy(&(0..n).collect::<Vec<_>>(), attempt) {
                Ok(()) => return Ok(m),
                Err(e @ HarnessError::Unhealthy { .. }) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.expect("at least one attempt"))
    }

    /// `name=peer-url,...` of every member.
    fn initial_cluster(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url()))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Waits until the members `which` are healthy; when one exits, or the deadline passes, kills them and fails
    /// with every member's log tail.
    fn wait_healthy(&mut self, which: &[usize], attempt: usize) -> Result<(), HarnessError> {
        let start = Instant::now();
        while start.elapsed() < START_TIMEOUT {
            if which.iter().all(|&i| self.members[i].healthy()) {
                return Ok(());
            }
            if which.iter().any(|&i| self.members[i].exited()) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let waited = start.elapsed();
        let log = self.log_tails();
        for &i in which {
            self.members[i].kill();
        }
        Err(HarnessError::Unhealthy {
            waited,
            attempts: attempt,
            log,
        })
    }

    /// Every member's log tail (headed by its name when there are several).
    fn log_tails(&self) -> String {
        match &self.members[..] {
            [one] => one.log_tail(),
            all => all
                .iter()
                .map(|m| format!("--- {} ({}):\n{}", m.name, m.client_url(), m.log_tail()))
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }

    /// Starts member `i` again on its ports and data, and waits until it is healthy.
    fn restart(&mut self, i: usize) -> Result<(), HarnessError> {
        let bin = etcd_binary().ok_or(HarnessError::NotInstalled)?;
        let initial = self.initial_cluster();
        self.members[i].spawn(&bin, &initial)?;
        self.wait_healthy(&[i], 1)
    }

    fn settings(&self, endpoints: Vec<String>, prefix: &str) -> EtcdSettings {
        EtcdSettings {
            endpoints: Some(endpoints),
            prefix: Some(prefix.to_string()),
            ..EtcdSettings::default()
        }
    }

    fn kill_all(&mut self) {
        for m in &mut self.members {
            m.kill();
        }
    }
}

impl Drop for Members {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// One running single-member etcd.
#[derive(Debug)]
pub struct EtcdServer(Members);

fn connect(settings: &EtcdSettings) -> Client {
    let cfg = settings.resolve().expect("the harness's settings resolve");
    Client::connect(&cfg).unwrap_or_else(|e| panic!("connecting to the test etcd: {e}"))
}

impl EtcdServer {
    /// Starts etcd, or returns `None` after printing why the calling test is skipped when etcd is not installed.
    /// Under `CI=true` a missing etcd panics instead: CI installs it, so its absence is a broken CI.
    pub fn start_or_skip(test: &str) -> Option<EtcdServer> {
        or_skip(test, EtcdServer::start())
    }

    /// Starts etcd on free loopback ports and waits until it is healthy.
    pub fn start() -> Result<EtcdServer, HarnessError> {
        Members::start(1).map(EtcdServer)
    }

    /// The last lines of etcd's log.
    pub fn log_tail(&self) -> String {
        self.0.log_tails()
    }

    /// The client URL.
    pub fn endpoint(&self) -> String {
        self.0.members[0].client_url()
    }

    /// Settings reaching this server under `prefix`.
    pub fn settings(&self, prefix: &str) -> EtcdSettings {
        self.0.settings(vec![self.endpoint()], prefix)
    }

    /// A client of this server under `prefix` (a test's setup: panics when it cannot connect).
    pub fn client(&self, prefix: &str) -> Client {
        connect(&self.settings(prefix))
    }

    /// Stops etcd (SIGKILL), keeping its data: [`EtcdServer::restart`] brings it back with the same state.
    pub fn kill(&mut self) {
        self.0.members[0].kill();
    }

    /// Starts a stopped etcd again on the same ports and data.
    pub fn restart(&mut self) -> Result<(), HarnessError> {
        self.0.restart(0)
    }
}

/// A running three-member etcd cluster on loopback (issue 17 test 2). Members are numbered 0 to 2; killing one
/// leaves a quorum of two.
#[derive(Debug)]
pub struct EtcdCluster(Members);

impl EtcdCluster {
    /// Members of the cluster.
    pub const SIZE: usize = 3;

    /// [`EtcdServer::start_or_skip`] for a cluster.
    pub fn start_or_skip(test: &str) -> Option<EtcdCluster> {
        or_skip(test, EtcdCluster::start())
    }

    /// Starts three members on free loopback ports and waits until all are healthy (the cluster has a leader).
    pub fn start() -> Result<EtcdCluster, HarnessError> {
        Members::start(Self::SIZE).map(EtcdCluster)
    }

    /// Every member's client URL, in member order.
    pub fn endpoints(&self) -> Vec<String> {
        self.0.members.iter().map(Member::client_url).collect()
    }

    /// Settings reaching the cluster through all three members under `prefix`.
    pub fn settings(&self, prefix: &str) -> EtcdSettings {
        self.0.settings(self.endpoints(), prefix)
    }

    /// A client of the cluster (all three members) under `prefix` (a test's setup: panics when it cannot connect).
    pub fn client(&self, prefix: &str) -> Client {
        connect(&self.settings(prefix))
    }

    /// Every member's log tail, headed by its name.
    pub fn log_tails(&self) -> String {
        self.0.log_tails()
    }

    /// Stops member `i` (SIGKILL), keeping its data.
    pub fn kill(&mut self, i: usize) {
        self.0.members[i].kill();
    }

    /// Starts member `i` again on its ports and data and waits until it is healthy (back in the cluster).
    pub fn restart(&mut self, i: usize) -> Result<(), HarnessError> {
        self.0.restart(i)
    }

    /// The gRPC streams of `method` (`Watch`, `LeaseKeepAlive`) that member `i` serves now — started less
    /// finished, from etcd's metrics — or `None` when it does not answer: tells which member a client's stream went
    /// to.
    pub fn open_streams(&self, i: usize, method: &str) -> Option<u64> {
        let metrics = self.0.members[i].http_get("/metrics")?;
        let labels = format!("grpc_method=\"{method}\",grpc_service=\"etcdserverpb.");
        let count = |metric: &str| -> u64 {
            metrics
                .lines()
                .filter(|l| l.starts_with(metric) && l.contains(&labels))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .map(|v| v as u64)
                .sum()
        };
        Some(count("grpc_server_started_total{").saturating_sub(count("grpc_server_handled_total{")))
    }

    /// The member that leads now, as the running members see it: asks each for its status (etcd's maintenance
    /// API) until one says it is the leader, within `timeout` (an election may be under way).
    pub fn leader(&mut self, timeout: Duration) -> Result<usize, HarnessError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(io("a runtime for etcd's status"))?;
        let deadline = Instant::now() + timeout;
        let mut last = String::from("no member answered");
        while Instant::now() < deadline {
            for (i, m) in self.0.members.iter_mut().enumerate() {
                if m.child.is_none() || m.exited() {
                    continue;
                }
                let status = rt.block_on(async {
                    let opts = etcd_client::ConnectOptions::new()
                        .with_connect_timeout(Duration::from_secs(1))
                        .with_timeout(Duration::from_secs(1));
                    let mut c = etcd_client::Client::connect([m.client_url()], Some(opts)).await?;
                    c.status().await
                });
                match status {
                    Ok(s) if s.header().is_some_and(|h| h.member_id() == s.leader()) => return Ok(i),
                    Ok(s) => last = format!("{} follows leader {:x}", m.name, s.leader()),
                    Err(e) => last = format!("{}: {e}", m.name),
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(HarnessError::Query(format!(
            "no member leads within {timeout:?} ({last}); logs:\n{}",
            self.0.log_tails()
        )))
    }
}
