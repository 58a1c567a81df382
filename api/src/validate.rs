//! Validation of loaded IronCore objects (issue 5 §2): every rule ironlb needs before programming a device.
//!
//! [`validate`] returns the objects that passed and one [`ValidationError`] per problem, naming the file, the
//! object (`Kind namespace/name`) and the field path (e.g. `spec.ports[1].portEnd`). A bad object never removes
//! the others from the valid set; an object that references a bad or missing one is itself rejected (the reference
//! cannot be resolved). Objects are checked in input order, so of two conflicting objects the later one is rejected.

use crate::load::Loaded;
use crate::printable::printable;
use crate::types::ipam::parse_cidr;
use crate::types::{
    IpFamily, IpSource, Kind, LoadBalancer, LoadBalancerType, Network, NetworkInterface,
    NetworkInterfaceState, Object, ObjectKey, ObjectRef, Protocol,
};
use ipnet::IpNet;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::path::PathBuf;

pub mod addr;
pub mod names;
pub mod parsed;
mod prefixes;
mod targets;

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
            let parsed = check_lb(&mut cx, i, lb, &networks, &prefixes, &nic_ips, &mut vips);
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

fn parse_ip(cx: &mut Ctx<'_>, i: usize, field: &str, s: &str) -> Option<IpAddr> {
    match s.parse::<IpAddr>() {
        Ok(ip) => Some(ip),
        Err(_) => {
            cx.err(i, field, format!("invalid IP address {s:?}"));
            None
        }
    }
}

/// What [`check_ip_sources`] found.
#[derive(Default)]
struct IpSources {
    /// (field, literal address).
    literals: Vec<(String, IpAddr)>,
    /// The family of each source, by index, when known.
    families: Vec<Option<IpFamily>>,
    /// The parent Prefix of each valid ephemeral source.
    prefixes: Vec<ObjectKey>,
    /// The valid IPAM-filled `prefixTemplate.spec.prefix` addresses.
    filled: Vec<IpAddr>,
}

/// Checks IP sources at `field`.
fn check_ip_sources(
    cx: &mut Ctx<'_>,
    i: usize,
    field: &str,
    ips: &[IpSource],
    prefixes: &Prefixes,
) -> IpSources {
    let mut out = IpSources::default();
    for (j, src) in ips.iter().enumerate() {
        let f = format!("{field}[{j}]");
        let family = match (&src.ip, &src.ephemeral) {
            (Some(ip), None) => {
                let f = format!("{f}.ip");
                let ip = parse_ip(cx, i, &f, ip);
                ip.map(|ip| {
                    out.literals.push((f, ip));
                    IpFamily::of(&ip)
                })
            }
            (None, Some(_)) => {
                let errors = cx.errors.len();
                let checked = check_ephemeral(cx, i, &f, src, prefixes);
                if let (Some((_, _, pk)), true) = (&checked, cx.errors.len() == errors) {
                    out.filled.extend(filled_address(cx, i, &f, j, src, pk, prefixes));
                }
                checked.map(|(_, fam, pk)| {
                    out.prefixes.push(pk);
                    fam
                })
            }
            _ => {
                cx.err(i, f, "exactly one of ip and ephemeral must be set");
                None
            }
        };
        out.families.push(family);
    }
    out
}

/// The address a cluster's IPAM chose for the valid ephemeral source `j` at `f`, drawing from `parent`: the
/// template's `prefix`, or the allocated child Prefix `<owner>-<j>`; both set, they must agree. The child must be
/// a single address inside the parent (the template's `prefix` was checked with the source).
fn filled_address(
    cx: &mut Ctx<'_>,
    i: usize,
    f: &str,
    j: usize,
    src: &IpSource,
    parent: &ObjectKey,
    prefixes: &Prefixes,
) -> Option<IpAddr> {
    let template = src
        .template()
        .and_then(|t| t.prefix.as_deref())
        .and_then(parse_cidr)
        .map(|a| a.addr());
    let Some((child, net)) = prefixes.child(&cx.objects[i].1.key(), j, parent) else {
        return template;
    };
    let field = format!("{f}.ephemeral");
    let single = if net.addr().is_ipv4() { 32 } else { 128 };
    let parent_net = match prefixes.lookup(parent) {
        Ref::Valid(PrefixState::Allocated(p)) => p,
        _ => return template,
    };
    if net.prefix_len() != single {
        cx.err(
            i,
            field,
            format!("Prefix {child} (IPAM's allocation for this IP) is {net}: only single addresses are supported"),
        );
        return None;
    }
    if !parent_net.contains(&net.addr()) {
        cx.err(
            i,
            field,
            format!("Prefix {child} (IPAM's allocation for this IP) holds {net}, outside the parent Prefix {parent}"),
        );
        return None;
    }
    if let Some(t) = template.filter(|t| *t != net.addr()) {
        cx.err(
            i,
            format!("{field}.prefixTemplate.spec.prefix"),
            format!("{t} differs from {net}, IPAM's allocation for this IP in Prefix {child}"),
        );
        return None;
    }
    Some(net.addr())
}

