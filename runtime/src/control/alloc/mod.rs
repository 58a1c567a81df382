//! Durable allocator for load balancer ids, public IPs and ephemeral prefix IPs.
//!
//! The controller's [`desired_specs`](crate::controller::desired_specs) takes `lb_ids` and `allocated` IPs as
//! inputs; [`Allocator`] produces them and keeps them stable across restarts. The whole state lives in one JSON
//! file that is replaced crash-safely: write `PATH.tmp`, fsync it, rename it over `PATH`, fsync the directory.
//!
//! # Durability
//!
//! Outside a batch, a mutating call returns only after the new state is durable; if writing fails, the call puts
//! memory back as it was and returns the error, so memory and disk never disagree. A call that changes nothing
//! writes nothing.
//!
//! [`Allocator::batch`] groups many calls into one write (a cold start allocating for thousands of load balancers
//! writes once, not once per call):
//! - inside the closure, mutating calls change memory only; their results are visible to later calls of the same
//!   batch (nothing is handed out twice), and [`Allocator::state`] shows them;
//! - when the closure returns, the state is persisted once, if it changed. If that write fails, memory is rolled
//!   back to what it was before the batch and the error is returned: `Err` means nothing from the batch was
//!   allocated or released. Whatever the closure changed is committed, whatever it returns (an `Err` of its own
//!   included): a call that fails inside a batch has changed nothing, the calls before it stand;
//! - a `batch` inside a batch joins the outer one: it runs its closure and returns `Ok` without writing; the outer
//!   batch's write (or rollback) covers it;
//! - if the closure panics, memory is rolled back and the panic continues.
//!
//! # Cost
//!
//! Every call costs O(log n) for n load balancers (plus the write outside a batch), except [`Allocator::retain`]
//! and [`Allocator::snapshot`], which are O(n). Used lb_ids, public IPs and per-Prefix IPs are kept in in-memory
//! indexes derived from the state (never persisted): sets stored as maximal runs of consecutive values, so the
//! lowest free value at or after a point is one lookup. They are built on open, updated by every mutation and
//! rebuilt after a rollback. Rollback information is the previous value of each load balancer and Prefix cursor
//! a batch touched, not a copy of the whole state.
//!
//! Invariants (checked again when loading; a file violating them is rejected as corrupt):
//! - an lb_id is held by at most one load balancer;
//! - a public IP is held by at most one load balancer (and at most one per family per load balancer);
//! - an IP from a Prefix is held by at most one (load balancer, prefix) pair.

mod index;
mod persist;

use crate::api::ipam::parse_cidr;
use crate::api::IpFamily;
use crate::api::ObjectKey;
use index::{pool_range, to_u128, Index, Range};
use ipnet::IpNet;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::mem;
use std::net::IpAddr;
use std::panic::{self, AssertUnwindSafe};
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
    #[error("prefix {prefix} exhausted")]
    PrefixExhausted {
        /// The Prefix (namespace, name).
        prefix: ObjectKey,
    },
    /// Cluster mode (an agent's allocator, [`Allocator::given`]): the controller has not allocated this yet.
    #[error("no {what} allocated by the controller yet")]
    NotGiven {
        /// What is missing.
        what: &'static str,
    },
    /// An IP family the allocator cannot serve.
    #[error("unsupported IP family {family}")]
    UnsupportedFamily {
        /// The family as written.
        family: IpFamily,
    },
}

/// Public address pools, per family. CIDRs are stored normalized (host bits cleared).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pools {
    /// IPv4 pools.
    pub public_v4: Vec<IpNet>,
    /// IPv6 pools.
    pub public_v6: Vec<IpNet>,
}

