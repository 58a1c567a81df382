//! Validation of loaded IronCore objects (issue 5 §2): every rule ironlb needs before programming a device.
//!
//! [`validate`] returns the objects that passed and one [`ValidationError`] per problem, naming the file, the
//! object (`Kind namespace/name`) and the field path (e.g. `spec.ports[1].portEnd`). A bad object never removes
//! the others from the valid set; an object that references a bad or missing one is itself rejected (the reference
//! cannot be resolved). Objects are checked in input order, so of two conflicting objects the later one is rejected.

use crate::load::Loaded;
use crate::printable::printable;
use crate::types::{
    IpFamily, Kind, Network, NetworkInterface, NetworkInterfaceState, Object, ObjectKey, ObjectRef,
};
use ipnet::IpNet;
use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::path::PathBuf;

pub mod addr;
mod ips;
mod loadbalancer;
pub mod names;
pub mod parsed;
mod prefixes;
mod targets;

use ips::{check_ip_sources, parse_ip};
use prefixes::{PrefixState, Prefixes};

pub use parsed::{Destination, L4Protocol, LbParsed, Parsed, PortRange, VipDomain};

/// Largest VNI (24 bits).
pub const MAX_VNI: i64 = 0xFF_FFFF;

/// One validation problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    /// File the object came from.
    pub file: PathBuf,
    /// The object.
    pub object: ObjectRef,
    /// Field path, e.g. `spec.ports[1].portEnd`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}: {}: {}",
            printable(&self.file.to_string_lossy()),
            printable(&self.object.to_string()),
            printable(&self.field),
            printable(&self.message)
        )
    }
}

impl std::error::Error for ValidationError {}

type Key = ObjectKey;
/// The literal addresses of NetworkInterfaces, by VNI: `(VNI, address)` -> the NetworkInterface.
type NicIps = BTreeMap<(u32, IpAddr), ObjectRef>;
/// A field path, the IP family found there and the Prefix it comes from.
type FieldFamily = (String, IpFamily, ObjectKey);

struct Ctx<'a> {
    objects: &'a [&'a (PathBuf, Object)],
    bad: Vec<bool>,
    errors: Vec<ValidationError>,
}

impl Ctx<'_> {
    fn err(&mut self, i: usize, field: impl Into<String>, message: impl Into<String>) {
        self.bad[i] = true;
        self.errors.push(ValidationError {
            file: self.objects[i].0.clone(),
            object: self.objects[i].1.object_ref(),
            field: field.into(),
            message: message.into(),
        });
    }
}

/// What a name resolves to: absent, present but invalid, or valid with a value.
enum Ref<T> {
    Missing,
    Invalid,
    Valid(T),
}

fn lookup<T: Clone>(map: &BTreeMap<Key, Option<T>>, key: &ObjectKey) -> Ref<T> {
    match map.get(key) {
        None => Ref::Missing,
        Some(None) => Ref::Invalid,
        Some(Some(v)) => Ref::Valid(v.clone()),
    }
}

/// Validates `objects`; returns the valid ones (in input order) and the problems found.
pub fn validate(objects: &[(PathBuf, Object)]) -> (Loaded, Vec<ValidationError>) {
    let (ok, errors) = validate_mask(objects);
    let valid = objects
        .iter()
        .zip(ok)
        .filter(|(_, ok)| *ok)
        .map(|(o, _)| o.clone())
        .collect();
    (valid, errors)
}

/// [`validate`] without copying: `true` at the index of every valid object.
pub fn validate_mask(objects: &[(PathBuf, Object)]) -> (Vec<bool>, Vec<ValidationError>) {
    let refs: Vec<&(PathBuf, Object)> = objects.iter().collect();
    validate_refs(&refs)
}

/// [`validate_mask`] over borrowed objects (the reconciler validates a subset of its store this way).
pub fn validate_refs(objects: &[&(PathBuf, Object)]) -> (Vec<bool>, Vec<ValidationError>) {
    let v = validate_parsed(objects);
    (v.valid, v.errors)
}

