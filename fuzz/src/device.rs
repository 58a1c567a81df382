//! Target `device`: a command stream from a buggy driver against the device model's register file, mailbox and DMA
//! ring (docs/hw-spec.md §3–§4), with packets over whatever the tables then hold.
//!
//! The input is a sequence of operations (one opcode byte each, then its operands): a mailbox command, a DMA ring
//! configuration (valid or not) with an ENABLE edge, a batch of ring descriptors, a host-memory scribble, a write
//! of any value to any register (including reset, drop clear, doorbells and the device-owned registers), a packet
//! on any port, and a bare poll.
//!
//! What every input must satisfy:
//! * the model never panics, whatever the registers, descriptors and host memory hold;
//! * every mailbox command completes (`MB_DONE_SEQ` = the doorbell) with the status the contract gives it, computed
//!   here independently from the command's fields (error precedence of sim/src/device/commands.rs: opcode, table,
//!   index/count, word); a command that succeeds changes exactly the entries it names, one that fails changes no
//!   table entry and leaves the staging data as it was;
//! * on a ring the harness configured validly, every descriptor of a batch runs with the status computed here
//!   (including DMA faults and reserved bytes), in order, until the first failure, which stops the ring with that
//!   status and index in `RING_STATUS`, `RING_ERR_INDEX`, `RING_HEAD` and the completion record; table memory and
//!   host memory end up exactly as a reference execution of the same descriptors leaves them;
//! * an invalid ring configuration stops the ring with `ring_config` on the ENABLE edge;
//! * a packet is forwarded behind a 40-byte header or dropped for a reason that is counted.

use crate::Bytes;
use ironlb_hw::caps::Caps;
use ironlb_hw::entry::ring::{Completion, CPL_SIZE, DESC_SIZE};
use ironlb_hw::regs::*;
use ironlb_hw::DropReason;
use ironlb_sim::TableMemory;
use ironlb_sim::{Device, DeviceConfig, Verdict};
use std::cell::RefCell;

/// A tiny part: every table a few entries, so any index the input names is near a boundary, and copying all table
/// memory for the reference execution is cheap.
pub fn config() -> DeviceConfig {
    DeviceConfig {
        caps: Caps {
            lb_buckets: 4,
            ranges: 32,
            max_ranges_per_lb: 16,
            targets: 16,
            max_targets_per_lb: 16,
            bucket_slots: 64,
            bucket_log2_min: 1,
            bucket_log2_max: 6,
            lb_ids: 8,
            ports: 4,
            ring_max_log2: 4,
            flow_entries: 16,
            flow_ways: 4,
            ..DeviceConfig::small().caps
        },
        host_mem_len: HOST_LEN,
        host_iova_base: HOST_BASE,
        ring_budget: 3,
    }
}

/// IOVA of host memory.
const HOST_BASE: u64 = 0x1_0000_0000;
/// Bytes of host memory.
const HOST_LEN: usize = 8192;
/// Where the harness puts a valid ring (16 descriptors at most).
const RING_AT: u64 = HOST_BASE;
/// Where the harness puts a valid completion record.
const CPL_AT: u64 = HOST_BASE + 512;
/// Start of the payload area.
const PAYLOAD_AT: u64 = HOST_BASE + 1024;

thread_local! {
    static DEVICE: RefCell<Device> = RefCell::new(Device::new(config()).expect("anonymous device memory"));
}

/// What the harness knows about the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ring {
    /// Not enabled by the harness, or a register write made its state unknown: batches run unchecked.
    Unknown,
    /// Enabled by the harness with a valid configuration; `head` is the next descriptor; `size_log2` its size.
    Running { head: u32, size_log2: u32 },
    /// Stopped on an error (by the harness's knowledge).
    Stopped,
}

struct Harness<'d> {
    dev: &'d mut Device,
    /// The device's internal "last completed doorbell" (mirrors what a reset or a command makes it).
    mb_done: u32,
    ring: Ring,
    /// The completion record's sequence number as the device last wrote it (`None`: the input did something after
    /// which it is not known, e.g. a batch on a ring the harness did not configure).
    cpl_seq: Option<u32>,
    /// The input wrote a register only the device writes (status, head, ...): those no longer tell the truth
    /// until the next reset.
    scribbled: bool,
}