impl Pools {
    /// Parses `--public-pool` values: each `ADDR/LEN`, or several separated by commas. Host bits must be clear, and
    /// the pool may not contain addresses no VIP may have (`validate::addr::prefix_problem`).
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
                let net = parse_cidr(part).ok_or_else(|| {
                    bad("expected ADDR/LEN CIDR notation, e.g. 203.0.113.0/24 or 2001:db8::/64".to_string())
                })?;
                if net.trunc() != net {
                    return Err(bad(format!("host bits set; did you mean {}?", net.trunc())));
                }
                // A pool may not hand out addresses no VIP may have (0.0.0.0, ::, loopback, multicast, …).
                if let Some(why) = crate::validate::addr::prefix_problem(net) {
                    return Err(bad(why));
                }
                match net {
                    IpNet::V4(_) => pools.public_v4.push(net),
                    IpNet::V6(_) => pools.public_v6.push(net),
                }
            }
        }
        Ok(pools)
    }

    fn of(&self, family: &IpFamily) -> Option<&[IpNet]> {
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
    pub cidr: IpNet,
    /// The next candidate address.
    pub next: IpAddr,
}

/// The complete allocator state, as persisted.
///
/// Serialized as the state file's JSON (written from borrows, without copying the state); deserializing checks
/// the invariants of the module documentation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "persist::Persisted")]
pub struct AllocState {
    /// Per load balancer.
    pub lbs: BTreeMap<ObjectKey, LbAlloc>,
    /// Per Prefix.
    pub cursors: BTreeMap<ObjectKey, PrefixCursor>,
}

/// The durable allocator. See the module documentation.
#[derive(Debug)]
pub struct Allocator {
    path: PathBuf,
    pools: Pools,
    lb_id_cap: u32,
    state: AllocState,
    /// Derived from `state`, never persisted.
    index: Index,
    /// A batch is open: the explicit one of [`Allocator::batch`], or the one around a single mutating call.
    in_batch: bool,
    /// What the entries the open batch touched were before it (empty outside a batch).
    undo: Undo,
    /// Successful writes of the state file.
    persists: u64,
    /// Cluster mode: allocations are given (by the controller, through etcd), never chosen here; nothing is
    /// persisted ([`Allocator::given`]).
    given: bool,
}

impl Allocator {
    /// Opens (or creates) the state at `path`. lb_ids are allocated from `0..lb_id_cap` (the device's
    /// `CAP_LB_IDS`). A missing file starts empty; an unreadable or corrupt one is an error naming it. A stale
    /// `PATH.tmp` from an interrupted write is removed (the file at `path` is authoritative).
    pub fn open(path: &Path, pools: Pools, lb_id_cap: u32) -> Result<Allocator, AllocError> {
        let path = path.to_path_buf();
        let tmp = crate::fsmode::tmp_path(&path);
        match fs::remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(AllocError::Io { path: tmp, source }),
        }
        let (state, exists) = match fs::read(&path) {
            Ok(bytes) => (persist::parse_state(&path, &bytes)?, true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => (AllocState::default(), false),
            Err(source) => return Err(AllocError::Io { path, source }),
        };
        let mut a = Allocator {
            path,
            pools,
            lb_id_cap,
            index: Index::build(&state),
            state,
            in_batch: false,
            undo: Undo::default(),
            persists: 0,
            given: false,
        };
        if !exists {
            // Fail early when the location is not writable.
            a.persist()?;
        }
        Ok(a)
    }

    /// An allocator whose allocations are given, not chosen (a cluster agent's: the controller allocates, every host
    /// programs what it decided). It holds what [`Allocator::set_given`] last set; a load balancer asks for an lb_id
    /// or IP it was not given gets [`AllocError::NotGiven`] (and is not programmed) instead of a new value. Releases
    /// change memory only. No file: the controller's records in etcd are the durable state.
    pub fn given(lb_id_cap: u32) -> Allocator {
        Allocator {
            path: PathBuf::new(),
            pools: Pools::default(),
            lb_id_cap,
            state: AllocState::default(),
            index: Index::default(),
            in_batch: false,
            undo: Undo::default(),
            persists: 0,
            given: true,
        }
    }

    /// Replaces the given allocations (cluster mode; outside a batch).
    pub fn set_given(&mut self, state: AllocState) {
        assert!(
            self.given && !self.in_batch,
            "set_given on a given allocator, outside a batch"
        );
        self.index = Index::build(&state);
        self.state = state;
    }

