//! The flow table's device side (contract v1.2, docs/hw-spec.md §11): registers, the flow clock, the aging sweep,
//! FLOW_FLUSH and the flow counters. The pipeline stage that looks flows up and learns them is
//! `pipeline/flow.rs`; its table writes are applied here ([`Device::apply_flow`]) when the packet is forwarded.

use super::Device;
use crate::pipeline::flow::FlowEffect;
use ironlb_hw::entry::flow::view;
use ironlb_hw::regs::*;

/// Flow-table state the device keeps outside table memory (counters are mirrored into registers).
#[derive(Debug, Clone, Default)]
pub(crate) struct FlowState {
    /// Live counters, indexed by [`FlowCounter`].
    pub counters: [u64; FLOW_COUNTER_SLOTS],
    /// FLOW_CLOCK (ms).
    pub clock: u32,
    /// Next entry the aging sweep visits.
    pub sweep_cursor: u32,
    /// Sweep credit not yet spent (entry visits, scaled by 1000 so that slow clock steps add up).
    pub sweep_credit: u64,
}

impl Device {
    /// Registers of the flow table after reset (docs/hw-spec.md §11.1); nothing on a part without one.
    pub(crate) fn reset_flow_registers(&mut self) {
        let clock = self.flow.clock;
        self.flow = FlowState {
            clock,
            ..FlowState::default()
        };
        if !self.cfg.has_flow_table() {
            return;
        }
        self.set_reg(FLOW_CLOCK, clock);
        for c in FlowClass::ALL {
            self.set_reg(c.register(), c.default_timeout_ms());
        }
    }

    /// FLOW_CTRL.ENABLE on a part with a flow table.
    #[inline]
    pub fn flow_enabled(&self) -> bool {
        self.cfg.has_flow_table() && self.reg(FLOW_CTRL) & FLOW_CTRL_ENABLE != 0
    }

    /// FLOW_CLOCK (ms).
    #[inline]
    pub fn flow_clock(&self) -> u32 {
        self.flow.clock
    }

    /// The idle timeout of a class, from its register (bits 30:0).
    #[inline]
    pub fn flow_timeout(&self, class: FlowClass) -> u32 {
        self.reg(class.register()) & FLOW_TIMEOUT_MASK
    }

    /// The flow counters, indexed by [`FlowCounter`].
    pub fn flow_counters(&self) -> [u64; FLOW_COUNTER_SLOTS] {
        self.flow.counters
    }

    /// Add to a flow counter and mirror it into FLOW_COUNTERS.
    #[inline]
    pub(crate) fn count_flow(&mut self, c: FlowCounter, n: u64) {
        let i = c.index();
        let v = self.flow.counters[i].wrapping_add(n);
        self.flow.counters[i] = v;
        let off = FLOW_COUNTERS + 8 * i as u32;
        self.set_reg(off, v as u32);
        self.set_reg(off + 4, (v >> 32) as u32);
    }

    /// Copy the flow counters into FLOW_SNAPSHOT_DATA (part of a drop-counter snapshot, docs/hw-spec.md §11.1).
    pub(crate) fn snapshot_flow_counters(&self) {
        if !self.cfg.has_flow_table() {
            return;
        }
        for (i, v) in self.flow.counters.iter().enumerate() {
            let off = FLOW_SNAPSHOT_DATA + 8 * i as u32;
            self.set_reg(off, *v as u32);
            self.set_reg(off + 4, (*v >> 32) as u32);
        }
    }

