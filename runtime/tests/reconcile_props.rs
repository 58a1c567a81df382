//! Property tests of the reconciler: random histories of object sets (load balancers appearing, disappearing,
//! swapping VIPs, changing ports; NetworkInterfaces changing labels and state) end with the device holding exactly
//! what an independent oracle computes; and a daemon killed between any two device register writes restarts into
//! the same final state, with no duplicate allocation.

use ironlb_driver::{AccessCounts, AccessError, Device, DeviceAccess, DmaRegion, InprocBackend, SharedModel};
use ironlb_hw::entry::{PortKind, Protocol, RangeEntry};
use ironlb_runtime::alloc::{Allocator, Pools};
use ironlb_runtime::manifest::{load_str, Loaded};
use ironlb_runtime::reconcile::{HostConfig, Reconciler};
use ironlb_sim::DeviceConfig;
use proptest::prelude::*;
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

const LBS: usize = 4;
const NICS: usize = 6;

/// One generated configuration.
#[derive(Debug, Clone)]
struct World {
    /// Per LB: present, VIP index (into the permuted pool), selector app, TCP port.
    lbs: Vec<Option<(usize, u8, u16)>>,
    /// Per NIC: app label, Available.
    nics: Vec<(u8, bool)>,
}

fn world() -> impl Strategy<Value = World> {
    (
        Just((0..LBS).collect::<Vec<usize>>()).prop_shuffle(),
        proptest::collection::vec(proptest::option::weighted(0.75, (0u8..2, 1u16..4)), LBS),
        proptest::collection::vec((0u8..2, proptest::bool::weighted(0.8)), NICS),
    )
        .prop_map(|(perm, lbs, nics)| World {
            lbs: lbs
                .into_iter()
                .enumerate()
                .map(|(i, l)| l.map(|(app, port)| (perm[i], app, port * 100)))
                .collect(),
            nics,
        })
}

fn vip(i: usize) -> String {
    format!("10.0.0.{}", i + 1)
}

fn underlay(n: usize) -> Ipv6Addr {
    format!("fd00:9::{}", n + 1).parse().unwrap()
}

fn manifests(w: &World) -> Loaded {
    let mut t =
        String::from("apiVersion: networking.ironcore.dev/v1alpha1\nkind: Network\nmetadata: {name: net}\nspec: {vni: 100}\n");
    for (n, (app, up)) in w.nics.iter().enumerate() {
        let _ = write!(
            t,
            "---\napiVersion: networking.ironcore.dev/v1alpha1\nkind: NetworkInterface\nmetadata: {{name: nic{n}, uid: u{n}, labels: {{app: a{app}}}}}\nspec: {{networkRef: {{name: net}}}}\nstatus: {{state: {}, underlayAddress: \"{}\"}}\n",
            if *up { "Available" } else { "Pending" },
            underlay(n)
        );
    }
    for (i, l) in w.lbs.iter().enumerate() {
        if let Some((v, app, port)) = l {
            let _ = write!(
                t,
                "---\napiVersion: networking.ironcore.dev/v1alpha1\nkind: LoadBalancer\nmetadata: {{name: lb{i}}}\nspec:\n  type: Internal\n  networkRef: {{name: net}}\n  ipFamilies: [IPv4]\n  ips: [{{ip: {}}}]\n  networkInterfaceSelector: {{matchLabels: {{app: a{app}}}}}\n  ports: [{{protocol: TCP, port: {port}}}]\n",
                vip(*v)
            );
        }
    }
    let (o, e) = load_str(PathBuf::from("world.yaml"), &t);
    assert!(e.is_empty(), "{e:?}");
    o
}

/// What the device must hold, computed without the runtime: (VIP, ranges, targets) per present LB.
type Expected = BTreeSet<(IpAddr, Vec<RangeEntry>, BTreeSet<Ipv6Addr>)>;

fn oracle(w: &World) -> Expected {
    w.lbs
        .iter()
        .flatten()
        .map(|&(v, app, port)| {
            let targets = w
                .nics
                .iter()
                .enumerate()
                .filter(|(_, (a, up))| *a == app && *up)
                .map(|(n, _)| underlay(n))
                .collect();
            (
                vip(v).parse().unwrap(),
                vec![RangeEntry {
                    protocol: Protocol::Tcp,
                    low: port,
                    high: port,
                }],
                targets,
            )
        })
        .collect()
}

fn device_state(dev: &mut Device) -> Expected {
    dev.read_state()
        .unwrap()
        .specs()
        .into_values()
        .map(|s| {
            assert_eq!(s.vips.len(), 1, "{s:?}");
            (s.vips.first().unwrap().vip.to_ip(), s.ranges, s.targets)
        })
        .collect()
}

/// A backend that dies (panics, like a `kill -9` of the process) on its `fuse`-th register write.
struct Fused {
    inner: InprocBackend,
    writes: Arc<AtomicU64>,
    /// The write number that dies (0: never).
    fuse: Arc<AtomicU64>,
}

