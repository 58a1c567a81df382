//! BAR0 register map (docs/hw-spec.md §3).
//!
//! All registers are 32 bits, little-endian, 4-byte aligned. 64-bit quantities are two registers, low word at the
//! lower address; software writes the low word first. Offsets are byte offsets into BAR0.

/// Prototype PCI vendor id. NOT assigned by PCI-SIG: a production part gets a real one (docs/hw-spec.md §2).
pub const PCI_VENDOR_ID: u16 = 0x1ea7;
/// Prototype PCI device id of the ironlb L3 load-balancer function.
pub const PCI_DEVICE_ID: u16 = 0x1b01;
/// Size of BAR0 in bytes.
pub const BAR0_SIZE: usize = 0x1_0000;

/// Value of [`ID`]: ASCII "ILB1" read as a little-endian u32 (bytes 'I','L','B','1').
pub const ID_MAGIC: u32 = u32::from_le_bytes(*b"ILB1");
/// Contract major version implemented by this crate. A driver refuses any other major.
pub const VERSION_MAJOR: u16 = 1;
/// Contract minor version implemented by this crate. Minors only add; a driver accepts any minor.
pub const VERSION_MINOR: u16 = 2;

// --- identification and capabilities (read-only) -------------------------------------------------------------

/// Identification magic, [`ID_MAGIC`].
pub const ID: u32 = 0x0000;
/// `major << 16 | minor`.
pub const VERSION: u32 = 0x0004;
/// Number of LB-table buckets (power of two, >= 2). Each bucket holds [`CAP_LB_WAYS`] entries.
pub const CAP_LB_BUCKETS: u32 = 0x0008;
/// Entries per LB-table bucket (4 in v1).
pub const CAP_LB_WAYS: u32 = 0x000C;
/// Entries in the range (port filter) table.
pub const CAP_RANGES: u32 = 0x0010;
/// Maximum ranges in one LB's block (the filter compares this many in parallel; 16 in v1).
pub const CAP_MAX_RANGES_PER_LB: u32 = 0x0014;
/// Entries in the target table.
pub const CAP_TARGETS: u32 = 0x0018;
/// Maximum distinct targets referenced by one LB's bucket array.
pub const CAP_MAX_TARGETS_PER_LB: u32 = 0x001C;
/// Slots in bucket memory (shared by all LBs' bucket arrays, both sets).
pub const CAP_BUCKET_SLOTS: u32 = 0x0020;
/// Supported bucket-array sizes: bits 7:0 = min log2(M), bits 15:8 = max log2(M).
pub const CAP_BUCKET_LOG2: u32 = 0x0024;
/// Number of LB ids (rows of the per-LB counter table).
pub const CAP_LB_IDS: u32 = 0x0028;
/// Number of drop-reason counters implemented (see [`crate::DropReason`]).
pub const CAP_DROP_REASONS: u32 = 0x002C;
/// Number of ports (see [`PORT_CFG`]).
pub const CAP_PORTS: u32 = 0x0030;
/// Maximum log2 of the DMA command ring size; 0 means the device has no DMA command ring and software sends every
/// command and read through the mailbox (docs/hw-spec.md §3.1, §4.2).
pub const CAP_RING_MAX_LOG2: u32 = 0x0034;
/// Optional features (contract v1.1, docs/hw-spec.md §3.1): [`FEATURE_FENCE`], [`FEATURE_GENERATION`],
/// [`FEATURE_DROP_SNAPSHOT`]. A v1.0 device reads 0 here (unlisted offsets read 0), i.e. none of them.
pub const CAP_FEATURES: u32 = 0x0038;
/// The FENCE opcode (drain before reuse, docs/hw-spec.md §4).
pub const FEATURE_FENCE: u32 = 1 << 0;
/// The [`GENERATION`] register (reset detection, docs/hw-spec.md §3.4).
pub const FEATURE_GENERATION: u32 = 1 << 1;
/// The drop-counter snapshot ([`DROP_SNAPSHOT`], docs/hw-spec.md §3.2).
pub const FEATURE_DROP_SNAPSHOT: u32 = 1 << 2;
/// The flow table (contract v1.2, docs/hw-spec.md §11): registers 0x600..0x700, table 7, opcode 7.
pub const FEATURE_FLOW_TABLE: u32 = 1 << 3;
/// Every feature contract v1.1 defines.
pub const FEATURES_V1_1: u32 = FEATURE_FENCE | FEATURE_GENERATION | FEATURE_DROP_SNAPSHOT;
/// Every feature this crate's contract version (v1.2) defines.
pub const FEATURES_V1_2: u32 = FEATURES_V1_1 | FEATURE_FLOW_TABLE;
/// Reset generation (read-only, v1.1): a value that changes on every reset of the device (power-on, function
/// level reset, CONTROL.RESET) and is never 0 or 0xFFFF_FFFF, so a driver detects a reset it did not cause and an
/// all-ones read (a removed device) is never a valid generation.
pub const GENERATION: u32 = 0x003C;

