//! Cluster-mode benchmark (issue 17; docs/performance.md "Cluster mode (issue 17)"), a bench binary that prints its
//! figures. A real etcd on loopback ([`EtcdServer`]), the real `ironlb controller` binary (two of them: one leads,
//! one stands by), and three agents in this process, each on its own thread with its own in-process model device
//! (`BackendSpec::Inproc`, the reference part), driven as `ironlb agent` drives itself (sync, then `Agent::wait_due`).
//!
//! The objects are those of the `sync` bench: one Network, N public dual-stack LoadBalancers (TCP 80, UDP
//! 1024–2048) with a `networkInterfaceSelector`, LoadBalancer 0 selecting its own group of T NetworkInterfaces and
//! every other one one of 64 shared groups of T (so (64 + 1) × T NetworkInterfaces, not N × T).
//!
//! 1. **apply → every device**: `Client::apply` of every object (in transactions of at most 128 writes), then the
//!    time until the controller has allocated every LoadBalancer, until it has written every LoadBalancerRouting,
//!    and until each of the three devices holds all N LoadBalancers with T serving targets each (and has synced the
//!    store with every routing written);
//! 2. **one target change → every device**: one NetworkInterface of LoadBalancer 0's group flips `status.state`
//!    Available → Pending (the target leaves) and back (it returns), each written with `Client::apply`; from the
//!    write's commit until the change is on all three devices, p50/p99 over E events, with the controller's routing
//!    rewrite (as a watcher sees it) and the part after it;
//! 3. **controller failover**: the leading controller is killed (SIGKILL) and a new LoadBalancer applied at once;
//!    the time until the standby leads and until it has allocated the new LoadBalancer.
//!
//! `cargo bench -p ironlb-runtime --bench cluster` runs at N = 4096, T = 64, E = 200 with lease time 5 s (the
//! controller's default). `-- --lbs N --targets T --events E --lease-ttl S --timeout SECONDS` changes them. Needs
//! etcd (`apt-get install etcd-server`, or `IRONLB_ETCD=path`); without it the bench fails and says so.

#[path = "common/fleet.rs"]
mod fleet;

use fleet::{host, lb, nic, pct, underlay, GROUPS, NETWORK, SOLO};
use ironlb_api::{Kind, Object, ObjectKey};
use ironlb_cluster::store::Listing;
use ironlb_cluster::testing::{EtcdServer, HarnessError};
use ironlb_cluster::write::Incoming;
use ironlb_cluster::{Client, EtcdConfig};
use ironlb_runtime::backend::BackendSpec;
use ironlb_runtime::cluster::agent::{Agent, AgentConfig};
use ironlb_sim::DeviceConfig;
use std::collections::BTreeSet;
use std::net::Ipv6Addr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

struct Args {
    lbs: usize,
    targets: usize,
    events: usize,
    lease_ttl: u32,
    timeout: Duration,
}

fn args() -> Args {
    let f = fleet::number_flags(&["--lbs", "--targets", "--events", "--lease-ttl", "--timeout"]);
    let n = |flag: &str, default: u64| f.get(flag).copied().unwrap_or(default);
    let a = Args {
        lbs: n("--lbs", 4096) as usize,
        targets: n("--targets", 64) as usize,
        events: n("--events", 200) as usize,
        lease_ttl: n("--lease-ttl", 5) as u32,
        timeout: Duration::from_secs(n("--timeout", 600)),
    };
    assert!(a.lbs >= 1 && a.targets >= 2 && a.lease_ttl >= 2);
    a
}

const AGENTS: usize = 3;
/// Set when the bench ends (etcd goes away: the watcher's end is expected).
static STOPPING: AtomicBool = AtomicBool::new(false);
const PREFIX: &str = "/ironlb/";
/// The controllers' public pools: room for 4,096 LoadBalancers and more (the default /24 is too small).
const POOLS: &str = "198.18.0.0/15,2001:db8:ff::/64";

fn objects(text: &str) -> Vec<Incoming> {
    let (objects, errors) = ironlb_api::load::load_str("bench.yaml", text);
    assert!(errors.is_empty(), "{errors:?}");
    Incoming::unpinned(objects)
}

