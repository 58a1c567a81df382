//! Validation of IP sources (`spec.ips` of LoadBalancers and NetworkInterfaces): literal addresses, and ephemeral
//! ones with their parent Prefix, template fields and the address IPAM already chose.

use super::prefixes::{PrefixState, Prefixes};
use super::{Ctx, FieldFamily, Ref};
use crate::types::ipam::parse_cidr;
use crate::types::{IpFamily, IpSource, ObjectKey};
use std::net::IpAddr;

pub(super) fn parse_ip(cx: &mut Ctx<'_>, i: usize, field: &str, s: &str) -> Option<IpAddr> {
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
pub(super) struct IpSources {
    /// (field, literal address).
    pub(super) literals: Vec<(String, IpAddr)>,
    /// The family of each source, by index, when known.
    pub(super) families: Vec<Option<IpFamily>>,
    /// The parent Prefix of each valid ephemeral source.
    pub(super) prefixes: Vec<ObjectKey>,
    /// The valid IPAM-filled `prefixTemplate.spec.prefix` addresses.
    pub(super) filled: Vec<IpAddr>,
}

/// Checks IP sources at `field`.
pub(super) fn check_ip_sources(
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
pub(super) fn filled_address(
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
pub(super) fn check_ephemeral(
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