/// The harness (see the module documentation).
pub fn run(data: &[u8]) {
    DEVICE.with(|d| {
        let mut dev = d.borrow_mut();
        // Every input starts from the same state (persistent mode reuses the device): reset, host memory zeroed.
        dev.reset();
        dev.host().write(HOST_BASE, &[0; HOST_LEN]).expect("host window");
        let mut h = Harness {
            dev: &mut dev,
            mb_done: 0,
            ring: Ring::Unknown,
            cpl_seq: Some(0),
            scribbled: false,
        };
        let mut b = Bytes::new(data);
        let mut ops = 0;
        while !b.is_empty() && ops < 256 {
            ops += 1;
            match b.u8() % 7 {
                0 => h.mailbox(&mut b),
                1 => h.ring_config(&mut b),
                2 => h.ring_batch(&mut b),
                3 => h.host_write(&mut b),
                4 => h.register_write(&mut b),
                5 => h.packet(&mut b),
                _ => h.poll(),
            }
        }
    });
}

/// All table memory, table by table.
fn snapshot(t: &TableMemory) -> Vec<Vec<u8>> {
    TableId::ALL
        .iter()
        .map(|&id| t.get(id, 0, t.entries(id)).expect("whole table").to_vec())
        .collect()
}

fn host_snapshot(d: &Device) -> Vec<u8> {
    let mut m = vec![0; HOST_LEN];
    d.host().read(HOST_BASE, &mut m).expect("host window");
    m
}

/// Where a command comes from (the mailbox stages at most 16 words).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Mailbox,
    Ring,
}

/// The status the contract gives a decoded command, computed from its fields alone (docs/hw-spec.md §4).
fn expected_status(
    t: &TableMemory,
    src: Source,
    op: Opcode,
    table: Option<TableId>,
    index: u32,
    count: u32,
    arg: u32,
) -> Status {
    if matches!(op, Opcode::Nop | Opcode::Fence) {
        return Status::Ok;
    }
    let Some(table) = table else {
        return Status::BadTable;
    };
    // The flow table (v1.2): FLOW_FLUSH with a known selector, and READ; nothing else.
    if op == Opcode::FlowFlush {
        return match (table, FlushSelector::from_raw(arg, index)) {
            (TableId::Flow, Some(_)) => Status::Ok,
            (TableId::Flow, None) => Status::BadWord,
            _ => Status::BadTable,
        };
    }
    if table == TableId::Flow && op != Opcode::Read {
        return Status::BadTable;
    }
    let counter = matches!(table, TableId::LbCounter | TableId::TargetCounter);
    if counter && matches!(op, Opcode::Write | Opcode::WriteWord) {
        return Status::BadTable;
    }
    let entries = u64::from(t.entries(table));
    let words = table.entry_bytes() as u64 / 4;
    match op {
        Opcode::WriteWord if u64::from(index) >= entries => Status::OutOfRange,
        Opcode::WriteWord if u64::from(arg) >= words => Status::BadWord,
        Opcode::WriteWord | Opcode::Nop | Opcode::Fence | Opcode::FlowFlush => Status::Ok,
        Opcode::Write | Opcode::Read | Opcode::Fill => {
            let fits = count > 0 && u64::from(index) + u64::from(count) <= entries;
            let staged = u64::from(count) * words;
            if !fits || (src == Source::Mailbox && op != Opcode::Fill && staged > MB_DATA_WORDS as u64) {
                Status::OutOfRange
            } else {
                Status::Ok
            }
        }
    }
}

