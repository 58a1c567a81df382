//! The pipelined mode of the model: packets in flight between pipeline stages while table writes execute
//! (docs/sim.md "Pipelined mode", docs/hw-spec.md §4 FENCE and §8.5).
//!
//! The atomic model runs each packet through every stage in one call, so no table write can fall between two of a
//! packet's memory reads. A hardware pipeline is not like that: a packet reads the LB entry (its `CTRL` word and
//! active set) in an early stage and the range, bucket and target memory several clocks later. In this mode the
//! model keeps packets in flight on a clock:
//!
//! - every clock tick one packet may enter (from a [`Traffic`] source) and reads the LB table at once;
//! - `depth` ticks later it reads the range block, bucket slot and target entry of the set it saw, and leaves
//!   (forwarded or dropped, counted as always) into the retired list;
//! - every executed command (mailbox command or ring descriptor) advances the clock by `ticks_per_command`, so table
//!   writes interleave with packets;
//! - FENCE advances the clock until every packet that entered before it has left: at most `depth` ticks.
//!
//! Everything is driven by the device's own command execution, so a run is deterministic for a given traffic
//! source and command sequence.

use super::lookup::{self, Lookup};
use super::parse;
use super::trace::NoTrace;
use super::Verdict;
use crate::device::Device;
use std::collections::VecDeque;

/// Where packets come from in the pipelined mode.
pub trait Traffic: Send {
    /// The packet that arrives at clock `tick`, if any: (ingress port, IP packet).
    fn next(&mut self, tick: u64) -> Option<(u32, Vec<u8>)>;
}

/// A packet that has left the pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retired {
    /// Arrival order (0, 1, ...).
    pub seq: u64,
    /// Clock tick at which it entered (and read the LB table).
    pub entered: u64,
    /// Ingress port.
    pub port: u32,
    /// The packet as it arrived.
    pub packet: Vec<u8>,
    /// LB_ID of the LB entry its lookup matched, if any.
    pub lb_id: Option<u32>,
    /// What the device did with it.
    pub verdict: Verdict,
}

struct Packet {
    seq: u64,
    entered: u64,
    port: u32,
    bytes: Vec<u8>,
    lookup: Option<Lookup>,
}

/// State of the pipelined mode.
pub struct InFlight {
    depth: u64,
    ticks_per_command: u32,
    traffic: Box<dyn Traffic>,
    queue: VecDeque<Packet>,
    tick: u64,
    next_seq: u64,
    retired: Vec<Retired>,
}

impl std::fmt::Debug for InFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InFlight")
            .field("depth", &self.depth)
            .field("ticks_per_command", &self.ticks_per_command)
            .field("in_flight", &self.queue.len())
            .field("tick", &self.tick)
            .finish()
    }
}

impl InFlight {
    /// A reset loses the packets in flight (they are neither forwarded nor counted).
    pub(crate) fn flush_on_reset(&mut self) {
        self.queue.clear();
    }
}

impl Device {
    /// Switch the pipelined mode on: packets from `traffic` enter one per clock tick (when it has one), read the LB
    /// table on entry and the other tables `depth` ticks later; each executed command advances the clock by
    /// `ticks_per_command`.
    pub fn set_pipelined(&mut self, depth: u32, ticks_per_command: u32, traffic: Box<dyn Traffic>) {
        self.inflight = Some(Box::new(InFlight {
            depth: u64::from(depth),
            ticks_per_command,
            traffic,
            queue: VecDeque::new(),
            tick: 0,
            next_seq: 0,
            retired: Vec::new(),
        }));
    }

    /// Packets that have left the pipeline since the last call, in order.
    pub fn take_retired(&mut self) -> Vec<Retired> {
        self.inflight
            .as_mut()
            .map_or_else(Vec::new, |f| std::mem::take(&mut f.retired))
    }

    /// Packets in the pipeline now.
    pub fn in_flight(&self) -> usize {
        self.inflight.as_ref().map_or(0, |f| f.queue.len())
    }

    /// One clock tick of the pipelined mode (nothing in the atomic model): a packet may enter, the packets that
    /// entered `depth` ticks ago leave.
    pub fn tick(&mut self) {
        let Some(mut f) = self.inflight.take() else {
            return;
        };
        f.tick += 1;
        if let Some((port, bytes)) = f.traffic.next(f.tick) {
            let lookup = self.lookup_stage(port, &bytes);
            f.queue.push_back(Packet {
                seq: f.next_seq,
                entered: f.tick,
                port,
                bytes,
                lookup,
            });
            f.next_seq += 1;
        }
        while f.queue.front().is_some_and(|p| p.entered + f.depth <= f.tick) {
            let p = f.queue.pop_front().expect("front exists");
            let mut out = Vec::new();
            let r = super::pipeline_pinned(self, p.port, &p.bytes, &mut out, &mut NoTrace, p.lookup);
            let verdict = match self.account(r) {
                Ok(egress_port) => Verdict::Forward {
                    egress_port,
                    packet: out,
                },
                Err(reason) => Verdict::Drop(reason),
            };
            f.retired.push(Retired {
                seq: p.seq,
                entered: p.entered,
                port: p.port,
                lb_id: p.lookup.and_then(|l| l.hit).map(|h| h.lb_id),
                packet: p.bytes,
                verdict,
            });
        }
        self.inflight = Some(f);
    }

    /// After each executed command: the clock advances.
    pub(crate) fn after_command(&mut self) {
        let n = self.inflight.as_ref().map_or(0, |f| f.ticks_per_command);
        for _ in 0..n {
            self.tick();
        }
    }

    /// FENCE: advance the clock until every packet that entered before now has left (new packets keep entering).
    pub(crate) fn drain(&mut self) {
        let Some(before) = self.inflight.as_ref().map(|f| f.next_seq) else {
            return;
        };
        while self
            .inflight
            .as_ref()
            .and_then(|f| f.queue.front())
            .is_some_and(|p| p.seq < before)
        {
            self.tick();
        }
    }

    /// The first stage: the LB lookup of the packet (`None` when it does not get that far: the later stage then
    /// repeats the checks before the lookup and drops it for the same reason).
    fn lookup_stage(&self, port: u32, pkt: &[u8]) -> Option<Lookup> {
        if !self.enabled() {
            return None;
        }
        let domain = self.port_cfg(port)?.ingress_domain()?;
        let ip = parse::parse_l3(pkt).ok()?;
        Some(lookup::lookup(
            &self.tables,
            self.config().caps.lb_buckets,
            domain,
            ip.v6,
            &ip.dst,
        ))
    }
}
