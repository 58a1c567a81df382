//! The reconciler against the in-process model: examples → device, per-LB error isolation with last-good state,
//! deletion, VIP moves, orphans, restart adoption (nothing resent, no packet lost), backoff.

use ironlb_driver::{Device, InprocBackend, LbSpec, SharedModel};
use ironlb_runtime::alloc::{Allocator, Pools};
use ironlb_runtime::backoff::BACKOFF;
use ironlb_runtime::clock::{Clock as _, ManualClock};
use ironlb_runtime::manifest::{load_dir, load_str, Loaded};
use ironlb_runtime::reconcile::{HostConfig, Reconciler, SyncReport, RELEASE_GRACE};
use ironlb_runtime::status::{ConditionType, Reason};
use ironlb_sim::{DeviceConfig, Verdict};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[path = "common/host.rs"]
mod common_host;

fn host() -> HostConfig {
    common_host::host_with_networks(&[(1, 100), (2, 200)])
}

fn pools() -> Pools {
    Pools::parse(&["203.0.113.0/24".into(), "2001:db8:ff::/64".into()]).unwrap()
}

struct Rig {
    model: SharedModel,
    state: tempfile::TempDir,
    rec: Reconciler,
}

impl Rig {
    fn new(cfg: DeviceConfig) -> Rig {
        let backend = InprocBackend::new(cfg).unwrap();
        let model = backend.model();
        let state = tempfile::tempdir().unwrap();
        let rec = reconciler(&model, state.path(), pools());
        Rig { model, state, rec }
    }

    /// A new reconciler over the same device and state file (a daemon restart).
    fn restart(&mut self) {
        self.rec = reconciler(&self.model, self.state.path(), pools());
    }

    fn sync(&mut self, objects: &Loaded) -> SyncReport {
        self.rec.sync(objects, &[]).expect("sync")
    }

    /// What the device holds, read back from table memory, keyed by lb_id.
    fn device_specs(&mut self) -> BTreeMap<u32, LbSpec> {
        self.rec.device().read_state().unwrap().specs()
    }

    fn send(&self, port: u32, pkt: &[u8]) -> Verdict {
        self.model.lock().unwrap().process(port, pkt)
    }
}

/// A clock the test steps (no sleeps): the reconciler's backoff and release grace period read it.
struct TestClock;

impl TestClock {
    fn install(rec: &mut Reconciler) -> ManualClock {
        let c = ManualClock::new();
        rec.set_clock(c.shared());
        c
    }
}

fn reconciler(model: &SharedModel, state: &Path, pools: Pools) -> Reconciler {
    let dev = Device::open(Box::new(InprocBackend::attach(model.clone()))).unwrap();
    let cap = dev.caps().lb_ids;
    let alloc = Allocator::open(&state.join("alloc.json"), pools, cap).unwrap();
    Reconciler::new(dev, alloc, &host()).unwrap()
}

fn examples() -> Loaded {
    let (objects, errors) = load_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples"));
    assert!(errors.is_empty(), "{errors:?}");
    objects
}

fn yaml(text: &str) -> Loaded {
    let (o, e) = load_str(PathBuf::from("test.yaml"), text);
    assert!(e.is_empty(), "{e:?}");
    o
}

const NET: &str = "apiVersion: networking.ironcore.dev/v1alpha1
kind: Network
metadata: {name: net}
spec: {vni: 100}
";

