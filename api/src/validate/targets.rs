//! Validation of what makes a target: underlay addresses (a NetworkInterface's `status.underlayAddress`, or the
//! `NodeUnderlay` of the node named in its `spec.providerID`) and `LoadBalancerRouting` destinations in the seeds'
//! shape (`{name, uid}`) and upstream's (`{ip, targetRef {uid, name, providerID}}`). docs/api.md, "Underlay
//! addresses" and "Routing".

use super::{addr, lookup, names, parse_ip, Ctx, Destination, Key, NicIps, Ref};
use crate::types::{LoadBalancerRouting, NetworkInterface, NodeUnderlay, ObjectKey};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv6Addr};

/// What routing validation needs to know of a NetworkInterface.
#[derive(Debug, Clone)]
pub(super) struct NicInfo {
    /// `metadata.uid`.
    pub uid: Option<String>,
    /// `spec.networkRef.name`.
    pub network: String,
    /// `spec.providerID`.
    pub provider_id: Option<String>,
}

impl NicInfo {
    pub(super) fn of(n: &NetworkInterface) -> NicInfo {
        NicInfo {
            uid: n.metadata.uid.clone(),
            network: n.spec.network_ref.clone().unwrap_or_default().name,
            provider_id: n.spec.provider_id.clone(),
        }
    }
}

/// An underlay address at `field`: IPv6, and not unspecified, loopback, multicast or IPv4-mapped.
pub(super) fn underlay(cx: &mut Ctx<'_>, i: usize, field: &str, s: &str) -> Option<Ipv6Addr> {
    match parse_ip(cx, i, field, s)? {
        ip @ IpAddr::V4(_) => cx.err(i, field, format!("{ip} is not an IPv6 address")),
        IpAddr::V6(v6) => match addr::underlay_problem(v6) {
            Some(why) => cx.err(i, field, why),
            None => return Some(v6),
        },
    }
    None
}

/// A `NodeUnderlay`: cluster-scoped, with a usable `spec.underlayAddress`.
pub(super) fn check_node_underlay(cx: &mut Ctx<'_>, i: usize, u: &NodeUnderlay) -> Option<Ipv6Addr> {
    if u.metadata.namespace.is_some() {
        cx.err(
            i,
            "metadata.namespace",
            "not allowed: a NodeUnderlay is cluster-scoped (named after the node)",
        );
    }
    let Some(a) = &u.spec.underlay_address else {
        cx.err(
            i,
            "spec.underlayAddress",
            "required (the node's IPv6 underlay address)",
        );
        return None;
    };
    underlay(cx, i, "spec.underlayAddress", a)
}

/// The node named in a NetworkInterface's `spec.providerID` (ironcore-net's
/// `ironcore-net://<namespace>/<name>/<node>/<uid>`; other providers' ids name none).
pub(super) fn check_provider_node(cx: &mut Ctx<'_>, i: usize, n: &NetworkInterface) -> Option<String> {
    match n.spec.provider_node()? {
        Err(why) => cx.err(i, "spec.providerID", why),
        Ok(node) => match names::dns1123_subdomain(node) {
            Some(why) => cx.err(i, "spec.providerID", format!("node: {why}")),
            None => return Some(node.to_string()),
        },
    }
    None
}

/// Everything [`check_routing`] resolves references against.
pub(super) struct RoutingRefs<'a> {
    /// Networks: key -> VNI when valid.
    pub networks: &'a BTreeMap<Key, Option<u32>>,
    /// Networks: key -> uid.
    pub network_uids: &'a BTreeMap<Key, Option<String>>,
    /// NetworkInterfaces: key -> what routing needs when valid.
    pub nics: &'a BTreeMap<Key, Option<NicInfo>>,
    /// NetworkInterface addresses per VNI.
    pub nic_ips: &'a NicIps,
    /// LoadBalancers: key -> network name (`None`: invalid).
    pub lbs: &'a BTreeMap<Key, Option<Option<String>>>,
}

