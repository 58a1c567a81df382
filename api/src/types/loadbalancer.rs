//! `LoadBalancer` (IEP-3, IEP-8) and `LoadBalancerRouting` (IEP-3).

use super::meta::{LocalObjectReference, LocalUidReference, ObjectMeta};
use super::selector::LabelSelector;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::IpAddr;

/// A load balancer: VIPs (allocated public ones in `status.ips`, or internal ones from `spec.ips`), a port
/// allow-list and the network interfaces it distributes traffic to.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancer {
    /// Metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Desired state.
    #[serde(default)]
    pub spec: LoadBalancerSpec,
    /// Observed state (allocated IPs).
    #[serde(default)]
    pub status: LoadBalancerStatus,
}

/// `LoadBalancer.spec`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancerSpec {
    /// `Public` or `Internal` (required).
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub lb_type: Option<LoadBalancerType>,
    /// IP stack: `IPv4`, `IPv6` or both.
    #[serde(default)]
    pub ip_families: Vec<IpFamily>,
    /// Internal VIPs: literal IPs or ephemeral ones from an `ipam.Prefix` (IEP-8). Not allowed as literals for
    /// `Public`, whose IPs are allocated.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<IpSource>,
    /// Allow-list of protocol and port (range).
    #[serde(default)]
    pub ports: Vec<LoadBalancerPort>,
    /// Network the targets must be in (and, for `Internal`, the network the VIPs live in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_ref: Option<LocalObjectReference>,
    /// Selects the target network interfaces. Absent: no targets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_interface_selector: Option<LabelSelector>,
}

/// `LoadBalancer.status`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LoadBalancerStatus {
    /// Allocated IPs. IEP-3 writes them as plain strings, IEP-8 as `- ip: "..."`; both are accepted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<StatusIp>,
}

/// An IP in a status: written as `"1.2.3.4"` or `{ip: "1.2.3.4"}`; serialized as the latter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "StatusIpRepr")]
pub struct StatusIp {
    /// The address as written (checked by validation).
    pub ip: String,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum StatusIpRepr {
    Plain(String),
    Object {
        ip: String,
    },
    /// An unquoted IPv6 address ending in `::`, e.g. IEP-3's `- 2001::`: YAML reads `2001::` as the mapping
    /// `{"2001:": null}` (a colon before the line end is a mapping indicator). Restored to `2001::`.
    TrailingColons(std::collections::BTreeMap<String, ()>),
}

impl From<StatusIpRepr> for StatusIp {
    fn from(r: StatusIpRepr) -> Self {
        match r {
            StatusIpRepr::Plain(ip) | StatusIpRepr::Object { ip } => StatusIp { ip },
            StatusIpRepr::TrailingColons(m) => {
                // Anything but one `key:` entry is not an address; keep it as written so validation rejects it.
                let ip = match m.keys().next() {
                    Some(k) if m.len() == 1 && k.ends_with(':') => format!("{k}:"),
                    _ => format!("{m:?}"),
                };
                StatusIp { ip }
            }
        }
    }
}

/// Source of an IP: a literal (`ip:`, also accepted as IronCore's `value:`) or an ephemeral allocation.
/// Exactly one must be set (checked by validation).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IpSource {
    /// Literal address as written.
    #[serde(default, alias = "value", skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// Allocate from a prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ephemeral: Option<EphemeralPrefixSource>,
}

/// `ephemeral:` IP source.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EphemeralPrefixSource {
    /// Template of the prefix to allocate.
    #[serde(default)]
    pub prefix_template: PrefixTemplate,
}

/// `prefixTemplate:`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PrefixTemplate {
    /// Template spec.
    #[serde(default)]
    pub spec: PrefixTemplateSpec,
}

