//! Port filter (docs/hw-spec.md §5.2, §7.6): the LB's allow-list is the range block
//! `[RANGE_BASE, RANGE_BASE + RANGE_COUNT)`; the device compares `min(RANGE_COUNT, CAP_MAX_RANGES_PER_LB)` entries
//! (in parallel in hardware), and entries beyond the end of the range table count as empty.

use super::classify::Ask;
use crate::tables::TableMemory;
use ironlb_hw::entry::range::{raw_admits, raw_protocol};
use ironlb_hw::regs::TableId;

/// The range-table indices the filter compares for a block: `base .. base + min(count, cap)`, cut at the table end.
#[inline]
pub fn block(tables: &TableMemory, cap: u32, base: u32, count: u16) -> std::ops::Range<u32> {
    let n = u64::from(u32::from(count).min(cap));
    let end = (u64::from(base) + n).min(u64::from(tables.entries(TableId::Range)));
    let start = u64::from(base).min(end);
    start as u32..end as u32
}

/// §7.6: the index of the first range entry of the block that admits the packet, `None` when none does.
///
/// [`Ask::Port`] carries the destination port (for ICMP errors: the embedded source port); a non-first fragment
/// asks [`Ask::Protocol`] (any entry of its protocol) or, when its upper-layer protocol is unknown,
/// [`Ask::AnyEntry`] (any non-empty entry).
#[inline]
pub fn admit(tables: &TableMemory, cap: u32, base: u32, count: u16, ask: Ask) -> Option<u32> {
    let b = block(tables, cap, base, count);
    let entries = tables.get(TableId::Range, b.start, b.end - b.start)?;
    let hit = entries
        .chunks_exact(TableId::Range.entry_bytes())
        .position(|e| match ask {
            Ask::Port(protocol, p) => raw_admits(e, protocol, p),
            Ask::Protocol(protocol) => protocol != 0 && raw_protocol(e) == protocol,
            Ask::AnyEntry => raw_protocol(e) != 0,
        })?;
    Some(b.start + hit as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DeviceConfig;
    use ironlb_hw::entry::{Protocol, RangeEntry};

    fn put(t: &mut TableMemory, i: u32, p: Protocol, low: u16, high: u16) {
        let e = RangeEntry {
            protocol: p,
            low,
            high,
        };
        t.get_mut(TableId::Range, i, 1)
            .unwrap()
            .copy_from_slice(&e.emit());
    }

    #[test]
    fn admits_within_block_only() {
        let mut t = TableMemory::new(&DeviceConfig::small());
        put(&mut t, 9, Protocol::Tcp, 22, 22); // just before the block
        put(&mut t, 10, Protocol::Tcp, 80, 80);
        put(&mut t, 11, Protocol::Udp, 1000, 2000);
        put(&mut t, 12, Protocol::Tcp, 443, 443); // just after a block of 2
        assert_eq!(admit(&t, 16, 10, 2, Ask::Port(6, 80)), Some(10));
        assert_eq!(admit(&t, 16, 10, 2, Ask::Port(17, 1000)), Some(11));
        assert_eq!(admit(&t, 16, 10, 2, Ask::Port(17, 2000)), Some(11));
        assert_eq!(admit(&t, 16, 10, 2, Ask::Port(17, 2001)), None);
        assert_eq!(admit(&t, 16, 10, 2, Ask::Port(6, 443)), None);
        assert_eq!(admit(&t, 16, 10, 3, Ask::Port(6, 443)), Some(12));
        assert_eq!(admit(&t, 16, 10, 2, Ask::Port(6, 22)), None);
        assert_eq!(admit(&t, 16, 10, 2, Ask::Port(132, 80)), None);
        // RANGE_COUNT 0 allows nothing.
        assert_eq!(admit(&t, 16, 10, 0, Ask::Port(6, 80)), None);
        // Non-first fragments: any entry of the protocol.
        assert_eq!(admit(&t, 16, 10, 2, Ask::Protocol(17)), Some(11));
        assert_eq!(admit(&t, 16, 10, 2, Ask::Protocol(132)), None);
        // Empty entries (protocol 0) never match, not even protocol 0.
        assert_eq!(admit(&t, 16, 20, 4, Ask::Protocol(0)), None);
        assert_eq!(admit(&t, 16, 20, 4, Ask::Port(0, 0)), None);
        // A fragment of unknown protocol: any non-empty entry, never an empty one.
        assert_eq!(admit(&t, 16, 10, 2, Ask::AnyEntry), Some(10));
        assert_eq!(admit(&t, 16, 11, 1, Ask::AnyEntry), Some(11));
        assert_eq!(admit(&t, 16, 20, 4, Ask::AnyEntry), None);
        assert_eq!(admit(&t, 16, 10, 0, Ask::AnyEntry), None);
    }

    #[test]
    fn bounded_by_cap_and_table_end() {
        let mut t = TableMemory::new(&DeviceConfig::small());
        let n = t.entries(TableId::Range);
        put(&mut t, 100 + 16, Protocol::Tcp, 80, 80); // 17th entry of a block at 100
        assert_eq!(admit(&t, 16, 100, 17, Ask::Port(6, 80)), None);
        assert_eq!(admit(&t, 17, 100, 17, Ask::Port(6, 80)), Some(116));
        assert_eq!(block(&t, 16, 100, 1000), 100..116);
        put(&mut t, n - 1, Protocol::Udp, 53, 53);
        assert_eq!(admit(&t, 16, n - 1, 16, Ask::Port(17, 53)), Some(n - 1));
        assert_eq!(block(&t, 16, n - 1, 16), n - 1..n);
        assert_eq!(block(&t, 16, u32::MAX, 16), n..n);
        assert_eq!(admit(&t, 16, u32::MAX - 3, 16, Ask::Port(17, 53)), None);
    }
}
