//! `ipam.ironcore.dev/v1alpha1` `Prefix`.

use super::loadbalancer::IpFamily;
use super::meta::ObjectMeta;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

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

/// `Prefix.spec`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrefixSpec {
    /// The prefix in CIDR notation, e.g. `2607:f0d0:1002:51::/64` (checked by validation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// The family; when set it must match `prefix`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_family: Option<IpFamily>,
}

/// Parses `addr/len` CIDR notation; the length must fit the family. Host bits may be set.
pub fn parse_cidr(s: &str) -> Option<(IpAddr, u8)> {
    let (addr, len) = s.split_once('/')?;
    let addr: IpAddr = addr.parse().ok()?;
    let len: u8 = len.parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    (len <= max).then_some((addr, len))
}

/// Whether `ip` lies in `net/len`.
pub fn cidr_contains(net: IpAddr, len: u8, ip: IpAddr) -> bool {
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            let mask = if len == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(len))
            };
            u32::from(n) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => {
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(len))
            };
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr() {
        let (n, l) = parse_cidr("2607:f0d0:1002:51::/64").unwrap();
        assert_eq!(l, 64);
        assert!(cidr_contains(n, l, "2607:f0d0:1002:51::4".parse().unwrap()));
        assert!(!cidr_contains(n, l, "2607:f0d0:1002:52::4".parse().unwrap()));
        assert!(!cidr_contains(n, l, "10.0.0.1".parse().unwrap()));
        assert!(parse_cidr("10.0.0.0/33").is_none());
        assert!(parse_cidr("10.0.0.0").is_none());
        let (n, l) = parse_cidr("0.0.0.0/0").unwrap();
        assert!(cidr_contains(n, l, "1.2.3.4".parse().unwrap()));
    }
}