/// Apply a valid table-only command (WRITE_WORD, FILL) to the reference tables.
fn apply_local(
    t: &mut TableMemory,
    op: Opcode,
    table: TableId,
    index: u32,
    count: u32,
    arg: u32,
    value: u32,
) {
    match op {
        Opcode::WriteWord => {
            let e = t.get_mut(table, index, 1).expect("checked index");
            e[4 * arg as usize..4 * arg as usize + 4].copy_from_slice(&value.to_le_bytes());
        }
        Opcode::Fill => {
            for w in t
                .get_mut(table, index, count)
                .expect("checked range")
                .chunks_exact_mut(4)
            {
                w.copy_from_slice(&arg.to_le_bytes());
            }
        }
        _ => {}
    }
}

/// A host IOVA range inside the window: its offset.
fn host_offset(iova: u64, len: usize) -> Option<usize> {
    let o = iova.checked_sub(HOST_BASE)?;
    let end = o.checked_add(len as u64)?;
    (end <= HOST_LEN as u64).then_some(o as usize)
}

impl Harness<'_> {
    fn poll(&mut self) {
        if self.dev.reg(CONTROL) & CONTROL_RESET != 0 {
            self.dev.poll();
            self.mb_done = 0;
            self.ring = Ring::Unknown;
            self.cpl_seq = Some(0);
            self.scribbled = false;
            assert_eq!(self.dev.reg(CONTROL), 0, "reset left CONTROL set");
            assert!(
                snapshot(self.dev.tables())
                    .iter()
                    .all(|t| t.iter().all(|&b| b == 0)),
                "reset left table memory"
            );
            assert_eq!(
                self.dev.drop_counters(),
                [0; DropReason::COUNT],
                "reset left drop counters"
            );
            return;
        }
        let clear = self.dev.reg(DROP_CLEAR) != 0;
        if self.dev.reg(MB_DOORBELL) != self.mb_done {
            self.mailbox_poll();
        } else {
            self.dev.poll();
        }
        if clear {
            assert_eq!(
                self.dev.drop_counters(),
                [0; DropReason::COUNT],
                "DROP_CLEAR left drop counters"
            );
            assert_eq!(self.dev.reg(DROP_CLEAR), 0, "DROP_CLEAR did not clear itself");
        }
        if let Ring::Running { head, .. } = self.ring {
            // The tail equals the head between batches: a poll runs nothing.
            assert_eq!(self.dev.reg(RING_HEAD), head, "an idle ring moved");
        }
        if !self.scribbled {
            check_ring_registers(self.dev);
        }
    }

    /// The ring may execute descriptors in the next poll (or the registers no longer tell).
    fn ring_may_run(&self) -> bool {
        let d = &*self.dev;
        self.scribbled
            || (d.reg(RING_CTRL) & RING_CTRL_ENABLE != 0
                && d.reg(RING_STATUS) & RING_STATUS_STOPPED == 0
                && d.reg(RING_TAIL) != d.reg(RING_HEAD))
    }

    /// Poll with a mailbox command pending (doorbell != last done); check its completion.
    fn mailbox_poll(&mut self) {
        let d = &*self.dev;
        let bell = d.reg(MB_DOORBELL);
        let raw_op = d.reg(MB_OPCODE);
        let table = TableId::from_raw(d.reg(MB_TABLE));
        let (index, count, arg) = (d.reg(MB_INDEX), d.reg(MB_COUNT), d.reg(MB_ARG));
        let staged: Vec<u32> = (0..MB_DATA_WORDS as u32)
            .map(|i| d.reg(MB_DATA + 4 * i))
            .collect();
        let before = d.tables().clone();
        let ring_may_run = self.ring_may_run();
        let (want, expected) = match Opcode::from_raw(raw_op) {
            None => (Status::BadOpcode, before.clone()),
            Some(op) => {
                let s = expected_status(&before, Source::Mailbox, op, table, index, count, arg);
                let mut t = before.clone();
                if s == Status::Ok && !matches!(op, Opcode::Nop | Opcode::Fence | Opcode::FlowFlush) {
                    let table = table.expect("checked table");
                    if op == Opcode::Write {
                        let mem = t.get_mut(table, index, count).expect("checked range");
                        for (w, v) in mem.chunks_exact_mut(4).zip(&staged) {
                            w.copy_from_slice(&v.to_le_bytes());
                        }
                    } else {
                        apply_local(&mut t, op, table, index, count, arg, staged[0]);
                    }
                }
                (s, t)
            }
        };
        // A successful READ copies the entries into the staging words.
        let mut want_staged = staged.clone();
        if want == Status::Ok && Opcode::from_raw(raw_op) == Some(Opcode::Read) {
            let mem = before
                .get(table.expect("checked"), index, count)
                .expect("checked range");
            for (w, b) in want_staged.iter_mut().zip(mem.chunks_exact(4)) {
                *w = u32::from_le_bytes(b.try_into().expect("4 bytes"));
            }
        }
        self.dev.poll();
        let d = &*self.dev;
        self.mb_done = bell;
        assert_eq!(d.reg(MB_DONE_SEQ), bell, "mailbox command did not complete");
        assert_eq!(
            Status::from_raw(d.reg(MB_STATUS)),
            Some(want),
            "mailbox op {raw_op} table {table:?} index {index} count {count} arg {arg}"
        );
        let got: Vec<u32> = (0..MB_DATA_WORDS as u32)
            .map(|i| d.reg(MB_DATA + 4 * i))
            .collect();
        assert_eq!(got, want_staged, "mailbox staging words");
        if !ring_may_run {
            assert_eq!(
                snapshot(d.tables()),
                snapshot(&expected),
                "table memory after the mailbox command"
            );
        }
    }

    /// Operation 0: stage a mailbox command and ring the doorbell (or not).
    fn mailbox(&mut self, b: &mut Bytes<'_>) {
        let op = u32::from(b.u8());
        let table = u32::from(b.u8());
        let index = u32::from(b.u16());
        let count = u32::from(b.u8());
        let arg = b.u32();
        let words = usize::from(b.u8()) % (MB_DATA_WORDS + 1);
        let regs = [
            (MB_OPCODE, op),
            (MB_TABLE, table),
            (MB_INDEX, index),
            (MB_COUNT, count),
            (MB_ARG, arg),
        ];
        for (r, v) in regs {
            self.dev.bar().write32(r as usize, v);
        }
        for i in 0..words {
            self.dev.bar().write32(MB_DATA as usize + 4 * i, b.u32());
        }
        self.dev
            .bar()
            .write32(MB_DOORBELL as usize, self.mb_done.wrapping_add(1));
        self.poll();
    }

    /// Operation 1: configure the ring (valid or not) and give it an ENABLE 0 -> 1 edge.
    fn ring_config(&mut self, b: &mut Bytes<'_>) {
        let log2 = u32::from(b.u8() % 6); // 0 and 5 are invalid (CAP_RING_MAX_LOG2 = 4)
        let base = match b.u8() % 4 {
            0 => RING_AT,
            1 => RING_AT + 32, // misaligned
            2 => 0,            // outside host memory: valid configuration, every read faults
            _ => HOST_BASE + HOST_LEN as u64 - 64,
        };
        let cpl = match b.u8() % 4 {
            0 => CPL_AT,
            1 => CPL_AT + 4, // misaligned
            2 => 0,          // outside host memory
            _ => HOST_BASE + HOST_LEN as u64 - 16,
        };
        let w = |r: u32, v: u32| write(self.dev, r, v);
        w(RING_BASE_LO, base as u32);
        w(RING_BASE_HI, (base >> 32) as u32);
        w(RING_SIZE_LOG2, log2);
        w(RING_CPL_LO, cpl as u32);
        w(RING_CPL_HI, (cpl >> 32) as u32);
        w(RING_CTRL, 0);
        self.dev.poll();
        write(self.dev, RING_CTRL, RING_CTRL_ENABLE);
        write(self.dev, RING_TAIL, 0);
        self.dev.poll();
        let d = &*self.dev;
        let valid = (1..=4).contains(&log2) && base % 64 == 0 && cpl % 16 == 0;
        assert_ne!(
            d.reg(RING_STATUS) & RING_STATUS_ACTIVE,
            0,
            "ENABLE edge not taken"
        );
        assert_eq!(d.reg(RING_HEAD), 0, "ENABLE edge did not reset the head");
        if valid {
            assert_eq!(
                d.reg(RING_STATUS),
                RING_STATUS_ACTIVE,
                "valid ring configuration refused"
            );
            let good = base == RING_AT && cpl == CPL_AT;
            self.ring = if good {
                Ring::Running {
                    head: 0,
                    size_log2: log2,
                }
            } else {
                Ring::Unknown
            };
        } else {
            // The stop is recorded in the completion record when it is aligned and mapped.
            if cpl % 16 == 0 && host_offset(cpl, CPL_SIZE).is_some() {
                self.cpl_seq = self.cpl_seq.map(|s| s.wrapping_add(1));
            }
            let want = RING_STATUS_ACTIVE | RING_STATUS_STOPPED | (Status::RingConfig as u32) << 8;
            assert_eq!(d.reg(RING_STATUS), want, "invalid ring configuration accepted");
            assert_ne!(d.reg(STATUS) & STATUS_RING_ERROR, 0, "STATUS.RING_ERROR not set");
            self.ring = Ring::Stopped;
        }
    }

    /// Operation 2: write a batch of descriptors at the head, move the tail, run them.
    fn ring_batch(&mut self, b: &mut Bytes<'_>) {
        let k = u32::from(b.u8() % 16) + 1;
        let descs: Vec<[u8; DESC_SIZE]> = (0..k).map(|_| descriptor(b)).collect();
        match self.ring {
            Ring::Running { head, size_log2 } => self.checked_batch(head, size_log2, &descs),
            Ring::Unknown | Ring::Stopped => {
                // Somewhere in host memory, any tail: only "no panic" and register sanity.
                let at = PAYLOAD_AT + u64::from(b.u8()) * 8;
                for (i, d) in descs.iter().enumerate() {
                    let _ = self.dev.host().write(at + 32 * i as u64, d);
                }
                self.cpl_seq = None;
                let tail = self.dev.reg(RING_HEAD).wrapping_add(k);
                self.dev.bar().write32(RING_TAIL as usize, tail);
                for _ in 0..=k {
                    self.dev.poll();
                }
                if !self.scribbled {
                    check_ring_registers(self.dev);
                }
            }
        }
    }

    fn checked_batch(&mut self, head: u32, size_log2: u32, descs: &[[u8; DESC_SIZE]]) {
        let size = 1u32 << size_log2;
        let descs = &descs[..descs.len().min(size as usize)];
        let k = descs.len() as u32;
        for (i, d) in descs.iter().enumerate() {
            let slot = head.wrapping_add(i as u32) & (size - 1);
            self.dev
                .host()
                .write(RING_AT + 32 * u64::from(slot), d)
                .expect("ring inside host memory");
        }
        // Reference execution over copies of table and host memory.
        let mut tables = self.dev.tables().clone();
        let mut host = host_snapshot(self.dev);
        let budget = self.dev.config().ring_budget;
        let tail = head.wrapping_add(k);
        let mut i = head;
        let mut failed = None;
        let mut polls = 0;
        let mut seq = self.cpl_seq;
        while i != tail && failed.is_none() {
            polls += 1;
            for _ in 0..budget.min(tail.wrapping_sub(i)) {
                match reference_descriptor(&mut tables, &mut host, i, size) {
                    Ok(()) => i = i.wrapping_add(1),
                    Err(s) => {
                        failed = Some(s);
                        break;
                    }
                }
            }
            seq = seq.map(|s| s.wrapping_add(1));
            let rec = Completion {
                head: i,
                status: failed.map_or(0, |s| s as u32),
                err_index: failed.map_or(0, |_| i),
                seq: seq.unwrap_or(0),
            };
            let o = (CPL_AT - HOST_BASE) as usize;
            host[o..o + CPL_SIZE].copy_from_slice(&rec.emit());
        }
        // The device: move the tail, poll as often as the budget needs.
        self.dev.bar().write32(RING_TAIL as usize, tail);
        for _ in 0..polls {
            self.dev.poll();
        }
        let d = &*self.dev;
        let got_host = host_snapshot(d);
        let o = (CPL_AT - HOST_BASE) as usize;
        let rec = Completion::parse(&got_host[o..o + CPL_SIZE].try_into().expect("16 bytes"));
        self.cpl_seq = seq;
        assert_eq!(d.reg(RING_HEAD), i, "RING_HEAD after the batch");
        match failed {
            None => {
                assert_eq!(
                    d.reg(RING_STATUS),
                    RING_STATUS_ACTIVE,
                    "ring stopped on valid descriptors"
                );
                self.ring = Ring::Running { head: i, size_log2 };
            }
            Some(s) => {
                let want = RING_STATUS_ACTIVE | RING_STATUS_STOPPED | (s as u32) << 8;
                assert_eq!(d.reg(RING_STATUS), want, "RING_STATUS after a failed descriptor");
                assert_eq!(d.reg(RING_ERR_INDEX), i, "RING_ERR_INDEX");
                assert_ne!(d.reg(STATUS) & STATUS_RING_ERROR, 0, "STATUS.RING_ERROR not set");
                assert_eq!(
                    (rec.status, rec.err_index),
                    (s as u32, i),
                    "completion record of the failure"
                );
                self.ring = Ring::Stopped;
            }
        }
        assert_eq!(rec.head, i, "completion record head");
        if let Some(seq) = seq {
            // Exact only while the sequence number is known: a WRITE may take its payload from the record.
            assert_eq!(rec.seq, seq, "completion record sequence number");
            assert_eq!(
                snapshot(d.tables()),
                snapshot(&tables),
                "table memory after the batch"
            );
            assert!(got_host == host, "host memory after the batch");
        }
    }

    /// Operation 3: write bytes anywhere in host memory (payloads, descriptors, the completion record).
    fn host_write(&mut self, b: &mut Bytes<'_>) {
        let off = usize::from(b.u16()) % HOST_LEN;
        let n = usize::from(b.u8());
        let bytes = b.take(n);
        let n = bytes.len().min(HOST_LEN - off);
        // Descriptors are written by the batch operation: a scribble over the ring area before it is harmless.
        self.dev
            .host()
            .write(HOST_BASE + off as u64, &bytes[..n])
            .expect("inside host memory");
    }

    /// Operation 4: any value to any register, then a poll.
    fn register_write(&mut self, b: &mut Bytes<'_>) {
        let off = u32::from(b.u16()) & !3;
        let value = b.u32();
        self.dev.bar().write32(off as usize, value);
        if (RING_BASE_LO..=RING_ERR_INDEX).contains(&off) {
            self.ring = Ring::Unknown;
            self.cpl_seq = None;
        }
        let device_owned = [
            ID,
            VERSION,
            STATUS,
            MB_DONE_SEQ,
            MB_STATUS,
            RING_HEAD,
            RING_STATUS,
            RING_ERR_INDEX,
        ];
        if device_owned.contains(&off) || (CAP_LB_BUCKETS..=CAP_RING_MAX_LOG2).contains(&off) {
            self.scribbled = true;
        }
        self.poll();
    }

    /// Operation 5: a packet on a port, over whatever the tables hold.
    fn packet(&mut self, b: &mut Bytes<'_>) {
        let port = u32::from(b.u8() % 5);
        let len = usize::from(b.u8());
        let pkt = b.take(len);
        let before = self.dev.drop_counters();
        match self.dev.process(port, pkt) {
            Verdict::Drop(r) => {
                let after = self.dev.drop_counters();
                assert_eq!(
                    after[r.index()],
                    before[r.index()].wrapping_add(1),
                    "drop not counted"
                );
            }
            Verdict::Forward { packet, .. } => {
                assert!(packet.len() >= 40, "forwarded without an outer header");
                assert_eq!(
                    Some(&packet[40..]),
                    pkt.get(..packet.len() - 40),
                    "inner datagram changed"
                );
            }
        }
    }
}

