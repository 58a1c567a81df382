//! Durable allocator for load balancer ids, public IPs and ephemeral prefix IPs.
//!
//! The controller's [`desired_specs`](crate::controller::desired_specs) takes `lb_ids` and `allocated` IPs as
//! inputs; [`Allocator`] produces them and keeps them stable across restarts. The whole state lives in one JSON
//! file that is replaced crash-safely on every mutation: write `PATH.tmp`, fsync it, rename it over `PATH`, fsync
//! the directory. A mutating call returns only after the new state is durable, and the in-memory state is only
//! updated once the write succeeded, so memory and disk never disagree.
//!
//! Invariants (checked again when loading; a file violating them is rejected as corrupt):
//! - an lb_id is held by at most one load balancer;
//! - a public IP is held by at most one load balancer (and at most one per family per load balancer);
//! - an IP from a Prefix is held by at most one (load balancer, prefix) pair.

use crate::api::ipam::parse_cidr;
use crate::api::IpFamily;
use crate::controller::ObjectKey;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

/// Allocation errors.
#[derive(Debug, thiserror::Error)]
pub enum AllocError {
    /// Reading or writing the state file failed.
    #[error("allocator state {}: {source}", path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The state file exists but does not hold a valid state. Never reset silently.
    #[error("allocator state {} is corrupt: {reason}", path.display())]
    Corrupt {
        /// The state file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A `--public-pool` value is not a usable CIDR.
    #[error("bad public pool {value:?}: {reason}")]
    BadPool {
        /// The value as given.
        value: String,
        /// Why it is rejected.
        reason: String,
    },
    /// No free value left (e.g. all lb_ids below the device's cap are taken).
    #[error("no free {what} left")]
    Exhausted {
        /// What ran out.
        what: &'static str,
    },
    /// The public pools of a family have no free address (or there is no pool of that family).
    #[error("public {family} pool exhausted")]
    PoolExhausted {
        /// The family.
        family: IpFamily,
    },
    /// The Prefix has no free address.
    #[error("prefix {}/{} exhausted", prefix.0, prefix.1)]
    PrefixExhausted {
        /// The Prefix (namespace, name).
        prefix: ObjectKey,
    },
    /// An IP family the allocator cannot serve.
    #[error("unsupported IP family {family}")]
    UnsupportedFamily {
        /// The family as written.
        family: IpFamily,
    },
}

impl AllocError {
    /// A short CamelCase reason for status conditions.
    pub fn reason(&self) -> &'static str {
        match self {
            AllocError::Io { .. } => "AllocatorIoError",
            AllocError::Corrupt { .. } => "AllocatorStateCorrupt",
            AllocError::BadPool { .. } => "BadPool",
            AllocError::Exhausted { .. } => "Exhausted",
            AllocError::PoolExhausted { .. } => "PoolExhausted",
            AllocError::PrefixExhausted { .. } => "PrefixExhausted",
            AllocError::UnsupportedFamily { .. } => "UnsupportedFamily",
        }
    }
}

/// Public address pools, per family. CIDRs are stored normalized (host bits cleared).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pools {
    /// IPv4 pools.
    pub public_v4: Vec<(IpAddr, u8)>,
    /// IPv6 pools.
    pub public_v6: Vec<(IpAddr, u8)>,
}

impl Pools {
    /// Parses `--public-pool` values: each `ADDR/LEN`, or several separated by commas. Host bits must be clear.
    pub fn parse(values: &[String]) -> Result<Pools, AllocError> {
        let mut pools = Pools::default();
        for value in values {
            for part in value.split(',') {
                let part = part.trim();
                let bad = |reason: String| AllocError::BadPool {
                    value: part.to_string(),
                    reason,
                };
                if part.is_empty() {
                    return Err(AllocError::BadPool {
                        value: value.clone(),
                        reason: "empty pool".to_string(),
                    });
                }
                let (addr, len) = parse_cidr(part).ok_or_else(|| {
                    bad("expected ADDR/LEN CIDR notation, e.g. 203.0.113.0/24 or 2001:db8::/64".to_string())
                })?;
                let net = network(addr, len);
                if net != addr {
                    return Err(bad(format!("host bits set; did you mean {net}/{len}?")));
                }
                match addr {
                    IpAddr::V4(_) => pools.public_v4.push((net, len)),
                    IpAddr::V6(_) => pools.public_v6.push((net, len)),
                }
            }
        }
        Ok(pools)
    }