// --- control and device configuration -------------------------------------------------------------------------

/// Control: [`CONTROL_ENABLE`], [`CONTROL_RESET`].
pub const CONTROL: u32 = 0x0040;
/// Pipeline enable. While clear, every packet is dropped with `device_disabled`.
pub const CONTROL_ENABLE: u32 = 1 << 0;
/// Write 1: clear all tables, counters, port config and the ring; self-clearing. The device is then disabled.
pub const CONTROL_RESET: u32 = 1 << 1;
/// Status (read-only): [`STATUS_READY`], [`STATUS_RING_ERROR`].
pub const STATUS: u32 = 0x0044;
/// The device accepts commands.
pub const STATUS_READY: u32 = 1 << 0;
/// The DMA ring stopped on an error (see [`RING_STATUS`]).
pub const STATUS_RING_ERROR: u32 = 1 << 1;
/// Device underlay IPv6 address, the outer source of every encapsulated packet: 16 bytes at 0x50..0x60, network
/// byte order (byte 0 of the address at the lowest address, i.e. register 0x50 holds bytes 0..4 little-endian).
pub const UNDERLAY_SRC: u32 = 0x0050;
/// Underlay MTU in bytes: the largest outer IPv6 packet (40-byte header + inner packet) the device may send.
pub const UNDERLAY_MTU: u32 = 0x0060;
/// Hop limit of the outer IPv6 header (bits 7:0).
pub const UNDERLAY_HOP_LIMIT: u32 = 0x0064;
/// Default underlay MTU after reset.
pub const DEFAULT_UNDERLAY_MTU: u32 = 9000;
/// Default outer hop limit after reset.
pub const DEFAULT_HOP_LIMIT: u8 = 64;

/// Port configuration array: `PORT_CFG + 4 * port`, see [`crate::entry::PortCfg`].
pub const PORT_CFG: u32 = 0x0080;
/// Maximum number of ports the register map has room for.
pub const MAX_PORTS: u32 = 32;

// --- mailbox (single updates) ---------------------------------------------------------------------------------

/// Mailbox opcode, see [`Opcode`].
pub const MB_OPCODE: u32 = 0x0100;
/// Mailbox table id, see [`TableId`].
pub const MB_TABLE: u32 = 0x0104;
/// First entry index.
pub const MB_INDEX: u32 = 0x0108;
/// Number of consecutive entries (WRITE/READ: 1..=16/entry_words; FILL: any).
pub const MB_COUNT: u32 = 0x010C;
/// Word offset inside the entry (WRITE_WORD) or fill value (FILL).
pub const MB_ARG: u32 = 0x0110;
/// Doorbell: software writes a new sequence number here to execute the staged command.
pub const MB_DOORBELL: u32 = 0x0114;
/// Sequence number of the last completed command (read-only).
pub const MB_DONE_SEQ: u32 = 0x0118;
/// Status of the last completed command (read-only), see [`Status`].
pub const MB_STATUS: u32 = 0x011C;
/// Staging data: 16 words (64 bytes) at 0x140..0x180.
pub const MB_DATA: u32 = 0x0140;
/// Number of staging words.
pub const MB_DATA_WORDS: usize = 16;

// --- DMA command ring (bulk updates) --------------------------------------------------------------------------

