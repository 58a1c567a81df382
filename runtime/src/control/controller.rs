//! The controller (issue: runtime): pure functions from validated IronCore objects to the driver's [`LbSpec`]s.
//!
//! - [`routing_for`] (`ironlb_api::routing`) computes a load balancer's `LoadBalancerRouting` from its
//!   `networkInterfaceSelector` (IEP-3): the `Available` NetworkInterfaces in the load balancer's namespace and
//!   network whose labels match.
//! - [`desired_specs`] turns every LoadBalancer into an [`LbSpec`]: VIPs in their lookup domain, the port
//!   allow-list, the targets' underlay addresses and the default ICMP policy. What cannot be programmed (yet) is
//!   reported as a [`ControllerIssue`] instead of failing the whole set.
//!
//! No I/O: the lb_id allocation and the ephemeral IP allocation are inputs.

use crate::api::{
    Kind, LoadBalancer, LoadBalancerRouting, NetworkInterface, NetworkInterfaceState, Object, ObjectKey,
    ObjectRef,
};
use crate::validate::{validate_parsed, Destination, L4Protocol, Parsed, VipDomain};
pub use ironlb_api::routing::routing_for;
use ironlb_api::routing::InterfaceIndex;
use ironlb_driver::LbSpec;
use ironlb_hw::entry::{IcmpPolicy, Protocol as HwProtocol, RangeEntry};
use ironlb_hw::{LbKey, Vip, DOMAIN_PUBLIC};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::path::PathBuf;

/// Something the controller could not turn into device state (the load balancer or one of its targets is skipped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerIssue {
    /// The object concerned.
    pub object: ObjectRef,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ControllerIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.object, self.message)
    }
}

impl std::error::Error for ControllerIssue {}

fn lb_issue(lb: &LoadBalancer, message: impl Into<String>) -> ControllerIssue {
    ControllerIssue {
        object: lb.metadata.key().of(Kind::LoadBalancer),
        message: message.into(),
    }
}

fn hw_protocol(p: L4Protocol) -> HwProtocol {
    match p {
        L4Protocol::Tcp => HwProtocol::Tcp,
        L4Protocol::Udp => HwProtocol::Udp,
        L4Protocol::Sctp => HwProtocol::Sctp,
    }
}

fn hw_domain(d: VipDomain) -> u32 {
    match d {
        VipDomain::Public => DOMAIN_PUBLIC,
        VipDomain::Vni(vni) => vni,
    }
}

/// What the controller derives from a set of objects: the specs, the routings it computed and what it skipped.
#[derive(Debug, Clone, Default)]
pub struct Desired {
    /// The desired [`LbSpec`] per load balancer, in input order.
    pub specs: Vec<(ObjectKey, LbSpec)>,
    /// The routing used for each load balancer that has one: computed from its selector, or the
    /// `LoadBalancerRouting` written by someone else.
    pub routings: BTreeMap<ObjectKey, LoadBalancerRouting>,
    /// Load balancers or targets that were skipped.
    pub issues: Vec<(ObjectKey, ControllerIssue)>,
    /// The NetworkInterface each target of a load balancer comes from (the drain policy, [`crate::control::drain`],
    /// needs it once the target is gone from the spec).
    pub target_interfaces: BTreeMap<ObjectKey, BTreeMap<Ipv6Addr, ObjectKey>>,
}

/// The desired [`LbSpec`] of every valid LoadBalancer in `objects` (validated here, see
/// [`crate::validate::validate_parsed`]), by key, in input order, and the issues found. See [`desired_refs`].
pub fn desired_specs(
    objects: &[(PathBuf, Object)],
    lb_ids: &BTreeMap<ObjectKey, u32>,
    allocated: &BTreeMap<ObjectKey, Vec<IpAddr>>,
) -> (Vec<(ObjectKey, LbSpec)>, Vec<ControllerIssue>) {
    let d = desired(objects, lb_ids, allocated);
    (d.specs, d.issues.into_iter().map(|(_, i)| i).collect())
}

/// [`desired_refs`] of `objects`, validated here for their [`Parsed`] values.
pub fn desired(
    objects: &[(PathBuf, Object)],
    lb_ids: &BTreeMap<ObjectKey, u32>,
    allocated: &BTreeMap<ObjectKey, Vec<IpAddr>>,
) -> Desired {
    let refs: Vec<&(PathBuf, Object)> = objects.iter().collect();
    let parsed = validate_parsed(&refs).parsed;
    desired_refs(&refs, &parsed, lb_ids, allocated)
}

