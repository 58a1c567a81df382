//! Validation of a LoadBalancer: type, families, IPs (paired with families by position, as upstream does),
//! ports, network, selector, and VIP uniqueness per domain; the result is its parsed spec.

use super::ips::{check_ip_sources, parse_ip, IpSources};
use super::prefixes::Prefixes;
use super::L4Protocol;
use super::{addr, check_labels, check_network_ref, names, Ctx, Key, LbParsed, NicIps, PortRange, VipDomain};
use crate::types::{IpFamily, Kind, LoadBalancer, LoadBalancerType, ObjectRef, Protocol};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

fn range_str(p: &Protocol, lo: i64, hi: i64) -> String {
    if lo == hi {
        format!("{p} {lo}")
    } else {
        format!("{p} {lo}-{hi}")
    }
}

pub(super) fn check_lb(
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
