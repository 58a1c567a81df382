//! The incremental reconcile (`Reconciler::apply` with only the changed files) against the full one
//! (`Reconciler::sync` of every object): over random histories of edits spread across several manifest files —
//! NetworkInterfaces changing labels, state, network and validity; load balancers with label selectors,
//! expression selectors or a hand-written LoadBalancerRouting, sharing VIPs (so one of them is invalid), moving
//! between networks; a Network's VNI changing; a broken document — both end every step with the same device
//! state and the same status for every load balancer.

use ironlb_driver::{Device, InprocBackend};
use ironlb_hw::entry::{PortKind, RangeEntry};
use ironlb_hw::LbKey;
use ironlb_runtime::alloc::{Allocator, Pools};
use ironlb_runtime::manifest::{load_str, LoadError, Loaded};
use ironlb_runtime::reconcile::{HostConfig, Reconciler};
use ironlb_runtime::store::FileChange;
use ironlb_sim::DeviceConfig;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::Ipv6Addr;
use std::path::{Path, PathBuf};

const LBS: usize = 5;
const NICS: usize = 8;
const API: &str = "apiVersion: networking.ironcore.dev/v1alpha1";

#[derive(Debug, Clone)]
enum Sel {
    /// `matchLabels: {app: aN}`.
    Label(u8),
    /// `matchExpressions: [{key: app, operator: In, values: [aN]}]`.
    Expr(u8),
    /// No selector: the LoadBalancerRouting names the interfaces.
    Routing(Vec<u8>),
}

#[derive(Debug, Clone)]
struct Lb {
    vip: u8,
    net: u8,
    sel: Sel,
    port: u16,
}

#[derive(Debug, Clone)]
struct Nic {
    app: u8,
    net: u8,
    up: bool,
    bad_underlay: bool,
}

#[derive(Debug, Clone)]
struct World {
    vni_b: u32,
    lbs: Vec<Option<Lb>>,
    nics: Vec<Option<Nic>>,
    /// A broken document naming load balancer N in the load balancers' file.
    broken: Option<usize>,
}

fn sel() -> impl Strategy<Value = Sel> {
    prop_oneof![
        3 => (0u8..3).prop_map(Sel::Label),
        1 => (0u8..3).prop_map(Sel::Expr),
        1 => proptest::collection::vec(0u8..NICS as u8, 0..3).prop_map(Sel::Routing),
    ]
}

fn world() -> impl Strategy<Value = World> {
    (
        prop_oneof![4 => Just(200u32), 1 => Just(300u32)],
        proptest::collection::vec(
            proptest::option::weighted(0.8, (0u8..6, 0u8..2, sel(), 1u16..4)),
            LBS,
        ),
        proptest::collection::vec(
            proptest::option::weighted(
                0.85,
                (
                    0u8..3,
                    0u8..2,
                    proptest::bool::weighted(0.8),
                    proptest::bool::weighted(0.1),
                ),
            ),
            NICS,
        ),
        proptest::option::weighted(0.15, 0..LBS),
    )
        .prop_map(|(vni_b, lbs, nics, broken)| World {
            vni_b,
            lbs: lbs
                .into_iter()
                .map(|l| {
                    l.map(|(vip, net, sel, port)| Lb {
                        vip,
                        net,
                        sel,
                        port: port * 100,
                    })
                })
                .collect(),
            nics: nics
                .into_iter()
                .map(|n| {
                    n.map(|(app, net, up, bad_underlay)| Nic {
                        app,
                        net,
                        up,
                        bad_underlay,
                    })
                })
                .collect(),
            broken,
        })
}

fn net(n: u8) -> &'static str {
    ["net-a", "net-b"][n as usize]
}