    /// Set FLOW_CLOCK to `now_ms` and run the aging sweep for the time that passed (docs/hw-spec.md §11.2): every
    /// entry is visited at least once per [`FLOW_SWEEP_MS`] of clock, in index order from where the last sweep
    /// stopped; an expired valid entry is invalidated and counted `aged`. The model's time source: packet
    /// timestamps in replay, the monotonic clock in `ironlb-sim serve`, the test's own clock in tests. A step
    /// backwards (`now_ms` before the clock, modulo 2^32 more than half the range away) sets the clock and sweeps
    /// nothing.
    pub fn set_flow_clock(&mut self, now_ms: u32) {
        let elapsed = now_ms.wrapping_sub(self.flow.clock);
        self.flow.clock = now_ms;
        if !self.cfg.has_flow_table() {
            return;
        }
        self.set_reg(FLOW_CLOCK, now_ms);
        if elapsed == 0 || elapsed > u32::MAX / 2 {
            return;
        }
        let n = u64::from(self.cfg.caps.flow_entries);
        self.flow.sweep_credit += n * u64::from(elapsed);
        let visits = (self.flow.sweep_credit / u64::from(FLOW_SWEEP_MS)).min(n);
        self.flow.sweep_credit = if visits == n {
            0
        } else {
            self.flow.sweep_credit % u64::from(FLOW_SWEEP_MS)
        };
        self.sweep(visits as u32);
    }

    /// Visit `visits` entries from the sweep cursor.
    fn sweep(&mut self, visits: u32) {
        let n = self.cfg.caps.flow_entries;
        let now = self.flow.clock;
        let timeouts = FlowClass::ALL.map(|c| self.flow_timeout(c));
        let mut aged = 0;
        let mut i = self.flow.sweep_cursor;
        for _ in 0..visits {
            let e = self.tables.entry_mut(TableId::Flow, i);
            if view::valid(e) && view::expired(e, now, timeouts[view::class(e) as usize]) {
                view::invalidate(e);
                aged += 1;
            }
            i = (i + 1) & (n - 1);
        }
        self.flow.sweep_cursor = i;
        if aged > 0 {
            self.count_flow(FlowCounter::Aged, aged);
        }
    }

    /// FLOW_FLUSH (docs/hw-spec.md §11.5): drain the pipeline (the command includes a FENCE), then invalidate every
    /// matching entry and count it `flushed`. Returns the number of entries flushed.
    pub(crate) fn flow_flush(&mut self, sel: FlushSelector) -> u64 {
        self.drain();
        let mut flushed = 0;
        for i in 0..self.cfg.caps.flow_entries {
            let e = self.tables.entry_mut(TableId::Flow, i);
            let hit = view::valid(e)
                && match sel {
                    FlushSelector::All => true,
                    FlushSelector::Lb(lb) => view::lb_id(e) == lb,
                    FlushSelector::Target(t) => view::target(e) == t,
                };
            if hit {
                view::invalidate(e);
                flushed += 1;
            }
        }
        if flushed > 0 {
            self.count_flow(FlowCounter::Flushed, flushed);
        }
        flushed
    }

    /// Apply the flow-table effect of a forwarded packet (docs/hw-spec.md §11.3).
    #[inline]
    pub(crate) fn apply_flow(&mut self, fx: &FlowEffect) {
        let now = self.flow.clock;
        match *fx {
            FlowEffect::None => {}
            FlowEffect::Hit {
                index,
                refresh,
                closing,
            } => {
                if refresh {
                    view::refresh(self.tables.entry_mut(TableId::Flow, index), now, closing);
                }
                self.count_flow(FlowCounter::Hits, 1);
            }
            FlowEffect::Relearn {
                index,
                target,
                closing,
            } => {
                view::relearn(self.tables.entry_mut(TableId::Flow, index), target, now, closing);
                self.count_flow(FlowCounter::Relearned, 1);
            }
            FlowEffect::Learn {
                index,
                replaces_expired,
                ref key,
                target,
                hash,
            } => {
                view::learn(
                    self.tables.entry_mut(TableId::Flow, index),
                    key,
                    target,
                    hash,
                    now,
                    false,
                );
                self.count_flow(FlowCounter::Learned, 1);
                if replaces_expired {
                    self.count_flow(FlowCounter::Aged, 1);
                }
            }
            FlowEffect::Overflow => self.count_flow(FlowCounter::Overflow, 1),
        }
    }
}