fn nic(name: &str, app: &str, underlay: &str) -> String {
    format!(
        "---
apiVersion: networking.ironcore.dev/v1alpha1
kind: NetworkInterface
metadata: {{name: {name}, uid: uid-{name}, labels: {{app: {app}}}}}
spec: {{networkRef: {{name: net}}}}
status: {{state: Available, underlayAddress: \"{underlay}\"}}
"
    )
}

fn internal_lb(name: &str, ip: &str, app: &str, ports: &str) -> String {
    format!(
        "---
apiVersion: networking.ironcore.dev/v1alpha1
kind: LoadBalancer
metadata: {{name: {name}}}
spec:
  type: Internal
  networkRef: {{name: net}}
  ipFamilies: [IPv4]
  ips: [{{ip: {ip}}}]
  networkInterfaceSelector: {{matchLabels: {{app: {app}}}}}
  ports: {ports}
"
    )
}

fn tcp_to(dst: &str, dport: u16) -> Vec<u8> {
    ironlb_runtime::cli::build_packet(&format!("tcp 10.0.0.99:40000 -> {dst}:{dport}")).unwrap()
}

fn key(name: &str) -> ironlb_runtime::api::ObjectKey {
    ironlb_runtime::api::ObjectKey::new("default", name)
}

#[test]
fn examples_program_the_seeds_with_their_status_ips() {
    let mut r = Rig::new(DeviceConfig::small());
    let rep = r.sync(&examples());
    assert_eq!(rep.errors, vec![], "{rep:?}");
    assert_eq!(rep.created, 2);
    let st = r.rec.status();
    let public = &st[&key("my-load-balancer")];
    assert!(public.ready(), "{public:?}");
    // status.ips of the manifest are honoured as the allocation (they lie in the pools).
    let ips: Vec<IpAddr> = public.ips.clone();
    assert!(ips.contains(&"203.0.113.10".parse().unwrap()), "{ips:?}");
    assert!(ips.contains(&"2001:db8:ff::10".parse().unwrap()), "{ips:?}");
    let internal = &st[&key("my-loadbalancer")];
    assert!(
        internal.ips.contains(&"2607:f0d0:1002:51::4".parse().unwrap()),
        "{internal:?}"
    );
    assert_eq!(internal.programmed_targets.len(), 2);

    // The device holds exactly the built-in example's specs (up to lb_id).
    let mut have: Vec<LbSpec> = r.device_specs().into_values().collect();
    let mut want: Vec<LbSpec> = ironlb_runtime::example::specs()
        .into_iter()
        .map(|(_, s)| s)
        .collect();
    for s in have.iter_mut().chain(want.iter_mut()) {
        s.lb_id = 0;
    }
    have.sort_by(|a, b| a.vips.cmp(&b.vips));
    want.sort_by(|a, b| a.vips.cmp(&b.vips));
    assert_eq!(have, want);

    // A second sync with the same objects sends nothing.
    let rep = r.sync(&examples());
    assert_eq!(
        (rep.created, rep.updated, rep.commands, rep.unchanged),
        (0, 0, 0, 2),
        "{rep:?}"
    );
}

#[test]
fn an_invalid_edit_keeps_the_last_good_state_and_leaves_others_alone() {
    let mut r = Rig::new(DeviceConfig::small());
    let base = format!(
        "{NET}{}{}{}{}",
        nic("a1", "a", "fd00:a::1"),
        nic("b1", "b", "fd00:b::1"),
        internal_lb("lb-a", "10.0.0.1", "a", "[{protocol: TCP, port: 80}]"),
        internal_lb("lb-b", "10.0.0.2", "b", "[{protocol: TCP, port: 80}]"),
    );
    assert!(r.sync(&yaml(&base)).errors.is_empty());
    let before = r.device_specs();

    // lb-a becomes invalid (portEnd < port); lb-b gains a target in the same change.
    let edited = format!(
        "{NET}{}{}{}{}{}",
        nic("a1", "a", "fd00:a::1"),
        nic("b1", "b", "fd00:b::1"),
        nic("b2", "b", "fd00:b::2"),
        internal_lb(
            "lb-a",
            "10.0.0.1",
            "a",
            "[{protocol: TCP, port: 80, portEnd: 70}]"
        ),
        internal_lb("lb-b", "10.0.0.2", "b", "[{protocol: TCP, port: 80}]"),
    );
    let rep = r.sync(&yaml(&edited));
    assert_eq!(rep.errors.len(), 1, "{rep:?}");
    assert_eq!(rep.errors[0].reason, Reason::InvalidSpec);
    assert!(
        rep.errors[0].message.contains("spec.ports[0].portEnd"),
        "{}",
        rep.errors[0].message
    );
    assert_eq!(rep.updated, 1);
    let after = r.device_specs();
    let a_id = r.rec.status()[&key("lb-a")].lb_id.unwrap();
    let b_id = r.rec.status()[&key("lb-b")].lb_id.unwrap();
    assert_eq!(after[&a_id], before[&a_id], "lb-a must keep its last good state");
    assert_eq!(after[&b_id].targets.len(), 2);
    let st = &r.rec.status()[&key("lb-a")];
    assert!(!st.ready() && st.serving_last_good, "{st:?}");
    assert_eq!(
        st.condition(ConditionType::Ready).unwrap().reason,
        Reason::InvalidSpec
    );
    // Traffic to lb-a still flows.
    assert!(matches!(
        r.send(1, &tcp_to("10.0.0.1", 80)),
        Verdict::Forward { .. }
    ));

    // A document that does not even load keeps its LoadBalancer too (it is not treated as deleted).
    let broken = edited.replace(
        "metadata: {name: lb-a}\nspec:\n  type: Internal",
        "metadata: {name: lb-a}\nspec:\n  type: Internal\n  bogus: [",
    );
    let (objects, load_errors) = load_str(PathBuf::from("test.yaml"), &broken);
    assert_eq!(load_errors.len(), 1, "{load_errors:?}");
    let rep = r.rec.sync(&objects, &load_errors).unwrap();
    assert_eq!(rep.removed, 0, "{rep:?}");
    assert_eq!(r.device_specs()[&a_id], before[&a_id]);
}

#[test]
fn deletion_removes_entries_and_releases_allocations() {
    let mut r = Rig::new(DeviceConfig::small());
    let two = format!(
        "{NET}{}{}{}",
        nic("a1", "a", "fd00:a::1"),
        internal_lb("lb-a", "10.0.0.1", "a", "[{protocol: TCP, port: 80}]"),
        internal_lb("lb-b", "10.0.0.2", "a", "[{protocol: UDP, port: 53}]"),
    );
    r.sync(&yaml(&two));
    assert_eq!(r.device_specs().len(), 2);
    let one = format!(
        "{NET}{}{}",
        nic("a1", "a", "fd00:a::1"),
        internal_lb("lb-a", "10.0.0.1", "a", "[{protocol: TCP, port: 80}]"),
    );
    let clock = TestClock::install(&mut r.rec);
    let rep = r.sync(&yaml(&one));
    assert_eq!(rep.removed, 1, "{rep:?}");
    assert_eq!(r.device_specs().len(), 1);
    assert!(!r.rec.status().contains_key(&key("lb-b")));
    // Its allocations are held for the grace period, then released.
    assert!(r.rec.allocator().state().lbs.contains_key(&key("lb-b")));
    clock.advance(RELEASE_GRACE - Duration::from_secs(1));
    r.sync(&yaml(&one));
    assert!(r.rec.allocator().state().lbs.contains_key(&key("lb-b")));
    clock.advance(Duration::from_secs(1));
    r.sync(&yaml(&one));
    assert!(!r.rec.allocator().state().lbs.contains_key(&key("lb-b")));
    assert!(matches!(
        r.send(
            1,
            &ironlb_runtime::cli::build_packet("udp 10.0.0.99:1 -> 10.0.0.2:53").unwrap()
        ),
        Verdict::Drop(_)
    ));
}

#[test]
fn a_vip_moves_between_load_balancers_in_one_sync() {
    let mut r = Rig::new(DeviceConfig::small());
    let before = format!(
        "{NET}{}{}{}{}",
        nic("a1", "a", "fd00:a::1"),
        nic("b1", "b", "fd00:b::1"),
        internal_lb("lb-a", "10.0.0.1", "a", "[{protocol: TCP, port: 80}]"),
        internal_lb("lb-b", "10.0.0.2", "b", "[{protocol: TCP, port: 80}]"),
    );
    r.sync(&yaml(&before));
    // Swap the two VIPs: a cycle the reconciler has to break.
    let swapped = format!(
        "{NET}{}{}{}{}",
        nic("a1", "a", "fd00:a::1"),
        nic("b1", "b", "fd00:b::1"),
        internal_lb("lb-a", "10.0.0.2", "a", "[{protocol: TCP, port: 80}]"),
        internal_lb("lb-b", "10.0.0.1", "b", "[{protocol: TCP, port: 80}]"),
    );
    let rep = r.sync(&yaml(&swapped));
    assert!(rep.errors.is_empty(), "{rep:?}");
    let target_of = |r: &Rig, ip: &str| match r.send(1, &tcp_to(ip, 80)) {
        Verdict::Forward { packet, .. } => {
            std::net::Ipv6Addr::from(<[u8; 16]>::try_from(&packet[24..40]).unwrap()).to_string()
        }
        Verdict::Drop(d) => panic!("{ip}: dropped {d}"),
    };
    assert_eq!(target_of(&r, "10.0.0.2"), "fd00:a::1");
    assert_eq!(target_of(&r, "10.0.0.1"), "fd00:b::1");
}

#[test]
fn orphans_are_removed_and_adopted_lbs_are_not_resent_after_restart() {
    let mut r = Rig::new(DeviceConfig::small());
    r.sync(&examples());
    let programmed = r.device_specs();

    // Restart: same device, same state file. Nothing is sent, and traffic keeps flowing throughout.
    r.restart();
    let pkt = tcp_to("10.0.0.1", 8080);
    assert!(matches!(r.send(1, &pkt), Verdict::Forward { .. }));
    let rep = r.sync(&examples());
    assert_eq!(
        (rep.created, rep.updated, rep.removed, rep.commands),
        (0, 0, 0, 0),
        "{rep:?}"
    );
    assert_eq!(r.device_specs(), programmed);

    // Restart with a lost state file: the device's LBs are orphans; they are replaced, not duplicated.
    std::fs::remove_file(r.state.path().join("alloc.json")).unwrap();
    r.restart();
    let rep = r.sync(&examples());
    assert!(rep.errors.is_empty(), "{rep:?}");
    assert_eq!(r.device_specs().len(), 2);
}

#[test]
fn pool_exhaustion_and_table_full_are_isolated_per_lb() {
    let backend_pools = Pools::parse(&["203.0.113.0/32".into(), "2001:db8:ff::/128".into()]).unwrap();
    let backend = InprocBackend::new(DeviceConfig::small()).unwrap();
    let model = backend.model();
    drop(backend);
    let state = tempfile::tempdir().unwrap();
    let mut rec = reconciler(&model, state.path(), backend_pools);
    let public = |name: &str| {
        format!(
            "---
apiVersion: networking.ironcore.dev/v1alpha1
kind: LoadBalancer
metadata: {{name: {name}}}
spec:
  type: Public
  networkRef: {{name: net}}
  ipFamilies: [IPv4]
  ports: [{{protocol: TCP, port: 443}}]
"
        )
    };
    let text = format!("{NET}{}{}", public("p1"), public("p2"));
    let rep = rec.sync(&yaml(&text), &[]).unwrap();
    assert_eq!(rep.created, 1, "{rep:?}");
    assert_eq!(rep.errors.len(), 1, "{rep:?}");
    assert_eq!(rep.errors[0].key, key("p2"));
    assert_eq!(rep.errors[0].reason, Reason::PoolExhausted);
    let st = &rec.status()[&key("p2")];
    assert_eq!(
        st.condition(ConditionType::Ready).unwrap().reason,
        Reason::PoolExhausted
    );
    assert!(rec.status()[&key("p1")].ready());

    // Deleting p1 frees the address for p2 once the release grace period has passed, not before.
    let clock = TestClock::install(&mut rec);
    let only_p2 = yaml(&format!("{NET}{}", public("p2")));
    let rep = rec.sync(&only_p2, &[]).unwrap();
    assert_eq!(rep.removed, 1, "{rep:?}");
    assert_eq!(
        rec.status()[&key("p2")]
            .condition(ConditionType::Ready)
            .unwrap()
            .reason,
        Reason::PoolExhausted
    );
    clock.advance(RELEASE_GRACE);
    let rep = rec.sync(&only_p2, &[]).unwrap();
    assert!(rep.errors.is_empty(), "{rep:?}");
    assert!(rec.status()[&key("p2")].ready());
}

#[test]
fn table_full_backs_off_and_keeps_others() {
    // A device with room for very few targets.
    let mut cfg = DeviceConfig::small();
    cfg.caps.targets = 3;
    let mut r = Rig::new(cfg);
    let config = |b2_app: &str| {
        format!(
            "{NET}{}{}{}{}{}{}",
            nic("a1", "a", "fd00:a::1"),
            nic("a2", "a", "fd00:a::2"),
            nic("b1", "b", "fd00:b::1"),
            nic("b2", b2_app, "fd00:b::2"),
            internal_lb("lb-a", "10.0.0.1", "a", "[{protocol: TCP, port: 80}]"),
            internal_lb("lb-b", "10.0.0.2", "b", "[{protocol: TCP, port: 80}]"),
        )
    };
    let text = config("b");
    let rep = r.sync(&yaml(&text));
    assert_eq!(rep.created, 1, "{rep:?}");
    assert_eq!(rep.errors.len(), 1);
    assert_eq!(rep.errors[0].reason, Reason::TableFull);
    assert!(r.rec.next_retry().is_some());
    // The same desired state again, before the backoff expired: not retried.
    let rep = r.sync(&yaml(&text));
    assert_eq!(rep.deferred, 1, "{rep:?}");
    assert_eq!(rep.commands, 0);
    assert_eq!(
        r.rec.status()[&key("lb-b")]
            .condition(ConditionType::Ready)
            .unwrap()
            .reason,
        Reason::TableFull
    );
    // A changed spec is tried at once: with one target it fits.
    let smaller = config("x");
    let rep = r.sync(&yaml(&smaller));
    assert!(rep.errors.is_empty(), "{rep:?}");
    assert!(r.rec.status()[&key("lb-b")].ready());
}

/// An invalid LoadBalancer that is still invalid when its retry is due backs off again: the next retry is in the
/// future, never a time already past (which would make the daemon resync in a tight loop).
#[test]
fn an_invalid_load_balancer_still_invalid_when_due_backs_off_again() {
    let mut r = Rig::new(DeviceConfig::small());
    let text = format!(
        "{NET}{}{}",
        nic("a1", "a", "fd00:a::1"),
        internal_lb(
            "lb-a",
            "10.0.0.1",
            "a",
            "[{protocol: TCP, port: 80, portEnd: 70}]"
        ),
    );
    let clock = TestClock::install(&mut r.rec);
    let rep = r.sync(&yaml(&text));
    assert_eq!(rep.errors[0].reason, Reason::InvalidSpec, "{rep:?}");
    let first = r.rec.next_retry().expect("a retry is scheduled");
    assert_eq!(first - clock.now(), BACKOFF.delay(1));
    // Past the first backoff, the same invalid object: scheduled again, later than before (twice the delay).
    clock.advance(first - clock.now() + Duration::from_millis(10));
    let rep = r.sync(&yaml(&text));
    assert_eq!(rep.errors[0].reason, Reason::InvalidSpec, "{rep:?}");
    let second = r.rec.next_retry().expect("a retry is scheduled");
    assert!(second > clock.now(), "the next retry is already due");
    assert_eq!(second - clock.now(), BACKOFF.delay(2));
}

/// Issue 12 item 1: a manifest that loses its load balancers for a moment (a truncated or emptied file taken as
/// content) removes them from the device, but their lb_ids and VIPs are held: when they come back they get the
/// same ones, though other load balancers allocated meanwhile.
#[test]
fn load_balancers_that_vanish_briefly_come_back_with_the_same_lb_ids_and_vips() {
    let mut r = Rig::new(DeviceConfig::small());
    let _clock = TestClock::install(&mut r.rec);
    let public = |name: &str| {
        format!(
            "---
apiVersion: networking.ironcore.dev/v1alpha1
kind: LoadBalancer
metadata: {{name: {name}}}
spec:
  type: Public
  networkRef: {{name: net}}
  ipFamilies: [IPv4, IPv6]
  ports: [{{protocol: TCP, port: 443}}]
"
        )
    };
    let prefix = "---
apiVersion: ipam.ironcore.dev/v1alpha1
kind: Prefix
metadata: {name: p}
spec: {prefix: 10.7.0.0/24}
";
    let from_prefix = |name: &str| {
        format!(
            "---
apiVersion: networking.ironcore.dev/v1alpha1
kind: LoadBalancer
metadata: {{name: {name}}}
spec:
  type: Internal
  networkRef: {{name: net}}
  ipFamilies: [IPv4]
  ips: [{{ephemeral: {{prefixTemplate: {{spec: {{prefixRef: {{name: p}}}}}}}}}}]
  ports: [{{protocol: TCP, port: 80}}]
"
        )
    };
    let full = format!("{NET}{prefix}{}{}{}", public("a"), public("b"), from_prefix("c"));
    r.sync(&yaml(&full));
    let before = r.rec.status().clone();
    assert!(before.values().all(|s| s.ready()), "{before:#?}");
    // The file is seen empty (only the Network and Prefix left), then others are created, then it is back.
    let rep = r.sync(&yaml(&format!("{NET}{prefix}")));
    assert_eq!(rep.removed, 3, "{rep:?}");
    assert!(r.device_specs().is_empty());
    r.sync(&yaml(&format!(
        "{NET}{prefix}{}{}",
        public("x"),
        from_prefix("y")
    )));
    r.sync(&yaml(&format!("{full}{}{}", public("x"), from_prefix("y"))));
    for (k, was) in &before {
        let now = &r.rec.status()[k];
        assert!(now.ready(), "{now:#?}");
        assert_eq!(
            (now.lb_id, &now.ips),
            (was.lb_id, &was.ips),
            "{k:?} was re-numbered"
        );
    }
}

/// Issue 12 item 4 through an incremental sync: an interface edit that gives it an Internal VIP's address makes
/// that load balancer invalid (it keeps its last good state), as the full sync decides.
#[test]
fn an_interface_taking_an_internal_vip_invalidates_it_incrementally() {
    use ironlb_runtime::store::FileChange;
    let mut r = Rig::new(DeviceConfig::small());
    let change = |name: &str, text: String| {
        let (o, e) = load_str(PathBuf::from(name), &text);
        FileChange {
            path: PathBuf::from(name),
            content: Some((o, e)),
        }
    };
    // It selects other interfaces: only the address ties it to a1.
    let lbs = internal_lb("lb-a", "10.0.0.1", "b", "[{protocol: TCP, port: 80}]");
    let rep = r
        .rec
        .apply(vec![
            change("00-net.yaml", NET.to_string()),
            change(
                "10-nics.yaml",
                nic("a1", "a", "fd00:a::1") + &nic("b1", "b", "fd00:b::1"),
            ),
            change("20-lbs.yaml", lbs),
        ])
        .unwrap();
    assert_eq!(rep.created, 1, "{rep:?}");
    let taken = (nic("a1", "a", "fd00:a::1") + &nic("b1", "b", "fd00:b::1")).replacen(
        "spec: {networkRef: {name: net}}",
        "spec: {networkRef: {name: net}, ips: [{ip: 10.0.0.1}]}",
        1,
    );
    let rep = r.rec.apply(vec![change("10-nics.yaml", taken)]).unwrap();
    let ready = r.rec.status()[&key("lb-a")]
        .condition(ConditionType::Ready)
        .unwrap()
        .clone();
    assert_eq!(ready.reason, Reason::InvalidSpec, "{rep:?}");
    assert!(
        ready
            .message
            .contains("is the address of NetworkInterface default/a1"),
        "{}",
        ready.message
    );
    assert!(r.rec.status()[&key("lb-a")].serving_last_good);
}
