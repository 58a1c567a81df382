//! Command execution: the register mailbox for single updates and the DMA command ring for batches
//! (docs/hw-spec.md §4). Every wait has a timeout and a typed error.

use crate::access::DeviceAccess;
use crate::dma::DmaRegion;
use crate::error::DriverError;
use ironlb_hw::entry::{bytes_to_words, Completion, Descriptor};
use ironlb_hw::regs::*;
use std::sync::atomic::{fence, Ordering};
use std::time::{Duration, Instant};

/// The device's time bounds: the performance envelope of docs/hw-spec.md §10. The driver's timeouts are derived
/// from them ([`timeout`]).
pub mod envelope {
    use std::time::Duration;
    /// One mailbox command, doorbell to `MB_DONE_SEQ` (a single-entry WRITE, READ or FILL of up to 16 words).
    pub const MAILBOX_COMMAND: Duration = Duration::from_micros(10);
    /// Fixed cost of one ring descriptor (fetch, decode, completion).
    pub const DESCRIPTOR: Duration = Duration::from_micros(1);
    /// Each table entry a WRITE, READ or FILL moves (at least 50 million entries per second).
    pub const ENTRY: Duration = Duration::from_nanos(20);
    /// A packet's time in the pipeline: FENCE completes within it (docs/hw-spec.md §8.5).
    pub const PIPELINE_LATENCY: Duration = Duration::from_micros(10);
    /// `RING_STATUS.ACTIVE` follows `RING_CTRL.ENABLE` within this.
    pub const RING_ENABLE: Duration = Duration::from_micros(10);
    /// A reset (CONTROL.RESET, FLR) completes within this: registers readable, tables cleared.
    pub const RESET: Duration = Duration::from_millis(100);
    /// FLOW_FLUSH (v1.2): 10 µs + 1 ns per flow-table entry; this is the bound for the largest table the driver
    /// accepts (`CAP_FLOW_ENTRIES` ≤ 2^26, docs/hw-spec.md §10).
    pub const FLOW_FLUSH: Duration = Duration::from_nanos(10_000 + (1 << 26));
}

/// A wait is declared failed after this many times the device's bound ...
pub const BOUND_FACTOR: u64 = 10;
/// ... plus this much host scheduling slack: the bounds are the device's, but the driver thread (or a software
/// model sharing the CPU) can be descheduled for far longer than a hardware operation takes.
pub const HOST_SLACK: Duration = Duration::from_secs(2);

/// The timeout of a wait whose device bound is `bound`: `bound × BOUND_FACTOR + HOST_SLACK`.
pub const fn timeout(bound: Duration) -> Duration {
    Duration::from_nanos(bound.as_nanos() as u64 * BOUND_FACTOR + HOST_SLACK.as_nanos() as u64)
}

/// How long the driver waits for one mailbox command before declaring the device hung (≈ 2 s).
pub const COMMAND_TIMEOUT: Duration = timeout(envelope::MAILBOX_COMMAND);

/// How long the driver waits for a reset to complete (≈ 3 s).
pub const RESET_TIMEOUT: Duration = timeout(envelope::RESET);

/// How long the driver waits for a ring batch of `descriptors` moving `entries` table entries (including its
/// FENCEs, each bounded by the pipeline latency).
pub fn batch_timeout(descriptors: u32, entries: u64, fences: u32) -> Duration {
    let bound = envelope::DESCRIPTOR * descriptors
        + envelope::ENTRY * u32::try_from(entries).unwrap_or(u32::MAX)
        + envelope::PIPELINE_LATENCY * fences;
    timeout(bound)
}

/// On a contract v1.0 device (no FENCE), how long the driver waits after the commands that unpublished memory
/// before it reuses that memory: ten times the pipeline latency bound of docs/hw-spec.md §10.
pub const V1_0_DRAIN_WAIT: Duration =
    Duration::from_nanos(envelope::PIPELINE_LATENCY.as_nanos() as u64 * BOUND_FACTOR);

/// One table write. A batch of them executes in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cmd {
    /// Write whole entries from `index` (`data.len()` a multiple of the entry size).
    Write {
        /// Table.
        table: TableId,
        /// First entry.
        index: u32,
        /// Entry bytes.
        data: Vec<u8>,
    },
    /// Write one word of one entry (the commit-word write).
    WriteWord {
        /// Table.
        table: TableId,
        /// Entry.
        index: u32,
        /// Word offset.
        word: u32,
        /// Value.
        value: u32,
    },
    /// Fill `count` entries with `value` in every word.
    Fill {
        /// Table.
        table: TableId,
        /// First entry.
        index: u32,
        /// Entries.
        count: u32,
        /// Word value.
        value: u32,
    },
    /// Wait until every packet that entered the pipeline before this command has left it (docs/hw-spec.md §4,
    /// §8.5): memory the commands before it unpublished may be reused once it has completed.
    Fence,
    /// Invalidate flow-table entries (v1.2, docs/hw-spec.md §11.5); includes a FENCE.
    FlowFlush(FlushSelector),
}