    fn of(&self, family: &IpFamily) -> Option<&[(IpAddr, u8)]> {
        match family {
            IpFamily::IPv4 => Some(&self.public_v4),
            IpFamily::IPv6 => Some(&self.public_v6),
            IpFamily::Unknown(_) => None,
        }
    }
}

/// What one load balancer holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LbAlloc {
    /// Its lb_id, once allocated.
    pub lb_id: Option<u32>,
    /// Public IPs, at most one per family, in the order last requested.
    pub public_ips: Vec<IpAddr>,
    /// One IP per Prefix it draws from.
    pub prefix_ips: BTreeMap<ObjectKey, IpAddr>,
}

impl LbAlloc {
    fn is_empty(&self) -> bool {
        self.lb_id.is_none() && self.public_ips.is_empty() && self.prefix_ips.is_empty()
    }
}

/// Where sequential allocation from a Prefix continues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefixCursor {
    /// The Prefix's CIDR (normalized) the cursor belongs to; a changed CIDR restarts at its beginning.
    pub cidr: (IpAddr, u8),
    /// The next candidate address.
    pub next: IpAddr,
}

/// The complete allocator state, as persisted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Persisted", into = "Persisted")]
pub struct AllocState {
    /// Per load balancer.
    pub lbs: BTreeMap<ObjectKey, LbAlloc>,
    /// Per Prefix.
    pub cursors: BTreeMap<ObjectKey, PrefixCursor>,
}

