//! The allocator's state file: the JSON shape (`version`, `lbs`, `cursors`), written from borrows without copying
//! the state, and read back with every invariant of the allocator checked (a file violating one is corrupt).

use super::{AllocError, AllocState, LbAlloc, PrefixCursor};
use crate::api::ipam::parse_cidr;
use crate::api::ObjectKey;
use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize, Serializer};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::Path;

const FORMAT_VERSION: u32 = 1;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Persisted {
    version: u32,
    #[serde(default)]
    lbs: Vec<PersistedLb>,
    #[serde(default)]
    cursors: Vec<PersistedCursor>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PersistedLb {
    namespace: String,
    name: String,
    #[serde(default)]
    lb_id: Option<u32>,
    #[serde(default)]
    public_ips: Vec<IpAddr>,
    #[serde(default)]
    prefix_ips: Vec<PersistedPrefixIp>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PersistedPrefixIp {
    prefix_namespace: String,
    prefix_name: String,
    ip: IpAddr,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PersistedCursor {
    namespace: String,
    name: String,
    cidr: String,
    next: IpAddr,
}

impl Serialize for AllocState {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // The shape `Persisted` reads.
        let mut s = serializer.serialize_struct("Persisted", 3)?;
        s.serialize_field("version", &FORMAT_VERSION)?;
        s.serialize_field(
            "lbs",
            &SeqOf(|| {
                self.lbs.iter().map(|(k, a)| LbRef {
                    namespace: &k.namespace,
                    name: &k.name,
                    lb_id: a.lb_id,
                    public_ips: &a.public_ips,
                    prefix_ips: PrefixIpsRef(&a.prefix_ips),
                })
            }),
        )?;
        s.serialize_field(
            "cursors",
            &SeqOf(|| {
                self.cursors.iter().map(|(k, c)| CursorRef {
                    namespace: &k.namespace,
                    name: &k.name,
                    cidr: c.cidr.to_string(),
                    next: c.next,
                })
            }),
        )?;
        s.end()
    }
}

/// Serializes the items of the iterator the closure makes as a sequence.
struct SeqOf<F>(F);

impl<F, I> Serialize for SeqOf<F>
where
    F: Fn() -> I,
    I: Iterator,
    I::Item: Serialize,
{
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq((self.0)())
    }
}

#[derive(Serialize)]
struct LbRef<'a> {
    namespace: &'a str,
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    lb_id: Option<u32>,
    #[serde(skip_serializing_if = "<[IpAddr]>::is_empty")]
    public_ips: &'a [IpAddr],
    #[serde(skip_serializing_if = "PrefixIpsRef::is_empty")]
    prefix_ips: PrefixIpsRef<'a>,
}

struct PrefixIpsRef<'a>(&'a BTreeMap<ObjectKey, IpAddr>);

impl PrefixIpsRef<'_> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for PrefixIpsRef<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(|(p, &ip)| PrefixIpRef {
            prefix_namespace: &p.namespace,
            prefix_name: &p.name,
            ip,
        }))
    }
}

#[derive(Serialize)]
struct PrefixIpRef<'a> {
    prefix_namespace: &'a str,
    prefix_name: &'a str,
    ip: IpAddr,
}

#[derive(Serialize)]
struct CursorRef<'a> {
    namespace: &'a str,
    name: &'a str,
    cidr: String,
    next: IpAddr,
}

impl TryFrom<Persisted> for AllocState {
    type Error = String;

    fn try_from(p: Persisted) -> Result<Self, String> {
        if p.version != FORMAT_VERSION {
            return Err(format!(
                "unsupported version {} (expected {FORMAT_VERSION})",
                p.version
            ));
        }
        let mut s = AllocState::default();
        let mut ids = BTreeSet::new();
        let mut public = BTreeSet::new();
        let mut prefixed = BTreeSet::new();
        for lb in p.lbs {
            let key = ObjectKey::new(lb.namespace, lb.name);
            if let Some(id) = lb.lb_id {
                if !ids.insert(id) {
                    return Err(format!("lb_id {id} held twice (again by {key})"));
                }
            }
            let mut families = BTreeSet::new();
            for ip in &lb.public_ips {
                if !public.insert(*ip) {
                    return Err(format!("public IP {ip} held twice (again by {key})"));
                }
                if !families.insert(ip.is_ipv4()) {
                    return Err(format!("{key} holds two public IPs of one family"));
                }
            }
            let mut prefix_ips = BTreeMap::new();
            for pi in lb.prefix_ips {
                let prefix = ObjectKey::new(pi.prefix_namespace, pi.prefix_name);
                if !prefixed.insert((prefix.clone(), pi.ip)) {
                    return Err(format!("IP {} of prefix {prefix} held twice", pi.ip));
                }
                if prefix_ips.insert(prefix.clone(), pi.ip).is_some() {
                    return Err(format!("{key} holds two IPs of prefix {prefix}"));
                }
            }
            let a = LbAlloc {
                lb_id: lb.lb_id,
                public_ips: lb.public_ips,
                prefix_ips,
            };
            if s.lbs.insert(key.clone(), a).is_some() {
                return Err(format!("load balancer {key} listed twice"));
            }
        }
        for c in p.cursors {
            let cidr = parse_cidr(&c.cidr).ok_or_else(|| format!("bad cursor CIDR {:?}", c.cidr))?;
            if c.next.is_ipv4() != cidr.addr().is_ipv4() {
                return Err(format!("cursor {} does not match CIDR {}", c.next, c.cidr));
            }
            let key = ObjectKey::new(c.namespace, c.name);
            let cursor = PrefixCursor {
                cidr: cidr.trunc(),
                next: c.next,
            };
            if s.cursors.insert(key.clone(), cursor).is_some() {
                return Err(format!("cursor of prefix {key} listed twice"));
            }
        }
        Ok(s)
    }
}

pub(super) fn parse_state(path: &Path, bytes: &[u8]) -> Result<AllocState, AllocError> {
    serde_json::from_slice(bytes).map_err(|e| AllocError::Corrupt {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}
