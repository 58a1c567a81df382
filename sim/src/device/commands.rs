//! Mailbox and DMA ring command execution (docs/hw-spec.md §4).
//!
//! Both paths share one validator ([`check`]): a command is validated completely — opcode, table, counter-table
//! write protection, index/count range, word offset — before any table memory is touched, so a command that fails
//! changes nothing. DMA payloads are the one thing that can fail after validation; each is transferred in a single
//! [`read`](crate::mem::HostMemory::read)/[`write`](crate::mem::HostMemory::write) call, which checks the whole
//! IOVA range before copying a byte, so a DMA fault also leaves table memory (and host memory) unchanged.
//!
//! **Atomicity.** Table memory is only touched inside [`Device::poll`], which holds `&mut Device`, so the packet
//! pipeline never runs in the middle of a command: every entry write — in fact every command — is atomic with
//! respect to packets. The contract only promises per-entry atomicity for multi-entry commands (a packet may see
//! a multi-entry WRITE partially applied, in index order), and software must not rely on more.
//!
//! **Error precedence** (which status a command with several problems gets): opcode (`bad_opcode`), then table
//! (`bad_table`: unknown id — table 7 on a part without a flow table —, WRITE/WRITE_WORD to a counter table, or
//! anything but READ and FLOW_FLUSH on the flow table), then index/count (`out_of_range`), then
//! word offset (`bad_word`), then DMA (`dma_fault`). `COUNT` is ignored by WRITE_WORD and NOP, `TABLE` by NOP.
//!
//! **Mailbox** ([`poll_mailbox`]): a command is pending while `MB_DOORBELL != mb_done`. The device executes it,
//! writes `MB_STATUS`, then `MB_DONE_SEQ := MB_DOORBELL` (status first: software polls DONE_SEQ, then reads
//! STATUS). WRITE/READ move `1 ≤ COUNT × entry_words ≤ 16` words through `MB_DATA`; a failed READ leaves
//! `MB_DATA` as it was.
//!
//! **Ring** ([`poll_ring`]): see the function for the register protocol. Descriptors with non-zero reserved bytes
//! are rejected with `bad_opcode` (the contract names no status for them; see [`decode_status`]).

use super::Device;
use crate::tables::TableMemory;
use ironlb_hw::entry::ring::{Completion, Descriptor, DESC_SIZE};
use ironlb_hw::regs::*;
use ironlb_hw::DecodeError;
use std::sync::atomic::{fence, Ordering};

/// Commands the device has executed since it was created (model statistics; not cleared by a device reset).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct CommandCounts {
    /// Mailbox commands completed (any status).
    pub mailbox: u64,
    /// Ring descriptors processed (any status, including one whose descriptor read faulted).
    pub descriptors: u64,
    /// Table entries written by successful WRITE, WRITE_WORD (1 each) and FILL commands, both paths.
    pub entries_written: u64,
}

impl Device {
    /// True when this part implements `op`: FENCE from v1.1, FLOW_FLUSH with the flow table (v1.2).
    fn implements(&self, op: Opcode) -> bool {
        match op {
            Opcode::Fence => !self.cfg.is_v1_0(),
            Opcode::FlowFlush => self.cfg.has_flow_table(),
            _ => true,
        }
    }

    /// Commands executed so far, see [`CommandCounts`].
    pub fn command_counts(&self) -> CommandCounts {
        self.counts
    }
}

/// Where a command comes from: the mailbox limits WRITE/READ to its 16 staging words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Mailbox,
    Ring,
}

/// A validated command: every index is inside its table, so execution cannot fail (except a ring DMA).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Checked {
    Nop,
    /// Wait until every packet that entered the pipeline before the command has left it.
    Fence,
    /// FLOW_FLUSH (v1.2): a FENCE, then invalidate the selected flow-table entries.
    FlowFlush(FlushSelector),
    Write {
        table: TableId,
        index: u32,
        count: u32,
    },
    Read {
        table: TableId,
        index: u32,
        count: u32,
    },
    WriteWord {
        table: TableId,
        index: u32,
        word: usize,
        value: u32,
    },
    Fill {
        table: TableId,
        index: u32,
        count: u32,
        value: u32,
    },
}