/// Ring base IOVA, low word (64-byte aligned).
pub const RING_BASE_LO: u32 = 0x0200;
/// Ring base IOVA, high word.
pub const RING_BASE_HI: u32 = 0x0204;
/// log2 of the number of 32-byte descriptors.
pub const RING_SIZE_LOG2: u32 = 0x0208;
/// Ring control: [`RING_CTRL_ENABLE`].
pub const RING_CTRL: u32 = 0x020C;
/// Enable. A 0 -> 1 transition resets head, tail and error state to 0.
pub const RING_CTRL_ENABLE: u32 = 1 << 0;
/// Producer index (doorbell), free-running modulo 2^32, written by software after the descriptors.
pub const RING_TAIL: u32 = 0x0210;
/// Consumer index, free-running modulo 2^32 (read-only).
pub const RING_HEAD: u32 = 0x0214;
/// IOVA of the 16-byte completion record, low word (16-byte aligned).
pub const RING_CPL_LO: u32 = 0x0218;
/// IOVA of the completion record, high word.
pub const RING_CPL_HI: u32 = 0x021C;
/// Ring status (read-only): bit 0 stopped on error, bit 1 [`RING_STATUS_ACTIVE`], bits 15:8 [`Status`] of the
/// failed descriptor.
pub const RING_STATUS: u32 = 0x0220;
/// RING_STATUS bit 0: stopped on an error.
pub const RING_STATUS_STOPPED: u32 = 1 << 0;
/// RING_STATUS bit 1: the device has taken the last ENABLE edge: set once it has processed ENABLE 0 -> 1 (head
/// reset, error state cleared), clear once it has seen ENABLE = 0. Software waits for this bit after writing
/// RING_CTRL, because a device that samples its registers could otherwise miss a quick 0 -> 1 toggle.
pub const RING_STATUS_ACTIVE: u32 = 1 << 1;
/// Free-running index of the descriptor that failed (read-only, valid while stopped).
pub const RING_ERR_INDEX: u32 = 0x0224;

// --- counters -------------------------------------------------------------------------------------------------

/// Drop counters: 32 x u64 (low word first) at 0x300..0x400, indexed by [`crate::DropReason`]. Read-only;
/// cleared by writing any value to [`DROP_CLEAR`].
pub const DROP_COUNTERS: u32 = 0x0300;
/// Write: clear all drop counters.
pub const DROP_CLEAR: u32 = 0x0400;
/// Drop-counter snapshot request (v1.1): software writes a new sequence number; the device copies all drop counters
/// as of one instant to [`DROP_SNAPSHOT_DATA`], then sets [`DROP_SNAPSHOT_DONE`] to that number.
pub const DROP_SNAPSHOT: u32 = 0x0404;
/// Sequence number of the last completed drop-counter snapshot (read-only, v1.1).
pub const DROP_SNAPSHOT_DONE: u32 = 0x0408;
/// Drop-counter snapshot: 32 x u64 (low word first) at 0x500..0x600, written only by a snapshot (v1.1).
pub const DROP_SNAPSHOT_DATA: u32 = 0x0500;

// --- flow table (v1.2, docs/hw-spec.md §11.1) -------------------------------------------------------------------

/// Entries of the flow table (a power of two >= [`CAP_FLOW_WAYS`]); 0 without a flow table.
pub const CAP_FLOW_ENTRIES: u32 = 0x0600;
/// Entries per flow-table set (compared in parallel).
pub const CAP_FLOW_WAYS: u32 = 0x0604;
/// Flow-table control: [`FLOW_CTRL_ENABLE`].
pub const FLOW_CTRL: u32 = 0x0608;
/// Look flows up and learn them (clear: the v1.1 pipeline).
pub const FLOW_CTRL_ENABLE: u32 = 1 << 0;
/// The flow clock (read-only): milliseconds, free-running modulo 2^32.
pub const FLOW_CLOCK: u32 = 0x060C;
/// Idle timeouts in milliseconds, one register per [`FlowClass`] at `FLOW_TIMEOUT + 4 * class` (bits 30:0).
pub const FLOW_TIMEOUT: u32 = 0x0610;
/// Bits of a timeout register the device uses (bit 31 is reserved).
pub const FLOW_TIMEOUT_MASK: u32 = 0x7FFF_FFFF;
/// The aging sweep visits every entry at least once per this many milliseconds of flow clock.
pub const FLOW_SWEEP_MS: u32 = 1000;
/// Live flow counters: 8 x u64 (low word first) at 0x640..0x680, indexed by [`FlowCounter`].
pub const FLOW_COUNTERS: u32 = 0x0640;
/// The flow counters as of the last drop-counter snapshot: 8 x u64 at 0x680..0x6C0.
pub const FLOW_SNAPSHOT_DATA: u32 = 0x0680;
/// Counter slots of [`FLOW_COUNTERS`] (6 defined, 2 reserved).
pub const FLOW_COUNTER_SLOTS: usize = 8;

