//! Allocation records: what the controller decided for each LoadBalancer (lb_id, public IPs, Prefix IPs), which
//! every agent programs as given, so that all hosts hold byte-identical tables (docs/cluster.md "Allocations").
//!
//! One key per LoadBalancer, `PREFIX_ironlb/allocations/<namespace>/<name>`, whose value is JSON:
//! `{"lbId": 1, "publicIps": ["203.0.113.10"], "prefixIps": [{"namespace": "default", "name": "p", "ip": "..."}]}`.

use ironlb_api::ObjectKey;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// The area of the allocation records under `PREFIX_ironlb/`.
pub const AREA: &str = "allocations";

/// What one LoadBalancer was given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allocation {
    /// Its lb_id.
    pub lb_id: u32,
    /// Public IPs (at most one per family).
    pub public_ips: Vec<IpAddr>,
    /// One IP per Prefix it draws from.
    pub prefix_ips: BTreeMap<ObjectKey, IpAddr>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Repr {
    lb_id: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    public_ips: Vec<IpAddr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    prefix_ips: Vec<PrefixIp>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PrefixIp {
    namespace: String,
    name: String,
    ip: IpAddr,
}

impl Allocation {
    /// The stored bytes.
    pub fn encode(&self) -> Vec<u8> {
        let r = Repr {
            lb_id: self.lb_id,
            public_ips: self.public_ips.clone(),
            prefix_ips: self
                .prefix_ips
                .iter()
                .map(|(k, ip)| PrefixIp {
                    namespace: k.namespace.clone(),
                    name: k.name.clone(),
                    ip: *ip,
                })
                .collect(),
        };
        serde_json::to_vec(&r).expect("an allocation serializes")
    }

    /// The record stored as `bytes`.
    pub fn decode(bytes: &[u8]) -> Result<Allocation, String> {
        let r: Repr = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        let mut prefix_ips = BTreeMap::new();
        for p in r.prefix_ips {
            if prefix_ips
                .insert(ObjectKey::new(p.namespace, p.name), p.ip)
                .is_some()
            {
                return Err("a Prefix is listed twice".into());
            }
        }
        Ok(Allocation {
            lb_id: r.lb_id,
            public_ips: r.public_ips,
            prefix_ips,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let a = Allocation {
            lb_id: 7,
            public_ips: vec![
                "203.0.113.10".parse().unwrap(),
                "2001:db8:ff::10".parse().unwrap(),
            ],
            prefix_ips: [(ObjectKey::new("default", "p"), "10.0.0.9".parse().unwrap())].into(),
        };
        let b = a.encode();
        assert_eq!(Allocation::decode(&b), Ok(a));
        assert_eq!(
            String::from_utf8(
                Allocation {
                    lb_id: 1,
                    ..Allocation::default()
                }
                .encode()
            )
            .unwrap(),
            r#"{"lbId":1}"#
        );
        assert!(Allocation::decode(br#"{"lbId":1,"bogus":2}"#).is_err());
        assert!(Allocation::decode(br#"{"publicIps":[]}"#).is_err());
    }
}
