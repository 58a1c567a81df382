//! The mailbox and DMA command ring (docs/hw-spec.md §4), driven the way a driver drives them: register writes
//! through the BAR, descriptors and payloads in host memory, then `Device::poll`.

use ironlb_hw::entry::ring::{Completion, Descriptor, CPL_SIZE, DESC_SIZE};
use ironlb_hw::entry::{bytes_to_words, words_to_bytes};
use ironlb_hw::regs::*;
use ironlb_hw::DropReason;
use ironlb_sim::{Device, DeviceConfig};

// --- helpers --------------------------------------------------------------------------------------------------

fn dev() -> Device {
    Device::new(DeviceConfig::small()).unwrap()
}

fn w(d: &Device, off: u32, v: u32) {
    assert!(d.bar().write32(off as usize, v));
}

/// Every table's whole memory, to show that a failed command changed nothing.
fn snapshot(d: &Device) -> Vec<Vec<u8>> {
    TableId::ALL
        .iter()
        .map(|&t| d.tables().get(t, 0, d.tables().entries(t)).unwrap().to_vec())
        .collect()
}

/// Deterministic, distinct, non-zero words.
fn pattern(seed: u32, n: usize) -> Vec<u32> {
    (0..n as u32)
        .map(|i| seed.wrapping_mul(0x9E37_79B9) ^ (i.wrapping_mul(0x85EB_CA6B)) ^ 0x5A5A_0001)
        .collect()
}

fn entry_bytes(d: &Device, t: TableId, index: u32, count: u32) -> Vec<u8> {
    d.tables().get(t, index, count).unwrap().to_vec()
}

/// Stage and ring one mailbox command; returns the status. Checks the DONE_SEQ handshake.
#[allow(clippy::too_many_arguments)]
fn mb(d: &mut Device, op: u32, table: u32, index: u32, count: u32, arg: u32, data: &[u32]) -> u32 {
    for (i, v) in data.iter().enumerate() {
        w(d, MB_DATA + 4 * i as u32, *v);
    }
    w(d, MB_OPCODE, op);
    w(d, MB_TABLE, table);
    w(d, MB_INDEX, index);
    w(d, MB_COUNT, count);
    w(d, MB_ARG, arg);
    let seq = d.reg(MB_DONE_SEQ).wrapping_add(1);
    w(d, MB_DOORBELL, seq);
    assert!(d.poll(), "a new doorbell is work");
    assert_eq!(d.reg(MB_DONE_SEQ), seq, "DONE_SEQ follows the doorbell");
    d.reg(MB_STATUS)
}

fn mb_data(d: &Device, n: usize) -> Vec<u32> {
    (0..n as u32).map(|i| d.reg(MB_DATA + 4 * i)).collect()
}

const OK: u32 = Status::Ok as u32;
const WRITE: u32 = Opcode::Write as u32;
const READ: u32 = Opcode::Read as u32;
const WRITE_WORD: u32 = Opcode::WriteWord as u32;
const FILL: u32 = Opcode::Fill as u32;
const NOP: u32 = Opcode::Nop as u32;

/// A ring in the test's host memory: descriptors at `base`, the completion record at `cpl`, payloads from
/// `payload`.
struct Ring {
    base: u64,
    log2: u32,
    cpl: u64,
    payload: u64,
    /// Software's producer index.
    tail: u32,
}

impl Ring {
    fn size(&self) -> u32 {
        1 << self.log2
    }
}

fn host_base(d: &Device) -> u64 {
    d.host().base
}

/// Program and enable a ring of 2^log2 descriptors.
fn ring(d: &mut Device, log2: u32) -> Ring {
    let hb = host_base(d);
    let r = Ring {
        base: hb + 0x1000,
        log2,
        cpl: hb + 0x80_0000 - 0x40,
        payload: hb + 0x10_0000,
        tail: 0,
    };
    assert!((r.base - hb) + (r.size() as u64) * 32 <= 0x10_0000);
    program_ring(d, r.base, log2, r.cpl);
    enable(d);
    assert_eq!(d.reg(RING_STATUS), RING_STATUS_ACTIVE, "valid configuration");
    r
}

fn program_ring(d: &Device, base: u64, log2: u32, cpl: u64) {
    w(d, RING_CTRL, 0);
    w(d, RING_BASE_LO, base as u32);
    w(d, RING_BASE_HI, (base >> 32) as u32);
    w(d, RING_SIZE_LOG2, log2);
    w(d, RING_CPL_LO, cpl as u32);
    w(d, RING_CPL_HI, (cpl >> 32) as u32);
    w(d, RING_TAIL, 0);
}

/// Toggle ENABLE 0 -> 1 with a poll in between (the device must see both values).
fn enable(d: &mut Device) {
    w(d, RING_CTRL, 0);
    d.poll();
    w(d, RING_CTRL, RING_CTRL_ENABLE);
    assert!(d.poll(), "the enable transition is work");
}

fn desc(op: Opcode, table: TableId, index: u32, count: u32, arg: u32, iova: u64, value: u32) -> Descriptor {
    Descriptor {
        opcode: op,
        table: (op != Opcode::Nop).then_some(table),
        index,
        count,
        arg,
        iova,
        value,
    }
}

fn nop() -> Descriptor {
    desc(Opcode::Nop, TableId::Lb, 0, 0, 0, 0, 0)
}

/// Write raw descriptor bytes into the next slot.
fn push_raw(d: &Device, r: &mut Ring, raw: &[u8; DESC_SIZE]) {
    let slot = (r.tail & (r.size() - 1)) as u64;
    d.host().write(r.base + slot * 32, raw).unwrap();
    r.tail = r.tail.wrapping_add(1);
}

fn push(d: &Device, r: &mut Ring, de: &Descriptor) {
    push_raw(d, r, &de.emit());
}

/// Put `bytes` in host memory at payload offset `off`; returns its IOVA.
fn payload(d: &Device, r: &Ring, off: u64, bytes: &[u8]) -> u64 {
    d.host().write(r.payload + off, bytes).unwrap();
    r.payload + off
}

fn host_read(d: &Device, iova: u64, len: usize) -> Vec<u8> {
    let mut b = vec![0u8; len];
    d.host().read(iova, &mut b).unwrap();
    b
}

/// Ring the doorbell and poll until the ring stops making progress (bounded).
fn doorbell(d: &mut Device, r: &Ring) {
    w(d, RING_TAIL, r.tail);
    for _ in 0..64 {
        if !d.poll() {
            return;
        }
    }
    panic!("ring still busy after 64 polls");
}

fn cpl(d: &Device, r: &Ring) -> Completion {
    let b: [u8; CPL_SIZE] = host_read(d, r.cpl, CPL_SIZE).try_into().unwrap();
    Completion::parse(&b)
}