/// Validate a decoded command (`table` is `None` when the table id is unknown; NOP ignores it).
#[allow(clippy::too_many_arguments)]
fn check(
    tables: &TableMemory,
    src: Source,
    op: Opcode,
    table: Option<TableId>,
    index: u32,
    count: u32,
    arg: u32,
    value: u32,
) -> Result<Checked, Status> {
    match op {
        Opcode::Nop => return Ok(Checked::Nop),
        Opcode::Fence => return Ok(Checked::Fence),
        _ => {}
    }
    // Table 7 exists only on a part with a flow table (v1.2); elsewhere it is an unknown id.
    let has_flow = tables.entries(TableId::Flow) > 0;
    let table = table
        .filter(|t| *t != TableId::Flow || has_flow)
        .ok_or(Status::BadTable)?;
    if op == Opcode::FlowFlush {
        if table != TableId::Flow {
            return Err(Status::BadTable);
        }
        return FlushSelector::from_raw(arg, index)
            .map(Checked::FlowFlush)
            .ok_or(Status::BadWord);
    }
    // Counter tables are read and cleared (FILL), the flow table only read (and flushed) by software.
    let read_only = table == TableId::Flow && op != Opcode::Read;
    if read_only || (table.is_counter() && matches!(op, Opcode::Write | Opcode::WriteWord)) {
        return Err(Status::BadTable);
    }
    let words = table.entry_words();
    match op {
        Opcode::Nop | Opcode::Fence | Opcode::FlowFlush => unreachable!("handled above"),
        Opcode::WriteWord => {
            if !tables.in_range(table, index, 1) {
                return Err(Status::OutOfRange);
            }
            if arg as usize >= words {
                return Err(Status::BadWord);
            }
            Ok(Checked::WriteWord {
                table,
                index,
                word: arg as usize,
                value,
            })
        }
        Opcode::Write | Opcode::Read | Opcode::Fill => {
            if count == 0 || !tables.in_range(table, index, count) {
                return Err(Status::OutOfRange);
            }
            let staged = u64::from(count) * words as u64;
            if src == Source::Mailbox && op != Opcode::Fill && staged > MB_DATA_WORDS as u64 {
                return Err(Status::OutOfRange);
            }
            Ok(match op {
                Opcode::Write => Checked::Write { table, index, count },
                Opcode::Read => Checked::Read { table, index, count },
                _ => Checked::Fill {
                    table,
                    index,
                    count,
                    value: arg,
                },
            })
        }
    }
}

/// Execute the table-only commands (WRITE_WORD, FILL, NOP). Returns the number of entries written.
fn apply_local(tables: &mut TableMemory, cmd: Checked) -> u64 {
    match cmd {
        Checked::WriteWord {
            table,
            index,
            word,
            value,
        } => {
            let e = tables.get_mut(table, index, 1).expect("validated range");
            e[4 * word..4 * word + 4].copy_from_slice(&value.to_le_bytes());
            1
        }
        Checked::Fill {
            table,
            index,
            count,
            value,
        } => {
            let mem = tables.get_mut(table, index, count).expect("validated range");
            let v = value.to_le_bytes();
            for w in mem.chunks_exact_mut(4) {
                w.copy_from_slice(&v);
            }
            u64::from(count)
        }
        Checked::Nop
        | Checked::Fence
        | Checked::FlowFlush(_)
        | Checked::Write { .. }
        | Checked::Read { .. } => 0,
    }
}

// --- mailbox --------------------------------------------------------------------------------------------------

/// Execute a pending mailbox command. Returns true when one ran.
pub(crate) fn poll_mailbox(d: &mut Device) -> bool {
    let bell = d.reg(MB_DOORBELL);
    if bell == d.mb_done {
        return false;
    }
    // The staged fields were written before the doorbell: read them after it.
    fence(Ordering::Acquire);
    let status = match mailbox_command(d) {
        Ok(()) => Status::Ok,
        Err(s) => s,
    };
    d.after_command();
    d.set_reg(MB_STATUS, status as u32);
    // Status (and READ data) must be visible before the sequence number software polls.
    fence(Ordering::Release);
    d.set_reg(MB_DONE_SEQ, bell);
    d.mb_done = bell;
    d.counts.mailbox += 1;
    true
}

