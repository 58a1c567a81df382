//! The `LoadBalancerRouting` a LoadBalancer's `networkInterfaceSelector` gives (IEP-3): the `Available`
//! NetworkInterfaces in its namespace and network whose labels match, destinations sorted by name. The runtime's
//! controller uses it where no routing is given; cluster mode's controller writes it to etcd for the agents.

use crate::types::{
    LoadBalancer, LoadBalancerRouting, LocalObjectReference, LocalUidReference, NetworkInterface,
    NetworkInterfaceState, ObjectMeta, RoutingDestination,
};
use std::collections::BTreeMap;

fn network_name(r: &Option<LocalObjectReference>) -> Option<&str> {
    r.as_ref().map(|r| r.name.as_str())
}

/// The routing computed from `lb`'s `networkInterfaceSelector`: the NetworkInterfaces of `interfaces` in the load
/// balancer's namespace and network, `Available`, whose labels match; destinations sorted by name. `None` when the
/// load balancer has no selector (a `LoadBalancerRouting` written by someone else is then used as is).
pub fn routing_for(lb: &LoadBalancer, interfaces: &[NetworkInterface]) -> Option<LoadBalancerRouting> {
    lb.spec.network_interface_selector.as_ref()?;
    Some(routing_from(lb, interfaces.iter()))
}

/// [`routing_for`] over `candidates` (any interfaces: those of other namespaces and networks are skipped), for a
/// load balancer known to have a selector.
pub fn routing_from<'a>(
    lb: &LoadBalancer,
    candidates: impl Iterator<Item = &'a NetworkInterface>,
) -> LoadBalancerRouting {
    let ns = lb.metadata.namespace();
    let net = network_name(&lb.spec.network_ref);
    let selector = lb.spec.network_interface_selector.clone().unwrap_or_default();
    let mut destinations: Vec<RoutingDestination> = candidates
        .filter(|n| {
            n.metadata.namespace() == ns
                && network_name(&n.spec.network_ref) == net
                && n.status.state == Some(NetworkInterfaceState::Available)
                && selector.matches(&n.metadata.labels)
        })
        .map(|n| RoutingDestination {
            name: n.metadata.name.clone(),
            uid: n.metadata.uid.clone(),
            ..RoutingDestination::default()
        })
        .collect();
    destinations.sort_by(|a, b| a.name.cmp(&b.name));
    LoadBalancerRouting {
        metadata: ObjectMeta {
            namespace: Some(ns.to_string()),
            name: lb.metadata.name.clone(),
            uid: None,
            labels: BTreeMap::new(),
        },
        network_ref: lb.spec.network_ref.as_ref().map(|r| LocalUidReference {
            name: r.name.clone(),
            uid: None,
        }),
        destinations,
    }
}

/// NetworkInterfaces grouped for selector matching: by namespace and network, and within that by label pair, so a
/// selector with `matchLabels` only looks at the interfaces carrying its rarest pair (a fleet's routings then cost
/// what they hold, not LoadBalancers times interfaces).
#[derive(Debug, Default)]
pub struct InterfaceIndex<'a> {
    by_network: BTreeMap<(&'a str, Option<&'a str>), NetworkInterfaces<'a>>,
}

#[derive(Debug, Default)]
struct NetworkInterfaces<'a> {
    all: Vec<&'a NetworkInterface>,
    by_label: BTreeMap<(&'a str, &'a str), Vec<&'a NetworkInterface>>,
}

impl<'a> InterfaceIndex<'a> {
    /// The index of `interfaces`.
    pub fn new(interfaces: impl IntoIterator<Item = &'a NetworkInterface>) -> Self {
        let mut by_network: BTreeMap<(&str, Option<&str>), NetworkInterfaces<'a>> = BTreeMap::new();
        for n in interfaces {
            let net = by_network
                .entry((n.metadata.namespace(), network_name(&n.spec.network_ref)))
                .or_default();
            net.all.push(n);
            for (k, v) in &n.metadata.labels {
                net.by_label.entry((k.as_str(), v.as_str())).or_default().push(n);
            }
        }
        InterfaceIndex { by_network }
    }

    /// [`routing_for`] over the indexed interfaces (the same result).
    pub fn routing_for(&self, lb: &LoadBalancer) -> Option<LoadBalancerRouting> {
        let selector = lb.spec.network_interface_selector.as_ref()?;
        let candidates: &[&NetworkInterface] = match self
            .by_network
            .get(&(lb.metadata.namespace(), network_name(&lb.spec.network_ref)))
        {
            None => &[],
            Some(net) => selector
                .match_labels
                .iter()
                .map(|(k, v)| {
                    net.by_label
                        .get(&(k.as_str(), v.as_str()))
                        .map_or(&[][..], Vec::as_slice)
                })
                .min_by_key(|c| c.len())
                .unwrap_or(&net.all),
        };
        Some(routing_from(lb, candidates.iter().copied()))
    }
}