/// Flow classes, each with its own idle timeout register (docs/hw-spec.md §11.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[repr(u8)]
pub enum FlowClass {
    /// TCP without FIN/RST seen.
    Tcp = 0,
    /// TCP after a FIN or RST.
    TcpClosing = 1,
    /// UDP.
    Udp = 2,
    /// SCTP.
    Sctp = 3,
    /// Anything else (ICMP echo, fragments of other protocols).
    Other = 4,
}

impl FlowClass {
    /// All classes in register order.
    pub const ALL: [FlowClass; 5] = [
        FlowClass::Tcp,
        FlowClass::TcpClosing,
        FlowClass::Udp,
        FlowClass::Sctp,
        FlowClass::Other,
    ];

    /// The class of a flow with this hashed protocol and CLOSING flag.
    pub const fn of(protocol: u8, closing: bool) -> FlowClass {
        match protocol {
            6 if closing => FlowClass::TcpClosing,
            6 => FlowClass::Tcp,
            17 => FlowClass::Udp,
            132 => FlowClass::Sctp,
            _ => FlowClass::Other,
        }
    }

    /// Offset of this class's timeout register.
    pub const fn register(self) -> u32 {
        FLOW_TIMEOUT + 4 * self as u32
    }

    /// Timeout after reset, in milliseconds.
    pub const fn default_timeout_ms(self) -> u32 {
        match self {
            FlowClass::Tcp | FlowClass::Sctp => 300_000,
            FlowClass::TcpClosing => 10_000,
            FlowClass::Udp => 60_000,
            FlowClass::Other => 30_000,
        }
    }

    /// Lower-case name (metrics, dumps, CLI).
    pub const fn name(self) -> &'static str {
        match self {
            FlowClass::Tcp => "tcp",
            FlowClass::TcpClosing => "tcp_closing",
            FlowClass::Udp => "udp",
            FlowClass::Sctp => "sctp",
            FlowClass::Other => "other",
        }
    }
}

/// Flow-table counters, indexed as in [`FLOW_COUNTERS`] (docs/hw-spec.md §11.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[repr(u8)]
pub enum FlowCounter {
    /// Entries written by a learn.
    Learned = 0,
    /// Packets that took a pinned target.
    Hits = 1,
    /// Entries invalidated (or replaced) because they expired.
    Aged = 2,
    /// Flows not pinned because their set was full.
    Overflow = 3,
    /// Entries invalidated by FLOW_FLUSH.
    Flushed = 4,
    /// Entries re-learned because their pinned target was removed.
    Relearned = 5,
}

impl FlowCounter {
    /// All counters in register order.
    pub const ALL: [FlowCounter; 6] = [
        FlowCounter::Learned,
        FlowCounter::Hits,
        FlowCounter::Aged,
        FlowCounter::Overflow,
        FlowCounter::Flushed,
        FlowCounter::Relearned,
    ];

    /// Index into the counter block.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// Lower-case name (metrics label, `ironlb stats`).
    pub const fn name(self) -> &'static str {
        match self {
            FlowCounter::Learned => "learned",
            FlowCounter::Hits => "hits",
            FlowCounter::Aged => "aged",
            FlowCounter::Overflow => "overflow",
            FlowCounter::Flushed => "flushed",
            FlowCounter::Relearned => "relearned",
        }
    }
}

/// FLOW_FLUSH selector, the command's `ARG` (docs/hw-spec.md §4, §11.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlushSelector {
    /// Every entry (`ARG` 0; `INDEX` ignored).
    All,
    /// Entries with this LB_ID (`ARG` 1, `INDEX` = LB id).
    Lb(u32),
    /// Entries pinned to this target index (`ARG` 2, `INDEX` = target index).
    Target(u32),
}

impl FlushSelector {
    /// Decode (`ARG`, `INDEX`); `None` for an unknown selector (`bad_word`).
    pub const fn from_raw(arg: u32, index: u32) -> Option<Self> {
        match arg {
            0 => Some(FlushSelector::All),
            1 => Some(FlushSelector::Lb(index)),
            2 => Some(FlushSelector::Target(index)),
            _ => None,
        }
    }

