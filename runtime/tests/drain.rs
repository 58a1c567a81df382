//! The drain policy through the reconciler, against the in-process model with its flow table (issue 18;
//! docs/operations.md "Draining targets"): a NetworkInterface that leaves `Available` or stops matching the
//! selector drains for the drain timeout (its pinned flows stay on it, no new flow goes to it), then it is removed
//! and its flows flushed; a deleted one is cut at once; a zero timeout cuts at once; a restart keeps a drain. Time
//! comes from a ManualClock the test steps.

use ironlb_driver::{Device, InprocBackend, SharedModel};
use ironlb_runtime::alloc::{Allocator, Pools};
use ironlb_runtime::api::ObjectKey;
use ironlb_runtime::clock::{Clock as _, ManualClock};
use ironlb_runtime::manifest::{load_str, Loaded};
use ironlb_runtime::reconcile::Reconciler;
use ironlb_sim::{DeviceConfig, Verdict};
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv6Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[path = "common/host.rs"]
mod common_host;

const TIMEOUT: Duration = Duration::from_secs(60);
/// The network port of VNI 100.
const PORT: u32 = 1;

fn ul(i: u16) -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, i)
}

/// The objects: a Network (VNI 100), an internal LB on 10.0.0.1:80 selecting `app: web`, and NetworkInterfaces
/// `nic-i` (underlay `ul(i)`) with the given label and state.
fn objects(nics: &[(u16, &str, &str)]) -> Loaded {
    let mut text = String::from(
        "apiVersion: networking.ironcore.dev/v1alpha1
kind: Network
metadata: {name: net}
spec: {vni: 100}
---
apiVersion: networking.ironcore.dev/v1alpha1
kind: LoadBalancer
metadata: {name: web}
spec:
  type: Internal
  networkRef: {name: net}
  ipFamilies: [IPv4]
  ips: [{ip: 10.0.0.1}]
  networkInterfaceSelector: {matchLabels: {app: web}}
  ports: [{protocol: tcp, port: 80}]
",
    );
    for (i, app, state) in nics {
        text.push_str(&format!(
            "---
apiVersion: networking.ironcore.dev/v1alpha1
kind: NetworkInterface
metadata: {{name: nic-{i}, uid: uid-{i}, labels: {{app: {app}}}}}
spec: {{networkRef: {{name: net}}}}
status: {{state: {state}, underlayAddress: \"{}\"}}
",
            ul(*i)
        ));
    }
    let (o, e) = load_str(PathBuf::from("test.yaml"), &text);
    assert!(e.is_empty(), "{e:?}");
    o
}

fn all_available(n: u16) -> Vec<(u16, &'static str, &'static str)> {
    (1..=n).map(|i| (i, "web", "Available")).collect()
}

struct Rig {
    model: SharedModel,
    state: tempfile::TempDir,
    rec: Reconciler,
    clock: ManualClock,
}

fn reconciler(model: &SharedModel, state: &Path, clock: &ManualClock, timeout: Duration) -> Reconciler {
    let dev = Device::open(Box::new(InprocBackend::attach(model.clone()))).unwrap();
    let pools = Pools::parse(&["203.0.113.0/24".into()]).unwrap();
    let alloc = Allocator::open(&state.join("alloc.json"), pools, dev.caps().lb_ids).unwrap();
    let mut rec = Reconciler::new(dev, alloc, &common_host::host_with_networks(&[(PORT, 100)])).unwrap();
    rec.set_clock(clock.shared());
    rec.set_drain_timeout(timeout);
    rec
}

impl Rig {
    fn new(timeout: Duration) -> Rig {
        let backend = InprocBackend::new(DeviceConfig::small()).unwrap();
        let model = backend.model();
        let state = tempfile::tempdir().unwrap();
        let clock = ManualClock::new();
        let rec = reconciler(&model, state.path(), &clock, timeout);
        Rig {
            model,
            state,
            rec,
            clock,
        }
    }

    fn sync(&mut self, nics: &[(u16, &str, &str)]) {
        let r = self.rec.sync(&objects(nics), &[]).expect("sync");
        assert!(r.errors.is_empty(), "{:?}", r.errors);
    }

    /// The target flow `sport` (10.0.0.99:sport -> 10.0.0.1:80) is sent to.
    fn send(&self, sport: u16) -> Ipv6Addr {
        let pkt =
            ironlb_runtime::cli::build_packet(&format!("tcp 10.0.0.99:{sport} -> 10.0.0.1:80")).unwrap();
        match self.model.lock().unwrap().process(PORT, &pkt) {
            Verdict::Forward { packet, .. } => Ipv6Addr::from(<[u8; 16]>::try_from(&packet[24..40]).unwrap()),
            v => panic!("flow {sport}: {v:?}"),
        }
    }

    fn spec(&self) -> ironlb_driver::LbSpec {
        self.rec.programmed()[&ObjectKey::new("default", "web")].clone()
    }

    /// The (serving, draining) targets the device holds, read back from its tables.
    fn device_targets(&mut self) -> (BTreeSet<Ipv6Addr>, BTreeSet<Ipv6Addr>) {
        let specs = self.rec.device().read_state().unwrap().specs();
        let s = specs.values().next().expect("one load balancer");
        (s.targets.clone(), s.draining.clone())
    }
}

/// Flows 1000.. until `n` of them are on `target`; every flow sent, with its target.
fn flows_until(rig: &Rig, target: Ipv6Addr, n: usize) -> BTreeMap<u16, Ipv6Addr> {
    let mut out = BTreeMap::new();
    for sport in 1000u16.. {
        out.insert(sport, rig.send(sport));
        if out.values().filter(|t| **t == target).count() >= n {
            return out;
        }
        assert!(sport < 5000, "no flows reach {target}");
    }
    unreachable!()
}

#[test]
fn an_interface_that_leaves_available_drains_until_its_deadline_then_is_removed_and_flushed() {
    let mut rig = Rig::new(TIMEOUT);
    rig.sync(&all_available(3));
    let before = flows_until(&rig, ul(3), 20);

    // nic-3 leaves Available: it drains.
    let mut nics = all_available(3);
    nics[2].2 = "Pending";
    rig.sync(&nics);
    let spec = rig.spec();
    assert_eq!(spec.targets, [ul(1), ul(2)].into());
    assert_eq!(spec.draining, [ul(3)].into());
    assert_eq!(rig.device_targets(), ([ul(1), ul(2)].into(), [ul(3)].into()));
    let status = &rig.rec.status()[&ObjectKey::new("default", "web")];
    assert_eq!(status.programmed_targets, vec![ul(1), ul(2)]);
    assert_eq!(status.draining_targets.len(), 1);
    let d = &status.draining_targets[0];
    assert_eq!(d.address, ul(3));
    assert_eq!(d.network_interface.as_deref(), Some("nic-3"));
    assert_eq!(
        d.deadline,
        ironlb_runtime::clock::rfc3339(rig.clock.wall() + TIMEOUT)
    );
    assert_eq!(rig.rec.next_retry(), Some(rig.clock.now() + TIMEOUT));
    // Every established flow keeps its target, the draining one's included; no new flow goes to it.
    for (&sport, &t) in &before {
        assert_eq!(rig.send(sport), t, "flow {sport} moved while nic-3 drains");
    }
    for sport in 20_000..21_000 {
        assert_ne!(
            rig.send(sport),
            ul(3),
            "new flow {sport} went to the draining target"
        );
    }

    // Before the deadline nothing changes; a sync then programs nothing.
    rig.clock.advance(TIMEOUT - Duration::from_secs(1));
    rig.sync(&nics);
    assert_eq!(rig.spec().draining, [ul(3)].into());
    for (&sport, &t) in &before {
        assert_eq!(rig.send(sport), t);
    }

    // At the deadline: removed, its flows flushed; they re-learn where the buckets send them, the others stay.
    rig.clock.advance(Duration::from_secs(1));
    rig.sync(&nics);
    assert!(rig.spec().draining.is_empty());
    assert_eq!(rig.device_targets(), ([ul(1), ul(2)].into(), BTreeSet::new()));
    assert!(rig.rec.status()[&ObjectKey::new("default", "web")]
        .draining_targets
        .is_empty());
    assert_eq!(rig.rec.next_retry(), None);
    let lb_id = rig.spec().lb_id;
    let pinned = rig.rec.device().read_flows().unwrap();
    assert!(
        pinned.iter().any(|(_, e)| e.key.lb_id == lb_id),
        "the other targets' flows are still pinned"
    );
    for (&sport, &t) in &before {
        let now = rig.send(sport);
        if t == ul(3) {
            assert_ne!(now, ul(3), "flow {sport} still reaches the removed target");
        } else {
            assert_eq!(now, t, "flow {sport} of a kept target moved");
        }
    }
}

#[test]
fn an_interface_that_stops_matching_the_selector_drains_and_serves_again_when_it_matches() {
    let mut rig = Rig::new(TIMEOUT);
    rig.sync(&all_available(3));
    let before = flows_until(&rig, ul(2), 10);
    let mut nics = all_available(3);
    nics[1].1 = "other";
    rig.sync(&nics);
    assert_eq!(rig.spec().draining, [ul(2)].into());
    for (&sport, &t) in &before {
        assert_eq!(rig.send(sport), t);
    }
    // It matches again before the deadline: it serves again, and no flow moved at any point.
    rig.clock.advance(Duration::from_secs(10));
    rig.sync(&all_available(3));
    let spec = rig.spec();
    assert_eq!(spec.targets, [ul(1), ul(2), ul(3)].into());
    assert!(spec.draining.is_empty());
    assert_eq!(rig.rec.next_retry(), None);
    for (&sport, &t) in &before {
        assert_eq!(rig.send(sport), t);
    }
}

#[test]
fn a_deleted_interface_is_cut_at_once_even_while_it_drains() {
    let mut rig = Rig::new(TIMEOUT);
    rig.sync(&all_available(4));
    // nic-4 deleted: cut at once.
    rig.sync(&all_available(3));
    assert_eq!(
        rig.device_targets(),
        ([ul(1), ul(2), ul(3)].into(), BTreeSet::new())
    );
    // nic-3 leaves Available (drains), then is deleted: cut at once, before its deadline.
    let mut nics = all_available(3);
    nics[2].2 = "Error";
    rig.sync(&nics);
    assert_eq!(rig.spec().draining, [ul(3)].into());
    rig.clock.advance(Duration::from_secs(1));
    rig.sync(&all_available(2));
    assert_eq!(rig.device_targets(), ([ul(1), ul(2)].into(), BTreeSet::new()));
    assert!(rig.rec.drains().is_empty());
}

#[test]
fn a_zero_drain_timeout_cuts_at_once() {
    let mut rig = Rig::new(Duration::ZERO);
    rig.sync(&all_available(3));
    let before = flows_until(&rig, ul(3), 10);
    let mut nics = all_available(3);
    nics[2].2 = "Pending";
    rig.sync(&nics);
    assert_eq!(rig.device_targets(), ([ul(1), ul(2)].into(), BTreeSet::new()));
    for (&sport, &t) in &before {
        if t == ul(3) {
            assert_ne!(rig.send(sport), ul(3));
        }
    }
}

#[test]
fn the_last_serving_target_leaving_cuts_the_drains_too() {
    // Without a serving target the device has no bucket array and drops every packet of the load balancer
    // (hw-spec.md §11.3): draining would keep nothing.
    let mut rig = Rig::new(TIMEOUT);
    rig.sync(&all_available(2));
    rig.sync(&[(1, "web", "Available"), (2, "web", "Pending")]);
    assert_eq!(rig.spec().draining, [ul(2)].into());
    rig.sync(&[(1, "web", "Pending"), (2, "web", "Pending")]);
    assert_eq!(rig.device_targets(), (BTreeSet::new(), BTreeSet::new()));
    assert!(rig.rec.drains().is_empty());
}

#[test]
fn a_restart_keeps_a_drain_and_its_pinned_flows() {
    let mut rig = Rig::new(TIMEOUT);
    rig.sync(&all_available(3));
    let before = flows_until(&rig, ul(3), 10);
    let mut nics = all_available(3);
    nics[2].2 = "Pending";
    rig.sync(&nics);
    // A daemon restart: the device is adopted (its draining target with it), the drain restarts its clock.
    rig.clock.advance(Duration::from_secs(30));
    rig.rec = reconciler(&rig.model, rig.state.path(), &rig.clock, TIMEOUT);
    rig.sync(&nics);
    assert_eq!(rig.spec().draining, [ul(3)].into());
    assert_eq!(rig.device_targets(), ([ul(1), ul(2)].into(), [ul(3)].into()));
    assert_eq!(rig.rec.next_retry(), Some(rig.clock.now() + TIMEOUT));
    for (&sport, &t) in &before {
        assert_eq!(rig.send(sport), t, "flow {sport} moved across the restart");
    }
    rig.clock.advance(TIMEOUT);
    rig.sync(&nics);
    assert_eq!(rig.device_targets(), ([ul(1), ul(2)].into(), BTreeSet::new()));
}

#[test]
fn an_interface_whose_underlay_address_changes_cuts_the_old_address_at_once() {
    let mut rig = Rig::new(TIMEOUT);
    rig.sync(&all_available(3));
    // nic-3 moves to another host: its old address no longer answers, so it is not drained.
    let mut moved = objects(&all_available(3));
    for (_, o) in &mut moved {
        if let ironlb_runtime::api::Object::NetworkInterface(n) = o {
            if n.metadata.name == "nic-3" {
                n.status.underlay_address = Some(ul(9).to_string());
            }
        }
    }
    let r = rig.rec.sync(&moved, &[]).expect("sync");
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(
        rig.device_targets(),
        ([ul(1), ul(2), ul(9)].into(), BTreeSet::new())
    );
    assert!(rig.rec.drains().is_empty());
}