impl Cmd {
    fn table(&self) -> TableId {
        match self {
            Cmd::Write { table, .. } | Cmd::WriteWord { table, .. } | Cmd::Fill { table, .. } => *table,
            Cmd::Fence => TableId::Lb,
            Cmd::FlowFlush(_) => TableId::Flow,
        }
    }
    fn index(&self) -> u32 {
        match self {
            Cmd::Write { index, .. } | Cmd::WriteWord { index, .. } | Cmd::Fill { index, .. } => *index,
            Cmd::Fence => 0,
            Cmd::FlowFlush(s) => s.to_raw().1,
        }
    }
    fn opcode(&self) -> Opcode {
        match self {
            Cmd::Write { .. } => Opcode::Write,
            Cmd::WriteWord { .. } => Opcode::WriteWord,
            Cmd::Fill { .. } => Opcode::Fill,
            Cmd::Fence => Opcode::Fence,
            Cmd::FlowFlush(_) => Opcode::FlowFlush,
        }
    }
}

fn status_name(raw: u32) -> &'static str {
    Status::from_raw(raw).map_or("unknown status", Status::name)
}

/// Poll `done` until it returns true, calling the backend's wait hint between polls.
pub(crate) fn wait_until(
    acc: &mut dyn DeviceAccess,
    register: &'static str,
    limit: Duration,
    mut done: impl FnMut(&mut dyn DeviceAccess) -> bool,
) -> Result<(), DriverError> {
    let start = Instant::now();
    let mut spins = 0u32;
    loop {
        if done(acc) {
            return Ok(());
        }
        spins += 1;
        if spins < 2000 {
            acc.wait_hint();
        } else {
            if start.elapsed() > limit {
                return Err(DriverError::Timeout {
                    register,
                    waited: start.elapsed(),
                });
            }
            acc.wait_hint();
            std::thread::sleep(Duration::from_micros(20));
        }
    }
}

/// The register mailbox (docs/hw-spec.md §4.1).
#[derive(Debug)]
pub struct Mailbox {
    seq: u32,
}

impl Mailbox {
    /// Attach to the mailbox, continuing from the device's last completed sequence number.
    pub fn new(acc: &mut dyn DeviceAccess) -> Mailbox {
        Mailbox {
            seq: acc.read32(MB_DONE_SEQ),
        }
    }

    /// The sequence number of the last command this driver completed.
    pub fn seq(&self) -> u32 {
        self.seq
    }

    /// Execute one staged command and wait for it. `data` is staged into MB_DATA first.
    #[allow(clippy::too_many_arguments)]
    pub fn exec(
        &mut self,
        acc: &mut dyn DeviceAccess,
        op: Opcode,
        table: TableId,
        index: u32,
        count: u32,
        arg: u32,
        data: &[u32],
    ) -> Result<(), DriverError> {
        debug_assert!(data.len() <= MB_DATA_WORDS);
        acc.write_block(MB_DATA, data);
        acc.write32(MB_OPCODE, op as u32);
        acc.write32(MB_TABLE, table as u32);
        acc.write32(MB_INDEX, index);
        acc.write32(MB_COUNT, count);
        acc.write32(MB_ARG, arg);
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        fence(Ordering::SeqCst);
        acc.write32(MB_DOORBELL, seq);
        let limit = match op {
            Opcode::Fence => timeout(envelope::PIPELINE_LATENCY),
            Opcode::FlowFlush => timeout(envelope::FLOW_FLUSH),
            _ => COMMAND_TIMEOUT,
        };
        wait_until(acc, "MB_DONE_SEQ", limit, |a| a.read32(MB_DONE_SEQ) == seq)?;
        let status = acc.read32(MB_STATUS);
        if status != Status::Ok as u32 {
            return Err(DriverError::Command {
                op,
                table: table.name(),
                index,
                status: status_name(status),
            });
        }
        Ok(())
    }