fn assert_ring_ok(d: &Device, r: &Ring) {
    assert_eq!(d.reg(RING_STATUS), RING_STATUS_ACTIVE);
    assert_eq!(d.reg(STATUS) & STATUS_RING_ERROR, 0);
    assert_eq!(d.reg(RING_HEAD), r.tail);
    let c = cpl(d, r);
    assert_eq!((c.head, c.status, c.err_index), (r.tail, 0, 0));
}

/// The ring stopped at descriptor `index` with `status`: registers and completion record agree.
fn assert_ring_failed(d: &Device, r: &Ring, index: u32, status: Status) {
    assert_eq!(
        d.reg(RING_STATUS),
        RING_STATUS_ACTIVE | 1 | (status as u32) << 8,
        "RING_STATUS"
    );
    assert_eq!(d.reg(RING_ERR_INDEX), index, "RING_ERR_INDEX");
    assert_eq!(d.reg(RING_HEAD), index, "RING_HEAD = the failed descriptor");
    assert_ne!(d.reg(STATUS) & STATUS_RING_ERROR, 0, "STATUS.RING_ERROR");
    assert_ne!(d.reg(STATUS) & STATUS_READY, 0, "still READY");
    let c = cpl(d, r);
    assert_eq!(
        (c.head, c.status(), c.err_index),
        (index, Some(status), index),
        "completion record"
    );
}

/// A table with room for a few entries at a non-trivial index, and how many entries the mailbox moves at most.
fn mb_max(t: TableId) -> u32 {
    (MB_DATA_WORDS / t.entry_words()) as u32
}

// --- reset and capabilities -----------------------------------------------------------------------------------

#[test]
fn capability_registers_after_reset() {
    let cfg = DeviceConfig::small();
    let mut d = Device::new(cfg.clone()).unwrap();
    let expect = |d: &Device| {
        assert_eq!(d.reg(ID), ID_MAGIC);
        assert_eq!(d.reg(ID), u32::from_le_bytes(*b"ILB1"));
        assert_eq!(d.reg(VERSION), 0x0001_0002);
        assert_eq!(d.reg(CAP_FEATURES), FEATURES_V1_2);
        assert_eq!(d.reg(CAP_FLOW_ENTRIES), cfg.caps.flow_entries);
        assert_eq!(d.reg(CAP_FLOW_WAYS), cfg.caps.flow_ways);
        assert_eq!(d.reg(FLOW_CTRL), 0, "the flow table is off after reset");
        let g = d.reg(GENERATION);
        assert!(g != 0 && g != u32::MAX, "GENERATION {g:#x} is a valid generation");
        assert_eq!(d.reg(CAP_LB_BUCKETS), cfg.caps.lb_buckets);
        assert_eq!(d.reg(CAP_LB_WAYS), 4);
        assert_eq!(d.reg(CAP_RANGES), cfg.caps.ranges);
        assert_eq!(d.reg(CAP_MAX_RANGES_PER_LB), cfg.caps.max_ranges_per_lb);
        assert_eq!(d.reg(CAP_TARGETS), cfg.caps.targets);
        assert_eq!(d.reg(CAP_MAX_TARGETS_PER_LB), cfg.caps.max_targets_per_lb);
        assert_eq!(d.reg(CAP_BUCKET_SLOTS), cfg.caps.bucket_slots);
        assert_eq!(
            d.reg(CAP_BUCKET_LOG2),
            u32::from(cfg.caps.bucket_log2_max) << 8 | u32::from(cfg.caps.bucket_log2_min)
        );
        assert_eq!(d.reg(CAP_LB_IDS), cfg.caps.lb_ids);
        assert_eq!(d.reg(CAP_DROP_REASONS), DropReason::COUNT as u32);
        assert_eq!(d.reg(CAP_PORTS), cfg.caps.ports);
        assert_eq!(d.reg(CAP_RING_MAX_LOG2), u32::from(cfg.caps.ring_max_log2));
        assert_eq!(d.reg(STATUS), STATUS_READY);
        assert_eq!(d.reg(CONTROL), 0);
        assert_eq!(d.reg(UNDERLAY_MTU), DEFAULT_UNDERLAY_MTU);
        assert_eq!(d.reg(UNDERLAY_HOP_LIMIT), u32::from(DEFAULT_HOP_LIMIT));
        for r in [
            MB_DONE_SEQ,
            MB_STATUS,
            RING_HEAD,
            RING_STATUS,
            RING_ERR_INDEX,
            RING_CTRL,
        ] {
            assert_eq!(d.reg(r), 0, "register {r:#x}");
        }
        // Table sizes match the capabilities.
        assert_eq!(d.tables().entries(TableId::Lb), cfg.caps.lb_buckets * 4);
        assert_eq!(d.tables().entries(TableId::Range), cfg.caps.ranges);
        assert_eq!(d.tables().entries(TableId::Target), cfg.caps.targets);
        assert_eq!(d.tables().entries(TableId::Bucket), cfg.caps.bucket_slots);
        assert_eq!(d.tables().entries(TableId::LbCounter), cfg.caps.lb_ids);
        assert_eq!(d.tables().entries(TableId::TargetCounter), cfg.caps.targets);
    };
    expect(&d);
    assert!(!d.poll(), "nothing to do after reset");

    // Dirty the device: tables, mailbox, a ring error; then CONTROL.RESET restores everything.
    assert_eq!(mb(&mut d, WRITE_WORD, 4, 7, 1, 0, &[42]), OK);
    let mut r = ring(&mut d, 2);
    push_raw(&d, &mut r, &[0xEE; 32]);
    doorbell(&mut d, &r);
    assert_ne!(d.reg(RING_STATUS), 0);
    w(&d, CAP_LB_BUCKETS, 1);
    let before = d.reg(GENERATION);
    w(&d, CONTROL, CONTROL_RESET | CONTROL_ENABLE);
    assert!(d.poll());
    expect(&d);
    assert_ne!(d.reg(GENERATION), before, "every reset changes GENERATION");
    // A v1.0 part: minor 0, no features, no generation.
    let v10 = Device::new(DeviceConfig::small().as_v1_0()).unwrap();
    assert_eq!(
        (v10.reg(VERSION), v10.reg(CAP_FEATURES), v10.reg(GENERATION)),
        (0x0001_0000, 0, 0)
    );
    assert!(
        snapshot(&d).iter().all(|t| t.iter().all(|b| *b == 0)),
        "tables cleared"
    );
}

// --- mailbox --------------------------------------------------------------------------------------------------

