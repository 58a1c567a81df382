//! LB exact-match lookup (docs/hw-spec.md §5.1, §6.3, §7.4): probe the 4 ways of cuckoo bucket `b1`, then of `b2`,
//! and take the first valid entry whose key (domain, family, VIP) matches. Only the fields the pipeline needs are
//! read from the raw entry (CTRL, DOMAIN, VIP, LB_ID and the active set); the entry is never fully decoded.
//!
//! The key comparison is [`key_matches`], an inlined equivalent of `ironlb_hw::entry::lb::view::matches` (the
//! reference; a property test checks they agree on arbitrary entries): up to 8 comparisons per packet are the
//! lookup's whole cost, and the reference's out-of-line field accessors doubled it.

use crate::tables::TableMemory;
use ironlb_hw::entry::lb::{
    self, CTRL_ACTIVE_SET, CTRL_ICMP_ALLOW_ECHO, CTRL_ICMP_DELIVER_ERRORS, CTRL_VALID,
};
use ironlb_hw::regs::TableId;
use ironlb_hw::Vip;

/// Entries per bucket (CAP_LB_WAYS).
pub const WAYS: u32 = 4;

/// Byte offsets inside a 64-byte LB entry (docs/hw-spec.md §5.1).
mod off {
    /// u32 DOMAIN.
    pub const DOMAIN: usize = 0x08;
    /// u32 LB_ID.
    pub const LB_ID: usize = 0x0C;
    /// 16-byte VIP.
    pub const VIP: usize = 0x10;
    /// CTRL bits 25:24: FAMILY (1 IPv4, 2 IPv6).
    pub const FAMILY_SHIFT: u32 = 24;
    /// Set fields, relative to the set's first byte.
    pub const RANGE_BASE: usize = 0x0;
    pub const RANGE_COUNT: usize = 0x4;
    pub const BUCKET_LOG2: usize = 0x6;
    pub const BUCKET_BASE: usize = 0x8;
}

/// The active configuration set of a matched LB entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActiveSet {
    /// First entry of the range block.
    pub range_base: u32,
    /// Entries in the range block.
    pub range_count: u16,
    /// log2(M), 0 = no bucket array.
    pub bucket_log2: u8,
    /// First slot of the bucket array.
    pub bucket_base: u32,
}

/// A matched LB entry: where it was found and what the pipeline uses of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LbHit {
    /// LB-table index (bucket × 4 + way).
    pub index: u32,
    /// Bucket.
    pub bucket: u32,
    /// Way.
    pub way: u32,
    /// LB_ID (per-LB counter row).
    pub lb_id: u32,
    /// ACTIVE_SET (0/1).
    pub active_set: u8,
    /// CTRL.ICMP_ALLOW_ECHO.
    pub allow_echo: bool,
    /// CTRL.ICMP_DELIVER_ERRORS.
    pub deliver_errors: bool,
    /// CTRL.FLOW_EPOCH (v1.2).
    pub flow_epoch: u8,
    /// The active set.
    pub set: ActiveSet,
}

#[inline]
fn le32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

/// True when the raw entry `e` is valid and holds the key (domain, FAMILY code, VIP): the same predicate as
/// `view::matches`.
#[inline(always)]
pub fn key_matches(e: &[u8], domain: u32, family_code: u32, vip: &[u8; 16]) -> bool {
    let ctrl = le32(e, 0); // CTRL, the commit word
    ctrl & CTRL_VALID != 0
        && (ctrl >> off::FAMILY_SHIFT) & 0b11 == family_code
        && le32(e, off::DOMAIN) == domain
        && e[off::VIP..off::VIP + 16] == vip[..]
}

/// Decode the fields the pipeline needs from a raw, matching entry.
#[inline]
fn hit(e: &[u8], index: u32) -> LbHit {
    let ctrl = le32(e, 0); // CTRL, the commit word
    let active_set = u8::from(ctrl & CTRL_ACTIVE_SET != 0);
    let s = lb::set_word(active_set) as usize * 4;
    LbHit {
        index,
        bucket: index / WAYS,
        way: index % WAYS,
        lb_id: le32(e, off::LB_ID),
        active_set,
        allow_echo: ctrl & CTRL_ICMP_ALLOW_ECHO != 0,
        deliver_errors: ctrl & CTRL_ICMP_DELIVER_ERRORS != 0,
        flow_epoch: lb::view::flow_epoch(ctrl),
        set: ActiveSet {
            range_base: le32(e, s + off::RANGE_BASE),
            range_count: u16::from_le_bytes([e[s + off::RANGE_COUNT], e[s + off::RANGE_COUNT + 1]]),
            bucket_log2: e[s + off::BUCKET_LOG2],
            bucket_base: le32(e, s + off::BUCKET_BASE),
        },
    }
}

/// Result of a lookup: the candidate buckets (for traces) and the hit, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lookup {
    /// `[b1, b2]`, or `None` when no bucket was probed (see [`lookup`]).
    pub buckets: Option<[u32; 2]>,
    /// The first matching valid entry.
    pub hit: Option<LbHit>,
}