    /// Reads and validates the state file at `path` without opening an allocator.
    pub fn load_state(path: &Path) -> Result<AllocState, AllocError> {
        let bytes = fs::read(path).map_err(|source| AllocError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        persist::parse_state(path, &bytes)
    }

    /// The state file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The current state: the persisted one, or inside a [`batch`](Allocator::batch) the batch's (not yet
    /// persisted) one.
    pub fn state(&self) -> &AllocState {
        &self.state
    }

    /// How many times this allocator has written the state file successfully (the initial write of a new file
    /// included). A diagnostic: a batch adds at most one.
    pub fn persist_count(&self) -> u64 {
        self.persists
    }

    /// Runs `f` as one batch: mutating calls inside it change memory only, and the state is persisted once at the
    /// end, if it changed. Returns what `f` returns; `Err` when that write failed, in which case memory has been
    /// rolled back to what it was before the batch (nothing from it was allocated or released). A `batch` inside
    /// a batch joins the outer one (its `Ok` is not durable yet). See the module documentation.
    pub fn batch<R>(&mut self, f: impl FnOnce(&mut Allocator) -> R) -> Result<R, AllocError> {
        if self.in_batch {
            return Ok(f(self));
        }
        self.in_batch = true;
        let out = panic::catch_unwind(AssertUnwindSafe(|| f(self)));
        self.in_batch = false;
        let undo = mem::take(&mut self.undo);
        let out = match out {
            Ok(out) => out,
            Err(payload) => {
                self.rollback(undo);
                panic::resume_unwind(payload)
            }
        };
        if undo.changed(&self.state) {
            if let Err(e) = self.persist() {
                self.rollback(undo);
                return Err(e);
            }
        }
        Ok(out)
    }

    /// The load balancer's lb_id: its existing one, else the lowest free id below the cap.
    pub fn lb_id(&mut self, key: &ObjectKey) -> Result<u32, AllocError> {
        self.batch(|a| a.lb_id_in_memory(key))?
    }

    /// One public IP per requested family (duplicates ignored), in request order. Existing addresses that are
    /// still in a pool are kept; public IPs of families no longer requested are released. On error nothing
    /// changes.
    pub fn public_ips(&mut self, key: &ObjectKey, families: &[IpFamily]) -> Result<Vec<IpAddr>, AllocError> {
        self.batch(|a| a.public_ips_in_memory(key, families, &[]))?
    }

    /// [`Allocator::public_ips`], except that a family the load balancer holds no address of yet takes the first
    /// address of `preferred` that is of that family, in a pool and free (e.g. the object's `status.ips`, the record
    /// of an earlier allocation, when the state file was lost or the object moved hosts).
    pub fn public_ips_preferring(
        &mut self,
        key: &ObjectKey,
        families: &[IpFamily],
        preferred: &[IpAddr],
    ) -> Result<Vec<IpAddr>, AllocError> {
        self.batch(|a| a.public_ips_in_memory(key, families, preferred))?
    }

    /// One address (a /32 or /128) from the Prefix `prefix_name` whose CIDR is `cidr`, for this load balancer.
    /// The existing one is kept while it lies in `cidr`; new ones are taken sequentially from the Prefix's cursor
    /// (wrapping around): the first free address at or after the cursor.
    pub fn prefix_ip(
        &mut self,
        key: &ObjectKey,
        prefix_name: &ObjectKey,
        cidr: IpNet,
    ) -> Result<IpAddr, AllocError> {
        self.batch(|a| a.prefix_ip_in_memory(key, prefix_name, cidr, &[]))?
    }

    /// [`Allocator::prefix_ip`], except that a load balancer holding no address of this Prefix yet takes the first
    /// address of `preferred` that lies in `cidr` and is free (e.g. the object's `status.ips`).
    pub fn prefix_ip_preferring(
        &mut self,
        key: &ObjectKey,
        prefix_name: &ObjectKey,
        cidr: IpNet,
        preferred: &[IpAddr],
    ) -> Result<IpAddr, AllocError> {
        self.batch(|a| a.prefix_ip_in_memory(key, prefix_name, cidr, preferred))?
    }

    /// Releases the load balancer's prefix IPs from Prefixes not in `live` (it stopped referencing them).
    pub fn retain_prefix_ips(
        &mut self,
        key: &ObjectKey,
        live: &BTreeSet<ObjectKey>,
    ) -> Result<(), AllocError> {
        self.batch(|a| a.retain_prefix_ips_in_memory(key, live))
    }

    /// Frees everything the load balancer holds (it was deleted).
    pub fn release(&mut self, key: &ObjectKey) -> Result<(), AllocError> {
        self.batch(|a| a.remove_lb(key))
    }

    /// Releases every load balancer not in `live` (garbage collection after a sync).
    pub fn retain(&mut self, live: &BTreeSet<ObjectKey>) -> Result<(), AllocError> {
        self.batch(|a| {
            let gone: Vec<ObjectKey> = a
                .state
                .lbs
                .keys()
                .filter(|k| !live.contains(*k))
                .cloned()
                .collect();
            for k in &gone {
                a.remove_lb(k);
            }
        })
    }

    /// `(lb_ids, allocated)` in the shapes [`desired_specs`](crate::controller::desired_specs) takes. `allocated`
    /// lists public IPs then prefix IPs (by Prefix key) and only has load balancers holding at least one IP.
    #[allow(clippy::type_complexity)]
    pub fn snapshot(&self) -> (BTreeMap<ObjectKey, u32>, BTreeMap<ObjectKey, Vec<IpAddr>>) {
        self.snapshot_of(self.state.lbs.iter())
    }

    /// [`Allocator::snapshot`] of the load balancers `keys` only (an incremental reconcile's).
    #[allow(clippy::type_complexity)]
    pub fn snapshot_for<'a>(
        &self,
        keys: impl IntoIterator<Item = &'a ObjectKey>,
    ) -> (BTreeMap<ObjectKey, u32>, BTreeMap<ObjectKey, Vec<IpAddr>>) {
        self.snapshot_of(keys.into_iter().filter_map(|k| self.state.lbs.get_key_value(k)))
    }

