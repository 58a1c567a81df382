//! The allocator's in-memory indexes (never persisted, derived from the state): used lb_ids, public IPs and
//! per-Prefix IPs as maximal runs of consecutive values, so the lowest free value at or after a point is one
//! lookup; and address ranges as integers.

use super::{AllocState, LbAlloc};
use crate::api::ObjectKey;
use ipnet::IpNet;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The used values of an [`AllocState`], for allocation without scanning it.
#[derive(Debug, Default)]
pub(super) struct Index {
    /// Held lb_ids (also those at or above the cap).
    pub(super) ids: Runs,
    /// Held public IPs.
    pub(super) public: IpRuns,
    /// Held IPs per Prefix (also those outside its current CIDR).
    pub(super) prefix: BTreeMap<ObjectKey, IpRuns>,
}

impl Index {
    pub(super) fn build(state: &AllocState) -> Index {
        let mut index = Index::default();
        for a in state.lbs.values() {
            index.add(a);
        }
        index
    }

    pub(super) fn add(&mut self, a: &LbAlloc) {
        if let Some(id) = a.lb_id {
            let fresh = self.ids.insert(u128::from(id));
            debug_assert!(fresh, "lb_id {id} held twice");
        }
        for &ip in &a.public_ips {
            let fresh = self.public.insert(ip);
            debug_assert!(fresh, "public IP {ip} held twice");
        }
        for (p, &ip) in &a.prefix_ips {
            let fresh = self.prefix.entry(p.clone()).or_default().insert(ip);
            debug_assert!(fresh, "prefix IP {ip} held twice");
        }
    }

    pub(super) fn remove(&mut self, a: &LbAlloc) {
        if let Some(id) = a.lb_id {
            self.ids.remove(u128::from(id));
        }
        for &ip in &a.public_ips {
            self.public.remove(ip);
        }
        for (p, &ip) in &a.prefix_ips {
            self.remove_prefix_ip(p, ip);
        }
    }

    pub(super) fn remove_prefix_ip(&mut self, prefix: &ObjectKey, ip: IpAddr) {
        if let Some(used) = self.prefix.get_mut(prefix) {
            used.remove(ip);
            if used.is_empty() {
                self.prefix.remove(prefix);
            }
        }
    }
}

/// A set of addresses of both families.
#[derive(Debug, Default)]
pub(super) struct IpRuns {
    pub(super) v4: Runs,
    pub(super) v6: Runs,
}

impl IpRuns {
    pub(super) fn family(&self, v4: bool) -> &Runs {
        if v4 {
            &self.v4
        } else {
            &self.v6
        }
    }

    pub(super) fn family_mut(&mut self, ip: IpAddr) -> &mut Runs {
        if ip.is_ipv4() {
            &mut self.v4
        } else {
            &mut self.v6
        }
    }

    pub(super) fn insert(&mut self, ip: IpAddr) -> bool {
        self.family_mut(ip).insert(to_u128(ip))
    }

    pub(super) fn remove(&mut self, ip: IpAddr) -> bool {
        self.family_mut(ip).remove(to_u128(ip))
    }

    pub(super) fn is_empty(&self) -> bool {
        self.v4.runs.is_empty() && self.v6.runs.is_empty()
    }

    /// The lowest address (as an integer) of the family in `from..=to` not in the set.
    pub(super) fn first_free(&self, v4: bool, from: u128, to: u128) -> Option<u128> {
        self.family(v4).first_free(from, to)
    }
}

/// A set of integers, stored as its maximal runs of consecutive values (no two runs overlap or touch), so the
/// first value not in the set at or after any point is one lookup. Every operation is O(log runs).
#[derive(Debug, Default)]
pub(super) struct Runs {
    /// First value of a run -> its last value.
    pub(super) runs: BTreeMap<u128, u128>,
}

impl Runs {
    /// The run `(first, last)` holding `v`.
    pub(super) fn run_of(&self, v: u128) -> Option<(u128, u128)> {
        self.runs
            .range(..=v)
            .next_back()
            .map(|(&first, &last)| (first, last))
            .filter(|&(_, last)| last >= v)
    }

    /// Adds `v`; false when it was there already.
    pub(super) fn insert(&mut self, v: u128) -> bool {
        if self.run_of(v).is_some() {
            return false;
        }
        // Join the run ending just before `v` and the one starting just after it.
        let first = v
            .checked_sub(1)
            .and_then(|before| self.run_of(before))
            .map_or(v, |(first, _)| first);
        let last = v
            .checked_add(1)
            .and_then(|after| self.runs.remove(&after))
            .unwrap_or(v);
        self.runs.insert(first, last);
        true
    }

    /// Removes `v`; false when it was not there.
    pub(super) fn remove(&mut self, v: u128) -> bool {
        let Some((first, last)) = self.run_of(v) else {
            return false;
        };
        if first < v {
            self.runs.insert(first, v - 1);
        } else {
            self.runs.remove(&first);
        }
        if v < last {
            self.runs.insert(v + 1, last);
        }
        true
    }

    /// The lowest value in `from..=to` not in the set.
    pub(super) fn first_free(&self, from: u128, to: u128) -> Option<u128> {
        // A run's last value + 1 is free: runs do not touch.
        let cand = match self.run_of(from) {
            Some((_, last)) => last.checked_add(1)?,
            None => from,
        };
        (cand <= to).then_some(cand)
    }
}

pub(super) fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

pub(super) fn from_u128(v: u128, v4: bool) -> IpAddr {
    if v4 {
        IpAddr::V4(Ipv4Addr::from(v as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(v))
    }
}

/// An inclusive address range of one family, as integers. May be empty (`first > last`).
#[derive(Debug, Clone, Copy)]
pub(super) struct Range {
    pub(super) v4: bool,
    pub(super) first: u128,
    pub(super) last: u128,
}

impl Range {
    pub(super) fn of(net: IpNet) -> Range {
        Range {
            v4: net.addr().is_ipv4(),
            first: to_u128(net.network()),
            last: to_u128(net.broadcast()),
        }
    }

    pub(super) fn contains(&self, ip: &IpAddr) -> bool {
        ip.is_ipv4() == self.v4 && (self.first..=self.last).contains(&to_u128(*ip))
    }

    pub(super) fn addr(&self, v: u128) -> IpAddr {
        from_u128(v, self.v4)
    }

    pub(super) fn wrapping_next(&self, v: u128) -> u128 {
        if v >= self.last {
            self.first
        } else {
            v + 1
        }
    }
}

/// The usable addresses of a public pool: IPv4 pools shorter than /31 lose their network and broadcast address.
pub(super) fn pool_range(net: IpNet) -> Range {
    let mut r = Range::of(net);
    if r.v4 && net.prefix_len() < 31 {
        r.first += 1;
        r.last -= 1;
    }
    r
}