/// What [`validate_parsed`] found.
#[derive(Debug, Clone, Default)]
pub struct Validated {
    /// `true` at the index of every valid object.
    pub valid: Vec<bool>,
    /// One error per problem.
    pub errors: Vec<ValidationError>,
    /// The parsed values of the valid objects, for the controller (nothing is parsed twice).
    pub parsed: Parsed,
}

/// Validates `objects` (borrowed, as [`validate_refs`]) and returns, with the verdicts, the values it parsed.
pub fn validate_parsed(objects: &[&(PathBuf, Object)]) -> Validated {
    let mut cx = Ctx {
        objects,
        bad: vec![false; objects.len()],
        errors: Vec::new(),
    };
    // Names: Kubernetes' rules, unique per kind and namespace; labels: Kubernetes' rules.
    let mut seen: BTreeMap<ObjectRef, usize> = BTreeMap::new();
    for (i, (_, o)) in objects.iter().enumerate() {
        let m = o.metadata();
        check_labels(&mut cx, i, "metadata.labels", &m.labels);
        if let Some(why) = m.namespace.as_deref().and_then(names::dns1123_label) {
            cx.err(i, "metadata.namespace", why);
        }
        if let Some(why) = names::dns1123_subdomain(&m.name) {
            cx.err(i, "metadata.name", why);
            continue;
        }
        let k = o.object_ref();
        if let Some(&first) = seen.get(&k) {
            let msg = format!(
                "duplicate {} (first defined in {})",
                o.object_ref(),
                objects[first].0.display()
            );
            cx.err(i, "metadata.name", msg);
        } else {
            seen.insert(k, i);
        }
    }
    let key = |o: &Object| o.key();

    // Networks: key -> VNI when valid.
    let mut networks: BTreeMap<Key, Option<u32>> = BTreeMap::new();
    let mut vnis: BTreeMap<u32, ObjectRef> = BTreeMap::new();
    let mut found_networks: Vec<(usize, u32)> = Vec::new();
    for (i, (_, o)) in objects.iter().enumerate() {
        if let Object::Network(n) = o {
            let vni = check_network(&mut cx, i, n, &mut vnis);
            found_networks.extend(vni.map(|v| (i, v)));
            networks
                .entry(key(o))
                .or_insert(if cx.bad[i] { None } else { vni });
        }
    }
    // Prefixes: allocated (a CIDR) or pending, when valid.
    let mut prefixes = Prefixes::default();
    let mut found_prefixes: Vec<(usize, IpNet)> = Vec::new();
    for (i, (_, o)) in objects.iter().enumerate() {
        if let Object::Prefix(p) = o {
            let state = prefixes::check_prefix(&mut cx, i, p);
            if let Some(PrefixState::Allocated(net)) = state {
                found_prefixes.push((i, net));
            }
            prefixes.insert(p, if cx.bad[i] { None } else { state });
        }
    }
    // Node underlays (ironlb's kind): node name -> address, when valid.
    let mut node_addrs: BTreeMap<String, Ipv6Addr> = BTreeMap::new();
    for (i, (_, o)) in objects.iter().enumerate() {
        if let Object::NodeUnderlay(u) = o {
            let a = targets::check_node_underlay(&mut cx, i, u);
            if let (Some(a), false) = (a, cx.bad[i]) {
                node_addrs.entry(u.metadata.name.clone()).or_insert(a);
            }
        }
    }
    // Network interfaces: key -> what routings check when valid; their addresses per VNI; their underlay
    // address (`status.underlayAddress`, else the NodeUnderlay of the node in `spec.providerID`).
    let mut nics: BTreeMap<Key, Option<targets::NicInfo>> = BTreeMap::new();
    let mut nic_ips: NicIps = BTreeMap::new();
    let mut found_underlays: Vec<(usize, Ipv6Addr)> = Vec::new();
    let mut found_nodes: Vec<(usize, String)> = Vec::new();
    for (i, (_, o)) in objects.iter().enumerate() {
        if let Object::NetworkInterface(n) = o {
            let (status, node) = check_nic(&mut cx, i, n, &networks, &prefixes, &mut nic_ips);
            let from_node = node.as_ref().and_then(|n| node_addrs.get(n)).copied();
            found_underlays.extend(status.or(from_node).map(|u| (i, u)));
            found_nodes.extend(node.map(|n| (i, n)));
            nics.entry(key(o))
                .or_insert((!cx.bad[i]).then(|| targets::NicInfo::of(n)));
        }
    }
    // Load balancers: key -> network name (`None`: the LoadBalancer is invalid).
    let mut lbs: BTreeMap<Key, Option<Option<String>>> = BTreeMap::new();
    let mut vips: BTreeMap<(VipDomain, IpAddr), ObjectRef> = BTreeMap::new();
    let mut found_lbs: Vec<(usize, LbParsed)> = Vec::new();
    for (i, (_, o)) in objects.iter().enumerate() {
        if let Object::LoadBalancer(lb) = o {
            let parsed = loadbalancer::check_lb(&mut cx, i, lb, &networks, &prefixes, &nic_ips, &mut vips);
            found_lbs.extend(parsed.map(|p| (i, p)));
            let net = lb.spec.network_ref.as_ref().map(|r| r.name.clone());
            lbs.entry(key(o)).or_insert((!cx.bad[i]).then_some(net));
        }
    }
    let network_uids: BTreeMap<Key, Option<String>> = objects
        .iter()
        .rev()
        .filter_map(|(_, o)| match o {
            Object::Network(n) => Some((key(o), n.metadata.uid.clone())),
            _ => None,
        })
        .collect();
    let refs = targets::RoutingRefs {
        networks: &networks,
        network_uids: &network_uids,
        nics: &nics,
        nic_ips: &nic_ips,
        lbs: &lbs,
    };
    let mut found_routings: Vec<(usize, Vec<Destination>)> = Vec::new();
    let mut routing_at: Vec<usize> = Vec::new();
    for (i, (_, o)) in objects.iter().enumerate() {
        if let Object::LoadBalancerRouting(r) = o {
            found_routings.push((i, targets::check_routing(&mut cx, i, r, &refs)));
            routing_at.push(i);
        }
    }
    // What was parsed, for the objects that stayed valid (the first definition of a key: later ones are invalid).
    let valid: Vec<bool> = cx.bad.iter().map(|b| !b).collect();
    let mut parsed = Parsed::default();
    fn keep<V>(
        map: &mut BTreeMap<ObjectKey, V>,
        objects: &[&(PathBuf, Object)],
        valid: &[bool],
        found: Vec<(usize, V)>,
    ) {
        for (i, v) in found.into_iter().filter(|(i, _)| valid[*i]) {
            map.entry(objects[i].1.key()).or_insert(v);
        }
    }
    keep(&mut parsed.networks, objects, &valid, found_networks);
    keep(&mut parsed.prefixes, objects, &valid, found_prefixes);
    keep(&mut parsed.underlays, objects, &valid, found_underlays);
    keep(&mut parsed.load_balancers, objects, &valid, found_lbs);
    keep(&mut parsed.nodes, objects, &valid, found_nodes);
    keep(&mut parsed.routings, objects, &valid, found_routings);
    // A routing that is given but invalid: its load balancer gets no targets (never the selector's instead).
    parsed.invalid_routings = routing_at
        .into_iter()
        .filter(|i| !valid[*i])
        .map(|i| objects[i].1.key())
        .filter(|k| !parsed.routings.contains_key(k))
        .collect();
    Validated {
        valid,
        errors: cx.errors,
        parsed,
    }
}