/// The world as manifest files (name → text). NetworkInterfaces are split over two files.
fn files(w: &World) -> BTreeMap<&'static str, String> {
    let mut f = BTreeMap::new();
    f.insert(
        "00-networks.yaml",
        format!(
            "{API}\nkind: Network\nmetadata: {{name: net-a}}\nspec: {{vni: 100}}\n---\n{API}\nkind: Network\nmetadata: {{name: net-b}}\nspec: {{vni: {}}}\n",
            w.vni_b
        ),
    );
    for (file, range) in [("10-nics.yaml", 0..NICS / 2), ("11-nics.yaml", NICS / 2..NICS)] {
        let mut t = String::new();
        for n in range {
            let Some(nic) = &w.nics[n] else { continue };
            let underlay = if nic.bad_underlay {
                "10.9.9.9".to_string()
            } else {
                format!("fd00:9::{}", n + 1)
            };
            let _ = write!(
                t,
                "---\n{API}\nkind: NetworkInterface\nmetadata: {{name: nic{n}, uid: u{n}, labels: {{app: a{}}}}}\nspec: {{networkRef: {{name: {}}}}}\nstatus: {{state: {}, underlayAddress: \"{underlay}\"}}\n",
                nic.app,
                net(nic.net),
                if nic.up { "Available" } else { "Pending" },
            );
        }
        f.insert(file, t);
    }
    let mut lbs = String::new();
    let mut routings = String::new();
    for (i, l) in w.lbs.iter().enumerate() {
        let Some(lb) = l else { continue };
        let selector = match &lb.sel {
            Sel::Label(a) => format!("  networkInterfaceSelector: {{matchLabels: {{app: a{a}}}}}\n"),
            Sel::Expr(a) => format!(
                "  networkInterfaceSelector: {{matchExpressions: [{{key: app, operator: In, values: [a{a}]}}]}}\n"
            ),
            Sel::Routing(dests) => {
                let d: Vec<String> = dests.iter().map(|n| format!("{{name: nic{n}}}")).collect();
                let _ = write!(
                    routings,
                    "---\n{API}\nkind: LoadBalancerRouting\nmetadata: {{name: lb{i}}}\nnetworkRef: {{name: {}}}\ndestinations: [{}]\n",
                    net(lb.net),
                    d.join(", ")
                );
                String::new()
            }
        };
        let _ = write!(
            lbs,
            "---\n{API}\nkind: LoadBalancer\nmetadata: {{name: lb{i}}}\nspec:\n  type: Internal\n  networkRef: {{name: {}}}\n  ipFamilies: [IPv4]\n  ips: [{{ip: 10.0.0.{}}}]\n{selector}  ports: [{{protocol: TCP, port: {}}}]\n",
            net(lb.net),
            lb.vip + 1,
            lb.port
        );
    }
    if let Some(b) = w.broken {
        let _ = write!(
            lbs,
            "---\n{API}\nkind: LoadBalancer\nmetadata: {{name: lb{b}}}\nspec: {{type: Internal, ports: 80}}\n"
        );
    }
    f.insert("20-lbs.yaml", lbs);
    f.insert("30-routings.yaml", routings);
    f
}

fn load(dir: &Path, name: &str, text: &str) -> (Loaded, Vec<LoadError>) {
    load_str(dir.join(name), text)
}

/// The device's load balancers, without their lb_ids (the two reconcilers allocate in different orders).
type DeviceView = BTreeSet<(BTreeSet<LbKey>, Vec<RangeEntry>, BTreeSet<Ipv6Addr>)>;

fn device_view(rec: &mut Reconciler) -> DeviceView {
    rec.device()
        .read_state()
        .unwrap()
        .specs()
        .into_values()
        .map(|s| (s.vips, s.ranges, s.targets))
        .collect()
}

/// Every load balancer's status, without lb_ids and transition times.
fn status_view(rec: &Reconciler) -> Vec<String> {
    rec.status()
        .values()
        .map(|s| {
            let conds: Vec<String> = s
                .conditions
                .iter()
                .map(|c| format!("{}={} {} {}", c.kind, c.status, c.reason, c.message))
                .collect();
            format!(
                "{}/{} ips={:?} dest={:?} targets={:?} last_good={} {}",
                s.namespace,
                s.name,
                s.ips,
                s.destinations,
                s.programmed_targets,
                s.serving_last_good,
                conds.join("; ")
            )
        })
        .collect()
}

fn reconciler(state: &Path) -> Reconciler {
    reconciler_on(vec![(1, PortKind::Network { vni: 100 })], |cap| {
        Allocator::open(&state.join("alloc.json"), Pools::default(), cap).unwrap()
    })
}

/// A reconciler of a small in-process device with `ports` (and the underlay on port 3), its allocator made by
/// `alloc` for the device's lb_id cap.
fn reconciler_on(mut ports: Vec<(u32, PortKind)>, alloc: impl FnOnce(u32) -> Allocator) -> Reconciler {
    let dev = Device::open(Box::new(InprocBackend::new(DeviceConfig::small()).unwrap())).unwrap();
    let alloc = alloc(dev.caps().lb_ids);
    ports.push((3, PortKind::Underlay));
    let host = HostConfig {
        ports,
        underlay_src: "fd00:ffff::1".parse().unwrap(),
        mtu: 9000,
        hop_limit: 64,
    };
    let mut rec = Reconciler::new(dev, alloc, &host).unwrap();
    // A frozen clock: a failure's backoff (e.g. VipInUse) must not expire on one side and not on the other because
    // the steps took longer in real time.
    rec.set_clock(ironlb_runtime::clock::ManualClock::new().shared());
    rec
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}