fn mailbox_command(d: &mut Device) -> Result<(), Status> {
    let op = Opcode::from_raw(d.reg(MB_OPCODE))
        .filter(|op| d.implements(*op))
        .ok_or(Status::BadOpcode)?;
    let table = TableId::from_raw(d.reg(MB_TABLE));
    let cmd = check(
        &d.tables,
        Source::Mailbox,
        op,
        table,
        d.reg(MB_INDEX),
        d.reg(MB_COUNT),
        d.reg(MB_ARG),
        d.reg(MB_DATA),
    )?;
    match cmd {
        Checked::Write { table, index, count } => {
            let mem = d.tables.get_mut(table, index, count).expect("validated range");
            for (i, w) in mem.chunks_exact_mut(4).enumerate() {
                let v = d.bar.read32((MB_DATA as usize) + 4 * i).unwrap_or(0);
                w.copy_from_slice(&v.to_le_bytes());
            }
            d.counts.entries_written += u64::from(count);
        }
        Checked::Read { table, index, count } => {
            let mem = d.tables.get(table, index, count).expect("validated range");
            for (i, w) in mem.chunks_exact(4).enumerate() {
                let v = u32::from_le_bytes(w.try_into().expect("4 bytes"));
                d.bar.write32((MB_DATA as usize) + 4 * i, v);
            }
        }
        Checked::Fence => d.drain(),
        Checked::FlowFlush(sel) => {
            d.flow_flush(sel);
        }
        local => d.counts.entries_written += apply_local(&mut d.tables, local),
    }
    Ok(())
}

// --- DMA ring -------------------------------------------------------------------------------------------------

/// Ring registers as validated for one batch.
#[derive(Debug, Clone, Copy)]
struct RingCfg {
    base: u64,
    mask: u32,
    cpl: u64,
}

fn reg64(d: &Device, lo: u32) -> u64 {
    u64::from(d.reg(lo)) | u64::from(d.reg(lo + 4)) << 32
}

/// Read and validate RING_SIZE_LOG2, RING_BASE and RING_CPL.
fn ring_config(d: &Device) -> Result<RingCfg, Status> {
    let log2 = d.reg(RING_SIZE_LOG2);
    let base = reg64(d, RING_BASE_LO);
    let cpl = reg64(d, RING_CPL_LO);
    let max = u32::from(d.cfg.caps.ring_max_log2).min(31);
    if !(1..=max).contains(&log2) || base & 63 != 0 || cpl & 15 != 0 {
        return Err(Status::RingConfig);
    }
    Ok(RingCfg {
        base,
        mask: (1u32 << log2) - 1,
        cpl,
    })
}

/// Map a descriptor decode error to the status the device reports.
///
/// An unknown opcode is `bad_opcode` and an unknown table id `bad_table`, as the contract says. Non-zero reserved
/// bytes have no status of their own in the contract; the model refuses such a descriptor with `bad_opcode` (it is
/// not a command this device version understands) rather than silently ignoring bits a later minor may define.
fn decode_status(e: DecodeError) -> Status {
    match e {
        DecodeError::Field { field: "table", .. } => Status::BadTable,
        DecodeError::Field { .. } | DecodeError::Reserved { .. } => Status::BadOpcode,
    }
}