#[test]
fn mailbox_write_and_read_every_table() {
    let mut d = dev();
    for t in TableId::ALL {
        let n = mb_max(t);
        let last = d.tables().entries(t) - n;
        for (index, count) in [(0, 1), (3, n), (last, n)] {
            let words = pattern(t as u32 * 1000 + index, count as usize * t.entry_words());
            let before = snapshot(&d);
            let st = mb(&mut d, WRITE, t as u32, index, count, 0, &words);
            if t.is_counter() {
                assert_eq!(st, Status::BadTable as u32, "{t:?}: counters are read-only");
                assert_eq!(snapshot(&d), before);
                // Counters are readable: load them by the backdoor.
                d.write_entry(t, index, &words_to_bytes(&words));
            } else {
                assert_eq!(st, OK, "{t:?} write {index}+{count}");
                // Word i of an entry = bytes 4i..4i+4 little-endian.
                assert_eq!(entry_bytes(&d, t, index, count), words_to_bytes(&words));
            }
            // Read back into cleared staging words.
            let junk = vec![0xDDDD_DDDD; MB_DATA_WORDS];
            assert_eq!(mb(&mut d, READ, t as u32, index, count, 0, &junk), OK);
            let n_words = words.len();
            assert_eq!(mb_data(&d, n_words), words, "{t:?} read {index}+{count}");
            assert!(
                mb_data(&d, MB_DATA_WORDS)[n_words..]
                    .iter()
                    .all(|v| *v == 0xDDDD_DDDD),
                "READ touches only count x entry_words staging words"
            );
        }
    }
}

#[test]
fn mailbox_write_only_touches_its_entries() {
    let mut d = dev();
    d.write_entry(TableId::Range, 9, &[0xAA; 8]);
    d.write_entry(TableId::Range, 12, &[0xBB; 8]);
    assert_eq!(mb(&mut d, WRITE, 2, 10, 2, 0, &[1, 2, 3, 4]), OK);
    assert_eq!(entry_bytes(&d, TableId::Range, 9, 1), vec![0xAA; 8]);
    assert_eq!(
        entry_bytes(&d, TableId::Range, 10, 2),
        words_to_bytes(&[1, 2, 3, 4])
    );
    assert_eq!(entry_bytes(&d, TableId::Range, 12, 1), vec![0xBB; 8]);
}

#[test]
fn mailbox_write_word_every_table() {
    let mut d = dev();
    for t in TableId::ALL {
        let index = d.tables().entries(t) - 1;
        let base = pattern(t as u32, t.entry_words());
        d.write_entry(t, index, &words_to_bytes(&base));
        for word in 0..t.entry_words() as u32 {
            let before = snapshot(&d);
            let st = mb(
                &mut d,
                WRITE_WORD,
                t as u32,
                index,
                1,
                word,
                &[0xC0DE_0000 | word],
            );
            if t.is_counter() {
                assert_eq!(st, Status::BadTable as u32, "{t:?}");
                assert_eq!(snapshot(&d), before);
                continue;
            }
            assert_eq!(st, OK);
            let got = bytes_to_words(&entry_bytes(&d, t, index, 1));
            for (k, v) in got.iter().enumerate() {
                let want = if k as u32 <= word {
                    0xC0DE_0000 | k as u32
                } else {
                    base[k]
                };
                assert_eq!(*v, want, "{t:?} word {k} after writing word {word}");
            }
        }
        // MB_COUNT is irrelevant to WRITE_WORD.
        if !t.is_counter() {
            assert_eq!(mb(&mut d, WRITE_WORD, t as u32, 0, 0, 0, &[77]), OK);
            assert_eq!(bytes_to_words(&entry_bytes(&d, t, 0, 1))[0], 77);
        }
    }
}

#[test]
fn mailbox_fill_every_table_including_counters() {
    let mut d = dev();
    for t in TableId::ALL {
        let n = d.tables().entries(t);
        // Surround the filled block with known entries; fill more entries than the staging area holds.
        let count = 100;
        let index = n - count - 1;
        let guard = words_to_bytes(&pattern(9, t.entry_words()));
        d.write_entry(t, index - 1, &guard);
        d.write_entry(t, index + count, &guard);
        d.write_entry(t, index, &vec![0x11; count as usize * t.entry_bytes()]);
        assert_eq!(
            mb(&mut d, FILL, t as u32, index, count, 0xA5A5_0F0F, &[]),
            OK,
            "{t:?}"
        );
        let got = bytes_to_words(&entry_bytes(&d, t, index, count));
        assert_eq!(got.len(), count as usize * t.entry_words());
        assert!(got.iter().all(|v| *v == 0xA5A5_0F0F), "{t:?}");
        assert_eq!(entry_bytes(&d, t, index - 1, 1), guard);
        assert_eq!(entry_bytes(&d, t, index + count, 1), guard);
        // Clearing (the counter use): FILL 0.
        assert_eq!(mb(&mut d, FILL, t as u32, index, count, 0, &[]), OK);
        assert!(entry_bytes(&d, t, index, count).iter().all(|b| *b == 0));
        // The whole table in one command.
        assert_eq!(mb(&mut d, FILL, t as u32, 0, n, 0x0101_0101, &[]), OK);
        assert!(entry_bytes(&d, t, 0, n).iter().all(|b| *b == 1));
    }
}

#[test]
fn mailbox_nop() {
    let mut d = dev();
    let before = snapshot(&d);
    let data = pattern(1, MB_DATA_WORDS);
    // NOP ignores TABLE, INDEX, COUNT and ARG entirely.
    assert_eq!(mb(&mut d, NOP, 0, u32::MAX, 0, 99, &data), OK);
    assert_eq!(mb(&mut d, NOP, 200, 0, u32::MAX, 0, &data), OK);
    assert_eq!(snapshot(&d), before);
    assert_eq!(mb_data(&d, MB_DATA_WORDS), data);
}