/// `prefixTemplate.spec:`: the seeds' `prefixRef`, or upstream's `ipam.PrefixSpec` (`parentRef`, `ipFamily`,
/// `prefix`, `prefixLength`; `parentSelector` is accepted and not read).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrefixTemplateSpec {
    /// The seeds' name of the parent `ipam.Prefix` to allocate from (prefix length = the family's bits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_ref: Option<LocalObjectReference>,
    /// Upstream's name of the parent `ipam.Prefix`; the same as `prefixRef` (both set: they must agree).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_ref: Option<LocalObjectReference>,
    /// The family of the address (upstream; defaulted from `ipFamilies[i]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_family: Option<IpFamily>,
    /// The allocated prefix, when IPAM has filled it in (a single address: `/32` or `/128`); ironlb uses it
    /// instead of allocating.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// The length to allocate; only the family's bits (32 or 128) are supported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_length: Option<i64>,
}

impl PrefixTemplateSpec {
    /// The parent prefix's name: `prefixRef` (the seeds'), else `parentRef` (upstream's).
    pub fn parent(&self) -> Option<&str> {
        self.prefix_ref
            .as_ref()
            .or(self.parent_ref.as_ref())
            .map(|r| r.name.as_str())
    }
}

impl IpSource {
    /// The referenced (parent) prefix's name, for an ephemeral source.
    pub fn prefix_ref(&self) -> Option<&str> {
        self.template().and_then(PrefixTemplateSpec::parent)
    }

    /// The ephemeral source's template spec.
    pub fn template(&self) -> Option<&PrefixTemplateSpec> {
        self.ephemeral.as_ref().map(|e| &e.prefix_template.spec)
    }
}

/// One allow-list entry: `port` alone, or the inclusive range `port..=portEnd` (the seeds' name) or
/// `port..=endPort` (upstream's).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancerPort {
    /// Protocol (case-insensitive). Upstream makes it optional; loading defaults it to `TCP`
    /// ([`crate::defaults`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    /// First port (1..=65535; wide integer so out-of-range values reach validation).
    #[serde(default)]
    pub port: i64,
    /// Last port of a range (the seeds' name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_end: Option<i64>,
    /// Last port of a range (upstream's name). Both set: they must agree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_port: Option<i64>,
}

impl LoadBalancerPort {
    /// The last port of the range: `portEnd`, else `endPort`, else `port`.
    pub fn end(&self) -> i64 {
        self.port_end.or(self.end_port).unwrap_or(self.port)
    }

    /// The field the range's end was written in, for messages.
    pub fn end_field(&self) -> &'static str {
        if self.port_end.is_none() && self.end_port.is_some() {
            "endPort"
        } else {
            "portEnd"
        }
    }
}

/// Load balancer type. Unknown values are kept and rejected by validation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum LoadBalancerType {
    /// VIPs are public, allocated by IronCore (`status.ips`).
    Public,
    /// VIPs live inside the `networkRef` Network.
    Internal,
    /// Anything else, as written.
    Unknown(String),
}

impl From<String> for LoadBalancerType {
    fn from(s: String) -> Self {
        match s.as_str() {
            "Public" => LoadBalancerType::Public,
            "Internal" => LoadBalancerType::Internal,
            _ => LoadBalancerType::Unknown(s),
        }
    }
}

impl From<LoadBalancerType> for String {
    fn from(t: LoadBalancerType) -> Self {
        t.to_string()
    }
}

impl fmt::Display for LoadBalancerType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LoadBalancerType::Public => "Public",
            LoadBalancerType::Internal => "Internal",
            LoadBalancerType::Unknown(s) => s,
        })
    }
}

/// IP family. Unknown values are kept and rejected by validation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum IpFamily {
    /// IPv4.
    IPv4,
    /// IPv6.
    IPv6,
    /// Anything else, as written.
    Unknown(String),
}

impl IpFamily {
    /// The family of an address.
    pub fn of(ip: &IpAddr) -> IpFamily {
        match ip {
            IpAddr::V4(_) => IpFamily::IPv4,
            IpAddr::V6(_) => IpFamily::IPv6,
        }
    }
}