/// Execute pending ring descriptors. Returns true when any ran (or the ring changed state).
///
/// - `RING_CTRL.ENABLE` 0 → 1 (against the last value this function saw): head := 0, `RING_HEAD` := 0,
///   `RING_STATUS`/`RING_ERR_INDEX`/`STATUS.RING_ERROR` cleared, then the configuration is validated
///   (`1 ≤ RING_SIZE_LOG2 ≤ CAP_RING_MAX_LOG2`, base 64-byte and completion record 16-byte aligned); an invalid
///   one stops the ring with `ring_config`. 1 → 0: the ring stops consuming.
/// - While enabled and not stopped, descriptors `head..RING_TAIL` (tail read once per poll, at most
///   `DeviceConfig::ring_budget`, so a huge batch cannot starve packet processing) are DMA-read from `RING_BASE + (i mod size) × 32` and executed in order; then
///   `RING_HEAD` and the completion record `{head, 0, 0, seq + 1}` are written.
/// - A failing descriptor `i` (or an unreadable one) stops the ring: `RING_STATUS = 1 | status << 8`,
///   `RING_ERR_INDEX = i`, `STATUS.RING_ERROR`, `RING_HEAD = i`, and the record `{i, status, i, seq + 1}`. Nothing
///   more runs until ENABLE goes 0 → 1. If the completion record itself cannot be written (DMA fault) the ring
///   stops with `dma_fault` and `RING_ERR_INDEX = head` (the first descriptor not yet consumed).
/// - The ring registers are re-validated at every batch (changing them while enabled is undefined by the
///   contract; the model stops with `ring_config` rather than reading wild memory).
pub(crate) fn poll_ring(d: &mut Device) -> bool {
    let on = d.reg(RING_CTRL) & RING_CTRL_ENABLE != 0;
    let mut worked = false;
    if on != d.ring.enabled {
        d.ring.enabled = on;
        if on {
            start_ring(d);
        } else {
            d.set_reg(RING_STATUS, d.reg(RING_STATUS) & !RING_STATUS_ACTIVE);
        }
        worked = true;
    }
    if !d.ring.enabled || d.ring.stopped {
        return worked;
    }
    let tail = d.reg(RING_TAIL);
    let pending = tail.wrapping_sub(d.ring.head);
    if pending == 0 {
        return worked;
    }
    // Descriptors and payloads were written before the tail: read them after it.
    fence(Ordering::Acquire);
    let cfg = match ring_config(d) {
        Ok(c) => c,
        Err(s) => {
            let head = d.ring.head;
            stop_ring(d, head, s);
            return true;
        }
    };
    for _ in 0..pending.min(d.config().ring_budget.max(1)) {
        let i = d.ring.head;
        let r = run_descriptor(d, &cfg, i);
        d.counts.descriptors += 1;
        d.after_command();
        match r {
            Ok(n) => {
                d.counts.entries_written += n;
                d.ring.head = i.wrapping_add(1);
            }
            Err(s) => {
                stop_ring(d, i, s);
                return true;
            }
        }
    }
    let head = d.ring.head;
    d.set_reg(RING_HEAD, head);
    if write_completion(d, cfg.cpl, head, Status::Ok, 0).is_err() {
        stop_ring(d, head, Status::DmaFault);
    }
    true
}

/// The ENABLE 0 -> 1 transition.
fn start_ring(d: &mut Device) {
    d.ring.head = 0;
    d.ring.stopped = false;
    d.set_reg(RING_HEAD, 0);
    d.set_reg(RING_STATUS, RING_STATUS_ACTIVE);
    d.set_reg(RING_ERR_INDEX, 0);
    d.set_reg(STATUS, d.reg(STATUS) & !STATUS_RING_ERROR);
    if let Err(s) = ring_config(d) {
        stop_ring(d, 0, s);
    }
}

/// Stop the ring on an error at descriptor `index` (== the current head: everything before it completed).
fn stop_ring(d: &mut Device, index: u32, status: Status) {
    d.ring.stopped = true;
    d.set_reg(RING_HEAD, index);
    d.set_reg(RING_ERR_INDEX, index);
    d.set_reg(
        RING_STATUS,
        (d.reg(RING_STATUS) & RING_STATUS_ACTIVE) | RING_STATUS_STOPPED | (status as u32) << 8,
    );
    d.set_reg(STATUS, d.reg(STATUS) | STATUS_RING_ERROR);
    // Best effort: the record may be misaligned (ring_config) or unmapped; the registers already tell the story.
    let cpl = reg64(d, RING_CPL_LO);
    if cpl & 15 == 0 {
        let _ = write_completion(d, cpl, index, status, index);
    }
}

/// DMA-write the completion record (sequence number incremented on every successful write).
fn write_completion(
    d: &mut Device,
    cpl: u64,
    head: u32,
    status: Status,
    err_index: u32,
) -> Result<(), crate::mem::DmaFault> {
    let seq = d.ring.cpl_seq.wrapping_add(1);
    let rec = Completion {
        head,
        status: status as u32,
        err_index,
        seq,
    };
    // Everything the batch did (READ payloads, registers) is visible before the record software polls.
    fence(Ordering::Release);
    d.host.write(cpl, &rec.emit())?;
    d.ring.cpl_seq = seq;
    Ok(())
}