#[test]
fn mailbox_errors_change_nothing() {
    let mut d = dev();
    // Non-zero tables so that an accidental write or fill would show.
    for t in TableId::ALL {
        let n = d.tables().entries(t);
        d.write_entry(t, 0, &vec![0x3C; n as usize * t.entry_bytes()]);
    }
    let lbs = d.tables().entries(TableId::Lb);
    let slots = d.tables().entries(TableId::Bucket);
    let data = pattern(5, MB_DATA_WORDS);
    use Status::*;
    let cases: &[(&str, u32, u32, u32, u32, u32, Status)] = &[
        ("opcode 0", 0, 1, 0, 1, 0, BadOpcode),
        ("opcode 8", 8, 1, 0, 1, 0, BadOpcode),
        ("opcode 0x101", 0x101, 1, 0, 1, 0, BadOpcode),
        ("bad opcode wins over bad table", 9, 0, 0, 1, 0, BadOpcode),
        ("table 0", WRITE, 0, 0, 1, 0, BadTable),
        ("table 8", READ, 8, 0, 1, 0, BadTable),
        ("write flow table", WRITE, 7, 0, 1, 0, BadTable),
        ("fill flow table", FILL, 7, 0, 1, 0, BadTable),
        ("write_word flow table", WRITE_WORD, 7, 0, 1, 0, BadTable),
        ("flow_flush on the lb table", 7, 1, 0, 1, 0, BadTable),
        ("flow_flush unknown selector", 7, 7, 0, 1, 3, BadWord),
        ("table 0x104", FILL, 0x104, 0, 1, 0, BadTable),
        ("write lb counter", WRITE, 5, 0, 1, 0, BadTable),
        ("write target counter", WRITE, 6, 0, 1, 0, BadTable),
        ("write_word lb counter", WRITE_WORD, 5, 0, 1, 0, BadTable),
        ("write_word target counter", WRITE_WORD, 6, 0, 1, 0, BadTable),
        ("counter check before range", WRITE, 5, u32::MAX, 0, 0, BadTable),
        ("write count 0", WRITE, 2, 0, 0, 0, OutOfRange),
        ("read count 0", READ, 2, 0, 0, 0, OutOfRange),
        ("fill count 0", FILL, 4, 0, 0, 0, OutOfRange),
        ("write one past the end", WRITE, 1, lbs, 1, 0, OutOfRange),
        (
            "read straddling the end",
            READ,
            3,
            d.tables().entries(TableId::Target) - 1,
            2,
            0,
            OutOfRange,
        ),
        ("fill straddling the end", FILL, 4, slots - 10, 11, 0, OutOfRange),
        ("fill index overflow", FILL, 4, u32::MAX, 2, 0, OutOfRange),
        ("fill count overflow", FILL, 4, 1, u32::MAX, 0, OutOfRange),
        ("write 2 lb entries (32 words)", WRITE, 1, 0, 2, 0, OutOfRange),
        ("read 2 lb entries (32 words)", READ, 1, 0, 2, 0, OutOfRange),
        ("write 17 bucket slots", WRITE, 4, 0, 17, 0, OutOfRange),
        ("read 9 ranges", READ, 2, 0, 9, 0, OutOfRange),
        ("read 5 counters", READ, 5, 0, 5, 0, OutOfRange),
        (
            "write_word index out",
            WRITE_WORD,
            3,
            d.tables().entries(TableId::Target),
            1,
            0,
            OutOfRange,
        ),
        (
            "range check before word",
            WRITE_WORD,
            3,
            u32::MAX,
            1,
            99,
            OutOfRange,
        ),
        ("write_word lb word 16", WRITE_WORD, 1, 0, 1, 16, BadWord),
        ("write_word range word 2", WRITE_WORD, 2, 0, 1, 2, BadWord),
        ("write_word target word 8", WRITE_WORD, 3, 0, 1, 8, BadWord),
        ("write_word bucket word 1", WRITE_WORD, 4, 0, 1, 1, BadWord),
        ("write_word huge word", WRITE_WORD, 4, 0, 1, u32::MAX, BadWord),
    ];
    for &(what, op, table, index, count, arg, want) in cases {
        let before = snapshot(&d);
        for (i, v) in data.iter().enumerate() {
            w(&d, MB_DATA + 4 * i as u32, *v);
        }
        let st = mb(&mut d, op, table, index, count, arg, &[]);
        assert_eq!(Status::from_raw(st), Some(want), "{what}");
        assert!(snapshot(&d) == before, "{what}: table memory changed");
        // Staging is not touched either (a failed READ leaves MB_DATA as it was).
        assert_eq!(mb_data(&d, MB_DATA_WORDS), data, "{what}: staging changed");
    }
    assert_eq!(d.command_counts().entries_written, 0);
}

#[test]
fn mailbox_doorbell_protocol() {
    let mut d = dev();
    assert!(!d.poll(), "DOORBELL == DONE_SEQ: nothing pending");
    assert_eq!(d.command_counts().mailbox, 0);
    // Any new value is a doorbell; DONE_SEQ takes exactly that value, after MB_STATUS.
    w(&d, MB_OPCODE, WRITE_WORD);
    w(&d, MB_TABLE, TableId::Bucket as u32);
    w(&d, MB_INDEX, 3);
    w(&d, MB_ARG, 0);
    w(&d, MB_DATA, 1);
    w(&d, MB_DOORBELL, 0xDEAD_BEEF);
    assert!(d.poll());
    assert_eq!(d.reg(MB_DONE_SEQ), 0xDEAD_BEEF);
    assert_eq!(d.reg(MB_STATUS), OK);
    assert_eq!(bytes_to_words(&entry_bytes(&d, TableId::Bucket, 3, 1)), [1]);
    // The same doorbell again is not a new command, even with new staging.
    w(&d, MB_DATA, 2);
    assert!(!d.poll());
    assert_eq!(bytes_to_words(&entry_bytes(&d, TableId::Bucket, 3, 1)), [1]);
    assert_eq!(d.command_counts().mailbox, 1);
    // A failing command reports its status and still completes the sequence; the next one clears the status.
    w(&d, MB_INDEX, u32::MAX);
    w(&d, MB_DOORBELL, 0);
    assert!(d.poll());
    assert_eq!(
        (d.reg(MB_DONE_SEQ), d.reg(MB_STATUS)),
        (0, Status::OutOfRange as u32)
    );
    w(&d, MB_INDEX, 3);
    w(&d, MB_DOORBELL, 1);
    assert!(d.poll());
    assert_eq!((d.reg(MB_DONE_SEQ), d.reg(MB_STATUS)), (1, OK));
    assert_eq!(bytes_to_words(&entry_bytes(&d, TableId::Bucket, 3, 1)), [2]);
    assert_eq!(d.command_counts().mailbox, 3);
    assert_eq!(d.command_counts().entries_written, 2);
    assert_eq!(d.command_counts().descriptors, 0);
}

// --- ring -----------------------------------------------------------------------------------------------------