/// Checks a `LoadBalancerRouting`; returns its destinations in order, each interface once (a dual-stack interface
/// has one upstream destination per IP). A destination whose interface does not exist (by name, or by IP alone) is
/// kept for the controller to skip with an issue, not an error: a routing lags its interfaces' deletion.
pub(super) fn check_routing(
    cx: &mut Ctx<'_>,
    i: usize,
    r: &LoadBalancerRouting,
    refs: &RoutingRefs<'_>,
) -> Vec<Destination> {
    let me = r.metadata.key();
    let net_ref = r.network_ref.as_ref().map(|n| n.by_name());
    let vni = super::check_network_ref(cx, i, "networkRef", net_ref.as_ref(), refs.networks);
    if let Some(n) = &r.network_ref {
        let have = refs
            .network_uids
            .get(&me.sibling(n.name.clone()))
            .cloned()
            .flatten();
        if let (Some(want), Some(have)) = (&n.uid, have) {
            if *want != have {
                cx.err(
                    i,
                    "networkRef.uid",
                    format!("{want} does not match Network uid {have}"),
                );
            }
        }
    }
    let net = r.network_ref.as_ref().map(|n| n.name.clone());
    match refs.lbs.get(&me) {
        None => cx.err(i, "metadata.name", format!("no LoadBalancer {me}")),
        // A routing of an invalid LoadBalancer is rejected with it, as every reference to a bad object is.
        Some(None) => cx.err(i, "metadata.name", format!("LoadBalancer {me} is invalid")),
        Some(Some(lb_net)) if net.is_some() && *lb_net != net => {
            let msg = format!(
                "{} differs from the LoadBalancer's networkRef",
                net.clone().unwrap_or_default()
            );
            cx.err(i, "networkRef.name", msg)
        }
        Some(_) => {}
    }
    let mut seen: BTreeSet<(ObjectKey, Option<IpAddr>)> = BTreeSet::new();
    let mut out: Vec<Destination> = Vec::new();
    let mut emitted: BTreeSet<ObjectKey> = BTreeSet::new();
    let mut unresolved: BTreeSet<IpAddr> = BTreeSet::new();
    for (j, d) in r.destinations.iter().enumerate() {
        let f = format!("destinations[{j}]");
        let ip = match &d.ip {
            None => None,
            Some(s) => match parse_ip(cx, i, &format!("{f}.ip"), s) {
                Some(ip) => Some(ip),
                None => continue,
            },
        };
        if let Some(t) = &d.target_ref {
            if !d.name.is_empty() && !t.name.is_empty() && t.name != d.name {
                cx.err(
                    i,
                    format!("{f}.targetRef.name"),
                    format!("{} differs from name {}", t.name, d.name),
                );
                continue;
            }
        }
        // The interface: by name (the seeds' name, upstream's targetRef.name), else by address in the network.
        let (nic, field) = match d.interface_name() {
            Some(n) if d.name.is_empty() => (me.sibling(n), format!("{f}.targetRef.name")),
            Some(n) => (me.sibling(n), format!("{f}.name")),
            None => match (ip, vni) {
                (Some(ip), Some(vni)) => match refs.nic_ips.get(&(vni, ip)) {
                    Some(r) => (r.key.clone(), format!("{f}.ip")),
                    None => {
                        if unresolved.insert(ip) {
                            out.push(Destination::NoInterfaceWithIp(ip));
                        }
                        continue;
                    }
                },
                // The Network is invalid (reported above).
                (Some(_), None) => continue,
                (None, _) => {
                    cx.err(
                        i,
                        format!("{f}.name"),
                        "must not be empty (the seeds' name, or upstream's targetRef.name or ip)",
                    );
                    continue;
                }
            },
        };
        if !seen.insert((nic.clone(), ip)) {
            let what = match ip {
                Some(ip) => format!("{} {ip}", nic.name),
                None => nic.name.clone(),
            };
            cx.err(i, field, format!("duplicate destination {what}"));
            continue;
        }
        let info = match lookup(refs.nics, &nic) {
            Ref::Missing => {
                if emitted.insert(nic.clone()) {
                    out.push(Destination::Interface(nic));
                }
                continue;
            }
            Ref::Invalid => {
                cx.err(i, field, format!("NetworkInterface {nic} is invalid"));
                continue;
            }
            Ref::Valid(info) => info,
        };
        let target = d.target_ref.as_ref();
        for (uid_field, want) in [
            (format!("{f}.uid"), d.uid.as_ref()),
            (format!("{f}.targetRef.uid"), target.and_then(|t| t.uid.as_ref())),
        ] {
            if let (Some(want), Some(have)) = (want, &info.uid) {
                if want != have {
                    cx.err(
                        i,
                        uid_field,
                        format!("{want} does not match NetworkInterface uid {have}"),
                    );
                }
            }
        }
        let want_pid = target
            .and_then(|t| t.provider_id.as_ref())
            .filter(|p| !p.is_empty());
        if let (Some(want), Some(have)) = (want_pid, &info.provider_id) {
            if want != have {
                cx.err(
                    i,
                    format!("{f}.targetRef.providerID"),
                    format!("{want} does not match NetworkInterface {nic} spec.providerID {have}"),
                );
            }
        }
        if net.as_ref().is_some_and(|n| *n != info.network) {
            cx.err(
                i,
                field.clone(),
                format!("NetworkInterface {nic} is in Network {}", info.network),
            );
        }
        // A destination IP that is another interface's address contradicts the routing.
        if let (Some(ip), Some(vni)) = (ip, vni) {
            if let Some(other) = refs.nic_ips.get(&(vni, ip)).filter(|o| o.key != nic) {
                cx.err(
                    i,
                    format!("{f}.ip"),
                    format!("{ip} is an address of {other}, not of NetworkInterface {nic}"),
                );
            }
        }
        if emitted.insert(nic.clone()) {
            out.push(Destination::Interface(nic));
        }
    }
    out
}
