//! What the cluster-mode runtime tests share (cluster_agents.rs, cluster_outage.rs, cluster_three_members.rs,
//! cluster_metrics.rs):
//! agents with their own model devices, waiting for them with deadlines, and `ironlb controller` processes.
#![allow(dead_code)]

#[path = "host.rs"]
pub mod host;

use ironlb_cluster::write::Incoming;
use ironlb_cluster::{Client, EtcdConfig, EtcdSettings};
use ironlb_runtime::backend::BackendSpec;
use ironlb_runtime::cluster::agent::{Agent, AgentConfig};
use ironlb_runtime::status::Reason;
use ironlb_sim::DeviceConfig;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// An agent's configuration: an in-process model device, ports 1 and 2 on the Networks of VNI 100 and 200.
pub fn agent_config(etcd: EtcdConfig, state_dir: Option<PathBuf>) -> AgentConfig {
    AgentConfig {
        etcd,
        backend: BackendSpec::Inproc,
        device_config: DeviceConfig::default(),
        host: host::host_with_networks(&[(1, 100), (2, 200)]),
        state_dir,
        control: None,
    }
}

/// Writes the examples' allocation records (lb_ids 7 and 9, their VIPs), as the controller would.
pub fn allocate_examples(writer: &Client) {
    for (lb, alloc) in ironlb_cluster::testing::example_allocations() {
        let stored = writer.block_on(writer.store().put_allocation(
            &lb,
            &alloc,
            ironlb_cluster::store::Expect::Absent,
        ));
        assert!(stored.unwrap(), "{lb:?}: an allocation record was already there");
    }
}

/// An agent of the store `settings` reach, once it has its first listing.
pub fn agent(settings: &EtcdSettings) -> Agent {
    let a = Agent::start(agent_config(settings.resolve().unwrap(), None)).unwrap();
    assert!(a.wait_listed(Duration::from_secs(20)), "no listing from etcd");
    a
}