impl DeviceAccess for Fused {
    fn bar_len(&self) -> usize {
        self.inner.bar_len()
    }
    fn read32(&mut self, offset: u32) -> u32 {
        self.inner.read32(offset)
    }
    fn write32(&mut self, offset: u32, value: u32) {
        let n = self.writes.fetch_add(1, Ordering::SeqCst) + 1;
        if n == self.fuse.load(Ordering::SeqCst) {
            panic!("simulated kill -9 before register write {n}");
        }
        self.inner.write32(offset, value)
    }
    fn alloc_dma(&mut self, len: usize) -> Result<DmaRegion, AccessError> {
        self.inner.alloc_dma(len)
    }
    fn counts(&self) -> AccessCounts {
        self.inner.counts()
    }
    fn wait_hint(&mut self) {
        self.inner.wait_hint()
    }
}

fn host() -> HostConfig {
    HostConfig {
        ports: vec![(1, PortKind::Network { vni: 100 }), (3, PortKind::Underlay)],
        underlay_src: "fd00:ffff::1".parse().unwrap(),
        mtu: 9000,
        hop_limit: 64,
    }
}

/// A reconciler over `model` whose backend counts register writes in `writes` and dies at write `fuse`.
fn open(model: &SharedModel, state: &Path, writes: &Arc<AtomicU64>, fuse: &Arc<AtomicU64>) -> Reconciler {
    let access = Fused {
        inner: InprocBackend::attach(model.clone()),
        writes: writes.clone(),
        fuse: fuse.clone(),
    };
    let dev = Device::open(Box::new(access)).unwrap();
    let cap = dev.caps().lb_ids;
    let alloc = Allocator::open(&state.join("alloc.json"), Pools::default(), cap).unwrap();
    Reconciler::new(dev, alloc, &host()).unwrap()
}

fn check_allocations(state: &Path) {
    let s = Allocator::load_state(&state.join("alloc.json")).unwrap();
    let ids: Vec<u32> = s.lbs.values().filter_map(|a| a.lb_id).collect();
    let unique: BTreeSet<u32> = ids.iter().copied().collect();
    assert_eq!(ids.len(), unique.len(), "duplicate lb_id in {:?}", s.lbs);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn random_histories_end_in_the_oracle_state(history in proptest::collection::vec(world(), 1..7)) {
        let model = InprocBackend::new(DeviceConfig::small()).unwrap().model();
        let state = tempfile::tempdir().unwrap();
        let mut rec = open(&model, state.path(), &counter(), &counter());
        for w in &history {
            let rep = rec.sync(&manifests(w), &[]).unwrap();
            prop_assert!(rep.errors.is_empty(), "{:?}", rep);
            prop_assert_eq!(device_state(rec.device()), oracle(w));
            let ready = rec.status().values().filter(|s| s.ready()).count();
            prop_assert_eq!(ready, w.lbs.iter().flatten().count());
        }
        check_allocations(state.path());
    }

    #[test]
    fn a_kill_between_any_two_writes_restarts_into_the_same_state(
        first in world(),
        second in world(),
        fuse_frac in 0.0f64..1.0,
    ) {
        let model = InprocBackend::new(DeviceConfig::small()).unwrap().model();
        let state = tempfile::tempdir().unwrap();
        let mut rec = open(&model, state.path(), &counter(), &counter());
        rec.sync(&manifests(&first), &[]).unwrap();
        // Measure how many writes the change takes, on a copy of the same history.
        let probe_model = InprocBackend::new(DeviceConfig::small()).unwrap().model();
        let probe_state = tempfile::tempdir().unwrap();
        let probe_writes = counter();
        let mut probe = open(&probe_model, probe_state.path(), &probe_writes, &counter());
        probe.sync(&manifests(&first), &[]).unwrap();
        let before = probe_writes.load(Ordering::SeqCst);
        probe.sync(&manifests(&second), &[]).unwrap();
        let span = probe_writes.load(Ordering::SeqCst) - before;
        drop(rec);

        // Restart and die before one of the change's writes (the first to the last).
        let second_objects = manifests(&second);
        let (writes, fuse) = (counter(), counter());
        let mut r = open(&model, state.path(), &writes, &fuse);
        fuse.store(writes.load(Ordering::SeqCst) + 1 + (fuse_frac * span as f64) as u64, Ordering::SeqCst);
        let died = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| r.sync(&second_objects, &[])));
        prop_assert!(died.is_err() || span == 0, "the fuse did not blow within {} writes", span);
        drop(r);
        // Restart for real: adoption, then the same objects.
        let mut rec = open(&model, state.path(), &counter(), &counter());
        let rep = rec.sync(&second_objects, &[]).unwrap();
        prop_assert!(rep.errors.is_empty(), "{:?}", rep);
        prop_assert_eq!(device_state(rec.device()), oracle(&second));
        check_allocations(state.path());
        // And nothing is left to do.
        let rep = rec.sync(&second_objects, &[]).unwrap();
        prop_assert_eq!(rep.commands, 0, "{:?}", rep);
    }
}

fn counter() -> Arc<AtomicU64> {
    Arc::new(AtomicU64::new(0))
}
