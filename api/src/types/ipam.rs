//! `ipam.ironcore.dev/v1alpha1` `Prefix`.

use super::loadbalancer::IpFamily;
use super::meta::{LocalObjectReference, ObjectMeta};
use super::selector::LabelSelector;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// An IPAM prefix, from which ephemeral load balancer IPs are allocated (IEP-8).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Prefix {
    /// Metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Spec.
    #[serde(default)]
    pub spec: PrefixSpec,
}

/// `Prefix.spec`. A root Prefix has `prefix`; a child Prefix (upstream's: IronCore creates one per ephemeral IP,
/// named `<owner>-<index>`) names its parent (`parentRef` or `parentSelector`) and a `prefixLength`, and has
/// `prefix` once IPAM has allocated it (until then it is pending).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrefixSpec {
    /// The prefix in CIDR notation, e.g. `2607:f0d0:1002:51::/64` (checked by validation); unset while pending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// The family; when set it must match `prefix`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_family: Option<IpFamily>,
    /// The length IPAM is to allocate (upstream).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_length: Option<i64>,
    /// The parent Prefix to allocate from (upstream).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_ref: Option<LocalObjectReference>,
    /// Parent Prefixes by label (upstream); only whether it is set is read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_selector: Option<LabelSelector>,
}

/// Parses `addr/len` CIDR notation; the length must fit the family. Host bits may be set (kept in the result;
/// `IpNet::trunc` clears them).
pub fn parse_cidr(s: &str) -> Option<IpNet> {
    let (addr, len) = s.split_once('/')?;
    IpNet::new(addr.parse().ok()?, len.parse().ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr() {
        let n = parse_cidr("2607:f0d0:1002:51::/64").unwrap();
        assert_eq!(n.prefix_len(), 64);
        assert!(n.contains(&"2607:f0d0:1002:51::4".parse::<std::net::IpAddr>().unwrap()));
        assert!(parse_cidr("10.0.0.0/33").is_none());
        assert!(parse_cidr("10.0.0.0").is_none());
        assert!(parse_cidr("10.0.0.0/x").is_none());
        assert_eq!(parse_cidr("10.0.0.5/024").unwrap().to_string(), "10.0.0.5/24");
    }
}