const FORMAT_VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Persisted {
    version: u32,
    #[serde(default)]
    lbs: Vec<PersistedLb>,
    #[serde(default)]
    cursors: Vec<PersistedCursor>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PersistedLb {
    namespace: String,
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lb_id: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    public_ips: Vec<IpAddr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    prefix_ips: Vec<PersistedPrefixIp>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PersistedPrefixIp {
    prefix_namespace: String,
    prefix_name: String,
    ip: IpAddr,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PersistedCursor {
    namespace: String,
    name: String,
    cidr: String,
    next: IpAddr,
}

impl From<AllocState> for Persisted {
    fn from(s: AllocState) -> Self {
        Persisted {
            version: FORMAT_VERSION,
            lbs: s
                .lbs
                .into_iter()
                .map(|((namespace, name), a)| PersistedLb {
                    namespace,
                    name,
                    lb_id: a.lb_id,
                    public_ips: a.public_ips,
                    prefix_ips: a
                        .prefix_ips
                        .into_iter()
                        .map(|((prefix_namespace, prefix_name), ip)| PersistedPrefixIp {
                            prefix_namespace,
                            prefix_name,
                            ip,
                        })
                        .collect(),
                })
                .collect(),
            cursors: s
                .cursors
                .into_iter()
                .map(|((namespace, name), c)| PersistedCursor {
                    namespace,
                    name,
                    cidr: format!("{}/{}", c.cidr.0, c.cidr.1),
                    next: c.next,
                })
                .collect(),
        }
    }
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
            let key = (lb.namespace, lb.name);
            if let Some(id) = lb.lb_id {
                if !ids.insert(id) {
                    return Err(format!("lb_id {id} held twice (again by {}/{})", key.0, key.1));
                }
            }
            let mut families = BTreeSet::new();
            for ip in &lb.public_ips {
                if !public.insert(*ip) {
                    return Err(format!(
                        "public IP {ip} held twice (again by {}/{})",
                        key.0, key.1
                    ));
                }
                if !families.insert(ip.is_ipv4()) {
                    return Err(format!("{}/{} holds two public IPs of one family", key.0, key.1));
                }
            }
            let mut prefix_ips = BTreeMap::new();
            for pi in lb.prefix_ips {
                let prefix = (pi.prefix_namespace, pi.prefix_name);
                if !prefixed.insert((prefix.clone(), pi.ip)) {
                    return Err(format!(
                        "IP {} of prefix {}/{} held twice",
                        pi.ip, prefix.0, prefix.1
                    ));
                }
                if prefix_ips.insert(prefix.clone(), pi.ip).is_some() {
                    return Err(format!(
                        "{}/{} holds two IPs of prefix {}/{}",
                        key.0, key.1, prefix.0, prefix.1
                    ));
                }
            }
            let a = LbAlloc {
                lb_id: lb.lb_id,
                public_ips: lb.public_ips,
                prefix_ips,
            };
            if s.lbs.insert(key.clone(), a).is_some() {
                return Err(format!("load balancer {}/{} listed twice", key.0, key.1));
            }
        }
        for c in p.cursors {
            let cidr = parse_cidr(&c.cidr).ok_or_else(|| format!("bad cursor CIDR {:?}", c.cidr))?;
            if c.next.is_ipv4() != cidr.0.is_ipv4() {
                return Err(format!("cursor {} does not match CIDR {}", c.next, c.cidr));
            }
            let key = (c.namespace, c.name);
            let cursor = PrefixCursor {
                cidr: (network(cidr.0, cidr.1), cidr.1),
                next: c.next,
            };
            if s.cursors.insert(key.clone(), cursor).is_some() {
                return Err(format!("cursor of prefix {}/{} listed twice", key.0, key.1));
            }
        }
        Ok(s)
    }
}

/// The durable allocator. See the module documentation.
#[derive(Debug)]
pub struct Allocator {
    path: PathBuf,
    pools: Pools,
    lb_id_cap: u32,
    state: AllocState,
}

impl Allocator {
    /// Opens (or creates) the state at `path`. lb_ids are allocated from `0..lb_id_cap` (the device's
    /// `CAP_LB_IDS`). A missing file starts empty; an unreadable or corrupt one is an error naming it. A stale
    /// `PATH.tmp` from an interrupted write is removed (the file at `path` is authoritative).
    pub fn open(path: &Path, pools: Pools, lb_id_cap: u32) -> Result<Allocator, AllocError> {
        let path = path.to_path_buf();
        let tmp = tmp_path(&path);
        match fs::remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(AllocError::Io { path: tmp, source }),
        }
        let (state, exists) = match fs::read(&path) {
            Ok(bytes) => (parse_state(&path, &bytes)?, true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => (AllocState::default(), false),
            Err(source) => return Err(AllocError::Io { path, source }),
        };
        let a = Allocator {
            path,
            pools,
            lb_id_cap,
            state,
        };
        if !exists {
            // Fail early when the location is not writable.
            a.persist(&a.state)?;
        }
        Ok(a)
    }

    /// Reads and validates the state file at `path` without opening an allocator.
    pub fn load_state(path: &Path) -> Result<AllocState, AllocError> {
        let bytes = fs::read(path).map_err(|source| AllocError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        parse_state(path, &bytes)
    }

    /// The state file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The current (persisted) state.
    pub fn state(&self) -> &AllocState {
        &self.state
    }

    /// The load balancer's lb_id: its existing one, else the lowest free id below the cap.
    pub fn lb_id(&mut self, key: &ObjectKey) -> Result<u32, AllocError> {
        if let Some(id) = self.state.lbs.get(key).and_then(|a| a.lb_id) {
            if id < self.lb_id_cap {
                return Ok(id);
            }
        }
        let used: BTreeSet<u32> = self
            .state
            .lbs
            .iter()
            .filter(|(k, _)| *k != key)
            .filter_map(|(_, a)| a.lb_id)
            .collect();
        // Lowest free id: at most used.len() + 1 candidates.
        let id = (0..self.lb_id_cap)
            .find(|id| !used.contains(id))
            .ok_or(AllocError::Exhausted { what: "lb_id" })?;
        let mut next = self.state.clone();
        next.lbs.entry(key.clone()).or_default().lb_id = Some(id);
        self.commit(next)?;
        Ok(id)
    }

    /// One public IP per requested family (duplicates ignored), in request order. Existing addresses that are
    /// still in a pool are kept; public IPs of families no longer requested are released. On error nothing
    /// changes.
    pub fn public_ips(&mut self, key: &ObjectKey, families: &[IpFamily]) -> Result<Vec<IpAddr>, AllocError> {
        let mut wanted: Vec<&IpFamily> = Vec::new();
        for f in families {
            if !wanted.contains(&f) {
                wanted.push(f);
            }
        }
        let current: Vec<IpAddr> = self
            .state
            .lbs
            .get(key)
            .map(|a| a.public_ips.clone())
            .unwrap_or_default();
        let used: BTreeSet<IpAddr> = self
            .state
            .lbs
            .iter()
            .filter(|(k, _)| *k != key)
            .flat_map(|(_, a)| a.public_ips.iter().copied())
            .collect();
        let mut out = Vec::with_capacity(wanted.len());
        for family in wanted {
            let pools = self
                .pools
                .of(family)
                .ok_or_else(|| AllocError::UnsupportedFamily {
                    family: family.clone(),
                })?;
            let keep = current.iter().copied().find(|ip| {
                IpFamily::of(ip) == *family
                    && pools.iter().any(|&(net, len)| pool_range(net, len).contains(ip))
            });
            let ip = match keep {
                Some(ip) => ip,
                None => pools
                    .iter()
                    .find_map(|&(net, len)| pool_range(net, len).lowest_free(&used))
                    .ok_or_else(|| AllocError::PoolExhausted {
                        family: family.clone(),
                    })?,
            };
            out.push(ip);
        }
        if out != current {
            let mut next = self.state.clone();
            let entry = next.lbs.entry(key.clone()).or_default();
            entry.public_ips = out.clone();
            if entry.is_empty() {
                next.lbs.remove(key);
            }
            self.commit(next)?;
        }
        Ok(out)
    }

    /// One address (a /32 or /128) from the Prefix `prefix_name` whose CIDR is `cidr`, for this load balancer.
    /// The existing one is kept while it lies in `cidr`; new ones are taken sequentially from the Prefix's cursor
    /// (wrapping around), so the search touches at most (allocated + 1) candidates.
    pub fn prefix_ip(
        &mut self,
        key: &ObjectKey,
        prefix_name: &ObjectKey,
        cidr: (IpAddr, u8),
    ) -> Result<IpAddr, AllocError> {
        let range = Range::of(cidr.0, cidr.1);
        let cidr = (network(cidr.0, cidr.1), cidr.1);
        if let Some(&ip) = self
            .state
            .lbs
            .get(key)
            .and_then(|a| a.prefix_ips.get(prefix_name))
        {
            if range.contains(&ip) {
                return Ok(ip);
            }
        }
        let used: BTreeSet<IpAddr> = self
            .state
            .lbs
            .iter()
            .filter(|(k, _)| *k != key)
            .filter_map(|(_, a)| a.prefix_ips.get(prefix_name).copied())
            .filter(|ip| range.contains(ip))
            .collect();
        let exhausted = || AllocError::PrefixExhausted {
            prefix: prefix_name.clone(),
        };
        // used.len() >= size, where size - 1 == last - first.
        if used.len() as u128 > range.last - range.first {
            return Err(exhausted());
        }
        let start = match self.state.cursors.get(prefix_name) {
            Some(c) if c.cidr == cidr && range.contains(&c.next) => to_u128(c.next),
            _ => range.first,
        };
        let mut cand = start;
        let mut found = None;
        for _ in 0..=used.len() {
            if !used.contains(&range.addr(cand)) {
                found = Some(cand);
                break;
            }
            cand = range.wrapping_next(cand);
        }
        let found = found.ok_or_else(exhausted)?;
        let ip = range.addr(found);
        let mut next = self.state.clone();
        next.lbs
            .entry(key.clone())
            .or_default()
            .prefix_ips
            .insert(prefix_name.clone(), ip);
        next.cursors.insert(
            prefix_name.clone(),
            PrefixCursor {
                cidr,
                next: range.addr(range.wrapping_next(found)),
            },
        );
        self.commit(next)?;
        Ok(ip)
    }

    /// Releases the load balancer's prefix IPs from Prefixes not in `live` (it stopped referencing them).
    pub fn retain_prefix_ips(
        &mut self,
        key: &ObjectKey,
        live: &BTreeSet<ObjectKey>,
    ) -> Result<(), AllocError> {
        let Some(a) = self.state.lbs.get(key) else {
            return Ok(());
        };
        if a.prefix_ips.keys().all(|p| live.contains(p)) {
            return Ok(());
        }
        let mut next = self.state.clone();
        if let Some(a) = next.lbs.get_mut(key) {
            a.prefix_ips.retain(|p, _| live.contains(p));
            if a.is_empty() {
                next.lbs.remove(key);
            }
        }
        self.commit(next)
    }

    /// Frees everything the load balancer holds (it was deleted).
    pub fn release(&mut self, key: &ObjectKey) -> Result<(), AllocError> {
        if !self.state.lbs.contains_key(key) {
            return Ok(());
        }
        let mut next = self.state.clone();
        next.lbs.remove(key);
        self.commit(next)
    }

    /// Releases every load balancer not in `live` (garbage collection after a sync).
    pub fn retain(&mut self, live: &BTreeSet<ObjectKey>) -> Result<(), AllocError> {
        if self.state.lbs.keys().all(|k| live.contains(k)) {
            return Ok(());
        }
        let mut next = self.state.clone();
        next.lbs.retain(|k, _| live.contains(k));
        self.commit(next)
    }

    /// `(lb_ids, allocated)` in the shapes [`desired_specs`](crate::controller::desired_specs) takes. `allocated`
    /// lists public IPs then prefix IPs (by Prefix key) and only has load balancers holding at least one IP.
    #[allow(clippy::type_complexity)]
    pub fn snapshot(&self) -> (BTreeMap<ObjectKey, u32>, BTreeMap<ObjectKey, Vec<IpAddr>>) {
        let mut ids = BTreeMap::new();
        let mut allocated = BTreeMap::new();
        for (k, a) in &self.state.lbs {
            if let Some(id) = a.lb_id {
                ids.insert(k.clone(), id);
            }
            let ips: Vec<IpAddr> = a
                .public_ips
                .iter()
                .chain(a.prefix_ips.values())
                .copied()
                .collect();
            if !ips.is_empty() {
                allocated.insert(k.clone(), ips);
            }
        }
        (ids, allocated)
    }

    fn commit(&mut self, next: AllocState) -> Result<(), AllocError> {
        self.persist(&next)?;
        self.state = next;
        Ok(())
    }

    fn persist(&self, state: &AllocState) -> Result<(), AllocError> {
        let mut bytes = serde_json::to_vec_pretty(state).map_err(|e| AllocError::Io {
            path: self.path.clone(),
            source: io::Error::other(e),
        })?;
        bytes.push(b'\n');
        let tmp = tmp_path(&self.path);
        let io_tmp = |source| AllocError::Io {
            path: tmp.clone(),
            source,
        };
        {
            let mut f = File::create(&tmp).map_err(io_tmp)?;
            f.write_all(&bytes).map_err(io_tmp)?;
            f.sync_all().map_err(io_tmp)?;
        }
        fs::rename(&tmp, &self.path).map_err(|source| {
            let _ = fs::remove_file(&tmp);
            AllocError::Io {
                path: self.path.clone(),
                source,
            }
        })?;
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(|source| AllocError::Io { path: dir, source })
    }
}

fn parse_state(path: &Path, bytes: &[u8]) -> Result<AllocState, AllocError> {
    serde_json::from_slice(bytes).map_err(|e| AllocError::Corrupt {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut s = OsString::from(path.as_os_str());
    s.push(".tmp");
    PathBuf::from(s)
}

fn host_mask(ip: IpAddr, len: u8) -> u128 {
    let bits: u32 = if ip.is_ipv4() { 32 } else { 128 };
    let host = bits.saturating_sub(u32::from(len));
    if host >= 128 {
        u128::MAX
    } else {
        (1u128 << host) - 1
    }
}

fn network(ip: IpAddr, len: u8) -> IpAddr {
    from_u128(to_u128(ip) & !host_mask(ip, len), ip.is_ipv4())
}

fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

fn from_u128(v: u128, v4: bool) -> IpAddr {
    if v4 {
        IpAddr::V4(Ipv4Addr::from(v as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(v))
    }
}

/// An inclusive address range of one family, as integers. May be empty (`first > last`).
#[derive(Debug, Clone, Copy)]
struct Range {
    v4: bool,
    first: u128,
    last: u128,
}

impl Range {
    fn of(net: IpAddr, len: u8) -> Range {
        let first = to_u128(net) & !host_mask(net, len);
        Range {
            v4: net.is_ipv4(),
            first,
            last: first | host_mask(net, len),
        }
    }

    fn contains(&self, ip: &IpAddr) -> bool {
        ip.is_ipv4() == self.v4 && (self.first..=self.last).contains(&to_u128(*ip))
    }

    fn addr(&self, v: u128) -> IpAddr {
        from_u128(v, self.v4)
    }

    fn wrapping_next(&self, v: u128) -> u128 {
        if v >= self.last {
            self.first
        } else {
            v + 1
        }
    }

    /// The lowest address not in `used`; touches at most `used.len() + 1` candidates.
    fn lowest_free(&self, used: &BTreeSet<IpAddr>) -> Option<IpAddr> {
        let mut cand = self.first;
        while cand <= self.last {
            let ip = self.addr(cand);
            if !used.contains(&ip) {
                return Some(ip);
            }
            cand = cand.checked_add(1)?;
        }
        None
    }
}

/// The usable addresses of a public pool: IPv4 pools shorter than /31 lose their network and broadcast address.
fn pool_range(net: IpAddr, len: u8) -> Range {
    let mut r = Range::of(net, len);
    if r.v4 && len < 31 {
        r.first += 1;
        r.last -= 1;
    }
    r
}