/// One descriptor from the input: mostly well-formed fields, reserved bytes set when the input says so, the
/// payload IOVA in the payload area, across the end of host memory, or anywhere.
fn descriptor(b: &mut Bytes<'_>) -> [u8; DESC_SIZE] {
    let mut d = [0u8; DESC_SIZE];
    let flags = b.u8();
    d[0] = b.u8() % 8;
    d[1] = b.u8() % 8;
    d[4..8].copy_from_slice(&u32::from(b.u16()).to_le_bytes());
    d[8..12].copy_from_slice(&u32::from(b.u8()).to_le_bytes());
    d[12..16].copy_from_slice(&b.u32().to_le_bytes());
    let iova = match flags & 3 {
        0 => PAYLOAD_AT + u64::from(b.u16()) % 4096,
        1 => HOST_BASE + HOST_LEN as u64 - u64::from(b.u8()),
        2 => RING_AT + u64::from(b.u16()) % 1024,
        _ => u64::from(b.u32()) << 8 | u64::from(b.u8()),
    };
    d[16..24].copy_from_slice(&iova.to_le_bytes());
    d[24..28].copy_from_slice(&b.u32().to_le_bytes());
    if flags & 4 != 0 {
        d[2] = b.u8() | 1;
    }
    if flags & 8 != 0 {
        d[28] = b.u8() | 1;
    }
    d
}