#[test]
fn ring_every_opcode_on_every_table() {
    let mut d = dev();
    let mut r = ring(&mut d, 6);
    let mut off = 0u64;
    let mut expect: Vec<(TableId, u32, Vec<u8>)> = Vec::new();
    let mut reads: Vec<(u64, Vec<u8>)> = Vec::new();
    for t in TableId::ALL {
        let n = d.tables().entries(t);
        let count = 40; // more than the mailbox could move
                        // Counters get their contents by the backdoor (they cannot be written by command).
        let counter_rows = words_to_bytes(&pattern(t as u32 + 50, count as usize * t.entry_words()));
        if t.is_counter() {
            d.write_entry(t, 0, &counter_rows);
        } else {
            // WRITE at the very end of the table.
            let bytes = words_to_bytes(&pattern(t as u32, count as usize * t.entry_words()));
            let iova = payload(&d, &r, off, &bytes);
            off += bytes.len() as u64;
            push(&d, &mut r, &desc(Opcode::Write, t, n - count, count, 0, iova, 0));
            expect.push((t, n - count, bytes.clone()));
            // READ it back in the same batch (commands execute in order).
            let dst = r.payload + 0x40000 + off;
            off += bytes.len() as u64;
            push(&d, &mut r, &desc(Opcode::Read, t, n - count, count, 0, dst, 0));
            reads.push((dst, bytes));
            // WRITE_WORD the last word of entry 0, VALUE carries the word.
            let last_word = t.entry_words() as u32 - 1;
            push(
                &d,
                &mut r,
                &desc(Opcode::WriteWord, t, 0, 1, last_word, 0, 0x5EED_0000 + t as u32),
            );
            let mut e = vec![0u8; t.entry_bytes()];
            e[t.entry_bytes() - 4..].copy_from_slice(&(0x5EED_0000 + t as u32).to_le_bytes());
            expect.push((t, 0, e));
        }
        // FILL some entries in the middle.
        push(&d, &mut r, &desc(Opcode::Fill, t, 100, 7, 0x0F0F_F0F0, 0, 0));
        expect.push((t, 100, words_to_bytes(&vec![0x0F0F_F0F0; 7 * t.entry_words()])));
        if t.is_counter() {
            // Counter snapshot: READ of rows 0..40 by DMA.
            let dst = r.payload + 0x40000 + off;
            off += counter_rows.len() as u64;
            push(&d, &mut r, &desc(Opcode::Read, t, 0, count, 0, dst, 0));
            reads.push((dst, counter_rows));
        }
        push(&d, &mut r, &nop());
    }
    assert!(r.tail < r.size());
    doorbell(&mut d, &r);
    assert_ring_ok(&d, &r);
    assert_eq!(cpl(&d, &r).seq, 1, "one batch, one record");
    for (t, index, bytes) in &expect {
        let count = (bytes.len() / t.entry_bytes()) as u32;
        assert_eq!(&entry_bytes(&d, *t, *index, count), bytes, "{t:?} at {index}");
    }
    for (iova, bytes) in &reads {
        assert_eq!(&host_read(&d, *iova, bytes.len()), bytes, "READ to {iova:#x}");
    }
    let c = d.command_counts();
    assert_eq!(c.descriptors, r.tail as u64);
    // 4 writable tables x (40 written + 1 word + 7 filled) + 2 counter tables x 7 filled.
    assert_eq!(c.entries_written, 4 * 48 + 2 * 7);
}

#[test]
fn ring_large_write_and_read() {
    let mut d = dev();
    let mut r = ring(&mut d, 3);
    let count = 65536u32;
    let words: Vec<u32> = (0..count).map(|i| i.wrapping_mul(2_654_435_761)).collect();
    let bytes = words_to_bytes(&words);
    let src = payload(&d, &r, 0, &bytes);
    let dst = r.payload + bytes.len() as u64;
    push(
        &d,
        &mut r,
        &desc(Opcode::Write, TableId::Bucket, 4096, count, 0, src, 0),
    );
    push(
        &d,
        &mut r,
        &desc(Opcode::Read, TableId::Bucket, 4096, count, 0, dst, 0),
    );
    doorbell(&mut d, &r);
    assert_ring_ok(&d, &r);
    assert_eq!(entry_bytes(&d, TableId::Bucket, 4096, count), bytes);
    assert_eq!(host_read(&d, dst, bytes.len()), bytes);
    assert!(entry_bytes(&d, TableId::Bucket, 0, 4096).iter().all(|b| *b == 0));
}

#[test]
fn ring_wraps_around_across_batches() {
    let mut d = dev();
    let mut r = ring(&mut d, 2); // 4 slots
    let mut n = 0u32;
    for batch in 0..10u32 {
        let k = 1 + batch % 4; // 1..=4 descriptors per batch: up to a full ring
        for _ in 0..k {
            push(
                &d,
                &mut r,
                &desc(Opcode::WriteWord, TableId::Bucket, n, 1, 0, 0, 1000 + n),
            );
            n += 1;
        }
        doorbell(&mut d, &r);
        assert_ring_ok(&d, &r);
        assert_eq!(cpl(&d, &r).seq, batch + 1, "one record per batch");
    }
    assert_eq!(d.reg(RING_HEAD), n, "free-running head");
    assert!(n > 4 * r.size());
    let got = bytes_to_words(&entry_bytes(&d, TableId::Bucket, 0, n));
    assert_eq!(got, (0..n).map(|i| 1000 + i).collect::<Vec<_>>());
    assert_eq!(d.command_counts().descriptors, n as u64);
}

#[test]
fn ring_bounded_work_per_poll() {
    let mut cfg = DeviceConfig::small();
    cfg.caps.ring_max_log2 = 14;
    let mut d = Device::new(cfg).unwrap();
    let mut r = ring(&mut d, 13);
    for i in 0..5000u32 {
        push(
            &d,
            &mut r,
            &desc(Opcode::WriteWord, TableId::Bucket, i, 1, 0, 0, i + 1),
        );
    }
    w(&d, RING_TAIL, r.tail);
    assert!(d.poll());
    assert_eq!(d.reg(RING_HEAD), 4096, "at most 4096 descriptors per poll");
    let c = cpl(&d, &r);
    assert_eq!(
        (c.head, c.status, c.seq),
        (4096, 0, 1),
        "partial batch completes with a record"
    );
    assert_eq!(
        bytes_to_words(&entry_bytes(&d, TableId::Bucket, 4095, 2)),
        [4096, 0]
    );
    assert!(d.poll());
    assert_ring_ok(&d, &r);
    assert_eq!(cpl(&d, &r).seq, 2);
    assert!(!d.poll());
    assert_eq!(bytes_to_words(&entry_bytes(&d, TableId::Bucket, 4999, 1)), [5000]);
}

/// One failing descriptor in the middle of a batch: earlier ones complete, it and later ones do not.
fn ring_failure(what: &str, bad: impl Fn(&Device, &Ring) -> [u8; DESC_SIZE], want: Status) {
    let mut d = dev();
    for t in TableId::ALL {
        let n = d.tables().entries(t);
        d.write_entry(t, 0, &vec![0x3C; n as usize * t.entry_bytes()]);
    }
    let mut r = ring(&mut d, 3);
    // Batch 1 completes normally, so the error is at a non-zero free-running index.
    push(
        &d,
        &mut r,
        &desc(Opcode::WriteWord, TableId::Bucket, 0, 1, 0, 0, 1),
    );
    doorbell(&mut d, &r);
    assert_ring_ok(&d, &r);
    // Batch 2: good, good, BAD, good.
    push(
        &d,
        &mut r,
        &desc(Opcode::WriteWord, TableId::Bucket, 1, 1, 0, 0, 2),
    );
    push(&d, &mut r, &nop());
    let mut before = snapshot(&d);
    before[3][4..8].copy_from_slice(&2u32.to_le_bytes()); // bucket slot 1 := 2 by the good descriptor
    let raw = bad(&d, &r);
    let bad_index = r.tail;
    push_raw(&d, &mut r, &raw);
    push(
        &d,
        &mut r,
        &desc(Opcode::WriteWord, TableId::Bucket, 2, 1, 0, 0, 3),
    );
    let written = d.command_counts().entries_written;
    doorbell(&mut d, &r);
    assert_ring_failed(&d, &r, bad_index, want);
    assert_eq!(cpl(&d, &r).seq, 2, "{what}: one record for the failed batch");
    // Earlier descriptors ran (their effect is in `before`); the failed one and the later one did not.
    assert_eq!(
        bytes_to_words(&entry_bytes(&d, TableId::Bucket, 1, 2)),
        [2, 0x3C3C_3C3C],
        "{what}"
    );
    assert!(
        snapshot(&d) == before,
        "{what}: the failed descriptor changed table memory"
    );
    assert_eq!(
        d.command_counts().entries_written,
        written + 1,
        "{what}: only the good descriptor wrote"
    );
    // Stopped: polling, or ringing the doorbell again, consumes nothing.
    assert!(!d.poll());
    w(&d, RING_TAIL, r.tail.wrapping_add(1));
    assert!(!d.poll());
    assert_eq!(d.reg(RING_HEAD), bad_index);
    assert!(snapshot(&d) == before, "{what}");
}

