//! The flow-table stage (contract v1.2, docs/hw-spec.md §7.8a, §11.3): between the flow hash and the bucket slot.
//! A hit on a flow whose pinned target is still valid takes that target without reading the bucket slot; a miss
//! (or a hit on a removed target) takes the slot and learns (re-learns) the flow.
//!
//! The stage only reads table memory; what it would write is returned as a [`FlowEffect`] and applied by the device
//! when the packet is forwarded (`Device::apply_flow`), so `dry_run` (`ironlb trace`) changes nothing and a packet
//! dropped after this stage (MTU, egress) leaves the table as it was.

use super::trace::TraceSink;
use super::{bucket, target_entry, Front};
use crate::device::Device;
use ironlb_hw::entry::flow::{view, FlowKey};
use ironlb_hw::entry::target::{raw_lb_id, raw_underlay};
use ironlb_hw::regs::TableId;
use ironlb_hw::DropReason;
use std::net::Ipv6Addr;

/// How a packet may use the flow table (docs/hw-spec.md §11.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowUse {
    /// Look up, refresh on a hit, learn on a miss.
    Learn,
    /// A TCP FIN or RST: look up, refresh and mark CLOSING on a hit, never learn.
    Closing,
    /// An ICMP error: look up only (no learn, no refresh).
    LookupOnly,
}

/// The flow-table write (and counter) a forwarded packet causes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowEffect {
    /// Nothing (flow table off, or a packet that may not learn missed).
    None,
    /// The packet took entry `index`'s pinned target; `refresh`: LAST_SEEN := now (and CLOSING when `closing`).
    Hit {
        /// Flow-table index.
        index: u32,
        /// Refresh the entry.
        refresh: bool,
        /// Set CLOSING.
        closing: bool,
    },
    /// The entry's pinned target was removed: pin it to `target` (the bucket slot's).
    Relearn {
        /// Flow-table index.
        index: u32,
        /// New target.
        target: u32,
        /// CLOSING of the re-learned entry.
        closing: bool,
    },
    /// A new entry at `index` (replacing an expired one when `replaces_expired`).
    Learn {
        /// Flow-table index.
        index: u32,
        /// The way held an expired valid entry.
        replaces_expired: bool,
        /// The flow.
        key: FlowKey,
        /// Its target.
        target: u32,
        /// Its flow hash.
        hash: u32,
    },
    /// The set was full of live entries: the flow is not pinned.
    Overflow,
}

/// What a read of the flow's set found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Probe {
    /// A live entry with the key at this index.
    Hit(u32),
    /// No live entry; where a learn would write (index, the way holds an expired valid entry), `None` when full.
    Miss(Option<(u32, bool)>),
}

/// Read set `hash & (S − 1)` and compare every way (docs/hw-spec.md §11.2). A learn goes to the way holding this
/// key's expired entry if there is one (so a key is never held twice), else to the first invalid or expired way.
#[inline(always)]
fn probe(d: &Device, hash: u32, key: &FlowKey) -> Probe {
    let ways = d.config().caps.flow_ways;
    let sets = d.config().caps.flow_entries / ways;
    let first = (hash & (sets - 1)) * ways;
    let now = d.flow_clock();
    let mut free = None;
    let mut own_expired = None;
    for index in first..first + ways {
        let e = d.tables.entry(TableId::Flow, index);
        if !view::valid(e) {
            free = free.or(Some((index, false)));
            continue;
        }
        let expired = view::expired(e, now, d.flow_timeout(view::class(e)));
        let same = view::matches(e, key);
        match (same, expired) {
            (true, false) => return Probe::Hit(index),
            (true, true) => own_expired = Some((index, true)),
            (false, true) => free = free.or(Some((index, true))),
            (false, false) => {}
        }
    }
    Probe::Miss(own_expired.or(free))
}

/// The pinned target `target` of a flow of LB `lb_id`, if it is still that LB's valid target (§11.3 step 2).
#[inline(always)]
fn pinned_target(d: &Device, target: u32, lb_id: u32) -> Option<[u8; 16]> {
    if target >= d.config().caps.targets {
        return None;
    }
    let e = d.tables.entry(TableId::Target, target);
    raw_underlay(e).filter(|_| raw_lb_id(e) == lb_id)
}

/// §11.3: the target of a packet through the flow table, its underlay address and the table effect.
#[inline(always)]
pub(super) fn stage<S: TraceSink>(
    d: &Device,
    f: &Front<'_>,
    t: &mut S,
) -> Result<(u32, [u8; 16], FlowEffect), DropReason> {
    let use_ = f.flow_use;
    let closing = use_ == FlowUse::Closing;
    match probe(d, f.hash, &f.key) {
        Probe::Hit(index) => {
            let pinned = view::target(d.tables.entry(TableId::Flow, index));
            if let Some(underlay) = pinned_target(d, pinned, f.lb_id) {
                t.set(|t| {
                    t.pinned = Some("hit");
                    t.flow_entry = Some(index);
                    t.target = Some(pinned);
                    t.underlay = Some(Ipv6Addr::from(underlay));
                });
                t.step("flow", || {
                    format!("hit entry {index}: pinned to target {pinned} (bucket slot not read)")
                });
                let refresh = use_ != FlowUse::LookupOnly;
                return Ok((
                    pinned,
                    underlay,
                    FlowEffect::Hit {
                        index,
                        refresh,
                        closing,
                    },
                ));
            }
            t.step("flow", || {
                format!("hit entry {index}: pinned target {pinned} was removed, the bucket slot decides")
            });
            let target = bucket(d, f.slot, t)?;
            let underlay = target_entry(d, target, t)?;
            let fx = match use_ {
                FlowUse::LookupOnly => FlowEffect::None,
                _ => FlowEffect::Relearn {
                    index,
                    target,
                    closing,
                },
            };
            t.set(|t| {
                t.pinned = Some(if fx == FlowEffect::None {
                    "stale"
                } else {
                    "relearned"
                });
                t.flow_entry = Some(index);
            });
            Ok((target, underlay, fx))
        }
        Probe::Miss(free) => {
            let target = bucket(d, f.slot, t)?;
            let underlay = target_entry(d, target, t)?;
            let fx = match (use_, free) {
                (FlowUse::Learn, Some((index, replaces_expired))) => FlowEffect::Learn {
                    index,
                    replaces_expired,
                    key: f.key,
                    target,
                    hash: f.hash,
                },
                (FlowUse::Learn, None) => FlowEffect::Overflow,
                _ => FlowEffect::None,
            };
            t.set(|t| {
                t.pinned = Some(match fx {
                    FlowEffect::Learn { .. } => "learned",
                    FlowEffect::Overflow => "overflow",
                    _ => "not_learned",
                });
                if let FlowEffect::Learn { index, .. } = fx {
                    t.flow_entry = Some(index);
                }
            });
            t.step("flow", || match fx {
                FlowEffect::Learn { index, .. } => {
                    format!("miss: learned at entry {index} -> target {target}")
                }
                FlowEffect::Overflow => format!("miss: set full, not pinned (overflow) -> target {target}"),
                _ => match use_ {
                    FlowUse::Closing => format!("miss: TCP FIN/RST does not learn -> target {target}"),
                    _ => format!("miss: ICMP error does not learn -> target {target}"),
                },
            });
            Ok((target, underlay, fx))
        }
    }
}