    /// Execute a [`Cmd`] through the mailbox (WRITE of at most 64 bytes).
    pub fn run(&mut self, acc: &mut dyn DeviceAccess, cmd: &Cmd) -> Result<(), DriverError> {
        match cmd {
            Cmd::Write { table, index, data } => {
                let count = (data.len() / table.entry_bytes()) as u32;
                self.exec(
                    acc,
                    Opcode::Write,
                    *table,
                    *index,
                    count,
                    0,
                    &bytes_to_words(data),
                )
            }
            Cmd::WriteWord {
                table,
                index,
                word,
                value,
            } => self.exec(acc, Opcode::WriteWord, *table, *index, 1, *word, &[*value]),
            Cmd::Fill {
                table,
                index,
                count,
                value,
            } => self.exec(acc, Opcode::Fill, *table, *index, *count, *value, &[]),
            // TABLE is ignored by FENCE; any id encodes it.
            Cmd::Fence => self.exec(acc, Opcode::Fence, TableId::Lb, 0, 0, 0, &[]),
            Cmd::FlowFlush(sel) => {
                let (arg, index) = sel.to_raw();
                self.exec(acc, Opcode::FlowFlush, TableId::Flow, index, 1, arg, &[])
            }
        }
    }

    /// Read up to 64 bytes of entries.
    pub fn read(
        &mut self,
        acc: &mut dyn DeviceAccess,
        table: TableId,
        index: u32,
        count: u32,
    ) -> Result<Vec<u8>, DriverError> {
        self.exec(acc, Opcode::Read, table, index, count, 0, &[])?;
        let words = count as usize * table.entry_words();
        Ok((0..words)
            .flat_map(|i| acc.read32(MB_DATA + 4 * i as u32).to_le_bytes())
            .collect())
    }
}

/// The DMA command ring (docs/hw-spec.md §4.2): descriptors and the completion record in one DMA buffer,
/// payloads in a second (the arena).
#[derive(Debug)]
pub struct Ring {
    ring: DmaRegion,
    arena: DmaRegion,
    size_log2: u8,
    tail: u32,
    /// Descriptors written to ring memory since the last doorbell.
    pending: u32,
    /// Table entries the pending descriptors move, and FENCEs among them (for the batch's timeout).
    pending_entries: u64,
    pending_fences: u32,
    pending_flushes: u32,
    /// Bytes of the payload arena used by the pending descriptors.
    arena_used: usize,
    cpl_offset: usize,
    /// Doorbells (`RING_TAIL` writes) rung so far.
    doorbells: u64,
}

const ARENA_BYTES: usize = 2 << 20;

impl Ring {
    /// Allocate ring memory and program + enable the ring.
    pub fn new(acc: &mut dyn DeviceAccess, size_log2: u8) -> Result<Ring, DriverError> {
        let ring_bytes = (1usize << size_log2) * 32;
        let cpl_offset = ring_bytes;
        let ring = acc.alloc_dma(ring_bytes + 64)?;
        let arena = acc.alloc_dma(ARENA_BYTES)?;
        let mut r = Ring {
            ring,
            arena,
            size_log2,
            tail: 0,
            pending: 0,
            pending_entries: 0,
            pending_fences: 0,
            pending_flushes: 0,
            arena_used: 0,
            cpl_offset,
            doorbells: 0,
        };
        r.enable(acc)?;
        Ok(r)
    }

    /// (Re)program and enable the ring: at open, after a device reset or a ring error. Each ENABLE edge is
    /// confirmed through `RING_STATUS.ACTIVE` (docs/hw-spec.md §4.2), so a device that samples its registers cannot
    /// miss the 0 -> 1 toggle that resets its head.
    pub(crate) fn enable(&mut self, acc: &mut dyn DeviceAccess) -> Result<(), DriverError> {
        acc.write32(RING_CTRL, 0);
        wait_until(
            acc,
            "RING_STATUS.ACTIVE to clear",
            timeout(envelope::RING_ENABLE),
            |a| a.read32(RING_STATUS) & RING_STATUS_ACTIVE == 0,
        )?;
        self.ring.window().write_bytes(self.cpl_offset, &[0u8; 16]);
        self.tail = 0;
        self.pending = 0;
        self.pending_entries = 0;
        self.pending_fences = 0;
        self.pending_flushes = 0;
        self.arena_used = 0;
        acc.write64(RING_BASE_LO, self.ring.iova());
        acc.write32(RING_SIZE_LOG2, self.size_log2 as u32);
        acc.write64(RING_CPL_LO, self.ring.iova() + self.cpl_offset as u64);
        acc.write32(RING_TAIL, 0);
        fence(Ordering::SeqCst);
        acc.write32(RING_CTRL, RING_CTRL_ENABLE);
        wait_until(
            acc,
            "RING_STATUS.ACTIVE to set",
            timeout(envelope::RING_ENABLE),
            |a| a.read32(RING_STATUS) & RING_STATUS_ACTIVE != 0,
        )?;
        let st = acc.read32(RING_STATUS);
        if st & RING_STATUS_STOPPED != 0 {
            return Err(DriverError::Command {
                op: Opcode::Nop,
                table: "ring",
                index: 0,
                status: status_name((st >> 8) & 0xFF),
            });
        }
        Ok(())
    }

