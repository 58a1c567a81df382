//! The controller: examples/ → the built-in example's LbSpecs, selector semantics, routings used as is, and the
//! issues for what cannot be programmed.

use ironlb_driver::LbSpec;
use ironlb_runtime::api::{NetworkInterface, Object, ObjectKey};
use ironlb_runtime::controller::{desired_specs, routing_for};
use ironlb_runtime::example;
use ironlb_runtime::manifest::{load_dir, load_str};
use ironlb_runtime::validate::validate;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv6Addr};
use std::path::{Path, PathBuf};

type Key = ObjectKey;

fn k(name: &str) -> Key {
    ObjectKey::new("default", name)
}

fn ids(pairs: &[(&str, u32)]) -> BTreeMap<Key, u32> {
    pairs.iter().map(|(n, i)| (k(n), *i)).collect()
}

fn load_valid(text: &str) -> Vec<(PathBuf, Object)> {
    let (objs, errs) = load_str("test.yaml", text);
    assert!(errs.is_empty(), "{errs:?}");
    let (valid, errs) = validate(&objs);
    assert!(errs.is_empty(), "{errs:#?}");
    valid
}

fn nics(objs: &[(PathBuf, Object)]) -> Vec<NetworkInterface> {
    objs.iter()
        .filter_map(|(_, o)| match o {
            Object::NetworkInterface(n) => Some(n.clone()),
            _ => None,
        })
        .collect()
}

fn lb_named<'a>(objs: &'a [(PathBuf, Object)], name: &str) -> &'a ironlb_runtime::api::LoadBalancer {
    objs.iter()
        .find_map(|(_, o)| match o {
            Object::LoadBalancer(l) if l.metadata.name == name => Some(l),
            _ => None,
        })
        .expect("lb")
}

fn spec_of<'a>(specs: &'a [(ObjectKey, LbSpec)], key: &str) -> &'a LbSpec {
    &specs.iter().find(|(k, _)| k.to_string() == key).expect("spec").1
}

#[test]
fn examples_produce_the_builtin_specs() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let (objs, errs) = load_dir(&dir);
    assert!(errs.is_empty(), "{errs:?}");
    let (valid, errs) = validate(&objs);
    assert!(errs.is_empty(), "{errs:?}");
    let lb_ids = ids(&[("my-load-balancer", 1), ("my-loadbalancer", 2)]);
    let v6: IpAddr = "2607:f0d0:1002:51::4".parse().unwrap();
    let allocated = [(k("my-loadbalancer"), vec![v6])].into();
    let (specs, issues) = desired_specs(&valid, &lb_ids, &allocated);
    assert!(issues.is_empty(), "{issues:?}");
    let mut got: Vec<LbSpec> = specs.into_iter().map(|(_, s)| s).collect();
    let mut want: Vec<LbSpec> = example::specs().into_iter().map(|(_, s)| s).collect();
    got.sort_by_key(|s| s.lb_id);
    want.sort_by_key(|s| s.lb_id);
    assert_eq!(got, want);
}

const BASE: &str = "\
apiVersion: networking.ironcore.dev/v1alpha1
kind: Network
metadata: {name: net-a}
spec: {vni: 100}
---
apiVersion: networking.ironcore.dev/v1alpha1
kind: Network
metadata: {name: net-b}
spec: {vni: 200}
";