fn raw(de: Descriptor) -> [u8; DESC_SIZE] {
    de.emit()
}

#[test]
fn ring_errors_every_status() {
    use Status::*;
    let t = |op, table, index, count, arg| raw(desc(op, table, index, count, arg, 0, 0));
    ring_failure("opcode 0", |_, _| [0; 32], BadOpcode);
    ring_failure(
        "opcode 8",
        |_, _| {
            let mut b = t(Opcode::Fill, TableId::Bucket, 0, 1, 0);
            b[0] = 8;
            b
        },
        BadOpcode,
    );
    ring_failure(
        "reserved u16 set",
        |_, _| {
            let mut b = t(Opcode::Fill, TableId::Bucket, 0, 1, 0);
            b[2] = 1;
            b
        },
        BadOpcode,
    );
    ring_failure(
        "reserved last word set",
        |_, _| {
            let mut b = t(Opcode::Fill, TableId::Bucket, 0, 1, 0);
            b[31] = 0x80;
            b
        },
        BadOpcode,
    );
    for tb in [0u8, 7, 255] {
        ring_failure(
            "bad table",
            |_, _| {
                let mut b = t(Opcode::Fill, TableId::Bucket, 0, 1, 0);
                b[1] = tb;
                b
            },
            BadTable,
        );
    }
    for ct in [TableId::LbCounter, TableId::TargetCounter] {
        ring_failure(
            "write counter",
            |_, r| raw(desc(Opcode::Write, ct, 0, 1, 0, r.payload, 0)),
            BadTable,
        );
        ring_failure(
            "write_word counter",
            |_, _| t(Opcode::WriteWord, ct, 0, 1, 0),
            BadTable,
        );
    }
    ring_failure(
        "fill count 0",
        |_, _| t(Opcode::Fill, TableId::Range, 0, 0, 0),
        OutOfRange,
    );
    ring_failure(
        "write count 0",
        |_, r| raw(desc(Opcode::Write, TableId::Lb, 0, 0, 0, r.payload, 0)),
        OutOfRange,
    );
    ring_failure(
        "read past the end",
        |d, r| {
            let n = d.tables().entries(TableId::Target);
            raw(desc(Opcode::Read, TableId::Target, n - 3, 4, 0, r.payload, 0))
        },
        OutOfRange,
    );
    ring_failure(
        "write past the end",
        |d, r| {
            let n = d.tables().entries(TableId::Lb);
            raw(desc(Opcode::Write, TableId::Lb, n, 1, 0, r.payload, 0))
        },
        OutOfRange,
    );
    ring_failure(
        "fill index overflow",
        |_, _| t(Opcode::Fill, TableId::Bucket, u32::MAX, 2, 0),
        OutOfRange,
    );
    ring_failure(
        "write_word out of range",
        |d, _| {
            t(
                Opcode::WriteWord,
                TableId::Range,
                d.tables().entries(TableId::Range),
                1,
                0,
            )
        },
        OutOfRange,
    );
    ring_failure(
        "write_word word 16",
        |_, _| t(Opcode::WriteWord, TableId::Lb, 0, 1, 16),
        BadWord,
    );
    ring_failure(
        "write_word word 1 of a slot",
        |_, _| t(Opcode::WriteWord, TableId::Bucket, 0, 1, 1),
        BadWord,
    );
    // DMA faults on payloads: before the window, after it, straddling its end. Table and host memory unchanged.
    ring_failure(
        "write payload below the window",
        |d, _| raw(desc(Opcode::Write, TableId::Range, 0, 1, 0, d.host().base - 8, 0)),
        DmaFault,
    );
    ring_failure(
        "write payload straddles the end",
        |d, _| {
            let end = d.host().base + d.host().region.len() as u64;
            raw(desc(Opcode::Write, TableId::Target, 0, 2, 0, end - 32, 0))
        },
        DmaFault,
    );
    ring_failure(
        "write payload at IOVA u64::MAX",
        |_, _| raw(desc(Opcode::Write, TableId::Bucket, 0, 1, 0, u64::MAX, 0)),
        DmaFault,
    );
    ring_failure(
        "read destination straddles the end",
        |d, _| {
            let end = d.host().base + d.host().region.len() as u64;
            raw(desc(Opcode::Read, TableId::Lb, 0, 2, 0, end - 64, 0))
        },
        DmaFault,
    );
}

#[test]
fn ring_has_no_staging_limit_and_ignores_count_for_write_word() {
    let mut d = dev();
    let mut r = ring(&mut d, 2);
    let bytes = words_to_bytes(&pattern(3, 16 * 100));
    let src = payload(&d, &r, 0, &bytes);
    push(&d, &mut r, &desc(Opcode::Write, TableId::Lb, 0, 100, 0, src, 0));
    push(&d, &mut r, &desc(Opcode::WriteWord, TableId::Lb, 200, 0, 3, 0, 9));
    doorbell(&mut d, &r);
    assert_ring_ok(&d, &r);
    assert_eq!(entry_bytes(&d, TableId::Lb, 0, 100), bytes);
    assert_eq!(bytes_to_words(&entry_bytes(&d, TableId::Lb, 200, 1))[3], 9);
}

#[test]
fn ring_dma_fault_on_descriptor_read() {
    let mut d = dev();
    let hb = host_base(&d);
    // The ring base is aligned (a valid configuration) but outside what the host mapped.
    let mut r = Ring {
        base: hb - 0x1000,
        log2: 2,
        cpl: hb + 0x100,
        payload: hb + 0x1000,
        tail: 0,
    };
    program_ring(&d, r.base, r.log2, r.cpl);
    enable(&mut d);
    assert_eq!(
        d.reg(RING_STATUS),
        RING_STATUS_ACTIVE,
        "alignment and size are fine"
    );
    r.tail = 1;
    doorbell(&mut d, &r);
    assert_ring_failed(&d, &r, 0, Status::DmaFault);
    assert_eq!(d.command_counts().descriptors, 1);

    // The second half of a ring running off the end of the window: slots 0,1 are mapped, 2,3 are not.
    let mut d = dev();
    let end = host_base(&d) + d.host().region.len() as u64;
    let mut r = Ring {
        base: end - 64,
        log2: 2,
        cpl: host_base(&d),
        payload: host_base(&d) + 0x1000,
        tail: 0,
    };
    program_ring(&d, r.base, r.log2, r.cpl);
    enable(&mut d);
    push(
        &d,
        &mut r,
        &desc(Opcode::WriteWord, TableId::Bucket, 0, 1, 0, 0, 5),
    );
    push(&d, &mut r, &nop());
    r.tail = 3;
    doorbell(&mut d, &r);
    assert_ring_failed(&d, &r, 2, Status::DmaFault);
    assert_eq!(bytes_to_words(&entry_bytes(&d, TableId::Bucket, 0, 1)), [5]);
}