proptest! {
    // 64 cases by default (CI time); `PROPTEST_CASES=5000` for the deterministic-runtime check (docs/testing.md).
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn incremental_and_full_reconciles_agree(
        start in world(),
        edits in proptest::collection::vec((0..LBS + NICS + 2, world()), 1..16),
    ) {
        // Each step changes one thing of the previous world (a load balancer, an interface, the VNI or the
        // broken document) to that thing in another random world, so most steps touch a few objects.
        let mut history = vec![start];
        for (which, other) in edits {
            let mut w = history.last().unwrap().clone();
            match which {
                i if i < LBS => w.lbs[i] = other.lbs[i].clone(),
                i if i < LBS + NICS => w.nics[i - LBS] = other.nics[i - LBS].clone(),
                i if i == LBS + NICS => w.vni_b = other.vni_b,
                _ => w.broken = other.broken,
            }
            history.push(w);
        }
        let dir = PathBuf::from("/manifests");
        let (sa, sb) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut inc = reconciler(sa.path());
        let mut full = reconciler(sb.path());
        let mut last: BTreeMap<&str, String> = BTreeMap::new();
        for w in &history {
            let now = files(w);
            // The incremental side gets only the files whose text changed; an empty file is a removed one.
            let changes: Vec<FileChange> = now
                .iter()
                .filter(|(name, text)| last.get(*name) != Some(text))
                .map(|(name, text)| FileChange {
                    path: dir.join(name),
                    content: (!text.is_empty()).then(|| load(&dir, name, text)),
                })
                .collect();
            inc.apply(changes).unwrap();
            let mut objects = Vec::new();
            let mut errors = Vec::new();
            for (name, text) in now.iter().filter(|(_, t)| !t.is_empty()) {
                let (o, e) = load(&dir, name, text);
                objects.extend(o);
                errors.extend(e);
            }
            full.sync(&objects, &errors).unwrap();
            prop_assert_eq!(device_view(&mut inc), device_view(&mut full), "world {:?}", w);
            prop_assert_eq!(status_view(&inc), status_view(&full), "world {:?}", w);
            last = now;
        }
    }
}

/// A NetworkInterface edit reconciles only the load balancers that may select it, and says so in its report.
#[test]
fn a_nic_edit_touches_only_the_load_balancers_that_select_it() {
    let dir = PathBuf::from("/manifests");
    let state = tempfile::tempdir().unwrap();
    let mut rec = reconciler(state.path());
    let mut w = World {
        vni_b: 200,
        lbs: (0..LBS)
            .map(|i| {
                Some(Lb {
                    vip: i as u8,
                    net: 0,
                    sel: Sel::Label((i % 3) as u8),
                    port: 100,
                })
            })
            .collect(),
        nics: (0..NICS)
            .map(|n| {
                Some(Nic {
                    app: (n % 3) as u8,
                    net: 0,
                    up: true,
                    bad_underlay: false,
                })
            })
            .collect(),
        broken: None,
    };
    let all: Vec<FileChange> = files(&w)
        .iter()
        .filter(|(_, t)| !t.is_empty())
        .map(|(name, text)| FileChange {
            path: dir.join(name),
            content: Some(load(&dir, name, text)),
        })
        .collect();
    let rep = rec.apply(all).unwrap();
    assert_eq!(rep.created, LBS);
    // nic0 (app a0) goes down: lb0 and lb3 select a0.
    w.nics[0].as_mut().unwrap().up = false;
    let text = files(&w)["10-nics.yaml"].clone();
    let rep = rec
        .apply(vec![FileChange {
            path: dir.join("10-nics.yaml"),
            content: Some(load(&dir, "10-nics.yaml", &text)),
        }])
        .unwrap();
    assert_eq!((rep.updated, rep.unchanged, rep.created), (2, 0, 0), "{rep:?}");
    let targets = |rec: &Reconciler, lb: &str| {
        rec.status()[&ironlb_runtime::api::ObjectKey::new("default", lb)]
            .programmed_targets
            .clone()
    };
    assert!(!targets(&rec, "lb0").contains(&"fd00:9::1".parse().unwrap()));
    assert_eq!(targets(&rec, "lb0"), targets(&rec, "lb3"));
    assert!(targets(&rec, "lb1").contains(&"fd00:9::2".parse().unwrap()));
}