/// Read, validate and execute descriptor `i`. Returns the number of entries written.
fn run_descriptor(d: &mut Device, cfg: &RingCfg, i: u32) -> Result<u64, Status> {
    let slot = u64::from(i & cfg.mask);
    let at = cfg
        .base
        .checked_add(slot * DESC_SIZE as u64)
        .ok_or(Status::DmaFault)?;
    let mut raw = [0u8; DESC_SIZE];
    d.host.read(at, &mut raw).map_err(|_| Status::DmaFault)?;
    let desc = Descriptor::parse(&raw).map_err(decode_status)?;
    if !d.implements(desc.opcode) {
        return Err(Status::BadOpcode);
    }
    let cmd = check(
        &d.tables,
        Source::Ring,
        desc.opcode,
        desc.table,
        desc.index,
        desc.count,
        desc.arg,
        desc.value,
    )?;
    match cmd {
        Checked::Write { table, index, count } => {
            // HostMemory::read checks the whole IOVA range before copying: a fault leaves the table unchanged.
            let mem = d.tables.get_mut(table, index, count).expect("validated range");
            d.host.read(desc.iova, mem).map_err(|_| Status::DmaFault)?;
            Ok(u64::from(count))
        }
        Checked::Read { table, index, count } => {
            let mem = d.tables.get(table, index, count).expect("validated range");
            d.host.write(desc.iova, mem).map_err(|_| Status::DmaFault)?;
            Ok(0)
        }
        Checked::Fence => {
            d.drain();
            Ok(0)
        }
        Checked::FlowFlush(sel) => {
            d.flow_flush(sel);
            Ok(0)
        }
        local => Ok(apply_local(&mut d.tables, local)),
    }
}

#[cfg(test)]
mod tests {
    use crate::{Device, DeviceConfig};
    use ironlb_hw::regs::*;

    fn write(d: &Device, off: u32, v: u32) {
        assert!(d.bar().write32(off as usize, v));
    }

    #[test]
    fn a_device_without_ring_refuses_to_enable_it_and_serves_the_mailbox() {
        let mut d = Device::new(DeviceConfig::small().without_ring()).unwrap();
        assert_eq!(d.reg(CAP_RING_MAX_LOG2), 0);
        // A configuration that a device with a ring would accept (inside host memory, aligned, n = 1).
        let base = d.config().host_iova_base;
        write(&d, RING_BASE_LO, base as u32);
        write(&d, RING_BASE_HI, (base >> 32) as u32);
        write(&d, RING_SIZE_LOG2, 1);
        write(&d, RING_CPL_LO, (base + 64) as u32);
        write(&d, RING_CPL_HI, ((base + 64) >> 32) as u32);
        write(&d, RING_CTRL, RING_CTRL_ENABLE);
        d.poll();
        let st = d.reg(RING_STATUS);
        assert_eq!(
            st,
            RING_STATUS_ACTIVE | RING_STATUS_STOPPED | (Status::RingConfig as u32) << 8
        );
        assert_ne!(d.reg(STATUS) & STATUS_RING_ERROR, 0);

        // The mailbox still works: WRITE then READ back one target entry.
        let entry: Vec<u32> = (1..=8).collect();
        for (i, w) in entry.iter().enumerate() {
            write(&d, MB_DATA + 4 * i as u32, *w);
        }
        for (reg, v) in [
            (MB_OPCODE, Opcode::Write as u32),
            (MB_TABLE, TableId::Target as u32),
            (MB_INDEX, 7),
            (MB_COUNT, 1),
            (MB_DOORBELL, 1),
        ] {
            write(&d, reg, v);
        }
        d.poll();
        assert_eq!((d.reg(MB_DONE_SEQ), d.reg(MB_STATUS)), (1, Status::Ok as u32));
        assert_eq!(
            d.tables().entry(TableId::Target, 7),
            entry
                .iter()
                .flat_map(|w| w.to_le_bytes())
                .collect::<Vec<_>>()
                .as_slice()
        );
    }
}