#[test]
fn ring_completion_record_fault_stops_the_ring() {
    let mut d = dev();
    let hb = host_base(&d);
    let mut r = ring(&mut d, 2);
    r.cpl = hb - 16; // aligned, unmapped
    w(&d, RING_CPL_LO, r.cpl as u32);
    w(&d, RING_CPL_HI, (r.cpl >> 32) as u32);
    push(
        &d,
        &mut r,
        &desc(Opcode::WriteWord, TableId::Bucket, 0, 1, 0, 0, 5),
    );
    doorbell(&mut d, &r);
    // The descriptor ran; the record could not be written; the ring stops at the next index.
    assert_eq!(bytes_to_words(&entry_bytes(&d, TableId::Bucket, 0, 1)), [5]);
    assert_eq!(
        d.reg(RING_STATUS),
        RING_STATUS_ACTIVE | 1 | (Status::DmaFault as u32) << 8
    );
    assert_eq!(d.reg(RING_ERR_INDEX), 1);
    assert_eq!(d.reg(RING_HEAD), 1);
    assert_ne!(d.reg(STATUS) & STATUS_RING_ERROR, 0);
}

#[test]
fn ring_config_validation() {
    let cfg = DeviceConfig::small();
    let hb = cfg.host_iova_base;
    let max = u32::from(cfg.caps.ring_max_log2);
    // (what, base, log2, completion IOVA, valid, record written on failure)
    let cases = [
        ("size 0", hb + 0x1000, 0, hb + 0x100, false, true),
        (
            "size above CAP_RING_MAX_LOG2",
            hb + 0x1000,
            max + 1,
            hb + 0x100,
            false,
            true,
        ),
        ("size 32", hb + 0x1000, 32, hb + 0x100, false, true),
        ("base 32-byte aligned", hb + 0x1020, 2, hb + 0x100, false, true),
        ("base 4-byte aligned", hb + 0x1004, 2, hb + 0x100, false, true),
        (
            "completion 8-byte aligned",
            hb + 0x1000,
            2,
            hb + 0x108,
            false,
            false,
        ),
        ("smallest ring", hb + 0x1000, 1, hb + 0x100, true, false),
        ("largest ring", hb + 0x1000, max, hb + 0x10, true, false),
        (
            "base 64-byte aligned only",
            hb + 0x1040,
            2,
            hb + 0x110,
            true,
            false,
        ),
    ];
    for (what, base, log2, cpl_iova, valid, record_written) in cases {
        let mut d = Device::new(cfg.clone()).unwrap();
        let mut r = Ring {
            base,
            log2: log2.min(20),
            cpl: cpl_iova,
            payload: hb + 0x10_0000,
            tail: 0,
        };
        program_ring(&d, base, log2, cpl_iova);
        enable(&mut d);
        if valid {
            assert_eq!(d.reg(RING_STATUS), RING_STATUS_ACTIVE, "{what}");
            push(
                &d,
                &mut r,
                &desc(Opcode::WriteWord, TableId::Bucket, 0, 1, 0, 0, 5),
            );
            doorbell(&mut d, &r);
            assert_ring_ok(&d, &r);
            continue;
        }
        assert_eq!(
            d.reg(RING_STATUS),
            RING_STATUS_ACTIVE | 1 | (Status::RingConfig as u32) << 8,
            "{what}"
        );
        assert_eq!(d.reg(RING_ERR_INDEX), 0);
        assert_ne!(d.reg(STATUS) & STATUS_RING_ERROR, 0, "{what}");
        if record_written {
            let c = cpl(&d, &r);
            assert_eq!(
                (c.head, c.status(), c.err_index, c.seq),
                (0, Some(Status::RingConfig), 0, 1),
                "{what}"
            );
        } else {
            assert_eq!(
                host_read(&d, hb + 0x100, 32),
                vec![0; 32],
                "{what}: no misaligned record"
            );
        }
        // Nothing is consumed.
        let good = hb + 0x1000;
        let de = desc(Opcode::WriteWord, TableId::Bucket, 0, 1, 0, 0, 5);
        d.host().write(good, &de.emit()).unwrap();
        w(&d, RING_TAIL, 1);
        assert!(!d.poll(), "{what}");
        assert_eq!(d.reg(RING_HEAD), 0);
        // Fixing the registers while ENABLE stays 1 does nothing; a 0 -> 1 transition does.
        program_ring(&d, good, 2, hb + 0x100);
        w(&d, RING_CTRL, RING_CTRL_ENABLE);
        w(&d, RING_TAIL, 1);
        assert!(!d.poll(), "{what}");
        assert_eq!(bytes_to_words(&entry_bytes(&d, TableId::Bucket, 0, 1)), [0]);
        w(&d, RING_TAIL, 0);
        enable(&mut d);
        assert_eq!(d.reg(RING_STATUS), RING_STATUS_ACTIVE);
        assert_eq!(d.reg(STATUS), STATUS_READY);
        w(&d, RING_TAIL, 1);
        assert!(d.poll());
        assert_eq!(d.reg(RING_HEAD), 1, "{what}");
        assert_eq!(bytes_to_words(&entry_bytes(&d, TableId::Bucket, 0, 1)), [5]);
    }
}