/// Label keys and values at `field` (`metadata.labels`, a selector's `matchLabels`).
fn check_labels(cx: &mut Ctx<'_>, i: usize, field: &str, labels: &BTreeMap<String, String>) {
    for (k, v) in labels {
        if let Some(why) = names::label_key(k) {
            cx.err(i, field, why);
        } else if let Some(why) = names::label_value(v) {
            cx.err(i, format!("{field}.{k}"), why);
        }
    }
}

fn check_network(
    cx: &mut Ctx<'_>,
    i: usize,
    n: &Network,
    vnis: &mut BTreeMap<u32, ObjectRef>,
) -> Option<u32> {
    match (n.spec.provider_vni(), n.spec.vni) {
        (Some(Err(why)), _) => {
            cx.err(i, "spec.providerID", why);
            return None;
        }
        (Some(Ok(p)), Some(v)) if p != v => {
            cx.err(
                i,
                "spec.vni",
                format!("{v} differs from the VNI {p} in spec.providerID"),
            );
            return None;
        }
        _ => {}
    }
    let Some(vni) = n.spec.vni else {
        cx.err(
            i,
            "spec.vni",
            "required (ironlb extension: the Network's VNI), or spec.providerID ironcore-net://<namespace>/<name>/<vni>/<uid>",
        );
        return None;
    };
    if !(0..=MAX_VNI).contains(&vni) {
        cx.err(i, "spec.vni", format!("{vni} out of range 0..={MAX_VNI}"));
        return None;
    }
    let vni = vni as u32;
    if let Some(other) = vnis.get(&vni) {
        cx.err(i, "spec.vni", format!("VNI {vni} already used by {other}"));
        return None;
    }
    vnis.insert(vni, n.metadata.key().of(Kind::Network));
    Some(vni)
}