    fn completion(&self) -> Completion {
        let mut b = [0u8; 16];
        self.ring.window().read_bytes(self.cpl_offset, &mut b);
        Completion::parse(&b)
    }

    /// Doorbells rung so far (one per batch, more when a batch outgrows the ring or the arena).
    pub fn doorbells(&self) -> u64 {
        self.doorbells
    }

    fn capacity(&self) -> usize {
        1usize << self.size_log2
    }

    /// Queue a descriptor whose payload (if any) is `payload`; flushes first when the ring or arena is full.
    fn push(
        &mut self,
        acc: &mut dyn DeviceAccess,
        mut d: Descriptor,
        payload: Option<&[u8]>,
        cmds: &mut Vec<(Opcode, TableId, u32)>,
        origin: (Opcode, TableId, u32),
    ) -> Result<(), DriverError> {
        let need = payload.map_or(0, |p| p.len().next_multiple_of(64));
        if self.pending as usize == self.capacity() || self.arena_used + need > ARENA_BYTES {
            self.flush(acc, cmds)?;
        }
        if let Some(p) = payload {
            self.arena.window().write_bytes(self.arena_used, p);
            d.iova = self.arena.iova() + self.arena_used as u64;
            self.arena_used += need;
        }
        let slot = (self.tail.wrapping_add(self.pending) as usize) & (self.capacity() - 1);
        self.ring.window().write_bytes(slot * 32, &d.emit());
        self.pending += 1;
        match d.opcode {
            Opcode::Fence => self.pending_fences += 1,
            Opcode::FlowFlush => self.pending_flushes += 1,
            Opcode::Write | Opcode::Read | Opcode::Fill => self.pending_entries += u64::from(d.count),
            Opcode::WriteWord | Opcode::Nop => self.pending_entries += 1,
        }
        cmds.push(origin);
        Ok(())
    }

    /// Ring the doorbell for everything queued and wait for the completion record. One MMIO write, no MMIO read.
    fn flush(
        &mut self,
        acc: &mut dyn DeviceAccess,
        cmds: &mut Vec<(Opcode, TableId, u32)>,
    ) -> Result<(), DriverError> {
        if self.pending == 0 {
            return Ok(());
        }
        let start = self.tail;
        let new_tail = self.tail.wrapping_add(self.pending);
        fence(Ordering::SeqCst);
        acc.write32(RING_TAIL, new_tail);
        self.doorbells += 1;
        let mut last = Completion::default();
        let limit = batch_timeout(self.pending, self.pending_entries, self.pending_fences)
            + (envelope::FLOW_FLUSH * BOUND_FACTOR as u32) * self.pending_flushes;
        self.pending_entries = 0;
        self.pending_fences = 0;
        self.pending_flushes = 0;
        let res = wait_until(acc, "ring completion record", limit, |_| {
            last = self.completion();
            last.status != 0 || last.head == new_tail
        });
        self.pending = 0;
        self.arena_used = 0;
        res?;
        if last.status != 0 {
            let i = last.err_index.wrapping_sub(start) as usize;
            let (op, table, index) = cmds.get(i).copied().unwrap_or((Opcode::Nop, TableId::Lb, 0));
            cmds.clear();
            if let Err(e) = self.enable(acc) {
                tracing::error!(error = %e, "could not re-enable the command ring after an error");
            }
            return Err(DriverError::Command {
                op,
                table: table.name(),
                index,
                status: status_name(last.status),
            });
        }
        self.tail = new_tail;
        cmds.clear();
        Ok(())
    }

