//! IronCore API types read by ironlb (issue 5 §1): `networking.ironcore.dev/v1alpha1` `LoadBalancer`,
//! `LoadBalancerRouting`, `Network` and `NetworkInterface`, and `ipam.ironcore.dev/v1alpha1` `Prefix`.
//!
//! The types follow the IronCore enhancement proposals IEP-3 (public load balancers) and IEP-8 (internal load
//! balancers); the seeds' YAML examples load unchanged. ironlb's own kind `NodeUnderlay` ([`underlay`]) gives the
//! underlay address of a node for interfaces that do not carry one. Unknown fields are ignored (forward compatible). Values that
//! need checking (types, protocols, addresses, ranges) are kept as written and judged by [`crate::validate`], so a
//! bad value is reported with its field path instead of failing the whole document. ironlb's own schema extensions
//! (`Network.spec.vni`, `NetworkInterface.status.underlayAddress`) are documented in `docs/api.md`.

pub mod ident;
pub mod ipam;
pub mod loadbalancer;
pub mod meta;
pub mod network;
pub mod selector;
pub mod underlay;

pub use ident::{
    DocumentId, Kind, ObjectKey, ObjectRef, IPAM_V1ALPHA1, IRONLB_V1ALPHA1, NETWORKING_V1ALPHA1,
};
pub use ipam::{Prefix, PrefixSpec};
pub use loadbalancer::{
    EphemeralPrefixSource, IpFamily, IpSource, LoadBalancer, LoadBalancerPort, LoadBalancerRouting,
    LoadBalancerSpec, LoadBalancerStatus, LoadBalancerType, PrefixTemplate, PrefixTemplateSpec, Protocol,
    RoutingDestination, StatusIp, TargetRef,
};
pub use meta::{LocalObjectReference, LocalUidReference, ObjectMeta, DEFAULT_NAMESPACE};
pub use network::{
    Network, NetworkInterface, NetworkInterfaceSpec, NetworkInterfaceState, NetworkInterfaceStatus,
    NetworkSpec, IRONCORE_NET_SCHEME,
};
pub use selector::{LabelSelector, LabelSelectorRequirement, SelectorOperator};
pub use underlay::{NodeUnderlay, NodeUnderlaySpec};

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
    /// A node's underlay address (ironlb's own kind).
    NodeUnderlay(NodeUnderlay),
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
            Object::NodeUnderlay(_) => Kind::NodeUnderlay,
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
            Object::NodeUnderlay(o) => &o.metadata,
        }
    }

    /// The object's `namespace/name`.
    pub fn key(&self) -> ObjectKey {
        self.metadata().key()
    }

    /// `Kind namespace/name`.
    pub fn object_ref(&self) -> ObjectRef {
        ObjectRef {
            kind: self.kind(),
            key: self.key(),
        }
    }
}
