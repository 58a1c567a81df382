//! `Network` and `NetworkInterface`, with ironlb's schema extensions.

use super::loadbalancer::{IpSource, StatusIp};
use super::meta::{LocalObjectReference, ObjectMeta};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A network (an overlay domain).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Network {
    /// Metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Spec.
    #[serde(default)]
    pub spec: NetworkSpec,
}

/// `Network.spec`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NetworkSpec {
    /// **ironlb extension.** The network's VXLAN/Geneve network identifier (24 bits, `0..=0xFFFFFF`). It is the
    /// lookup domain of internal load balancers in this network: an internal VIP is unique per VNI. Required by
    /// ironlb. Wide integer so out-of-range values reach validation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vni: Option<i64>,
    /// Upstream's provider id, `ironcore-net://<namespace>/<name>/<id>/<uid>`: `<id>` (decimal) is the VNI when
    /// `vni` is not set ([`crate::defaults`]); both set: they must agree.
    #[serde(rename = "providerID", default, skip_serializing_if = "Option::is_none")]
    pub provider_id: Option<String>,
}

impl NetworkSpec {
    /// The VNI written in `providerID` (`ironcore-net://<namespace>/<name>/<id>/<uid>`), or why there is none.
    pub fn provider_vni(&self) -> Option<Result<i64, String>> {
        let p = self.provider_id.as_deref()?;
        let parse = || -> Option<i64> {
            let rest = p.strip_prefix("ironcore-net://")?;
            let parts: Vec<&str> = rest.split('/').collect();
            match parts.as_slice() {
                [ns, name, id, _uid] if !ns.is_empty() && !name.is_empty() => {
                    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
                        return None;
                    }
                    id.parse().ok()
                }
                _ => None,
            }
        };
        Some(parse().ok_or_else(|| {
            format!("{p:?} is not ironcore-net://<namespace>/<name>/<id>/<uid> with a decimal <id>")
        }))
    }
}

/// A network interface of a machine; a load balancer target.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NetworkInterface {
    /// Metadata (labels are matched by `networkInterfaceSelector`; `uid` by `LoadBalancerRouting`).
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Spec.
    #[serde(default)]
    pub spec: NetworkInterfaceSpec,
    /// Status.
    #[serde(default)]
    pub status: NetworkInterfaceStatus,
}

/// `NetworkInterface.spec`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkInterfaceSpec {
    /// The network the interface is in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_ref: Option<LocalObjectReference>,
    /// The interface's overlay IPs (`ip:` or IronCore's `value:`, or `ephemeral:`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<IpSource>,
    /// Upstream's provider id; with ironcore-net, `ironcore-net://<namespace>/<name>/<node>/<uid>`, whose `<node>`
    /// names the host serving the interface ([`NetworkInterfaceSpec::provider_node`]).
    #[serde(rename = "providerID", default, skip_serializing_if = "Option::is_none")]
    pub provider_id: Option<String>,
}

/// The scheme of ironcore-net provider ids.
pub const IRONCORE_NET_SCHEME: &str = "ironcore-net://";

impl NetworkInterfaceSpec {
    /// The node named in `providerID` (`ironcore-net://<namespace>/<name>/<node>/<uid>`, as ironcore-net's
    /// `ParseNetworkInterfaceID` reads it): `None` without a providerID or with another provider's scheme, an error
    /// when an ironcore-net id is malformed.
    pub fn provider_node(&self) -> Option<Result<&str, String>> {
        let p = self.provider_id.as_deref()?;
        let rest = p.strip_prefix(IRONCORE_NET_SCHEME)?;
        let parts: Vec<&str> = rest.splitn(5, '/').collect();
        Some(match parts.as_slice() {
            [ns, name, node, uid] if [ns, name, node, uid].iter().all(|s| !s.is_empty()) => Ok(*node),
            _ => Err(format!(
                "{p:?} is not {IRONCORE_NET_SCHEME}<namespace>/<name>/<node>/<uid>"
            )),
        })
    }
}

/// `NetworkInterface.status`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkInterfaceStatus {
    /// Lifecycle state; only `Available` interfaces receive traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<NetworkInterfaceState>,
    /// Allocated overlay IPs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<StatusIp>,
    /// **ironlb extension.** The IPv6 underlay address of the hypervisor (host) serving this interface: load
    /// balanced packets for the interface are encapsulated and sent there. Must be an IPv6 address. Written by the
    /// node agent; an interface without it is not a usable target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub underlay_address: Option<String>,
}

/// Network interface state. Unknown values are kept and rejected by validation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum NetworkInterfaceState {
    /// Being set up.
    Pending,
    /// Ready for traffic.
    Available,
    /// Failed.
    Error,
    /// Anything else, as written.
    Unknown(String),
}

impl From<String> for NetworkInterfaceState {
    fn from(s: String) -> Self {
        match s.as_str() {
            "Pending" => NetworkInterfaceState::Pending,
            "Available" => NetworkInterfaceState::Available,
            "Error" => NetworkInterfaceState::Error,
            _ => NetworkInterfaceState::Unknown(s),
        }
    }
}

impl From<NetworkInterfaceState> for String {
    fn from(s: NetworkInterfaceState) -> Self {
        s.to_string()
    }
}

impl fmt::Display for NetworkInterfaceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NetworkInterfaceState::Pending => "Pending",
            NetworkInterfaceState::Available => "Available",
            NetworkInterfaceState::Error => "Error",
            NetworkInterfaceState::Unknown(s) => s,
        })
    }
}