/// Every object of the fleet.
fn fleet(a: &Args) -> Vec<Incoming> {
    let mut t = NETWORK.to_string();
    for g in 0..=SOLO {
        for n in 0..a.targets {
            t.push_str(&nic(g, n, true));
        }
    }
    for i in 0..a.lbs {
        t.push_str(&lb(i));
    }
    objects(&t)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// What one agent's device holds after its last sync.
#[derive(Debug, Clone, Default)]
struct View {
    /// Syncs done.
    syncs: u64,
    /// The store revision the agent had seen before its last sync (so that sync saw at least this).
    revision: i64,
    /// LoadBalancers programmed.
    lbs: usize,
    /// LoadBalancers programmed with `targets` serving targets.
    full: usize,
    /// Serving targets of the probe LoadBalancer (by lb_id), and when they last changed.
    probe: Option<BTreeSet<Ipv6Addr>>,
    probe_changed: Option<Instant>,
    /// When the number of LoadBalancers programmed last changed.
    lbs_changed: Option<Instant>,
    /// When the device first held every LoadBalancer with all its targets.
    full_at: Option<Instant>,
    /// The longest sync.
    sync_max: Duration,
    /// LoadBalancers with an error in the last sync, and one of them.
    errors: usize,
    error: Option<String>,
}

/// State shared between the agents' threads and the main thread.
#[derive(Default)]
struct Shared {
    views: Mutex<Vec<View>>,
    cv: Condvar,
    /// lb_id whose targets the agents report (`u32::MAX`: none).
    probe: AtomicU32,
    stop: AtomicBool,
    /// Per agent: wake it from its wait (the probe was set, or the bench stops); it then syncs and reports.
    wake: [AtomicBool; AGENTS],
}

impl Shared {
    fn wake_all(&self) {
        for w in &self.wake {
            w.store(true, Ordering::Relaxed);
        }
    }
}

/// Runs one agent (on this thread) until `stop`: sync, publish what the device holds, wait as `ironlb agent` does
/// (`Agent::wait_due`).
fn run_agent(i: usize, cfg: EtcdConfig, lbs: usize, targets: usize, shared: Arc<Shared>) {
    let mut agent = Agent::start(AgentConfig {
        etcd: cfg,
        backend: BackendSpec::Inproc,
        device_config: DeviceConfig::default(),
        host: host(),
        state_dir: None,
        control: None,
    })
    .expect("agent starts");
    assert!(
        agent.wait_listed(Duration::from_secs(60)),
        "agent {i}: no listing from etcd in 60 s: {:?}",
        agent.health()
    );
    let mut last_probe: Option<BTreeSet<Ipv6Addr>> = None;
    let mut probe_changed = None;
    let mut full_at = None;
    let (mut last_lbs, mut lbs_changed) = (0, None);
    let mut sync_max = Duration::ZERO;
    while !shared.stop.load(Ordering::Relaxed) {
        let revision = agent.health().revision;
        let t = Instant::now();
        let report = agent.sync().unwrap_or_else(|e| panic!("agent {i}: sync: {e}"));
        let took = t.elapsed();
        sync_max = sync_max.max(took);
        let probe_id = shared.probe.load(Ordering::Relaxed);
        let (n, full, probe) = agent
            .with_reconciler(|r| {
                let (mut n, mut full, mut probe) = (0, 0, None);
                for s in r.device().programmed() {
                    n += 1;
                    full += usize::from(s.targets.len() == targets);
                    if s.lb_id == probe_id {
                        probe = Some(s.targets.clone());
                    }
                }
                (n, full, probe)
            })
            .expect("listed: running");
        let now = Instant::now();
        if probe != last_probe {
            probe_changed = Some(now);
            last_probe = probe.clone();
        }
        if n != last_lbs {
            last_lbs = n;
            lbs_changed = Some(now);
        }
        if full == lbs && full_at.is_none() {
            full_at = Some(now);
        }
        let errors = report.as_ref().map_or(&[][..], |r| &r.errors[..]);
        let view = View {
            syncs: 0,
            revision,
            lbs: n,
            full,
            probe,
            probe_changed,
            lbs_changed,
            full_at,
            sync_max,
            errors: errors.len(),
            error: errors
                .first()
                .map(|e| format!("{}: {}: {}", e.key, e.reason, e.message)),
        };
        {
            let mut g = shared.views.lock().unwrap();
            let syncs = g[i].syncs + 1;
            g[i] = View { syncs, ..view };
            shared.cv.notify_all();
        }
        // As `ironlb agent` does: the next sync at a change of the store, a due retry or the periodic resync.
        agent
            .wait_due(&shared.wake[i])
            .unwrap_or_else(|e| panic!("agent {i}: {e}"));
        shared.wake[i].store(false, Ordering::Relaxed);
    }
}

/// Waits (on the agents' views) until `done` holds for every view; panics naming `what` after `timeout`.
fn wait_views(shared: &Shared, what: &str, timeout: Duration, done: impl Fn(&View) -> bool) -> Vec<View> {
    let deadline = Instant::now() + timeout;
    let mut g = shared.views.lock().unwrap();
    loop {
        if g.iter().all(&done) {
            return g.clone();
        }
        let now = Instant::now();
        assert!(
            now < deadline,
            "{what}: not reached within {timeout:?}; the agents' views: {g:#?}"
        );
        g = shared.cv.wait_timeout(g, deadline - now).unwrap().0;
    }
}

/// What a watcher of the store (one more `follow`, as the agents' sources) sees.
#[derive(Debug, Clone, Default)]
struct Watched {
    revision: i64,
    allocated: usize,
    /// Owned routings with `targets` destinations.
    routed: usize,
    allocated_at: Option<Instant>,
    routed_at: Option<(Instant, i64)>,
    /// Destinations of the probe's routing, and when they last changed.
    probe: Option<BTreeSet<String>>,
    probe_changed: Option<Instant>,
}

#[derive(Default)]
struct WatchShared {
    w: Mutex<Watched>,
    cv: Condvar,
}

fn watch(cfg: EtcdConfig, lbs: usize, targets: usize, shared: Arc<WatchShared>) {
    let client = Client::connect(&cfg).expect("watcher connects");
    let probe_ref = ObjectKey::new("default", "lb-0").of(Kind::LoadBalancerRouting);
    let on_change = |l: &Listing| {
        let now = Instant::now();
        let mut routed = 0;
        let mut probe = None;
        for (r, s) in &l.objects {
            if let Object::LoadBalancerRouting(o) = &s.object {
                routed += usize::from(o.destinations.len() == targets);
                if *r == probe_ref {
                    probe = Some(o.destinations.iter().map(|d| d.name.clone()).collect());
                }
            }
        }
        let mut w = shared.w.lock().unwrap();
        w.revision = l.revision;
        w.allocated = l.allocations.len();
        w.routed = routed;
        if w.allocated >= lbs && w.allocated_at.is_none() {
            w.allocated_at = Some(now);
        }
        if routed >= lbs && w.routed_at.is_none() {
            w.routed_at = Some((now, l.revision));
        }
        if probe != w.probe {
            w.probe = probe;
            w.probe_changed = Some(now);
        }
        shared.cv.notify_all();
    };
    let end = client.block_on(ironlb_cluster::watch::follow(client.store(), None, on_change));
    if !STOPPING.load(Ordering::Relaxed) {
        panic!("the bench's watcher stopped: {end:?}");
    }
}

fn wait_watched(s: &WatchShared, what: &str, timeout: Duration, done: impl Fn(&Watched) -> bool) -> Watched {
    try_wait_watched(s, timeout, done).unwrap_or_else(|| {
        panic!(
            "{what}: not reached within {timeout:?}; the watcher saw {:?}",
            s.w.lock().unwrap()
        )
    })
}

/// What the watcher sees once `done` holds, or `None` after `timeout`.
fn try_wait_watched(s: &WatchShared, timeout: Duration, done: impl Fn(&Watched) -> bool) -> Option<Watched> {
    let deadline = Instant::now() + timeout;
    let mut g = s.w.lock().unwrap();
    loop {
        if done(&g) {
            return Some(g.clone());
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        g = s.cv.wait_timeout(g, deadline - now).unwrap().0;
    }
}

/// An `ironlb controller` process (the binary this bench was built with), its log in `log`; SIGKILLed on drop.
struct Controller {
    child: Child,
    id: String,
    log: std::path::PathBuf,
}

impl Controller {
    fn start(endpoint: &str, id: &str, ttl: u32, dir: &std::path::Path) -> Controller {
        let log = dir.join(format!("controller-{id}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_ironlb"))
            .args([
                "controller",
                "--etcd-endpoints",
                endpoint,
                "--etcd-prefix",
                PREFIX,
            ])
            .args([
                "--id",
                id,
                "--lease-ttl",
                &ttl.to_string(),
                "--public-pool",
                POOLS,
            ])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("ironlb controller starts");
        Controller {
            child,
            id: id.into(),
            log,
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The controller that leads now (the leader key's value).
fn leader(w: &Client) -> Option<String> {
    let key = format!("{}leader", w.store().layout().record_prefix("controller"));
    let resp = w.block_on(w.store().get_key("leader", &key, None)).ok()?;
    resp.kvs()
        .first()
        .map(|kv| String::from_utf8_lossy(kv.value()).into_owned())
}

fn until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) -> Instant {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not reached within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// "p50 X ms, p99 Y ms, max Z ms" of `v`.
fn summary(v: &mut [Duration]) -> String {
    if v.is_empty() {
        return "no samples".into();
    }
    let (p50, p99) = (pct(v, 0.5), pct(v, 0.99));
    format!(
        "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} events)",
        ms(p50),
        ms(p99),
        ms(*v.last().unwrap()),
        v.len()
    )
}

fn main() {
    let a = args();
    // Kept: the controllers' logs, for a run that fails.
    let dir = tempfile::Builder::new()
        .prefix("ironlb-cluster-bench-")
        .tempdir()
        .unwrap()
        .keep();
    let nics = (GROUPS + 1) * a.targets;
    println!(
        "cluster bench: {} dual-stack public LBs x {} targets ({nics} NetworkInterfaces in {} groups), {AGENTS} agents, \
         ironlb controller (lease {} s), E = {}",
        a.lbs,
        a.targets,
        GROUPS + 1,
        a.lease_ttl,
        a.events
    );
    println!(
        "load average at start: {}; controllers' logs in {}",
        load_average(),
        dir.display()
    );
    let etcd = match EtcdServer::start() {
        Ok(e) => e,
        Err(HarnessError::NotInstalled) => {
            panic!("the cluster bench needs etcd: {}", HarnessError::NotInstalled)
        }
        Err(e) => panic!("etcd did not start: {e}"),
    };
    let settings = etcd.settings(PREFIX);
    let cfg = settings.resolve().unwrap();
    let writer = Client::connect(&cfg).expect("connect to etcd");

    // The controllers: c1 leads, c2 stands by (started once c1 leads).
    let mut c1 = Some(Controller::start(&etcd.endpoint(), "c1", a.lease_ttl, &dir));
    until("c1 leads", Duration::from_secs(30), || {
        leader(&writer).as_deref() == Some("c1")
    });
    let c2 = Controller::start(&etcd.endpoint(), "c2", a.lease_ttl, &dir);

    // The watcher and the agents.
    let watched = Arc::new(WatchShared::default());
    {
        let (cfg, w, lbs, t) = (cfg.clone(), watched.clone(), a.lbs, a.targets);
        std::thread::spawn(move || watch(cfg, lbs, t, w));
    }
    let shared = Arc::new(Shared {
        views: Mutex::new(vec![View::default(); AGENTS]),
        probe: AtomicU32::new(u32::MAX),
        ..Shared::default()
    });
    let agents: Vec<_> = (0..AGENTS)
        .map(|i| {
            let (cfg, sh, lbs, t) = (cfg.clone(), shared.clone(), a.lbs, a.targets);
            std::thread::Builder::new()
                .name(format!("agent-{i}"))
                .spawn(move || run_agent(i, cfg, lbs, t, sh))
                .unwrap()
        })
        .collect();
    wait_views(
        &shared,
        "every agent listed and synced once",
        Duration::from_secs(60),
        |v| v.syncs > 0,
    );

    // 1. apply → every device.
    let fleet = fleet(&a);
    let n_objects = fleet.len();
    let t0 = Instant::now();
    let plan = writer.apply(fleet).expect("apply of the fleet");
    let t_apply = t0.elapsed();
    let writes = plan.writes.len();
    // Waits in steps of 5 s, failing early when the controller's rounds keep failing (its log says why).
    let w = loop {
        let left = a.timeout.saturating_sub(t0.elapsed()).min(Duration::from_secs(5));
        if let Some(w) = try_wait_watched(&watched, left, |w| {
            w.allocated_at.is_some() && w.routed_at.is_some()
        }) {
            break w;
        }
        let log = std::fs::read_to_string(&c1.as_ref().unwrap().log).unwrap_or_default();
        let failed: Vec<&str> = log.lines().filter(|l| l.contains("round failed")).collect();
        assert!(
            failed.len() < 20,
            "the controller's rounds keep failing ({} failed rounds after {:.1} s; the watcher saw {:?}); the last:\n{}",
            failed.len(),
            t0.elapsed().as_secs_f64(),
            watched.w.lock().unwrap(),
            failed.last().unwrap()
        );
        assert!(
            t0.elapsed() < a.timeout,
            "every LoadBalancer allocated and routed: not reached within {:?}",
            a.timeout
        );
    };
    let (routed_at, routed_rev) = w.routed_at.unwrap();
    let left = a.timeout.saturating_sub(t0.elapsed());
    let views = wait_views(
        &shared,
        "every device holds the fleet and has seen every routing",
        left,
        |v| v.full_at.is_some() && v.revision >= routed_rev,
    );
    let t_settled = t0.elapsed();
    let fulls: Vec<Duration> = views.iter().map(|v| v.full_at.unwrap() - t0).collect();
    let last_full = fulls.iter().max().copied().unwrap();
    println!("load average after phase 1: {}", load_average());
    println!(
        "apply: {n_objects} objects ({writes} writes, transactions of <= 128) in {:.2} s",
        t_apply.as_secs_f64()
    );
    println!(
        "from the start of apply: every LB allocated {:.2} s, every routing written {:.2} s",
        (w.allocated_at.unwrap() - t0).as_secs_f64(),
        (routed_at - t0).as_secs_f64()
    );
    println!(
        "every device holds all {} LBs x {} targets: {} s; last device {:.2} s; every device synced past the last routing {:.2} s",
        a.lbs,
        a.targets,
        fulls.iter().map(|d| format!("{:.2}", d.as_secs_f64())).collect::<Vec<_>>().join(" / "),
        last_full.as_secs_f64(),
        t_settled.as_secs_f64()
    );
    println!(
        "agents' longest sync: {} ms; syncs: {}; LBs programmed: {}, with all targets: {}; LBs with an error: {} ({})",
        views.iter().map(|v| format!("{:.0}", ms(v.sync_max))).collect::<Vec<_>>().join(" / "),
        views.iter().map(|v| v.syncs.to_string()).collect::<Vec<_>>().join(" / "),
        views.iter().map(|v| v.lbs.to_string()).collect::<Vec<_>>().join(" / "),
        views.iter().map(|v| v.full.to_string()).collect::<Vec<_>>().join(" / "),
        views.iter().map(|v| v.errors.to_string()).collect::<Vec<_>>().join(" / "),
        views.iter().find_map(|v| v.error.clone()).unwrap_or_else(|| "none".into()),
    );

    // 2. One target of LoadBalancer 0 (its own group) leaves and returns.
    let listing = writer.list().expect("list");
    let lb0 = listing.allocations[&ObjectKey::new("default", "lb-0")].0.lb_id;
    shared.probe.store(lb0, Ordering::Relaxed);
    shared.wake_all();
    let all: BTreeSet<Ipv6Addr> = (0..a.targets).map(|n| underlay(SOLO, n)).collect();
    let names = |set: &BTreeSet<Ipv6Addr>| -> BTreeSet<String> {
        (0..a.targets)
            .filter(|n| set.contains(&underlay(SOLO, *n)))
            .map(|n| format!("nic-{SOLO}-{n}"))
            .collect()
    };
    wait_views(&shared, "the probe reported", Duration::from_secs(30), |v| {
        v.probe.as_ref() == Some(&all)
    });
    let event_timeout = Duration::from_secs(60);
    // (end to end, routing written, devices after the routing, apply call) per direction.
    let mut lat: [Vec<Duration>; 2] = Default::default();
    let mut routing: [Vec<Duration>; 2] = Default::default();
    let mut after_routing: [Vec<Duration>; 2] = Default::default();
    let mut apply_call: Vec<Duration> = Vec::new();
    let mut before_routing = 0;
    // Each write lands at a pseudo-random moment (a pause of 0–600 ms before it), as an operator's change would;
    // without it the events would lock to the phase of the controller's and the agents' work.
    let mut rng: u64 = 0x9e37_79b9_7f4a_7c15;
    for e in 0..a.events {
        rng = rng
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        std::thread::sleep(Duration::from_millis((rng >> 33) % 600));
        let n = (e / 2) % a.targets;
        let leaving = e % 2 == 0;
        let mut want = all.clone();
        if leaving {
            want.remove(&underlay(SOLO, n));
        }
        let t = Instant::now();
        writer
            .apply(objects(&nic(SOLO, n, !leaving)))
            .expect("apply of one NetworkInterface");
        let written = Instant::now();
        apply_call.push(written - t);
        let views = wait_views(
            &shared,
            &format!("event {e}: the target change on every device"),
            event_timeout,
            |v| v.probe.as_ref() == Some(&want),
        );
        let want_names = names(&want);
        let w = wait_watched(
            &watched,
            &format!("event {e}: the routing rewritten"),
            event_timeout,
            |w| w.probe.as_ref() == Some(&want_names),
        );
        let visible = views.iter().map(|v| v.probe_changed.unwrap()).max().unwrap();
        let routed = w.probe_changed.unwrap();
        let d = usize::from(!leaving);
        lat[d].push(visible.saturating_duration_since(written));
        routing[d].push(routed.saturating_duration_since(written));
        if visible < routed {
            before_routing += 1;
        } else {
            after_routing[d].push(visible - routed);
        }
    }
    println!("load average after phase 2: {}", load_average());
    println!(
        "one NetworkInterface flipped by `Client::apply` (list, validate, commit): {}",
        summary(&mut apply_call)
    );
    for (d, what) in [
        (0, "target leaves (Available -> Pending)"),
        (1, "target returns (Pending -> Available)"),
    ] {
        println!(
            "{what}: write committed -> on all {AGENTS} devices: {}",
            summary(&mut lat[d])
        );
        println!(
            "  write committed -> controller's routing rewrite seen by a watcher: {}",
            summary(&mut routing[d])
        );
        println!(
            "  routing rewrite seen -> on all {AGENTS} devices: {}",
            summary(&mut after_routing[d])
        );
    }
    println!(
        "events on every device before the routing rewrite was seen: {before_routing} of {}",
        a.events
    );

    // 3. Controller failover: kill the leader, apply a new LoadBalancer at once.
    assert_eq!(
        leader(&writer).as_deref(),
        Some("c1"),
        "c1 leads before the failover"
    );
    let killed = Instant::now();
    drop(c1.take());
    let extra = "apiVersion: networking.ironcore.dev/v1alpha1\nkind: LoadBalancer\nmetadata: {name: failover}\n\
                 spec:\n  type: Public\n  ipFamilies: [IPv4]\n  networkRef: {name: net}\n  ports: [{protocol: TCP, port: 80}]\n";
    writer
        .apply(objects(extra))
        .expect("apply of the new LoadBalancer");
    let applied = killed.elapsed();
    let record = writer
        .store()
        .layout()
        .allocation_key(&ObjectKey::new("default", "failover"));
    let mut led = None;
    let allocated = until(
        "c2 leads and allocates the new LoadBalancer",
        Duration::from_secs(u64::from(a.lease_ttl) + 60),
        || {
            if led.is_none() && leader(&writer).as_deref() == Some(c2.id.as_str()) {
                led = Some(Instant::now());
            }
            led.is_some()
                && writer
                    .block_on(writer.store().get_key("allocation", &record, None))
                    .is_ok_and(|r| !r.kvs().is_empty())
        },
    );
    let programmed = wait_views(
        &shared,
        "the new LoadBalancer on every device",
        Duration::from_secs(60),
        |v| v.lbs > a.lbs,
    );
    let done = programmed.iter().map(|v| v.lbs_changed.unwrap()).max().unwrap();
    println!("load average after phase 3: {}", load_average());
    println!(
        "controller failover (lease {} s, SIGKILL): new LB applied after {:.0} ms; c2 leads after {:.2} s; \
         the new LB allocated after {:.2} s; on all {AGENTS} devices after {:.2} s",
        a.lease_ttl,
        ms(applied),
        (led.unwrap() - killed).as_secs_f64(),
        (allocated - killed).as_secs_f64(),
        (done - killed).as_secs_f64()
    );
    if std::env::var_os("IRONLB_BENCH_LOGS").is_some() {
        println!("c2's log:\n{}", c2.log_tail());
    }

    STOPPING.store(true, Ordering::Relaxed);
    shared.stop.store(true, Ordering::Relaxed);
    shared.wake_all();
    for t in agents {
        t.join().expect("agent thread");
    }
    drop(c2);
    drop(etcd);
    println!("done in {:.1} s", t0.elapsed().as_secs_f64());
    // The watcher's thread follows etcd forever; etcd is gone, so end here.
    std::process::exit(0);
}