    #[allow(clippy::type_complexity)]
    fn snapshot_of<'a>(
        &self,
        lbs: impl Iterator<Item = (&'a ObjectKey, &'a LbAlloc)>,
    ) -> (BTreeMap<ObjectKey, u32>, BTreeMap<ObjectKey, Vec<IpAddr>>) {
        let mut ids = BTreeMap::new();
        let mut allocated = BTreeMap::new();
        for (k, a) in lbs {
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

    // The `*_in_memory` methods run inside a batch. They change state, index and undo together, and only once
    // nothing can fail any more: on error they have changed nothing.

    fn lb_id_in_memory(&mut self, key: &ObjectKey) -> Result<u32, AllocError> {
        let old = self.state.lbs.get(key).and_then(|a| a.lb_id);
        if self.given {
            return old
                .filter(|id| *id < self.lb_id_cap)
                .ok_or(AllocError::NotGiven { what: "lb_id" });
        }
        if let Some(id) = old {
            if id < self.lb_id_cap {
                return Ok(id);
            }
        }
        // The key's own id (if any) is at or above the cap, so it is no candidate either way.
        let id = self
            .lb_id_cap
            .checked_sub(1)
            .and_then(|max| self.index.ids.first_free(0, u128::from(max)))
            .and_then(|id| u32::try_from(id).ok())
            .ok_or(AllocError::Exhausted { what: "lb_id" })?;
        self.touch_lb(key);
        if let Some(old) = old {
            self.index.ids.remove(u128::from(old));
        }
        self.index.ids.insert(u128::from(id));
        self.lb_mut(key).lb_id = Some(id);
        Ok(id)
    }

    fn public_ips_in_memory(
        &mut self,
        key: &ObjectKey,
        families: &[IpFamily],
        preferred: &[IpAddr],
    ) -> Result<Vec<IpAddr>, AllocError> {
        let mut wanted: Vec<&IpFamily> = Vec::new();
        for f in families {
            if !wanted.contains(&f) {
                wanted.push(f);
            }
        }
        let current: &[IpAddr] = self.state.lbs.get(key).map_or(&[], |a| a.public_ips.as_slice());
        let mut out = Vec::with_capacity(wanted.len());
        if self.given {
            // The controller's addresses, whatever this host's pools: one per requested family.
            for family in wanted {
                let ip = current
                    .iter()
                    .copied()
                    .find(|ip| IpFamily::of(ip) == *family)
                    .ok_or(AllocError::NotGiven { what: "public IP" })?;
                out.push(ip);
            }
            return Ok(out);
        }
        for family in wanted {
            let pools = self
                .pools
                .of(family)
                .ok_or_else(|| AllocError::UnsupportedFamily {
                    family: family.clone(),
                })?;
            let keep = current.iter().copied().find(|ip| {
                IpFamily::of(ip) == *family && pools.iter().any(|&net| pool_range(net).contains(ip))
            });
            // The index holds the key's own IPs too; that is fine: one of this family in a pool is kept above,
            // and one outside every pool is never a candidate.
            let prefer = || {
                preferred.iter().copied().find(|ip| {
                    IpFamily::of(ip) == *family
                        && pools.iter().any(|&net| {
                            let r = pool_range(net);
                            r.contains(ip) && {
                                let v = to_u128(*ip);
                                self.index.public.first_free(r.v4, v, v).is_some()
                            }
                        })
                })
            };
            let ip = match keep.or_else(prefer) {
                Some(ip) => ip,
                None => pools
                    .iter()
                    .find_map(|&net| {
                        let r = pool_range(net);
                        self.index
                            .public
                            .first_free(r.v4, r.first, r.last)
                            .map(|v| r.addr(v))
                    })
                    .ok_or_else(|| AllocError::PoolExhausted {
                        family: family.clone(),
                    })?,
            };
            out.push(ip);
        }
        if out.as_slice() != current {
            self.touch_lb(key);
            let entry = self.lb_mut(key);
            let old = mem::replace(&mut entry.public_ips, out.clone());
            for ip in old {
                self.index.public.remove(ip);
            }
            for &ip in &out {
                self.index.public.insert(ip);
            }
            self.drop_if_empty(key);
        }
        Ok(out)
    }

    fn prefix_ip_in_memory(
        &mut self,
        key: &ObjectKey,
        prefix_name: &ObjectKey,
        cidr: IpNet,
        preferred: &[IpAddr],
    ) -> Result<IpAddr, AllocError> {
        let range = Range::of(cidr);
        let cidr = cidr.trunc();
        let old = self
            .state
            .lbs
            .get(key)
            .and_then(|a| a.prefix_ips.get(prefix_name))
            .copied();
        if let Some(ip) = old {
            if range.contains(&ip) {
                return Ok(ip);
            }
        }
        if self.given {
            return Err(AllocError::NotGiven { what: "Prefix IP" });
        }
        let start = match self.state.cursors.get(prefix_name) {
            Some(c) if c.cidr == cidr && range.contains(&c.next) => to_u128(c.next),
            _ => range.first,
        };
        // The key's own old address (if any) lies outside `range`: no candidate either way.
        let used = self.index.prefix.get(prefix_name);
        let free = |from: u128, to: u128| match used {
            Some(used) => used.first_free(range.v4, from, to),
            None => (from <= to).then_some(from),
        };
        let wanted = preferred
            .iter()
            .filter(|ip| range.contains(ip))
            .map(|ip| to_u128(*ip))
            .find(|&v| free(v, v).is_some());
        let found = wanted
            .or_else(|| free(start, range.last))
            .or_else(|| free(range.first, start.checked_sub(1)?))
            .ok_or_else(|| AllocError::PrefixExhausted {
                prefix: prefix_name.clone(),
            })?;
        let ip = range.addr(found);
        self.touch_lb(key);
        self.touch_cursor(prefix_name);
        if let Some(old) = old {
            self.index.remove_prefix_ip(prefix_name, old);
        }
        self.index
            .prefix
            .entry(prefix_name.clone())
            .or_default()
            .insert(ip);
        self.lb_mut(key).prefix_ips.insert(prefix_name.clone(), ip);
        self.state.cursors.insert(
            prefix_name.clone(),
            PrefixCursor {
                cidr,
                next: range.addr(range.wrapping_next(found)),
            },
        );
        Ok(ip)
    }

    fn retain_prefix_ips_in_memory(&mut self, key: &ObjectKey, live: &BTreeSet<ObjectKey>) {
        let Some(a) = self.state.lbs.get(key) else {
            return;
        };
        if a.prefix_ips.keys().all(|p| live.contains(p)) {
            return;
        }
        self.touch_lb(key);
        if let Some(a) = self.state.lbs.get_mut(key) {
            let index = &mut self.index;
            a.prefix_ips.retain(|p, ip| {
                let keep = live.contains(p);
                if !keep {
                    index.remove_prefix_ip(p, *ip);
                }
                keep
            });
        }
        self.drop_if_empty(key);
    }

    /// Removes the load balancer and everything it holds.
    fn remove_lb(&mut self, key: &ObjectKey) {
        debug_assert!(self.in_batch);
        let Some(a) = self.state.lbs.remove(key) else {
            return;
        };
        self.index.remove(&a);
        // Moved, not copied, into the undo record (unless the batch already recorded an earlier value).
        self.undo.lbs.entry(key.clone()).or_insert(Some(a));
    }

    /// Records the load balancer's value before the open batch touched it, once per batch.
    fn touch_lb(&mut self, key: &ObjectKey) {
        debug_assert!(self.in_batch);
        if !self.undo.lbs.contains_key(key) {
            self.undo
                .lbs
                .insert(key.clone(), self.state.lbs.get(key).cloned());
        }
    }

    /// Records the Prefix cursor's value before the open batch touched it, once per batch.
    fn touch_cursor(&mut self, prefix: &ObjectKey) {
        debug_assert!(self.in_batch);
        if !self.undo.cursors.contains_key(prefix) {
            self.undo
                .cursors
                .insert(prefix.clone(), self.state.cursors.get(prefix).cloned());
        }
    }

    /// The load balancer's entry, created empty if missing (the key is cloned only then).
    fn lb_mut(&mut self, key: &ObjectKey) -> &mut LbAlloc {
        if !self.state.lbs.contains_key(key) {
            self.state.lbs.insert(key.clone(), LbAlloc::default());
        }
        self.state.lbs.get_mut(key).expect("inserted above")
    }

    /// A load balancer holding nothing is not kept.
    fn drop_if_empty(&mut self, key: &ObjectKey) {
        if self.state.lbs.get(key).is_some_and(LbAlloc::is_empty) {
            self.state.lbs.remove(key);
        }
    }

    /// Puts back what the batch recorded in `undo` and rebuilds the index.
    fn rollback(&mut self, undo: Undo) {
        for (k, before) in undo.lbs {
            match before {
                Some(a) => self.state.lbs.insert(k, a),
                None => self.state.lbs.remove(&k),
            };
        }
        for (k, before) in undo.cursors {
            match before {
                Some(c) => self.state.cursors.insert(k, c),
                None => self.state.cursors.remove(&k),
            };
        }
        self.index = Index::build(&self.state);
    }

    /// Writes the current state crash-safely.
    fn persist(&mut self) -> Result<(), AllocError> {
        if self.given {
            return Ok(());
        }
        let mut bytes = serde_json::to_vec_pretty(&self.state).map_err(|e| AllocError::Io {
            path: self.path.clone(),
            source: io::Error::other(e),
        })?;
        bytes.push(b'\n');
        crate::fsmode::write_atomic(&self.path, &bytes, crate::fsmode::STATE_FILE_MODE).map_err(|e| {
            AllocError::Io {
                path: e.path,
                source: e.source,
            }
        })?;
        self.persists += 1;
        Ok(())
    }
}

/// What the entries a batch touched were before it: `None` for absent.
#[derive(Debug, Default)]
struct Undo {
    lbs: BTreeMap<ObjectKey, Option<LbAlloc>>,
    cursors: BTreeMap<ObjectKey, Option<PrefixCursor>>,
}

impl Undo {
    /// Whether `state` differs from the recorded values (a batch that changed something and changed it back did
    /// not change anything).
    fn changed(&self, state: &AllocState) -> bool {
        self.lbs
            .iter()
            .any(|(k, before)| state.lbs.get(k) != before.as_ref())
            || self
                .cursors
                .iter()
                .any(|(k, before)| state.cursors.get(k) != before.as_ref())
    }
}
