//! What validation parsed, in typed form: the values a controller needs from each valid object, parsed once here
//! and never again (ports as ranges with their protocol, addresses as `IpAddr`/`Ipv6Addr`, Prefixes as `IpNet`,
//! VNIs as `u32`). Only valid objects have an entry.

use crate::types::{IpFamily, ObjectKey};
use ipnet::IpNet;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

/// The lookup domain of a VIP: the public domain, or a Network's VNI (internal load balancers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum VipDomain {
    /// Public addresses.
    Public,
    /// Addresses inside the Network with this VNI.
    Vni(u32),
}

impl fmt::Display for VipDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VipDomain::Public => f.write_str("the public domain"),
            VipDomain::Vni(v) => write!(f, "VNI {v}"),
        }
    }
}

/// A transport protocol a load balancer's ports can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum L4Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

/// One `spec.ports` entry: `first..=last` (`port..=portEnd`, or `port`) of one protocol; `1 <= first <= last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortRange {
    /// The protocol.
    pub protocol: L4Protocol,
    /// First port.
    pub first: u16,
    /// Last port (equal to `first` for a single port).
    pub last: u16,
}

/// A valid LoadBalancer's parsed spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LbParsed {
    /// Where its VIPs live: public, or the VNI of its Network (`Internal`).
    pub domain: VipDomain,
    /// `spec.ipFamilies`, in order.
    pub families: Vec<IpFamily>,
    /// Literal `spec.ips[].ip`, in order.
    pub literal_ips: Vec<IpAddr>,
    /// The Prefixes `spec.ips[].ephemeral` draw from, in order.
    pub prefixes: Vec<ObjectKey>,
    /// `status.ips`, in order (an earlier allocation).
    pub status_ips: Vec<IpAddr>,
    /// The addresses IPAM already filled into ephemeral templates (`prefixTemplate.spec.prefix`, a cluster's
    /// decision), in order: preferred over `status_ips` when allocating.
    pub filled_ips: Vec<IpAddr>,
    /// `spec.ports`, sorted; validation rejects overlaps, so no two share a port of one protocol.
    pub ports: Vec<PortRange>,
}

/// A routing destination as resolved by validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// The NetworkInterface named (it may not exist: a routing lags its interfaces; the controller skips it).
    Interface(ObjectKey),
    /// An upstream destination by IP alone that no NetworkInterface of the routing's network has (skipped).
    NoInterfaceWithIp(IpAddr),
}

/// The parsed values of every valid object, by key (see the module documentation).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parsed {
    /// LoadBalancers.
    pub load_balancers: BTreeMap<ObjectKey, LbParsed>,
    /// The VNI of each Network.
    pub networks: BTreeMap<ObjectKey, u32>,
    /// The CIDR of each Prefix.
    pub prefixes: BTreeMap<ObjectKey, IpNet>,
    /// The underlay address of each NetworkInterface that has one: its `status.underlayAddress`, else the
    /// `NodeUnderlay` of the node its `spec.providerID` names.
    pub underlays: BTreeMap<ObjectKey, Ipv6Addr>,
    /// The node each NetworkInterface's `spec.providerID` names (ironcore-net's), for messages.
    pub nodes: BTreeMap<ObjectKey, String>,
    /// The destinations of each valid LoadBalancerRouting (by the routing's = its load balancer's key), in
    /// destination order, each interface once.
    pub routings: BTreeMap<ObjectKey, Vec<Destination>>,
    /// The keys of the LoadBalancerRoutings that are given but invalid: their load balancers get no targets.
    pub invalid_routings: BTreeSet<ObjectKey>,
}