/// Execute descriptor `i` on the reference copies: its status, and its effect on success.
fn reference_descriptor(t: &mut TableMemory, host: &mut [u8], i: u32, size: u32) -> Result<(), Status> {
    let at = RING_AT + u64::from(i & (size - 1)) * DESC_SIZE as u64;
    let o = host_offset(at, DESC_SIZE).ok_or(Status::DmaFault)?;
    let raw: [u8; DESC_SIZE] = host[o..o + DESC_SIZE].try_into().expect("32 bytes");
    let op = Opcode::from_raw(u32::from(raw[0])).ok_or(Status::BadOpcode)?;
    let table = TableId::from_raw(u32::from(raw[1]));
    if !matches!(op, Opcode::Nop | Opcode::Fence) && table.is_none() {
        return Err(Status::BadTable);
    }
    if raw[2..4] != [0, 0] || raw[28..32] != [0; 4] {
        return Err(Status::BadOpcode);
    }
    let u32_at = |r: std::ops::Range<usize>| u32::from_le_bytes(raw[r].try_into().expect("4 bytes"));
    let (index, count, arg, value) = (u32_at(4..8), u32_at(8..12), u32_at(12..16), u32_at(24..28));
    let iova = u64::from_le_bytes(raw[16..24].try_into().expect("8 bytes"));
    match expected_status(t, Source::Ring, op, table, index, count, arg) {
        Status::Ok => {}
        s => return Err(s),
    }
    let Some(table) = table.filter(|_| !matches!(op, Opcode::Nop | Opcode::Fence | Opcode::FlowFlush)) else {
        return Ok(());
    };
    let len = count as usize * table.entry_bytes();
    match op {
        Opcode::Write => {
            let h = host_offset(iova, len).ok_or(Status::DmaFault)?;
            t.get_mut(table, index, count)
                .expect("checked")
                .copy_from_slice(&host[h..h + len]);
        }
        Opcode::Read => {
            let h = host_offset(iova, len).ok_or(Status::DmaFault)?;
            host[h..h + len].copy_from_slice(t.get(table, index, count).expect("checked"));
        }
        _ => apply_local(t, op, table, index, count, arg, value),
    }
    Ok(())
}