/// Public load balancers `lb0..lb3`, each selecting one NetworkInterface, as one manifest file.
fn public_world() -> String {
    let mut t = format!("{API}\nkind: Network\nmetadata: {{name: n}}\nspec: {{vni: 100}}\n");
    for i in 0..4 {
        t.push_str(&format!(
            "---\n{API}\nkind: NetworkInterface\nmetadata: {{name: nic{i}, labels: {{app: a{i}}}}}\nspec: {{networkRef: {{name: n}}}}\nstatus: {{state: Available, underlayAddress: 'fd00:9::{i}'}}\n---\n{API}\nkind: LoadBalancer\nmetadata: {{name: lb{i}}}\nspec:\n  type: Public\n  ipFamilies: [IPv4]\n  networkRef: {{name: n}}\n  networkInterfaceSelector: {{matchLabels: {{app: a{i}}}}}\n  ports: [{{protocol: TCP, port: 80}}]\n"
        ));
    }
    t
}

/// A cluster agent's reconciler: allocations given, not chosen.
fn given_reconciler() -> Reconciler {
    reconciler_on(vec![(0, PortKind::Public)], Allocator::given)
}

/// Given allocations that change apart from the objects (a cluster agent's): reconciling only the load balancers
/// whose record changed ends in the same device state (lb_ids included) and status as a full sync, step by step.
#[test]
fn given_allocations_reconciled_incrementally_agree_with_a_full_sync() {
    use ironlb_runtime::alloc::{AllocState, LbAlloc};
    use ironlb_runtime::api::ObjectKey;
    let dir = PathBuf::from("/manifests");
    let file = || FileChange {
        path: dir.join("fleet.yaml"),
        content: Some(load(&dir, "fleet.yaml", &public_world())),
    };
    let given = |v: &[(usize, u32, &str)]| AllocState {
        lbs: v
            .iter()
            .map(|(i, id, ip)| {
                let a = LbAlloc {
                    lb_id: Some(*id),
                    public_ips: vec![ip.parse().unwrap()],
                    prefix_ips: BTreeMap::new(),
                };
                (ObjectKey::new("default", format!("lb{i}")), a)
            })
            .collect(),
        cursors: BTreeMap::new(),
    };
    let steps = [
        given(&[(0, 1, "203.0.113.1")]),
        given(&[
            (0, 1, "203.0.113.1"),
            (1, 2, "203.0.113.2"),
            (2, 3, "203.0.113.3"),
        ]),
        // lb0 moves to another address, lb1 to another lb_id; lb3 arrives.
        given(&[
            (0, 1, "203.0.113.9"),
            (1, 7, "203.0.113.2"),
            (2, 3, "203.0.113.3"),
            (3, 4, "203.0.113.4"),
        ]),
        // lb2's record is taken away (both keep its last good state).
        given(&[
            (0, 1, "203.0.113.9"),
            (1, 7, "203.0.113.2"),
            (3, 4, "203.0.113.4"),
        ]),
    ];
    let (mut inc, mut full) = (given_reconciler(), given_reconciler());
    inc.apply(vec![file()]).unwrap();
    full.apply(vec![file()]).unwrap();
    let mut last = AllocState::default();
    for (n, state) in steps.into_iter().enumerate() {
        let touched: BTreeSet<ObjectKey> = (0..4)
            .map(|i| ObjectKey::new("default", format!("lb{i}")))
            .filter(|k| last.lbs.get(k) != state.lbs.get(k))
            .collect();
        inc.allocator_mut().set_given(state.clone());
        let rep = inc.apply_touching(Vec::new(), touched.clone()).unwrap();
        assert!(
            rep.created + rep.updated + rep.removed + rep.unchanged + rep.errors.len() <= touched.len(),
            "step {n}: only the touched load balancers are reconciled: {rep:?}"
        );
        full.allocator_mut().set_given(state.clone());
        full.resync().unwrap();
        let specs = |r: &mut Reconciler| r.device().read_state().unwrap().specs();
        assert_eq!(specs(&mut inc), specs(&mut full), "step {n}");
        assert_eq!(status_view(&inc), status_view(&full), "step {n}");
        last = state;
    }
}
