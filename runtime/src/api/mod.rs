//! IronCore API types read by ironlb (issue 5 §1): `networking.ironcore.dev/v1alpha1` `LoadBalancer`,
//! `LoadBalancerRouting`, `Network` and `NetworkInterface`, and `ipam.ironcore.dev/v1alpha1` `Prefix`.
//!
//! The types follow the IronCore enhancement proposals IEP-3 (public load balancers) and IEP-8 (internal load
//! balancers); the seeds' YAML examples load unchanged. Unknown fields are ignored (forward compatible). Values that
//! need checking (types, protocols, addresses, ranges) are kept as written and judged by [`crate::validate`], so a
//! bad value is reported with its field path instead of failing the whole document. ironlb's own schema extensions
//! (`Network.spec.vni`, `NetworkInterface.status.underlayAddress`) are documented in `docs/api.md`.

pub mod ipam;
pub mod loadbalancer;
pub mod meta;
pub mod network;
pub mod selector;

pub use ipam::{Prefix, PrefixSpec};
pub use loadbalancer::{
    EphemeralPrefixSource, IpFamily, IpSource, LoadBalancer, LoadBalancerPort, LoadBalancerRouting,
    LoadBalancerSpec, LoadBalancerStatus, LoadBalancerType, PrefixTemplate, PrefixTemplateSpec, Protocol,
    RoutingDestination, StatusIp,
};
pub use meta::{LocalObjectReference, ObjectMeta, DEFAULT_NAMESPACE};
pub use network::{
    Network, NetworkInterface, NetworkInterfaceSpec, NetworkInterfaceState, NetworkInterfaceStatus,
    NetworkSpec,
};
pub use selector::{LabelSelector, LabelSelectorRequirement, SelectorOperator};

use std::fmt;

/// API group/version of the networking types.
pub const NETWORKING_V1ALPHA1: &str = "networking.ironcore.dev/v1alpha1";
/// API group/version of the IPAM types.
pub const IPAM_V1ALPHA1: &str = "ipam.ironcore.dev/v1alpha1";

/// The kinds ironlb reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// `networking.ironcore.dev/v1alpha1` `LoadBalancer`.
    LoadBalancer,
    /// `networking.ironcore.dev/v1alpha1` `LoadBalancerRouting`.
    LoadBalancerRouting,
    /// `networking.ironcore.dev/v1alpha1` `Network`.
    Network,
    /// `networking.ironcore.dev/v1alpha1` `NetworkInterface`.
    NetworkInterface,
    /// `ipam.ironcore.dev/v1alpha1` `Prefix`.
    Prefix,
}

impl Kind {
    /// The kind for an apiVersion and kind, if ironlb reads it.
    pub fn from_type_meta(api_version: &str, kind: &str) -> Option<Kind> {
        match (api_version, kind) {
            (NETWORKING_V1ALPHA1, "LoadBalancer") => Some(Kind::LoadBalancer),
            (NETWORKING_V1ALPHA1, "LoadBalancerRouting") => Some(Kind::LoadBalancerRouting),
            (NETWORKING_V1ALPHA1, "Network") => Some(Kind::Network),
            (NETWORKING_V1ALPHA1, "NetworkInterface") => Some(Kind::NetworkInterface),
            (IPAM_V1ALPHA1, "Prefix") => Some(Kind::Prefix),
            _ => None,
        }
    }

    /// The kind's name as written in `kind:`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::LoadBalancer => "LoadBalancer",
            Kind::LoadBalancerRouting => "LoadBalancerRouting",
            Kind::Network => "Network",
            Kind::NetworkInterface => "NetworkInterface",
            Kind::Prefix => "Prefix",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One API object of a kind ironlb reads.
#[derive(Debug, Clone, PartialEq)]
pub enum Object {
    /// A load balancer.
    LoadBalancer(LoadBalancer),
    /// A load balancer's routing state.
    LoadBalancerRouting(LoadBalancerRouting),
    /// A network.
    Network(Network),
    /// A network interface.
    NetworkInterface(NetworkInterface),
    /// An IPAM prefix.
    Prefix(Prefix),
}

impl Object {
    /// The object's kind.
    pub fn kind(&self) -> Kind {
        match self {
            Object::LoadBalancer(_) => Kind::LoadBalancer,
            Object::LoadBalancerRouting(_) => Kind::LoadBalancerRouting,
            Object::Network(_) => Kind::Network,
            Object::NetworkInterface(_) => Kind::NetworkInterface,
            Object::Prefix(_) => Kind::Prefix,
        }
    }

    /// The object's metadata.
    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            Object::LoadBalancer(o) => &o.metadata,
            Object::LoadBalancerRouting(o) => &o.metadata,
            Object::Network(o) => &o.metadata,
            Object::NetworkInterface(o) => &o.metadata,
            Object::Prefix(o) => &o.metadata,
        }
    }

    /// `Kind namespace/name`, as used in error messages.
    pub fn display_name(&self) -> String {
        format!("{} {}", self.kind(), self.metadata().key())
    }
}
