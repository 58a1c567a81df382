//! Burst processing: the stages of the pipeline (mod.rs) run over a burst of packets, each stage over every packet
//! before the next stage starts, so that the independent table reads of many packets are in flight together instead
//! of one packet waiting on DRAM for its bucket slot, then its target entry, then its counter rows.
//!
//! Verdicts, output bytes and counters are exactly those of [`Device::process_into`] on each packet in order: every
//! stage is a pure function of registers and table memory, which no stage writes (counters are not read by the
//! pipeline), and the counters are updated in packet order at the end.

use super::trace::NoTrace;
use super::{bucket, egress, front, pipeline, target_entry, Front, Fwd};
use crate::device::Device;
use ironlb_hw::DropReason;
use std::ops::Range;

/// One packet's result from [`Device::process_burst`]: the egress port and where the outer packet lies in the
/// output buffer, or the drop reason.
pub type BurstResult = Result<(u32, Range<usize>), DropReason>;

/// Packets whose stages run together (the rest of a longer burst follows in further chunks). Bounds the per-chunk
/// state kept on the stack; 32 misses in flight are more than the core's miss buffers hold.
const CHUNK: usize = 32;

/// A packet between stages: what `front` decided, then the target and its underlay address.
#[derive(Clone, Copy)]
struct InFlight<'a> {
    front: Front<'a>,
    target: u32,
    underlay: [u8; 16],
}

impl Device {
    /// Process a burst of packets arriving on `port`: the same verdicts, output bytes and counter updates as
    /// [`Device::process_into`] on each packet in order, with the table reads of the packets overlapped.
    ///
    /// `out` and `results` are cleared first; then `results[i]` is packet `i`'s egress port and the range of `out`
    /// holding its outer packet, or its drop reason (a dropped packet occupies no bytes of `out`). No allocation
    /// once `out` and `results` have grown to the burst's needs.
    pub fn process_burst(
        &mut self,
        port: u32,
        pkts: &[&[u8]],
        out: &mut Vec<u8>,
        results: &mut Vec<BurstResult>,
    ) {
        out.clear();
        results.clear();
        if self.flow_enabled() {
            // With the flow table on, a packet may hit an entry the packet before it learned: the stages of a chunk
            // are not independent any more, so the burst runs packet by packet (same results, no overlap).
            for pkt in pkts {
                let start = out.len();
                let r = pipeline(self, port, pkt, out, &mut NoTrace);
                out.truncate(if r.is_ok() { out.len() } else { start });
                let r = self.account(r);
                results.push(r.map(|egress| (egress, start..out.len())));
            }
            return;
        }
        for chunk in pkts.chunks(CHUNK) {
            self.chunk(port, chunk, out, results);
        }
    }

    /// At most [`CHUNK`] packets, stage by stage.
    #[inline(always)]
    fn chunk(&mut self, port: u32, pkts: &[&[u8]], out: &mut Vec<u8>, results: &mut Vec<BurstResult>) {
        let d = &*self;
        let mut st: [Result<InFlight<'_>, DropReason>; CHUNK] = [Err(DropReason::DeviceDisabled); CHUNK];
        let st = &mut st[..pkts.len()];
        // §7.1–§7.8 up to the slot index (registers, LB and range tables: small, mostly cache resident).
        for (s, pkt) in st.iter_mut().zip(pkts) {
            *s = front(d, port, pkt, &mut NoTrace).map(|front| InFlight {
                front,
                target: 0,
                underlay: [0; 16],
            });
        }
        // Bucket memory: one independent read per packet, overlapped by the core.
        for s in st.iter_mut() {
            if let Ok(f) = s {
                match bucket(d, f.front.slot, &mut NoTrace) {
                    Ok(t) => f.target = t,
                    Err(r) => *s = Err(r),
                }
            }
        }
        // Target entries: likewise.
        for s in st.iter_mut() {
            if let Ok(f) = s {
                match target_entry(d, f.target, &mut NoTrace) {
                    Ok(u) => f.underlay = u,
                    Err(r) => *s = Err(r),
                }
            }
        }
        // §7.9 (registers only), in packet order.
        let mut done: [Result<Fwd, DropReason>; CHUNK] = [Err(DropReason::DeviceDisabled); CHUNK];
        let done = &mut done[..pkts.len()];
        for (r, s) in done.iter_mut().zip(st.iter()) {
            let start = out.len();
            *r = s.and_then(|f| egress(d, &f.front, f.target, f.underlay, out, &mut NoTrace));
            if r.is_err() {
                out.truncate(start);
            }
            results.push(r.map(|f| (f.egress_port, start..out.len())));
        }
        // Counter rows, in packet order: a tight loop of independent read-modify-writes.
        for r in done.iter() {
            let _ = self.account(*r);
        }
    }
}
