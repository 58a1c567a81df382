//! The drain policy (issue 18; docs/operations.md "Draining targets"): which targets of a load balancer are kept
//! on the device as *draining* (docs/hw-spec.md §11.5: a target entry but no bucket slot, so the flows pinned to
//! it keep reaching it and no new flow does) and which are cut.
//!
//! A target that leaves the desired set (its NetworkInterface left `Available`, stopped matching the selector or
//! left the routing) drains for the drain timeout, then it is cut: removed, and its pinned flows flushed (the
//! driver flushes them in the same batch). It is cut at once when:
//! - the drain timeout is 0;
//! - its NetworkInterface was deleted (or is not known: e.g. its underlay address changed, so nothing listens on
//!   the old one);
//! - the load balancer has no serving target left (without a bucket array the device drops every packet of the
//!   load balancer, pinned or not, hw-spec.md §11.3, so draining would keep nothing);
//! - the load balancer would have more targets than the device allows per load balancer (the drains that end
//!   soonest are cut first).
//!
//! A draining target that is desired again serves again (its flows never left it). Pure: the reconciler passes
//! the time, what the device holds and what it knows of the interfaces; tests step the time.

use crate::api::ObjectKey;
use ironlb_driver::LbSpec;
use std::collections::BTreeMap;
use std::net::Ipv6Addr;
use std::time::{Duration, Instant, SystemTime};

/// Default drain timeout (`ironlb run --drain-timeout`): 5 minutes, the flow table's TCP idle timeout (an idle
/// TCP flow ages out within it) and the deregistration delay cloud load balancers use by default.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(300);

/// One draining target of a load balancer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drain {
    /// The NetworkInterface the target came from, when known.
    pub interface: Option<ObjectKey>,
    /// When it is cut (monotonic).
    pub deadline: Instant,
    /// The same instant in wall time (shown in the status).
    pub deadline_wall: SystemTime,
}

/// Why a target was cut instead of drained (or at the end of its drain).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// The drain timeout is 0.
    NoTimeout,
    /// Its NetworkInterface was deleted (or is not known).
    InterfaceGone,
    /// The load balancer has no serving target.
    NoServingTarget,
    /// The device's per-load-balancer target limit.
    TargetLimit,
    /// Its drain deadline passed.
    Deadline,
}

impl Cut {
    /// For logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Cut::NoTimeout => "the drain timeout is 0",
            Cut::InterfaceGone => "its NetworkInterface was deleted",
            Cut::NoServingTarget => "the load balancer has no serving target left",
            Cut::TargetLimit => "the load balancer would exceed the device's targets per load balancer",
            Cut::Deadline => "its drain deadline passed",
        }
    }
}

/// What [`decide`] did for one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// It started draining.
    Started(Ipv6Addr, Drain),
    /// It was cut.
    Cut(Ipv6Addr, Cut),
    /// It serves again (desired again while draining).
    Resumed(Ipv6Addr),
}

/// The time and the limits [`decide`] works with.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Now (monotonic).
    pub now: Instant,
    /// Now (wall).
    pub wall: SystemTime,
    /// How long a target drains.
    pub timeout: Duration,
    /// The device's targets per load balancer (serving and draining).
    pub max_targets: usize,
}

/// Fills `spec.draining` (the desired spec of one load balancer, whose `targets` are the serving ones) from what
/// the device holds (`programmed`) and this load balancer's drains (`drains`, updated). `interface_of` gives the
/// NetworkInterface an address came from, `exists` whether that interface still exists. Returns what changed.
pub fn decide(
    spec: &mut LbSpec,
    programmed: Option<&LbSpec>,
    drains: &mut BTreeMap<Ipv6Addr, Drain>,
    interface_of: impl Fn(&Ipv6Addr) -> Option<ObjectKey>,
    exists: impl Fn(&ObjectKey) -> bool,
    p: Policy,
) -> Vec<Event> {
    let mut events = Vec::new();
    spec.draining.clear();
    // Desired again: serves again.
    let resumed: Vec<Ipv6Addr> = drains
        .keys()
        .filter(|a| spec.targets.contains(a))
        .copied()
        .collect();
    for a in resumed {
        drains.remove(&a);
        events.push(Event::Resumed(a));
    }
    // Targets the device holds (serving or draining) that are no longer desired, and drains whose target the
    // device no longer holds (a failed update keeps them until it lands).
    let mut leaving: Vec<Ipv6Addr> = programmed
        .map(|s| s.entries().copied().collect())
        .unwrap_or_default();
    leaving.extend(drains.keys().copied());
    leaving.sort();
    leaving.dedup();
    leaving.retain(|a| !spec.targets.contains(a));
    for a in leaving {
        let cut = if p.timeout.is_zero() {
            Some(Cut::NoTimeout)
        } else if spec.targets.is_empty() {
            Some(Cut::NoServingTarget)
        } else {
            match drains.get(&a) {
                Some(d) if d.interface.as_ref().is_none_or(|i| !exists(i)) => Some(Cut::InterfaceGone),
                Some(d) if p.now >= d.deadline => Some(Cut::Deadline),
                Some(_) => None,
                None => match interface_of(&a).filter(|i| exists(i)) {
                    None => Some(Cut::InterfaceGone),
                    Some(i) => {
                        let d = Drain {
                            interface: Some(i),
                            deadline: p.now + p.timeout,
                            deadline_wall: p.wall + p.timeout,
                        };
                        drains.insert(a, d.clone());
                        events.push(Event::Started(a, d));
                        None
                    }
                },
            }
        };
        match cut {
            Some(c) => {
                drains.remove(&a);
                events.push(Event::Cut(a, c));
            }
            None => {
                spec.draining.insert(a);
            }
        }
    }
    // The device's limit: the drains that end soonest go first.
    while spec.targets.len() + spec.draining.len() > p.max_targets && !spec.draining.is_empty() {
        let a = *spec
            .draining
            .iter()
            .min_by_key(|a| (drains[*a].deadline, **a))
            .expect("not empty");
        spec.draining.remove(&a);
        drains.remove(&a);
        events.push(Event::Cut(a, Cut::TargetLimit));
    }
    events
}

/// The earliest deadline among `drains` (when the reconciler must run again).
pub fn next_deadline<'a>(drains: impl IntoIterator<Item = &'a Drain>) -> Option<Instant> {
    drains.into_iter().map(|d| d.deadline).min()
}

#[cfg(test)]
mod tests;