/// The desired state of every LoadBalancer in `objects` that validation parsed (`parsed`, from
/// [`crate::validate::validate_parsed`]; the values are used as parsed there, never parsed again):
///
/// - VIPs: the literal `spec.ips` plus the allocated addresses: `allocated[key]` when present, else `status.ips`,
///   in the LoadBalancer's domain (its Network's VNI for `Internal`, [`DOMAIN_PUBLIC`] for `Public`).
/// - Ranges: `spec.ports`, already sorted and without overlap.
/// - Targets: the underlay addresses of the routing's destinations: the routing computed by [`routing_for`] when
///   the load balancer has a selector, else the `LoadBalancerRouting` of the same namespace/name (none: no targets).
///   Destinations whose NetworkInterface is missing, not `Available` or without an underlay address are skipped
///   with an issue.
/// - lb_id: `lb_ids[key]`; a load balancer without one, or without any VIP, is skipped with an issue. So is one
///   `parsed` has no entry for (it is invalid).
pub fn desired_refs(
    objects: &[&(PathBuf, Object)],
    parsed: &Parsed,
    lb_ids: &BTreeMap<ObjectKey, u32>,
    allocated: &BTreeMap<ObjectKey, Vec<IpAddr>>,
) -> Desired {
    let mut nics: Vec<&NetworkInterface> = Vec::new();
    let mut routings: BTreeMap<ObjectKey, &LoadBalancerRouting> = BTreeMap::new();
    for (_, o) in objects {
        match o {
            Object::NetworkInterface(n) => nics.push(n),
            Object::LoadBalancerRouting(r) => {
                routings.entry(r.metadata.key()).or_insert(r);
            }
            _ => {}
        }
    }
    let nic_by_key: BTreeMap<ObjectKey, &NetworkInterface> =
        nics.iter().rev().map(|&n| (n.metadata.key(), n)).collect();

    let index = InterfaceIndex::new(nics.iter().copied());
    let mut out = Desired::default();
    let mut issues = Vec::new();
    for (_, o) in objects {
        let Object::LoadBalancer(lb) = o else { continue };
        let key = lb.metadata.key();
        let mut issue = |i: ControllerIssue| issues.push((key.clone(), i));
        let Some(p) = parsed.load_balancers.get(&key) else {
            issue(lb_issue(lb, "invalid, skipped"));
            continue;
        };
        let Some(&lb_id) = lb_ids.get(&key) else {
            issue(lb_issue(lb, "no lb_id allocated"));
            continue;
        };
        let domain = hw_domain(p.domain);
        // VIPs.
        let mut ips: BTreeSet<IpAddr> = p.literal_ips.iter().copied().collect();
        match allocated.get(&key) {
            Some(a) => ips.extend(a.iter().copied()),
            None => ips.extend(p.status_ips.iter().copied()),
        }
        if ips.is_empty() {
            issue(lb_issue(lb, "no VIPs (nothing allocated yet)"));
            continue;
        }
        let vips = ips
            .into_iter()
            .map(|ip| LbKey {
                domain,
                vip: Vip::from(ip),
            })
            .collect();
        // Ranges, in the order validation sorted them.
        let ranges: Vec<RangeEntry> = p
            .ports
            .iter()
            .map(|r| RangeEntry {
                protocol: hw_protocol(r.protocol),
                low: r.first,
                high: r.last,
            })
            .collect();
        // Targets: a given LoadBalancerRouting (the cluster decided), else the one computed from the selector.
        let given = routings.get(&key).copied();
        let computed;
        let (routing, dests): (Option<&LoadBalancerRouting>, Vec<Destination>) =
            match (given, parsed.routings.get(&key)) {
                (Some(r), Some(keys)) => (Some(r), keys.clone()),
                _ if parsed.invalid_routings.contains(&key) => {
                    issue(lb_issue(
                        lb,
                        format!("LoadBalancerRouting {key} is invalid: no targets until it is fixed"),
                    ));
                    (None, Vec::new())
                }
                _ => {
                    computed = index.routing_for(lb);
                    let keys = computed
                        .iter()
                        .flat_map(|r| &r.destinations)
                        .map(|d| Destination::Interface(key.sibling(d.name.clone())))
                        .collect();
                    (computed.as_ref(), keys)
                }
            };
        if let Some(r) = routing {
            out.routings.insert(key.clone(), r.clone());
        }
        let mut targets: BTreeSet<Ipv6Addr> = BTreeSet::new();
        let mut interfaces: BTreeMap<Ipv6Addr, ObjectKey> = BTreeMap::new();
        for d in dests {
            let nic_key = match d {
                Destination::Interface(k) => k,
                Destination::NoInterfaceWithIp(ip) => {
                    issue(lb_issue(
                        lb,
                        format!("destination {ip}: no NetworkInterface of the routing's network has this address, skipped"),
                    ));
                    continue;
                }
            };
            let skip = |why: String| lb_issue(lb, format!("destination NetworkInterface {nic_key}: {why}"));
            let Some(nic) = nic_by_key.get(&nic_key) else {
                issue(skip("not found, skipped".into()));
                continue;
            };
            if nic.status.state != Some(NetworkInterfaceState::Available) {
                let state = nic
                    .status
                    .state
                    .as_ref()
                    .map_or("unset".to_string(), |s| s.to_string());
                issue(skip(format!("not Available (state {state}), skipped")));
                continue;
            }
            match parsed.underlays.get(&nic_key) {
                Some(&a) => {
                    targets.insert(a);
                    interfaces.insert(a, nic.metadata.key());
                }
                None => issue(skip(match parsed.nodes.get(&nic_key) {
                    Some(node) => format!(
                        "no underlay address (no status.underlayAddress, no valid NodeUnderlay {node} for the node in spec.providerID), skipped"
                    ),
                    None => "no underlay address (no status.underlayAddress, no node in spec.providerID), skipped"
                        .into(),
                })),
            }
        }
        out.target_interfaces.insert(key.clone(), interfaces);
        out.specs.push((
            key.clone(),
            LbSpec {
                lb_id,
                vips,
                icmp: IcmpPolicy::default(),
                ranges,
                targets,
                draining: Default::default(),
            },
        ));
    }
    out.issues = issues;
    out
}