    /// (`ARG`, `INDEX`) of the command.
    pub const fn to_raw(self) -> (u32, u32) {
        match self {
            FlushSelector::All => (0, 0),
            FlushSelector::Lb(i) => (1, i),
            FlushSelector::Target(i) => (2, i),
        }
    }
}

/// Reserved for a BAR-resident command ring (a push ring written by the driver), not in v1.0: the future
/// alternative to the mailbox-only path of a device without a DMA ring (docs/hw-spec.md §4.2).
pub const RESERVED_BAR_RING: u32 = 0x8000;

// The register blocks must not overlap: checked when the crate compiles.
const _: () = {
    assert!(CAP_RING_MAX_LOG2 < CONTROL);
    assert!(UNDERLAY_HOP_LIMIT < PORT_CFG);
    assert!(PORT_CFG + 4 * MAX_PORTS <= MB_OPCODE);
    assert!(MB_DATA + 4 * MB_DATA_WORDS as u32 <= RING_BASE_LO);
    assert!(RING_ERR_INDEX < DROP_COUNTERS);
    assert!(DROP_COUNTERS + 8 * 32 <= DROP_CLEAR);
    assert!(GENERATION < CONTROL);
    assert!(DROP_SNAPSHOT_DONE < DROP_SNAPSHOT_DATA);
    assert!(DROP_SNAPSHOT_DATA + 8 * 32 <= CAP_FLOW_ENTRIES);
    assert!(FLOW_TIMEOUT + 4 * 5 <= FLOW_COUNTERS);
    assert!(FLOW_COUNTERS + 8 * FLOW_COUNTER_SLOTS as u32 <= FLOW_SNAPSHOT_DATA);
    assert!(FLOW_SNAPSHOT_DATA + 8 * FLOW_COUNTER_SLOTS as u32 <= 0x0700);
    assert!((RESERVED_BAR_RING as usize) < BAR0_SIZE);
    assert!(ID_MAGIC == 0x3142_4c49);
};

/// Mailbox / ring opcodes (docs/hw-spec.md §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Opcode {
    /// Write `count` entries from staging data (mailbox) or from the payload at `iova` (ring).
    Write = 1,
    /// Read `count` entries into staging data (mailbox) or DMA them to `iova` (ring).
    Read = 2,
    /// Write one 32-bit word at word offset `arg` of entry `index` (the commit-word write).
    WriteWord = 3,
    /// Write the 32-bit value `arg` into every word of `count` entries starting at `index` (clears).
    Fill = 4,
    /// Do nothing (ring padding).
    Nop = 5,
    /// Complete only when every packet that entered the pipeline before this command has left it (v1.1,
    /// [`FEATURE_FENCE`]). Table, index and count are ignored.
    Fence = 6,
    /// Invalidate flow-table entries by LB, by target or all; includes a FENCE (v1.2, [`FEATURE_FLOW_TABLE`]).
    /// `ARG` is the [`FlushSelector`], `INDEX` its LB id or target index; `TABLE` must be [`TableId::Flow`].
    FlowFlush = 7,
}

impl Opcode {
    /// Decode a raw opcode.
    pub fn from_raw(v: u32) -> Option<Self> {
        Some(match v {
            1 => Opcode::Write,
            2 => Opcode::Read,
            3 => Opcode::WriteWord,
            4 => Opcode::Fill,
            5 => Opcode::Nop,
            6 => Opcode::Fence,
            7 => Opcode::FlowFlush,
            _ => return None,
        })
    }
}

/// Table ids for [`MB_TABLE`] and ring descriptors (docs/hw-spec.md §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum TableId {
    /// LB exact-match table; index = bucket * ways + way; 16 words per entry.
    Lb = 1,
    /// Range table; 2 words per entry.
    Range = 2,
    /// Target table; 8 words per entry.
    Target = 3,
    /// Bucket memory; 1 word (a target index) per slot.
    Bucket = 4,
    /// Per-LB counters (read; Fill clears); 4 words per entry.
    LbCounter = 5,
    /// Per-target counters (read; Fill clears); 4 words per entry.
    TargetCounter = 6,
    /// Flow table (v1.2); index = set * ways + way; 16 words per entry. Read and FLOW_FLUSH only.
    Flow = 7,
}

impl TableId {
    /// The tables of contract v1.0 and v1.1, in id order: every one software may write (counters: clear). The
    /// flow table ([`TableId::Flow`], v1.2) is not among them: software only reads and flushes it.
    pub const ALL: [TableId; 6] = [
        TableId::Lb,
        TableId::Range,
        TableId::Target,
        TableId::Bucket,
        TableId::LbCounter,
        TableId::TargetCounter,
    ];