/// A register write as the driver does it.
fn write(d: &Device, reg: u32, v: u32) {
    d.bar().write32(reg as usize, v);
}

/// Registers the device owns hold values the contract allows.
fn check_ring_registers(d: &Device) {
    let st = d.reg(RING_STATUS);
    assert_eq!(st & !0xFF03, 0, "RING_STATUS reserved bits set: {st:#x}");
    if st & RING_STATUS_STOPPED != 0 {
        let s = Status::from_raw(st >> 8 & 0xFF);
        assert!(
            s.is_some_and(|s| s != Status::Ok),
            "stopped ring without an error status: {st:#x}"
        );
    }
    assert!(
        Status::from_raw(d.reg(MB_STATUS)).is_some(),
        "MB_STATUS is not a status"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The independent status oracle gives the contract's status for one command of each kind of fault, in the
    /// contract's precedence.
    #[test]
    fn expected_status_follows_the_contract() {
        let t = TableMemory::new(&config());
        let mb =
            |op, table, index, count, arg| expected_status(&t, Source::Mailbox, op, table, index, count, arg);
        let ring =
            |op, table, index, count, arg| expected_status(&t, Source::Ring, op, table, index, count, arg);
        use Opcode::*;
        use TableId::*;
        assert_eq!(mb(Nop, None, u32::MAX, 0, 99), Status::Ok);
        assert_eq!(mb(Write, None, 0, 1, 0), Status::BadTable);
        assert_eq!(
            mb(Write, Some(LbCounter), 99, 0, 0),
            Status::BadTable,
            "table before range"
        );
        assert_eq!(mb(WriteWord, Some(TargetCounter), 0, 1, 0), Status::BadTable);
        assert_eq!(
            mb(Fill, Some(LbCounter), 0, 8, 0),
            Status::Ok,
            "FILL clears counters"
        );
        assert_eq!(mb(Read, Some(LbCounter), 0, 4, 0), Status::Ok);
        assert_eq!(
            mb(Read, Some(LbCounter), 0, 5, 0),
            Status::OutOfRange,
            "more than 16 staged words"
        );
        assert_eq!(
            ring(Read, Some(LbCounter), 0, 8, 0),
            Status::Ok,
            "the ring has no staging limit"
        );
        assert_eq!(mb(Write, Some(Range), 31, 1, 0), Status::Ok);
        assert_eq!(mb(Write, Some(Range), 31, 2, 0), Status::OutOfRange);
        assert_eq!(mb(Fill, Some(Bucket), 0, 0, 0), Status::OutOfRange, "count 0");
        assert_eq!(mb(Fill, Some(Bucket), 0, 64, 0), Status::Ok);
        assert_eq!(
            mb(Fill, Some(Bucket), u32::MAX, 2, 0),
            Status::OutOfRange,
            "index + count wraps"
        );
        assert_eq!(
            mb(WriteWord, Some(Lb), 15, 0, 15),
            Status::Ok,
            "WRITE_WORD ignores COUNT"
        );
        assert_eq!(
            mb(WriteWord, Some(Lb), 16, 1, 16),
            Status::OutOfRange,
            "index before word"
        );
        assert_eq!(mb(WriteWord, Some(Lb), 0, 1, 16), Status::BadWord);
    }

    /// The reference ring execution reports DMA faults and reserved bytes as the contract does.
    #[test]
    fn reference_descriptor_statuses() {
        let mut t = TableMemory::new(&config());
        let mut host = vec![0u8; HOST_LEN];
        let mut put = |i: usize, d: [u8; DESC_SIZE]| host[32 * i..32 * i + 32].copy_from_slice(&d);
        let desc = |op: u8, table: u8, count: u32, iova: u64| {
            let mut d = [0u8; DESC_SIZE];
            d[0] = op;
            d[1] = table;
            d[8..12].copy_from_slice(&count.to_le_bytes());
            d[16..24].copy_from_slice(&iova.to_le_bytes());
            d
        };
        put(0, desc(1, 3, 1, PAYLOAD_AT));
        put(1, desc(1, 3, 1, HOST_BASE + HOST_LEN as u64 - 16));
        let mut reserved = desc(5, 0, 0, 0);
        reserved[30] = 1;
        put(2, reserved);
        put(3, desc(2, 9, 1, PAYLOAD_AT));
        let mut run = |i| reference_descriptor(&mut t, &mut host, i, 16);
        assert_eq!(run(0), Ok(()));
        assert_eq!(
            run(1),
            Err(Status::DmaFault),
            "payload across the end of host memory"
        );
        assert_eq!(run(2), Err(Status::BadOpcode), "reserved bytes");
        assert_eq!(run(3), Err(Status::BadTable));
        assert_eq!(run(4), Err(Status::BadOpcode), "an all-zero descriptor");
    }
}