/// Polls `done` until it holds; panics naming `what` after `timeout`.
pub fn until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not reached in {timeout:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the agent has seen every write up to `revision`, then syncs until `done` holds (bounded: 20 s;
/// between tries it waits for a change of the store, at most 100 ms). Every agent thus syncs the same sequence of
/// store states, whatever the timing of its watch.
pub fn converge_at(a: &mut Agent, revision: i64, what: &str, done: impl Fn(&mut Agent) -> bool) {
    assert!(
        a.wait_revision(revision, Duration::from_secs(20)),
        "{what}: revision {revision} not seen"
    );
    converge(a, what, done)
}

/// Syncs until `done` holds (bounded: 20 s).
pub fn converge(a: &mut Agent, what: &str, done: impl Fn(&mut Agent) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        a.sync().unwrap();
        if done(a) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: not reached in 20 s");
        a.wait_change(Duration::from_millis(100)).unwrap();
    }
}

/// Load balancers the agent has programmed and reports Ready.
pub fn ready(a: &mut Agent) -> usize {
    a.with_reconciler(|r| r.status().values().filter(|s| s.ready()).count())
        .unwrap_or(0)
}

/// Every condition reason of the agent's load balancers.
pub fn reasons(a: &mut Agent) -> Vec<Reason> {
    a.with_reconciler(|r| {
        r.status()
            .values()
            .flat_map(|s| s.conditions.iter().map(|c| c.reason))
            .collect()
    })
    .unwrap_or_default()
}

/// A public IPv4 LoadBalancer `name` on the examples' Network, port `port`, with the examples' web servers as
/// targets.
pub fn extra_lb(name: &str, port: u16) -> Vec<Incoming> {
    let (extra, errors) = ironlb_api::load::load_str(
        "extra.yaml",
        &format!("apiVersion: networking.ironcore.dev/v1alpha1\nkind: LoadBalancer\nmetadata: {{name: {name}}}\nspec:\n  type: Public\n  ipFamilies: [IPv4]\n  ports: [{{protocol: TCP, port: {port}}}]\n  networkRef: {{name: my-network}}\n  networkInterfaceSelector: {{matchLabels: {{app: web}}}}\n"),
    );
    assert!(errors.is_empty(), "{errors:?}");
    Incoming::unpinned(extra)
}

/// The controller that leads (the leader key's value) and the lease it holds the key under.
pub fn leader(w: &Client) -> Option<(String, i64)> {
    let key = format!("{}leader", w.store().layout().record_prefix("controller"));
    let resp = w.block_on(w.store().get_key("leader", &key, None)).unwrap();
    resp.kvs()
        .first()
        .map(|kv| (String::from_utf8_lossy(kv.value()).into_owned(), kv.lease()))
}

/// An `ironlb controller` process, its log in a temporary file; killed with SIGKILL when dropped (no resign: its
/// lease lapses after its TTL).
pub struct Controller {
    child: Child,
    log: tempfile::NamedTempFile,
}

impl Controller {
    /// Starts `ironlb controller --id ID --lease-ttl TTL` on `endpoints`.
    pub fn start(endpoints: &[String], id: &str, lease_ttl: u32) -> Controller {
        Controller::start_with(endpoints, id, lease_ttl, &[])
    }

    /// [`Controller::start`] with further arguments (`--public-pool ...`).
    pub fn start_with(endpoints: &[String], id: &str, lease_ttl: u32, args: &[&str]) -> Controller {
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_ironlb"))
            .args(["controller", "--etcd-endpoints", &endpoints.join(","), "--id", id])
            .args(["--lease-ttl", &lease_ttl.to_string()])
            .args(args)
            .stdout(Stdio::null())
            .stderr(log.reopen().unwrap())
            .spawn()
            .unwrap();
        Controller { child, log }
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap()
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), signal).unwrap();
    }

    /// Freezes it where it is (SIGSTOP): no request, no lease keep-alive, until [`Controller::resume`] or a kill.
    pub fn pause(&self) {
        self.signal(nix::sys::signal::Signal::SIGSTOP);
    }

    /// Lets a paused controller go on (SIGCONT).
    pub fn resume(&self) {
        self.signal(nix::sys::signal::Signal::SIGCONT);
    }

    /// Stops it with SIGTERM and waits (bounded: 20 s) for it to exit 0; returns its log.
    pub fn terminate(mut self) -> String {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        let mut status = None;
        until("the controller exits on SIGTERM", Duration::from_secs(20), || {
            status = self.child.try_wait().unwrap();
            status.is_some()
        });
        let log = self.log();
        assert_eq!(status.and_then(|s| s.code()), Some(0), "{log}");
        log
    }
}

/// `ironlb controller` c1, once it leads (bounded: 30 s), and c2 started after it, standing by; both with lease time
/// `lease_ttl`, and both with the further arguments `args`.
pub fn leader_and_standby(
    endpoints: &[String],
    w: &Client,
    lease_ttl: u32,
    args: &[&str],
) -> (Controller, Controller) {
    let first = Controller::start_with(endpoints, "c1", lease_ttl, args);
    until("c1 leads", Duration::from_secs(30), || {
        leader(w).is_some_and(|(id, _)| id == "c1")
    });
    (first, Controller::start_with(endpoints, "c2", lease_ttl, args))
}

/// How much longer than its lease time a killed controller's successor may take to lead: etcd looks for expired
/// leases every 500 ms and revokes them through raft, the successor campaigns every 500 ms, and the machine may be
/// loaded. A bound on the lease mechanism, not a performance figure.
pub const TAKEOVER_SLACK: Duration = Duration::from_secs(5);

/// Kills `leading` (SIGKILL: no resign) and waits until `successor` leads, within the lease time `ttl` and
/// [`TAKEOVER_SLACK`]; returns how long it took.
pub fn kill_and_wait_for_takeover(
    w: &Client,
    leading: Controller,
    successor: &str,
    ttl: Duration,
) -> Duration {
    drop(leading);
    let killed = Instant::now();
    until(
        &format!("{successor} leads within the lease time {ttl:?} and {TAKEOVER_SLACK:?}"),
        ttl + TAKEOVER_SLACK,
        || leader(w).is_some_and(|(id, _)| id == successor),
    );
    killed.elapsed()
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