/// Checks an ephemeral source at `f` (`spec.ips[j]`): its parent prefix (`prefixRef` or `parentRef`), and the
/// upstream template fields (`ipFamily`, `prefixLength`, an IPAM-filled `prefix`). Returns the parent reference's
/// field and the family.
fn check_ephemeral(
    cx: &mut Ctx<'_>,
    i: usize,
    f: &str,
    src: &IpSource,
    prefixes: &Prefixes,
) -> Option<FieldFamily> {
    let me = cx.objects[i].1.key();
    let t = src.template()?;
    let tf = format!("{f}.ephemeral.prefixTemplate.spec");
    let which = if t.prefix_ref.is_some() {
        "prefixRef"
    } else {
        "parentRef"
    };
    let rf = format!("{tf}.{which}.name");
    if let (Some(a), Some(b)) = (&t.prefix_ref, &t.parent_ref) {
        if a.name != b.name {
            cx.err(
                i,
                format!("{tf}.parentRef.name"),
                format!("{} differs from prefixRef {}", b.name, a.name),
            );
            return None;
        }
    }
    let parent_net = match t.parent() {
        None | Some("") => {
            cx.err(i, rf, "required (prefixRef or parentRef)");
            return None;
        }
        Some(name) => match prefixes.lookup(&me.sibling(name)) {
            Ref::Missing => {
                cx.err(i, rf, format!("unknown Prefix {}", me.sibling(name)));
                return None;
            }
            Ref::Invalid => {
                cx.err(i, rf, format!("Prefix {} is invalid", me.sibling(name)));
                return None;
            }
            Ref::Valid(PrefixState::Pending) => {
                cx.err(
                    i,
                    rf,
                    format!(
                        "Prefix {} is pending (IPAM has not filled its spec.prefix): no addresses to allocate from",
                        me.sibling(name)
                    ),
                );
                return None;
            }
            Ref::Valid(PrefixState::Allocated(p)) => p,
        },
    };
    let net = parent_net.addr();
    let fam = IpFamily::of(&net);
    let bits = if net.is_ipv4() { 32 } else { 128 };
    match &t.ip_family {
        Some(IpFamily::Unknown(u)) => cx.err(
            i,
            format!("{tf}.ipFamily"),
            format!("unknown IP family {u:?} (expected IPv4 or IPv6)"),
        ),
        Some(tfam) if *tfam != fam => cx.err(
            i,
            format!("{tf}.ipFamily"),
            format!("{tfam} does not match the parent Prefix ({fam})"),
        ),
        _ => {}
    }
    if let Some(l) = t.prefix_length.filter(|l| *l != bits) {
        cx.err(
            i,
            format!("{tf}.prefixLength"),
            format!("{l}: only single addresses (/{bits} for {fam}) are supported"),
        );
    }
    if let Some(p) = &t.prefix {
        match parse_cidr(p) {
            Some(a) if i64::from(a.prefix_len()) == bits && parent_net.contains(&a.addr()) => {}
            Some(a) if i64::from(a.prefix_len()) != bits => cx.err(
                i,
                format!("{tf}.prefix"),
                format!("{p}: only single addresses (/{bits} for {fam}) are supported"),
            ),
            Some(_) => cx.err(
                i,
                format!("{tf}.prefix"),
                format!("{p} is not inside the parent Prefix"),
            ),
            None => cx.err(i, format!("{tf}.prefix"), format!("invalid CIDR {p:?}")),
        }
    }
    let parent = me.sibling(t.parent().unwrap_or_default());
    Some((rf, fam, parent))
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

fn range_str(p: &Protocol, lo: i64, hi: i64) -> String {
    if lo == hi {
        format!("{p} {lo}")
    } else {
        format!("{p} {lo}-{hi}")
    }
}

fn check_lb(
    cx: &mut Ctx<'_>,
    i: usize,
    lb: &LoadBalancer,
    networks: &BTreeMap<Key, Option<u32>>,
    prefixes: &Prefixes,
    nic_ips: &NicIps,
    vips: &mut BTreeMap<(VipDomain, IpAddr), ObjectRef>,
) -> Option<LbParsed> {
    let s = &lb.spec;
    match &s.lb_type {
        None => cx.err(i, "spec.type", "required (Public or Internal)"),
        Some(LoadBalancerType::Unknown(t)) => cx.err(
            i,
            "spec.type",
            format!("unknown type {t:?} (expected Public or Internal)"),
        ),
        Some(_) => {}
    }
    // IP families.
    let mut families = BTreeSet::new();
    if s.ip_families.is_empty() {
        cx.err(i, "spec.ipFamilies", "must not be empty");
    }
    for (j, f) in s.ip_families.iter().enumerate() {
        let field = format!("spec.ipFamilies[{j}]");
        if let IpFamily::Unknown(u) = f {
            cx.err(
                i,
                field,
                format!("unknown IP family {u:?} (expected IPv4 or IPv6)"),
            );
        } else if !families.insert(f.clone()) {
            cx.err(i, field, format!("duplicate {f}"));
        }
    }
    let fams = s
        .ip_families
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    // IPs.
    let IpSources {
        literals,
        families: source_families,
        prefixes: ephemeral_prefixes,
        filled,
    } = check_ip_sources(cx, i, "spec.ips", &s.ips, prefixes);
    // Upstream pairs ips and ipFamilies by position: at most one IP per family, ips[j] of family ipFamilies[j].
    for (j, fam) in source_families.iter().enumerate() {
        match (s.ip_families.get(j), fam) {
            (None, Some(_)) if !s.ip_families.is_empty() => cx.err(
                i,
                format!("spec.ips[{j}]"),
                format!(
                    "{} IPs for {} ipFamilies: one IP per family, ips[i] of family ipFamilies[i]",
                    s.ips.len(),
                    s.ip_families.len()
                ),
            ),
            (Some(want), Some(have)) if want != have && !matches!(want, IpFamily::Unknown(_)) => cx.err(
                i,
                format!("spec.ips[{j}]"),
                format!("is {have}, but ipFamilies[{j}] is {want} (ips[i] must be of family ipFamilies[i])"),
            ),
            _ => {}
        }
    }
    match s.lb_type {
        Some(LoadBalancerType::Internal) if s.ips.is_empty() => {
            cx.err(i, "spec.ips", "required for type Internal")
        }
        Some(LoadBalancerType::Public) => {
            for (j, src) in s.ips.iter().enumerate() {
                if src.ip.is_some() {
                    cx.err(
                        i,
                        format!("spec.ips[{j}].ip"),
                        "literal IPs are not allowed for type Public",
                    );
                }
            }
        }
        _ => {}
    }
    let mut status = Vec::new();
    for (j, ip) in lb.status.ips.iter().enumerate() {
        let f = format!("status.ips[{j}]");
        if let Some(a) = parse_ip(cx, i, &f, &ip.ip) {
            status.push((f, a));
        }
    }
    let family_ok = |f: &IpFamily| families.is_empty() || families.contains(f);
    let (literals, status): (Vec<_>, Vec<_>) = {
        let mut usable = |v: Vec<(String, IpAddr)>| -> Vec<(String, IpAddr)> {
            v.into_iter()
                .filter(|(f, ip)| match addr::vip_problem(*ip) {
                    Some(why) => {
                        cx.err(i, f.clone(), why);
                        false
                    }
                    None => true,
                })
                .collect()
        };
        (usable(literals), usable(status))
    };
    // Literal and ephemeral IPs are paired with ipFamilies above; allocated (status) IPs must be of a family.
    for (f, ip) in &status {
        let fam = IpFamily::of(ip);
        if !family_ok(&fam) {
            cx.err(i, f.clone(), format!("{ip} is {fam}, not in ipFamilies [{fams}]"));
        }
    }
    // Ports.
    let mut ranges: Vec<(usize, Protocol, i64, i64)> = Vec::new();
    for (j, p) in s.ports.iter().enumerate() {
        let f = format!("spec.ports[{j}]");
        let mut ok = true;
        // Unset: TCP, as upstream (loading fills it in; an object built otherwise may not have it).
        let protocol = p.protocol.clone().unwrap_or(Protocol::Tcp);
        if let Protocol::Unknown(u) = &protocol {
            cx.err(
                i,
                format!("{f}.protocol"),
                format!("unknown protocol {u:?} (expected TCP, UDP or SCTP)"),
            );
            ok = false;
        }
        if !(1..=65535).contains(&p.port) {
            cx.err(
                i,
                format!("{f}.port"),
                format!("{} out of range 1..=65535", p.port),
            );
            ok = false;
        }
        let end = p.end();
        let end_field = p.end_field();
        if let (Some(a), Some(b)) = (p.port_end, p.end_port) {
            if a != b {
                cx.err(i, format!("{f}.endPort"), format!("{b} differs from portEnd {a}"));
                ok = false;
            }
        }
        if let Some(e) = p.port_end.or(p.end_port) {
            if !(1..=65535).contains(&e) {
                cx.err(
                    i,
                    format!("{f}.{end_field}"),
                    format!("{e} out of range 1..=65535"),
                );
                ok = false;
            } else if ok && e < p.port {
                cx.err(
                    i,
                    format!("{f}.{end_field}"),
                    format!("{e} is less than port {}", p.port),
                );
                ok = false;
            }
        }
        if ok {
            let proto = &protocol;
            if let Some((k, _, lo, hi)) = ranges
                .iter()
                .find(|(_, q, lo, hi)| q == proto && p.port <= *hi && *lo <= end)
            {
                let msg = format!(
                    "{} overlaps spec.ports[{k}] ({})",
                    range_str(proto, p.port, end),
                    range_str(proto, *lo, *hi)
                );
                cx.err(i, f, msg);
            } else {
                ranges.push((j, proto.clone(), p.port, end));
            }
        }
    }
    // Network and VIP uniqueness per domain.
    let vni = check_network_ref(cx, i, "spec.networkRef", s.network_ref.as_ref(), networks);
    if let Some(m) = &s.network_interface_selector {
        check_labels(
            cx,
            i,
            "spec.networkInterfaceSelector.matchLabels",
            &m.match_labels,
        );
        for (j, r) in m.match_expressions.iter().enumerate() {
            let f = format!("spec.networkInterfaceSelector.matchExpressions[{j}]");
            if let Some((field, msg)) = r.problem() {
                cx.err(i, format!("{f}.{field}"), msg);
            }
            if let Some(why) = names::label_key(&r.key) {
                cx.err(i, format!("{f}.key"), why);
            }
            for (k, v) in r.values.iter().enumerate() {
                if let Some(why) = names::label_value(v) {
                    cx.err(i, format!("{f}.values[{k}]"), why);
                }
            }
        }
    }
    let domain = match (&s.lb_type, vni) {
        (Some(LoadBalancerType::Public), _) => VipDomain::Public,
        (Some(LoadBalancerType::Internal), Some(v)) => VipDomain::Vni(v),
        _ => return None,
    };
    let me = lb.metadata.key().of(Kind::LoadBalancer);
    let mut mine = BTreeSet::new();
    for (f, ip) in literals.iter().chain(&status) {
        if !mine.insert(*ip) {
            continue;
        }
        // An internal VIP equal to an interface's address would take that interface's traffic.
        if let VipDomain::Vni(v) = domain {
            if let Some(nic) = nic_ips.get(&(v, *ip)) {
                cx.err(
                    i,
                    f.clone(),
                    format!("VIP {ip} in {domain} is the address of {nic}"),
                );
                continue;
            }
        }
        match vips.get(&(domain, *ip)) {
            Some(other) => cx.err(
                i,
                f.clone(),
                format!("VIP {ip} in {domain} already used by {other}"),
            ),
            None => {
                vips.insert((domain, *ip), me.clone());
            }
        }
    }
    let mut ports: Vec<PortRange> = ranges
        .iter()
        .filter_map(|(_, p, lo, hi)| {
            Some(PortRange {
                protocol: l4_protocol(p)?,
                first: u16::try_from(*lo).ok()?,
                last: u16::try_from(*hi).ok()?,
            })
        })
        .collect();
    ports.sort();
    Some(LbParsed {
        domain,
        families: s.ip_families.clone(),
        literal_ips: literals.into_iter().map(|(_, ip)| ip).collect(),
        prefixes: ephemeral_prefixes,
        status_ips: status.into_iter().map(|(_, ip)| ip).collect(),
        filled_ips: filled,
        ports,
    })
}

/// The protocol of a port range; `None` for an unknown one (a validation error).
fn l4_protocol(p: &Protocol) -> Option<L4Protocol> {
    match p {
        Protocol::Tcp => Some(L4Protocol::Tcp),
        Protocol::Udp => Some(L4Protocol::Udp),
        Protocol::Sctp => Some(L4Protocol::Sctp),
        Protocol::Unknown(_) => None,
    }
}