#[test]
fn ring_reenable_after_error() {
    let mut d = dev();
    let mut r = ring(&mut d, 2);
    push(
        &d,
        &mut r,
        &desc(Opcode::WriteWord, TableId::Bucket, 0, 1, 0, 0, 1),
    );
    push(
        &d,
        &mut r,
        &desc(Opcode::WriteWord, TableId::Bucket, 0, 1, 9, 0, 1),
    ); // bad word
    push(
        &d,
        &mut r,
        &desc(Opcode::WriteWord, TableId::Bucket, 1, 1, 0, 0, 1),
    );
    doorbell(&mut d, &r);
    assert_ring_failed(&d, &r, 1, Status::BadWord);
    assert_eq!(cpl(&d, &r).seq, 1);
    // ENABLE staying 1 is not a re-enable.
    w(&d, RING_CTRL, RING_CTRL_ENABLE);
    assert!(!d.poll());
    assert_ring_failed(&d, &r, 1, Status::BadWord);
    // 1 -> 0 alone keeps the error state; 0 -> 1 clears it and restarts at 0 (software set TAIL = 0).
    w(&d, RING_CTRL, 0);
    assert!(d.poll());
    assert_eq!(d.reg(RING_STATUS) & 1, 1, "disabling does not clear the error");
    assert_eq!(
        d.reg(RING_STATUS) & RING_STATUS_ACTIVE,
        0,
        "ACTIVE follows ENABLE = 0"
    );
    w(&d, RING_TAIL, 0);
    w(&d, RING_CTRL, RING_CTRL_ENABLE);
    assert!(d.poll());
    assert_eq!(d.reg(RING_STATUS), RING_STATUS_ACTIVE);
    assert_eq!(d.reg(RING_ERR_INDEX), 0);
    assert_eq!(d.reg(RING_HEAD), 0);
    assert_eq!(d.reg(STATUS), STATUS_READY);
    // Software starts over at slot 0.
    r.tail = 0;
    push(
        &d,
        &mut r,
        &desc(Opcode::WriteWord, TableId::Bucket, 2, 1, 0, 0, 7),
    );
    push(
        &d,
        &mut r,
        &desc(Opcode::WriteWord, TableId::Bucket, 3, 1, 0, 0, 8),
    );
    doorbell(&mut d, &r);
    assert_ring_ok(&d, &r);
    // The record sequence keeps counting across the re-enable.
    assert_eq!(cpl(&d, &r).seq, 2);
    assert_eq!(
        bytes_to_words(&entry_bytes(&d, TableId::Bucket, 0, 4)),
        [1, 0, 7, 8]
    );
}

#[test]
fn ring_disabled_consumes_nothing() {
    let mut d = dev();
    // Never enabled: a tail write is ignored.
    let hb = host_base(&d);
    d.host()
        .write(
            hb + 0x1000,
            &desc(Opcode::WriteWord, TableId::Bucket, 0, 1, 0, 0, 1).emit(),
        )
        .unwrap();
    program_ring(&d, hb + 0x1000, 2, hb + 0x100);
    w(&d, RING_TAIL, 1);
    assert!(!d.poll());
    assert_eq!(d.reg(RING_HEAD), 0);
    // Enabled, used, then disabled: pending descriptors wait.
    let mut r = ring(&mut d, 2);
    push(
        &d,
        &mut r,
        &desc(Opcode::WriteWord, TableId::Bucket, 0, 1, 0, 0, 1),
    );
    doorbell(&mut d, &r);
    assert_ring_ok(&d, &r);
    w(&d, RING_CTRL, 0);
    assert!(d.poll());
    push(
        &d,
        &mut r,
        &desc(Opcode::WriteWord, TableId::Bucket, 1, 1, 0, 0, 2),
    );
    w(&d, RING_TAIL, r.tail);
    assert!(!d.poll());
    assert_eq!(d.reg(RING_HEAD), 1);
    assert_eq!(bytes_to_words(&entry_bytes(&d, TableId::Bucket, 0, 2)), [1, 0]);
    // Re-enabling resets head to 0 (software resets its tail too).
    w(&d, RING_TAIL, 0);
    w(&d, RING_CTRL, RING_CTRL_ENABLE);
    assert!(d.poll());
    assert_eq!(d.reg(RING_HEAD), 0);
    assert_eq!(bytes_to_words(&entry_bytes(&d, TableId::Bucket, 0, 2)), [1, 0]);
}

#[test]
fn mailbox_and_ring_share_tables() {
    let mut d = dev();
    let mut r = ring(&mut d, 2);
    let words = pattern(77, 16);
    assert_eq!(mb(&mut d, WRITE, 1, 5, 1, 0, &words), OK);
    let dst = r.payload;
    push(&d, &mut r, &desc(Opcode::Read, TableId::Lb, 5, 1, 0, dst, 0));
    push(
        &d,
        &mut r,
        &desc(Opcode::WriteWord, TableId::Lb, 5, 1, 0, 0, 0x8000_0001),
    );
    doorbell(&mut d, &r);
    assert_ring_ok(&d, &r);
    assert_eq!(host_read(&d, dst, 64), words_to_bytes(&words));
    assert_eq!(mb(&mut d, READ, 1, 5, 1, 0, &[]), OK);
    let mut want = words.clone();
    want[0] = 0x8000_0001;
    assert_eq!(mb_data(&d, 16), want);
    let c = d.command_counts();
    assert_eq!((c.mailbox, c.descriptors, c.entries_written), (2, 2, 2));
}

// --- FENCE (v1.1) ---------------------------------------------------------------------------------------------

/// One packet per tick into the pipelined mode (an empty packet: dropped when it leaves).
struct Steady;

impl ironlb_sim::Traffic for Steady {
    fn next(&mut self, _tick: u64) -> Option<(u32, Vec<u8>)> {
        Some((0, Vec::new()))
    }
}

/// FENCE completes only when every packet that entered before it has left (mailbox and ring); the atomic model
/// has none in flight, so there it completes at once; a v1.0 part refuses the opcode.
#[test]
fn fence_drains_packets_in_flight() {
    const FENCE: u32 = Opcode::Fence as u32;
    // Atomic model: FENCE is a no-op that succeeds, on either path, whatever TABLE says.
    let mut d = Device::new(DeviceConfig::small()).unwrap();
    assert_eq!(mb(&mut d, FENCE, 0, 0, 0, 0, &[]), OK);
    assert_eq!(mb(&mut d, FENCE, 99, 7, 0, 0, &[]), OK);
    // Pipelined: 6 packets in flight (depth 10, commands advance no clock), then a mailbox FENCE.
    d.set_pipelined(10, 0, Box::new(Steady));
    for _ in 0..6 {
        d.tick();
    }
    assert_eq!((d.in_flight(), d.take_retired().len()), (6, 0));
    assert_eq!(mb(&mut d, FENCE, 0, 0, 0, 0, &[]), OK);
    let left: Vec<u64> = d.take_retired().iter().map(|r| r.seq).collect();
    assert_eq!(
        left,
        (0..6).collect::<Vec<_>>(),
        "exactly the packets that entered before the fence have left"
    );
    // Packets keep entering while the fence drains.
    assert_eq!(d.in_flight(), 10);
    // The ring: a FENCE descriptor between two writes; everything before it drained when the batch completes.
    // Seqs 6..=15 are in flight now.
    let mut r = ring(&mut d, 4);
    push(&d, &mut r, &desc(Opcode::Fence, TableId::Lb, 0, 0, 0, 0, 0));
    doorbell(&mut d, &r);
    assert_eq!(cpl(&d, &r).status(), Some(Status::Ok));
    let left: Vec<u64> = d.take_retired().iter().map(|r| r.seq).collect();
    assert_eq!(left, (6..16).collect::<Vec<_>>());
    // A v1.0 part: bad_opcode on both paths.
    let mut old = Device::new(DeviceConfig::small().as_v1_0()).unwrap();
    assert_eq!(mb(&mut old, FENCE, 0, 0, 0, 0, &[]), Status::BadOpcode as u32);
}