/// §7.4: find the entry for (domain, family of the packet, destination address) in a table of `n_buckets` buckets
/// (CAP_LB_BUCKETS).
///
/// An IPv6 packet whose destination lies in `::ffff:0:0/96` can match nothing: IPv6 VIPs in that prefix are not
/// supported (§5) and the key's family (IPv6) differs from the family of every entry holding such an address
/// (IPv4). Without this check the 16 bytes alone would find the IPv4 VIP.
#[inline]
pub fn lookup(tables: &TableMemory, n_buckets: u32, domain: u32, v6: bool, dst: &[u8; 16]) -> Lookup {
    if v6 == (Vip(*dst).family() == ironlb_hw::Family::V4) {
        return Lookup {
            buckets: None,
            hit: None,
        };
    }
    let family = if v6 {
        ironlb_hw::Family::V6
    } else {
        ironlb_hw::Family::V4
    };
    let buckets = super::crc::lb_buckets(domain, family.number(), dst, n_buckets);
    for b in buckets {
        let Some(bucket) = tables.get(TableId::Lb, b * WAYS, WAYS) else {
            continue;
        };
        for (way, e) in bucket.chunks_exact(TableId::Lb.entry_bytes()).enumerate() {
            if key_matches(e, domain, family.code(), dst) {
                let index = b * WAYS + way as u32;
                return Lookup {
                    buckets: Some(buckets),
                    hit: Some(hit(e, index)),
                };
            }
        }
    }
    Lookup {
        buckets: Some(buckets),
        hit: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DeviceConfig;
    use ironlb_hw::entry::{IcmpPolicy, LbEntry, LbSet};

    fn entry(domain: u32, vip: Vip, lb_id: u32, active_set: u8) -> LbEntry {
        LbEntry {
            active_set,
            icmp: IcmpPolicy {
                allow_echo: true,
                deliver_errors: false,
            },
            generation: 1,
            flow_epoch: 3,
            domain,
            lb_id,
            vip,
            sets: [
                LbSet {
                    range_base: 10,
                    range_count: 2,
                    bucket_log2: 4,
                    bucket_base: 100,
                },
                LbSet {
                    range_base: 20,
                    range_count: 3,
                    bucket_log2: 5,
                    bucket_base: 200,
                },
            ],
        }
    }

    fn put(t: &mut TableMemory, index: u32, e: &LbEntry) {
        t.get_mut(TableId::Lb, index, 1)
            .unwrap()
            .copy_from_slice(&e.emit());
    }

    #[test]
    fn finds_entry_in_either_bucket_and_decodes_active_set() {
        let mut t = TableMemory::new(&DeviceConfig::small());
        let n = t.entries(TableId::Lb) / WAYS;
        let vip = Vip::from_ipv4([10, 0, 0, 1]);
        let e = entry(100, vip, 7, 1);
        let [b1, b2] = e.key().buckets(n);
        // Not present.
        let l = lookup(&t, n, 100, false, &vip.0);
        assert_eq!(l.buckets, Some([b1, b2]));
        assert_eq!(l.hit, None);
        // In b2, way 3.
        put(&mut t, b2 * 4 + 3, &e);
        let h = lookup(&t, n, 100, false, &vip.0).hit.unwrap();
        assert_eq!((h.index, h.bucket, h.way, h.lb_id), (b2 * 4 + 3, b2, 3, 7));
        assert_eq!((h.active_set, h.allow_echo, h.deliver_errors), (1, true, false));
        assert_eq!(
            h.set,
            ActiveSet {
                range_base: 20,
                range_count: 3,
                bucket_log2: 5,
                bucket_base: 200
            }
        );
        // A copy in b1 (cuckoo move in progress) is found first.
        let mut e0 = e;
        e0.active_set = 0;
        put(&mut t, b1 * 4 + 1, &e0);
        let h = lookup(&t, n, 100, false, &vip.0).hit.unwrap();
        assert_eq!((h.index, h.active_set, h.set.range_base), (b1 * 4 + 1, 0, 10));
        // Other domain, other family, invalid entry: no match.
        assert_eq!(lookup(&t, n, 101, false, &vip.0).hit, None);
        assert_eq!(lookup(&t, n, 100, true, &vip.0).hit, None);
        t.get_mut(TableId::Lb, b1 * 4 + 1, 1).unwrap()[3] &= 0x7F;
        t.get_mut(TableId::Lb, b2 * 4 + 3, 1).unwrap()[3] &= 0x7F;
        assert_eq!(lookup(&t, n, 100, false, &vip.0).hit, None);
    }

    proptest::proptest! {
        /// `key_matches` agrees with the contract's `view::matches` on arbitrary entries and keys.
        #[test]
        fn key_matches_is_view_matches(
            raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 64),
            domain: u32,
            vip: [u8; 16],
            v4: bool,
            copy_key: bool,
        ) {
            let mut e = raw.clone();
            let vip = if v4 { Vip::from_ipv4([vip[0], vip[1], vip[2], vip[3]]) } else { Vip(vip) };
            if copy_key {
                // Make the fields equal, leaving CTRL random (valid bit, family bits).
                e[8..12].copy_from_slice(&domain.to_le_bytes());
                e[16..32].copy_from_slice(&vip.0);
            }
            let key = ironlb_hw::LbKey { domain, vip };
            proptest::prop_assert_eq!(
                key_matches(&e, domain, vip.family().code(), &vip.0),
                ironlb_hw::entry::lb::view::matches(&e, &key)
            );
        }
    }

    #[test]
    fn ipv6_vip() {
        let mut t = TableMemory::new(&DeviceConfig::small());
        let n = t.entries(TableId::Lb) / WAYS;
        let vip = Vip("2001:db8::80".parse::<std::net::Ipv6Addr>().unwrap().octets());
        let e = entry(ironlb_hw::DOMAIN_PUBLIC, vip, 9, 0);
        let [b1, _] = e.key().buckets(n);
        put(&mut t, b1 * 4, &e);
        let h = lookup(&t, n, ironlb_hw::DOMAIN_PUBLIC, true, &vip.0).hit.unwrap();
        assert_eq!((h.index, h.lb_id), (b1 * 4, 9));
        assert_eq!(lookup(&t, n, ironlb_hw::DOMAIN_PUBLIC, false, &vip.0).hit, None);
    }
}