    /// Decode a raw table id.
    pub fn from_raw(v: u32) -> Option<Self> {
        if v == TableId::Flow as u32 {
            return Some(TableId::Flow);
        }
        Self::ALL.into_iter().find(|t| *t as u32 == v)
    }

    /// Entry size in 32-bit words.
    pub const fn entry_words(self) -> usize {
        match self {
            TableId::Lb | TableId::Flow => 16,
            TableId::Range => 2,
            TableId::Target => 8,
            TableId::Bucket => 1,
            TableId::LbCounter | TableId::TargetCounter => 4,
        }
    }

    /// Entry size in bytes.
    pub const fn entry_bytes(self) -> usize {
        self.entry_words() * 4
    }

    /// True for counter tables, which software may read and clear (Fill with 0) but not write.
    pub const fn is_counter(self) -> bool {
        matches!(self, TableId::LbCounter | TableId::TargetCounter)
    }

    /// Lower-case name used in dumps and errors.
    pub const fn name(self) -> &'static str {
        match self {
            TableId::Lb => "lb",
            TableId::Range => "range",
            TableId::Target => "target",
            TableId::Bucket => "bucket",
            TableId::LbCounter => "lb_counter",
            TableId::TargetCounter => "target_counter",
            TableId::Flow => "flow",
        }
    }
}

/// Command completion status (mailbox [`MB_STATUS`], ring completion record).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Status {
    /// Done.
    Ok = 0,
    /// Unknown opcode.
    BadOpcode = 1,
    /// Unknown table id, or a write to a counter table.
    BadTable = 2,
    /// Index/count outside the table, count 0, or more entries than the staging area holds.
    OutOfRange = 3,
    /// Word offset outside the entry.
    BadWord = 4,
    /// A DMA access hit an IOVA outside what the host mapped.
    DmaFault = 5,
    /// Ring misconfigured (size, alignment) or not enabled.
    RingConfig = 6,
}

impl Status {
    /// Decode a raw status.
    pub fn from_raw(v: u32) -> Option<Self> {
        Some(match v {
            0 => Status::Ok,
            1 => Status::BadOpcode,
            2 => Status::BadTable,
            3 => Status::OutOfRange,
            4 => Status::BadWord,
            5 => Status::DmaFault,
            6 => Status::RingConfig,
            _ => return None,
        })
    }
    /// Lower-case name.
    pub const fn name(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::BadOpcode => "bad_opcode",
            Status::BadTable => "bad_table",
            Status::OutOfRange => "out_of_range",
            Status::BadWord => "bad_word",
            Status::DmaFault => "dma_fault",
            Status::RingConfig => "ring_config",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_round_trip() {
        for t in TableId::ALL {
            assert_eq!(TableId::from_raw(t as u32), Some(t));
            assert!(t.entry_words() <= MB_DATA_WORDS);
        }
        for v in 0..16 {
            if let Some(o) = Opcode::from_raw(v) {
                assert_eq!(o as u32, v);
            }
            if let Some(s) = Status::from_raw(v) {
                assert_eq!(s as u32, v);
            }
        }
        assert_eq!(TableId::from_raw(0), None);
        assert_eq!(TableId::from_raw(7), Some(TableId::Flow));
        assert_eq!(TableId::from_raw(8), None);
        for c in FlowClass::ALL {
            assert!(c.register() < FLOW_COUNTERS);
            assert_eq!(c.default_timeout_ms() & !FLOW_TIMEOUT_MASK, 0);
        }
        for (i, c) in FlowCounter::ALL.iter().enumerate() {
            assert_eq!(c.index(), i);
        }
        for s in [FlushSelector::All, FlushSelector::Lb(3), FlushSelector::Target(9)] {
            let (a, i) = s.to_raw();
            assert_eq!(FlushSelector::from_raw(a, i), Some(s));
        }
        assert_eq!(FlushSelector::from_raw(3, 0), None);
        assert_eq!(FlowClass::of(6, true), FlowClass::TcpClosing);
        assert_eq!(FlowClass::of(6, false), FlowClass::Tcp);
        assert_eq!(FlowClass::of(1, true), FlowClass::Other);
        assert_eq!(Opcode::from_raw(0), None);
    }
}