/// Resolves a networkRef at `field`; returns the VNI when the Network is valid.
fn check_network_ref(
    cx: &mut Ctx<'_>,
    i: usize,
    field: &str,
    r: Option<&crate::types::LocalObjectReference>,
    networks: &BTreeMap<Key, Option<u32>>,
) -> Option<u32> {
    let me = cx.objects[i].1.key();
    match r {
        None => cx.err(i, field, "required"),
        Some(r) if r.name.is_empty() => cx.err(i, format!("{field}.name"), "must not be empty"),
        Some(r) => match lookup(networks, &me.sibling(r.name.clone())) {
            Ref::Missing => cx.err(
                i,
                format!("{field}.name"),
                format!("unknown Network {}", me.sibling(r.name.clone())),
            ),
            Ref::Invalid => cx.err(
                i,
                format!("{field}.name"),
                format!("Network {} is invalid", me.sibling(r.name.clone())),
            ),
            Ref::Valid(v) => return Some(v),
        },
    }
    None
}

/// Checks a NetworkInterface; returns its `status.underlayAddress` and the node its `spec.providerID` names.
fn check_nic(
    cx: &mut Ctx<'_>,
    i: usize,
    n: &NetworkInterface,
    networks: &BTreeMap<Key, Option<u32>>,
    prefixes: &Prefixes,
    nic_ips: &mut NicIps,
) -> (Option<Ipv6Addr>, Option<String>) {
    let vni = check_network_ref(cx, i, "spec.networkRef", n.spec.network_ref.as_ref(), networks);
    let mut ips = check_ip_sources(cx, i, "spec.ips", &n.spec.ips, prefixes).literals;
    for (j, ip) in n.status.ips.iter().enumerate() {
        let f = format!("status.ips[{j}]");
        if let Some(ip) = parse_ip(cx, i, &f, &ip.ip) {
            ips.push((f, ip));
        }
    }
    if let Some(vni) = vni {
        for (_, ip) in ips {
            nic_ips
                .entry((vni, ip))
                .or_insert_with(|| n.metadata.key().of(Kind::NetworkInterface));
        }
    }
    if let Some(NetworkInterfaceState::Unknown(s)) = &n.status.state {
        cx.err(
            i,
            "status.state",
            format!("unknown state {s:?} (expected Pending, Available or Error)"),
        );
    }
    let node = targets::check_provider_node(cx, i, n);
    let status = n
        .status
        .underlay_address
        .as_ref()
        .and_then(|u| targets::underlay(cx, i, "status.underlayAddress", u));
    (status, node)
}