    /// Execute a batch of commands: as few doorbells as ring and arena size allow (one for most batches).
    pub fn run(&mut self, acc: &mut dyn DeviceAccess, batch: &[Cmd]) -> Result<(), DriverError> {
        let mut origins = Vec::with_capacity(batch.len().min(self.capacity()));
        for c in batch {
            let origin = (c.opcode(), c.table(), c.index());
            match c {
                Cmd::Write { table, index, data } => {
                    // Split very large writes so each fits the arena.
                    let eb = table.entry_bytes();
                    let per = (ARENA_BYTES / 2 / eb).max(1);
                    for (k, chunk) in data.chunks(per * eb).enumerate() {
                        let d = Descriptor {
                            opcode: Opcode::Write,
                            table: Some(*table),
                            index: index + (k * per) as u32,
                            count: (chunk.len() / eb) as u32,
                            arg: 0,
                            iova: 0,
                            value: 0,
                        };
                        self.push(acc, d, Some(chunk), &mut origins, origin)?;
                    }
                }
                Cmd::WriteWord {
                    table,
                    index,
                    word,
                    value,
                } => {
                    let d = Descriptor {
                        opcode: Opcode::WriteWord,
                        table: Some(*table),
                        index: *index,
                        count: 1,
                        arg: *word,
                        iova: 0,
                        value: *value,
                    };
                    self.push(acc, d, None, &mut origins, origin)?;
                }
                Cmd::Fill {
                    table,
                    index,
                    count,
                    value,
                } => {
                    let d = Descriptor {
                        opcode: Opcode::Fill,
                        table: Some(*table),
                        index: *index,
                        count: *count,
                        arg: *value,
                        iova: 0,
                        value: 0,
                    };
                    self.push(acc, d, None, &mut origins, origin)?;
                }
                Cmd::Fence => {
                    let d = Descriptor {
                        opcode: Opcode::Fence,
                        table: None,
                        index: 0,
                        count: 0,
                        arg: 0,
                        iova: 0,
                        value: 0,
                    };
                    self.push(acc, d, None, &mut origins, origin)?;
                }
                Cmd::FlowFlush(sel) => {
                    let (arg, index) = sel.to_raw();
                    let d = Descriptor {
                        opcode: Opcode::FlowFlush,
                        table: Some(TableId::Flow),
                        index,
                        count: 1,
                        arg,
                        iova: 0,
                        value: 0,
                    };
                    self.push(acc, d, None, &mut origins, origin)?;
                }
            }
        }
        self.flush(acc, &mut origins)
    }

    /// DMA-read `count` entries into host memory and return them (chunked by the arena size).
    pub fn read(
        &mut self,
        acc: &mut dyn DeviceAccess,
        table: TableId,
        index: u32,
        count: u32,
    ) -> Result<Vec<u8>, DriverError> {
        let eb = table.entry_bytes();
        let per = (ARENA_BYTES / eb) as u32;
        let mut out = vec![0u8; count as usize * eb];
        let mut done = 0u32;
        let mut origins = Vec::new();
        while done < count {
            let n = per.min(count - done);
            let d = Descriptor {
                opcode: Opcode::Read,
                table: Some(table),
                index: index + done,
                count: n,
                arg: 0,
                iova: self.arena.iova(),
                value: 0,
            };
            // The arena is empty here (every batch ends with a flush), so it can take the whole chunk.
            self.push(acc, d, None, &mut origins, (Opcode::Read, table, index + done))?;
            self.flush(acc, &mut origins)?;
            let off = done as usize * eb;
            self.arena
                .window()
                .read_bytes(0, &mut out[off..off + n as usize * eb]);
            done += n;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The timeouts follow the envelope (docs/hw-spec.md §10): bound × 10 + host slack, growing with the batch.
    #[test]
    fn timeouts_are_derived_from_the_envelope() {
        assert_eq!(COMMAND_TIMEOUT, Duration::from_micros(2_000_100));
        assert_eq!(RESET_TIMEOUT, Duration::from_secs(3));
        assert_eq!(V1_0_DRAIN_WAIT, Duration::from_micros(100));
        assert_eq!(batch_timeout(1, 1, 0), Duration::from_nanos(2_000_010_200));
        // A full ring of descriptors moving a full payload arena (2 MiB of bucket slots), and a FILL clearing all of
        // the reference part's bucket memory (16 Mi slots): bounded, and longer than the smallest batch.
        let full = batch_timeout(1 << 16, (2 << 20) / 4, 0);
        assert!(
            full > batch_timeout(1, 1, 0) && full < Duration::from_secs(5),
            "{full:?}"
        );
        let clear = batch_timeout(1, 1 << 24, 0);
        assert!(
            clear > Duration::from_secs(5) && clear < Duration::from_secs(6),
            "{clear:?}"
        );
    }
}