impl From<String> for IpFamily {
    fn from(s: String) -> Self {
        match s.as_str() {
            "IPv4" => IpFamily::IPv4,
            "IPv6" => IpFamily::IPv6,
            _ => IpFamily::Unknown(s),
        }
    }
}

impl From<IpFamily> for String {
    fn from(f: IpFamily) -> Self {
        f.to_string()
    }
}

impl fmt::Display for IpFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IpFamily::IPv4 => "IPv4",
            IpFamily::IPv6 => "IPv6",
            IpFamily::Unknown(s) => s,
        })
    }
}

/// Port protocol, parsed case-insensitively (`tcp`, `TCP`, `Tcp`). Unknown values are kept and rejected by
/// validation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
    /// Anything else, as written.
    Unknown(String),
}

impl From<String> for Protocol {
    fn from(s: String) -> Self {
        match s.to_ascii_lowercase().as_str() {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            "sctp" => Protocol::Sctp,
            _ => Protocol::Unknown(s),
        }
    }
}

impl From<Protocol> for String {
    fn from(p: Protocol) -> Self {
        p.to_string()
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
            Protocol::Unknown(s) => s,
        })
    }
}

/// The routing state of a load balancer (IEP-3): its name is the load balancer's, and `networkRef` and
/// `destinations` sit at the top level, not under `spec`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancerRouting {
    /// Metadata; `name` equals the load balancer's.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The network the routing belongs to (`name`; upstream adds `uid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_ref: Option<LocalUidReference>,
    /// The target network interfaces.
    #[serde(default)]
    pub destinations: Vec<RoutingDestination>,
}

/// One `LoadBalancerRouting` destination: the seeds' `{name, uid}` (one per interface), or upstream's
/// `{ip, targetRef {uid, name, providerID}}` (one per interface IP: a dual-stack interface appears twice).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoutingDestination {
    /// NetworkInterface name (the seeds').
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// NetworkInterface UID (the seeds').
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// The target IP, an address of the interface (upstream's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// The interface providing the destination (upstream's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_ref: Option<TargetRef>,
}

impl RoutingDestination {
    /// The name of the destination's NetworkInterface: `name` (the seeds'), else `targetRef.name` (upstream's);
    /// `None` when neither is set (an upstream destination by IP only).
    pub fn interface_name(&self) -> Option<&str> {
        Some(self.name.as_str()).filter(|n| !n.is_empty()).or_else(|| {
            self.target_ref
                .as_ref()
                .map(|t| t.name.as_str())
                .filter(|n| !n.is_empty())
        })
    }
}

/// Upstream's `LoadBalancerTargetRef`: the NetworkInterface behind a routing destination.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetRef {
    /// The interface's UID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// The interface's name.
    #[serde(default)]
    pub name: String,
    /// The interface's `spec.providerID`.
    #[serde(rename = "providerID", default, skip_serializing_if = "Option::is_none")]
    pub provider_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_case_insensitive() {
        for s in ["tcp", "TCP", "Tcp", "tCp"] {
            assert_eq!(Protocol::from(s.to_string()), Protocol::Tcp);
        }
        assert_eq!(Protocol::from("Udp".to_string()), Protocol::Udp);
        assert_eq!(Protocol::from("sctp".to_string()), Protocol::Sctp);
        assert_eq!(
            Protocol::from("icmp".to_string()),
            Protocol::Unknown("icmp".into())
        );
    }

    #[test]
    fn status_ips_both_forms() {
        let s: LoadBalancerStatus = serde_norway::from_str("ips:\n- 1.2.3.4\n- ip: \"2001::\"\n").unwrap();
        assert_eq!(s.ips[0].ip, "1.2.3.4");
        assert_eq!(s.ips[1].ip, "2001::");
        // IEP-3 writes `- 2001::` unquoted, which YAML reads as a one-key mapping.
        let s: LoadBalancerStatus = serde_norway::from_str("ips:\n- 45.86.152.88\n- 2001::\n").unwrap();
        assert_eq!(s.ips[1].ip, "2001::");
    }
}