fn nic(name: &str, net: &str, labels: &str, state: &str, underlay: &str) -> String {
    format!(
        "---
apiVersion: networking.ironcore.dev/v1alpha1
kind: NetworkInterface
metadata: {{name: {name}, uid: uid-{name}, labels: {{{labels}}}}}
spec: {{networkRef: {{name: {net}}}}}
status: {{state: {state}, underlayAddress: \"{underlay}\"}}
"
    )
}

fn internal_lb(name: &str, selector: &str) -> String {
    format!(
        "---
apiVersion: networking.ironcore.dev/v1alpha1
kind: LoadBalancer
metadata: {{name: {name}}}
spec:
  type: Internal
  networkRef: {{name: net-a}}
  ipFamilies: [IPv4]
  ips: [{{ip: 10.0.0.1}}]
  ports: [{{protocol: TCP, port: 80}}, {{protocol: udp, port: 53, portEnd: 54}}]
{selector}"
    )
}

#[test]
fn selector_semantics() {
    let mut text = BASE.to_string();
    text += &nic("a-ok", "net-a", "app: web, tier: fe", "Available", "fd00::1");
    text += &nic(
        "b-other-net",
        "net-b",
        "app: web, tier: fe",
        "Available",
        "fd00::2",
    );
    text += &nic("c-pending", "net-a", "app: web, tier: fe", "Pending", "fd00::3");
    text += &nic("d-mismatch", "net-a", "app: db, tier: fe", "Available", "fd00::4");
    text += &nic(
        "e-notin",
        "net-a",
        "app: web, tier: canary",
        "Available",
        "fd00::5",
    );
    text += &nic("f-ok", "net-a", "app: web", "Available", "fd00::6");
    text += &internal_lb(
        "lb",
        "  networkInterfaceSelector:
    matchLabels: {app: web}
    matchExpressions: [{key: tier, operator: NotIn, values: [canary]}]
",
    );
    let objs = load_valid(&text);
    let lb = lb_named(&objs, "lb");
    let r = routing_for(lb, &nics(&objs)).expect("selector → routing");
    assert_eq!(r.metadata.name, "lb");
    assert_eq!(r.metadata.namespace(), "default");
    assert_eq!(r.network_ref.as_ref().unwrap().name, "net-a");
    let names: Vec<_> = r.destinations.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["a-ok", "f-ok"]);
    assert_eq!(r.destinations[0].uid.as_deref(), Some("uid-a-ok"));

    let (specs, issues) = desired_specs(&objs, &ids(&[("lb", 7)]), &BTreeMap::new());
    assert!(issues.is_empty(), "{issues:?}");
    let s = spec_of(&specs, "default/lb");
    assert_eq!(s.lb_id, 7);
    let want: Vec<Ipv6Addr> = vec!["fd00::1".parse().unwrap(), "fd00::6".parse().unwrap()];
    assert_eq!(s.targets.iter().copied().collect::<Vec<_>>(), want);
    assert_eq!(s.vips.len(), 1);
    let vip = s.vips.iter().next().unwrap();
    assert_eq!(vip.domain, 100);
    assert_eq!(s.ranges.len(), 2);
    assert_eq!((s.ranges[0].low, s.ranges[0].high), (80, 80));
    assert_eq!((s.ranges[1].low, s.ranges[1].high), (53, 54));
}

#[test]
fn other_namespace_excluded_and_no_selector_gives_none() {
    let mut text = BASE.to_string();
    text += &nic("a", "net-a", "app: web", "Available", "fd00::1");
    text += &internal_lb("plain", "");
    let objs = load_valid(&text);
    assert!(routing_for(lb_named(&objs, "plain"), &nics(&objs)).is_none());

    let mut other_ns = nics(&objs);
    other_ns[0].metadata.namespace = Some("elsewhere".into());
    let mut lb = lb_named(&objs, "plain").clone();
    lb.spec.network_interface_selector = Some(Default::default()); // empty selector: matches all labels
    assert!(routing_for(&lb, &other_ns).unwrap().destinations.is_empty());
    assert_eq!(routing_for(&lb, &nics(&objs)).unwrap().destinations.len(), 1);
}

fn routing(name: &str, dests: &[&str]) -> String {
    let d: String = dests.iter().map(|n| format!("  - name: {n}\n")).collect();
    format!(
        "---
apiVersion: networking.ironcore.dev/v1alpha1
kind: LoadBalancerRouting
metadata: {{name: {name}}}
networkRef: {{name: net-a}}
destinations:
{d}"
    )
}

#[test]
fn routing_used_as_is_without_selector() {
    let mut text = BASE.to_string();
    // No label matching without a selector: the routing's destinations are used as written.
    text += &nic("x", "net-a", "app: nothing", "Available", "fd00::1");
    text += &nic("y", "net-a", "", "Available", "fd00::2");
    text += &nic("z", "net-a", "app: web", "Available", "fd00::3");
    text += &internal_lb("lb", "");
    text += &routing("lb", &["x", "y"]);
    let objs = load_valid(&text);
    let (specs, issues) = desired_specs(&objs, &ids(&[("lb", 1)]), &BTreeMap::new());
    assert!(issues.is_empty(), "{issues:?}");
    let t: Vec<String> = spec_of(&specs, "default/lb")
        .targets
        .iter()
        .map(|a| a.to_string())
        .collect();
    assert_eq!(t, ["fd00::1", "fd00::2"]);
}

#[test]
fn unusable_routing_destinations_are_issues() {
    let mut text = BASE.to_string();
    text += &nic("ok", "net-a", "", "Available", "fd00::1");
    text += &nic("pending", "net-a", "", "Pending", "fd00::2");
    text += &internal_lb("lb", "");
    text += &routing("lb", &["ok", "pending"]);
    let objs = load_valid(&text);
    // A NetworkInterface that disappeared after the routing was written (a routing lags its interfaces): skipped
    // with an issue, the others still used.
    let mut gone = objs.clone();
    gone.retain(|(_, o)| !matches!(o, Object::NetworkInterface(n) if n.metadata.name == "pending"));
    let (specs, issues) = desired_specs(&gone, &ids(&[("lb", 1)]), &BTreeMap::new());
    assert_eq!(spec_of(&specs, "default/lb").targets.len(), 1);
    assert_eq!(issues.len(), 1, "{issues:?}");
    let msg = issues[0].to_string();
    assert!(msg.starts_with("LoadBalancer default/lb: "), "{msg}");
    assert!(msg.contains("pending") && msg.contains("not found"), "{msg}");

    // Not Available, and no underlay address: skipped, each with an issue.
    let (specs, issues) = desired_specs(&objs, &ids(&[("lb", 1)]), &BTreeMap::new());
    assert_eq!(spec_of(&specs, "default/lb").targets.len(), 1);
    assert_eq!(issues.len(), 1, "{issues:?}");
    assert!(issues[0].message.contains("pending") && issues[0].message.contains("not Available"));
    let mut no_underlay = objs.clone();
    for (_, o) in &mut no_underlay {
        if let Object::NetworkInterface(n) = o {
            n.status.underlay_address = None;
        }
    }
    let (specs, issues) = desired_specs(&no_underlay, &ids(&[("lb", 1)]), &BTreeMap::new());
    assert!(spec_of(&specs, "default/lb").targets.is_empty());
    assert_eq!(issues.len(), 2, "{issues:?}");
    assert!(issues
        .iter()
        .any(|i| i.message.contains("ok") && i.message.contains("no underlay")));
}

#[test]
fn lb_without_id_is_an_issue() {
    let mut text = BASE.to_string();
    text += &internal_lb("a", "");
    text += &internal_lb("b", "").replace("10.0.0.1", "10.0.0.2");
    let objs = load_valid(&text);
    let (specs, issues) = desired_specs(&objs, &ids(&[("a", 3)]), &BTreeMap::new());
    assert_eq!(specs.len(), 1);
    assert_eq!(specs[0].0, k("a"));
    assert_eq!(issues.len(), 1);
    assert_eq!(issues[0].object.to_string(), "LoadBalancer default/b");
    assert!(issues[0].message.contains("no lb_id allocated"));
}

const PUBLIC: &str = "---
apiVersion: networking.ironcore.dev/v1alpha1
kind: LoadBalancer
metadata: {name: pub}
spec:
  type: Public
  networkRef: {name: net-a}
  ipFamilies: [IPv4, IPv6]
  ports: [{protocol: TCP, port: 443}]
";

#[test]
fn public_vips_from_status_or_allocated() {
    let text = format!("{BASE}{PUBLIC}status:\n  ips: [203.0.113.1, \"2001:db8::1\"]\n");
    let objs = load_valid(&text);
    let lb_ids = ids(&[("pub", 9)]);
    let (specs, issues) = desired_specs(&objs, &lb_ids, &BTreeMap::new());
    assert!(issues.is_empty(), "{issues:?}");
    let s = spec_of(&specs, "default/pub");
    let vips: Vec<String> = s.vips.iter().map(|k| k.vip.to_string()).collect();
    assert!(s.vips.iter().all(|k| k.domain == ironlb_hw::DOMAIN_PUBLIC));
    assert_eq!(s.vips.len(), 2, "{vips:?}");

    // The allocated map wins over status.ips.
    let a: IpAddr = "198.51.100.5".parse().unwrap();
    let (specs, _) = desired_specs(&objs, &lb_ids, &[(k("pub"), vec![a])].into());
    let s = spec_of(&specs, "default/pub");
    assert_eq!(s.vips.len(), 1);
    assert_eq!(s.vips.iter().next().unwrap().vip, ironlb_hw::Vip::from(a));
}

#[test]
fn lb_without_vips_is_an_issue() {
    let objs = load_valid(&format!("{BASE}{PUBLIC}"));
    let (specs, issues) = desired_specs(&objs, &ids(&[("pub", 9)]), &BTreeMap::new());
    assert!(specs.is_empty());
    assert_eq!(issues.len(), 1);
    assert!(issues[0].message.contains("no VIPs"), "{issues:?}");
}
