//! Soak: continuous object churn through the reconciler while packets are replayed through the model, for
//! `IRONLB_SOAK_SECS` seconds (default 30, what `.ci/run` runs; set e.g. `IRONLB_SOAK_SECS=3600` for a long run).
//!
//! Asserted (counts, never time): traffic to a load balancer that is never changed is forwarded every time while
//! the others churn (hitless); at the end, with the churned load balancers deleted and their grace period stepped
//! through the clock, the device tables hold exactly what they held at the start, the allocator holds only the
//! stable load balancers (no lb_id or IP leaked), and the resident set did not grow past a generous bound. RSS and
//! the number of syncs are printed (`cargo nextest run -p ironlb-runtime --test soak --no-capture`).

use ironlb_driver::{Device, InprocBackend};
use ironlb_runtime::alloc::{Allocator, Pools};
use ironlb_runtime::manifest::{load_str, Loaded};
use ironlb_runtime::reconcile::{HostConfig, Reconciler, RELEASE_GRACE};
use ironlb_sim::{DeviceConfig, Verdict};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "common/host.rs"]
mod common_host;

fn host() -> HostConfig {
    common_host::host_with_networks(&[(1, 100)])
}

/// The stable load balancer (`stable`, VIP 10.0.0.1:80) plus churned ones: `lbs` is (index, port, targets).
fn objects(churn: &[(usize, u16, usize)]) -> Loaded {
    let mut y = String::from(
        "apiVersion: networking.ironcore.dev/v1alpha1\nkind: Network\nmetadata: {name: net}\nspec: {vni: 100}\n",
    );
    for t in 0..8 {
        y.push_str(&format!(
            "---
apiVersion: networking.ironcore.dev/v1alpha1
kind: NetworkInterface
metadata: {{name: nic{t}, uid: uid-nic{t}, labels: {{app: a, t{t}: x}}}}
spec: {{networkRef: {{name: net}}}}
status: {{state: Available, underlayAddress: \"fd00:9::{t:x}\"}}
"
        ));
    }
    y.push_str(
        "---
apiVersion: networking.ironcore.dev/v1alpha1
kind: LoadBalancer
metadata: {name: stable}
spec:
  type: Internal
  networkRef: {name: net}
  ipFamilies: [IPv4]
  ips: [{ip: 10.0.0.1}]
  networkInterfaceSelector: {matchLabels: {app: a}}
  ports: [{protocol: tcp, port: 80}]
",
    );
    for &(i, port, targets) in churn {
        let sel = (0..targets.max(1))
            .map(|t| format!("t{t}: x"))
            .collect::<Vec<_>>()
            .join(", ");
        y.push_str(&format!(
            "---
apiVersion: networking.ironcore.dev/v1alpha1
kind: LoadBalancer
metadata: {{name: churn{i}}}
spec:
  type: Public
  networkRef: {{name: net}}
  ipFamilies: [IPv4, IPv6]
  networkInterfaceSelector: {{matchLabels: {{{sel}}}}}
  ports: [{{protocol: tcp, port: {port}}}, {{protocol: udp, port: {port}, portEnd: {}}}]
",
            port + 10
        ));
    }
    let (o, e) = load_str(PathBuf::from("soak.yaml"), &y);
    assert!(e.is_empty(), "{e:?}");
    o
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// A small deterministic generator (xorshift), so a failing run can be repeated with its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn churn_with_replay_leaves_nothing_behind() {
    let secs: u64 = std::env::var("IRONLB_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let seed: u64 = std::env::var("IRONLB_SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x1c0ffee);
    let backend = InprocBackend::new(DeviceConfig::small()).unwrap();
    let model = backend.model();
    let dev = Device::open(Box::new(backend)).unwrap();
    let state = tempfile::tempdir().unwrap();
    let pools = Pools::parse(&["203.0.113.0/24".into(), "2001:db8:ff::/64".into()]).unwrap();
    let alloc = Allocator::open(&state.path().join("alloc.json"), pools, dev.caps().lb_ids).unwrap();
    let mut rec = Reconciler::new(dev, alloc, &host()).unwrap();
    let now = ironlb_runtime::clock::ManualClock::new();
    rec.set_clock(now.shared());

    let r = rec.sync(&objects(&[]), &[]).unwrap();
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    let tables_at_start = rec.device().read_state().unwrap().specs();
    let names = rec.names();
    let used_at_start = ironlb_runtime::ops::collect_stats(rec.device(), &names)
        .unwrap()
        .tables;

    // Replay: TCP to the stable VIP on its Network's port, continuously, from another thread.
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, forwarded) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let replay = {
        let (stop, sent, forwarded, model) = (stop.clone(), sent.clone(), forwarded.clone(), model.clone());
        std::thread::spawn(move || {
            let mut sport = 1024u16;
            while !stop.load(Ordering::Relaxed) {
                sport = sport.wrapping_add(1).max(1024);
                let pkt = ironlb_runtime::cli::build_packet(&format!("tcp 10.0.0.99:{sport} -> 10.0.0.1:80"))
                    .unwrap();
                let v = model.lock().unwrap().process(1, &pkt);
                sent.fetch_add(1, Ordering::Relaxed);
                if matches!(v, Verdict::Forward { .. }) {
                    forwarded.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };

    let mut rng = Rng(seed);
    let mut live: Vec<(usize, u16, usize)> = Vec::new();
    let mut syncs = 0u64;
    let mut rss_warm = 0u64;
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        // One change per sync: create, edit (ports, targets), or delete one of up to 24 churned load balancers.
        match rng.below(3) {
            0 if live.len() < 24 => {
                let i = (0..64).find(|i| !live.iter().any(|l| l.0 == *i)).unwrap();
                live.push((i, 1000 + rng.below(500) as u16, 1 + rng.below(8) as usize));
            }
            1 if !live.is_empty() => {
                let k = rng.below(live.len() as u64) as usize;
                live[k].1 = 1000 + rng.below(500) as u16;
                live[k].2 = 1 + rng.below(8) as usize;
            }
            _ if !live.is_empty() => {
                let k = rng.below(live.len() as u64) as usize;
                live.swap_remove(k);
            }
            _ => continue,
        }
        let r = rec.sync(&objects(&live), &[]).unwrap();
        assert!(r.errors.is_empty(), "sync {syncs}: {:?}", r.errors);
        // Deleted load balancers' allocations are held for the grace period: step a tenth of it per sync.
        now.advance(RELEASE_GRACE / 10);
        syncs += 1;
        if syncs == 200 {
            rss_warm = rss_kib();
        }
    }
    stop.store(true, Ordering::Relaxed);
    replay.join().unwrap();

    // Everything churned goes; its allocations are released once the grace period has passed.
    rec.sync(&objects(&[]), &[]).unwrap();
    now.advance(RELEASE_GRACE * 2);
    rec.sync(&objects(&[]), &[]).unwrap();
    let rss_end = rss_kib();
    let (sent, forwarded) = (sent.load(Ordering::Relaxed), forwarded.load(Ordering::Relaxed));
    println!(
        "soak: {secs} s, {syncs} syncs, {sent} packets replayed ({forwarded} forwarded); RSS after 200 syncs {rss_warm} KiB, at the end {rss_end} KiB"
    );
    assert!(syncs >= 200, "too few syncs to judge ({syncs})");
    assert!(sent > 0);
    assert_eq!(
        forwarded, sent,
        "the stable load balancer dropped packets while others churned"
    );
    assert_eq!(
        rec.device().read_state().unwrap().specs(),
        tables_at_start,
        "device tables back to the start"
    );
    let names = rec.names();
    let used_at_end = ironlb_runtime::ops::collect_stats(rec.device(), &names)
        .unwrap()
        .tables;
    // The flow table holds the stable load balancer's live flows (the replay's); flows of the churned ones were
    // flushed with them (contract v1.2, hw-spec.md §11.4).
    let without_flows = |t: Vec<ironlb_runtime::ops::TableUse>| -> Vec<_> {
        t.into_iter().filter(|t| t.table != "flow").collect()
    };
    assert_eq!(
        without_flows(used_at_end),
        without_flows(used_at_start),
        "table occupancy back to the start"
    );
    let stable_id = rec.programmed().values().map(|s| s.lb_id).collect::<Vec<_>>();
    assert_eq!(stable_id.len(), 1);
    let flows = rec.device().read_flows().unwrap();
    assert!(!flows.is_empty(), "the replay's flows are pinned");
    let foreign: Vec<u32> = flows
        .iter()
        .map(|(_, e)| e.key.lb_id)
        .filter(|id| *id != stable_id[0])
        .collect();
    assert!(
        foreign.is_empty(),
        "flows of deleted load balancers left behind: {foreign:?}"
    );
    let held: Vec<String> = rec
        .allocator()
        .state()
        .lbs
        .keys()
        .map(ToString::to_string)
        .collect();
    assert_eq!(held, ["default/stable"], "allocations leaked");
    // Memory: flat within a generous bound (allocator slack, not growth with the number of syncs).
    assert!(
        rss_end <= rss_warm + rss_warm / 2 + 32 * 1024,
        "RSS grew from {rss_warm} KiB to {rss_end} KiB"
    );
}
