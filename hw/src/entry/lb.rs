//! LB exact-match table entry, 64 bytes (docs/hw-spec.md §5.1).
//!
//! ```text
//! 0x00 u32 CTRL  the commit word: [31] VALID [30] ACTIVE_SET [25:24] FAMILY (1 IPv4, 2 IPv6)
//!                [9] ICMP_DELIVER_ERRORS [8] ICMP_ALLOW_ECHO; all other bits reserved (0)
//! 0x04 u32 GENERATION  software's version of this entry; the device ignores it
//! 0x08 u32 DOMAIN      VNI (24 bits) or DOMAIN_PUBLIC
//! 0x0C u32 LB_ID       row of the per-LB counter table
//! 0x10 [16] VIP        network order, IPv4 mapped
//! 0x20 SET0, 0x30 SET1 (16 bytes each):
//!      +0 u32 RANGE_BASE  +4 u16 RANGE_COUNT  +6 u8 BUCKET_LOG2 (0 = no array)  +7 u8 reserved
//!      +8 u32 BUCKET_BASE +12 u32 reserved
//! ```
//! The device uses only the set selected by ACTIVE_SET. Software prepares the other set, then rewrites CTRL alone
//! (one word, atomic) to switch: see docs/hw-spec.md §8.

use super::{get_16, get_u16, get_u32};
use crate::addr::{Family, Vip};
use crate::error::DecodeError;
use crate::hash::LbKey;

/// Entry size in bytes.
pub const SIZE: usize = 64;

pub(crate) mod field {
    use std::ops::Range;
    pub const CTRL: Range<usize> = 0x00..0x04;
    pub const GENERATION: Range<usize> = 0x04..0x08;
    pub const DOMAIN: Range<usize> = 0x08..0x0C;
    pub const LB_ID: Range<usize> = 0x0C..0x10;
    pub const VIP: Range<usize> = 0x10..0x20;
    pub const SET0: usize = 0x20;
    pub const SET_SIZE: usize = 0x10;
    pub const SET_RANGE_BASE: Range<usize> = 0x00..0x04;
    pub const SET_RANGE_COUNT: Range<usize> = 0x04..0x06;
    pub const SET_BUCKET_LOG2: usize = 0x06;
    pub const SET_RESERVED8: usize = 0x07;
    pub const SET_BUCKET_BASE: Range<usize> = 0x08..0x0C;
    pub const SET_RESERVED32: Range<usize> = 0x0C..0x10;
}

/// Word index of CTRL, the commit word (for `WRITE_WORD`).
pub const CTRL_WORD: u32 = 0;
/// Word index of the first word of set `s`: 8 + 4*s.
pub const fn set_word(s: u8) -> u32 {
    (field::SET0 / 4) as u32 + 4 * s as u32
}

/// CTRL bit: entry valid.
pub const CTRL_VALID: u32 = 1 << 31;
/// CTRL bit: set 1 active (clear: set 0).
pub const CTRL_ACTIVE_SET: u32 = 1 << 30;
const CTRL_FAMILY_SHIFT: u32 = 24;
const CTRL_FAMILY_MASK: u32 = 0b11 << CTRL_FAMILY_SHIFT;
/// CTRL bit: ICMP/ICMPv6 echo requests are load-balanced instead of dropped.
pub const CTRL_ICMP_ALLOW_ECHO: u32 = 1 << 8;
/// CTRL bit: ICMP errors (frag-needed, Packet Too Big, ...) are delivered to the flow's target.
pub const CTRL_ICMP_DELIVER_ERRORS: u32 = 1 << 9;
/// CTRL bits 23:16: the LB's flow epoch (v1.2, docs/hw-spec.md §11.2), copied into the flow entries it learns.
pub const CTRL_FLOW_EPOCH_SHIFT: u32 = 16;
const CTRL_FLOW_EPOCH_MASK: u32 = 0xFF << CTRL_FLOW_EPOCH_SHIFT;
const CTRL_DEFINED: u32 = CTRL_VALID
    | CTRL_ACTIVE_SET
    | CTRL_FAMILY_MASK
    | CTRL_FLOW_EPOCH_MASK
    | CTRL_ICMP_ALLOW_ECHO
    | CTRL_ICMP_DELIVER_ERRORS;

/// Per-LB ICMP policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub struct IcmpPolicy {
    /// Load-balance echo requests (default false: dropped, IEP-3).
    pub allow_echo: bool,
    /// Deliver ICMP errors for the LB's flows to the flow's target (default true).
    pub deliver_errors: bool,
}

impl Default for IcmpPolicy {
    fn default() -> Self {
        IcmpPolicy {
            allow_echo: false,
            deliver_errors: true,
        }
    }
}

/// One of the two configuration sets of an LB entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize)]
pub struct LbSet {
    /// First entry of the LB's range block.
    pub range_base: u32,
    /// Entries in the block (0..=CAP_MAX_RANGES_PER_LB; 0 allows nothing).
    pub range_count: u16,
    /// log2 of the bucket-array size M; 0 means no array (every packet dropped `no_target`).
    pub bucket_log2: u8,
    /// First slot of the bucket array in bucket memory.
    pub bucket_base: u32,
}

impl LbSet {
    fn parse(b: &[u8]) -> Result<LbSet, DecodeError> {
        if b[field::SET_RESERVED8] != 0 || get_u32(b, field::SET_RESERVED32) != 0 {
            return Err(DecodeError::Reserved { entry: "lb.set" });
        }
        Ok(LbSet {
            range_base: get_u32(b, field::SET_RANGE_BASE),
            range_count: get_u16(b, field::SET_RANGE_COUNT),
            bucket_log2: b[field::SET_BUCKET_LOG2],
            bucket_base: get_u32(b, field::SET_BUCKET_BASE),
        })
    }
    fn emit(&self, b: &mut [u8]) {
        b[field::SET_RANGE_BASE].copy_from_slice(&self.range_base.to_le_bytes());
        b[field::SET_RANGE_COUNT].copy_from_slice(&self.range_count.to_le_bytes());
        b[field::SET_BUCKET_LOG2] = self.bucket_log2;
        b[field::SET_RESERVED8] = 0;
        b[field::SET_BUCKET_BASE].copy_from_slice(&self.bucket_base.to_le_bytes());
        b[field::SET_RESERVED32].copy_from_slice(&[0; 4]);
    }
    /// Encode as the 4 words written by `WRITE` at word [`set_word`].
    pub fn to_words(&self) -> [u32; 4] {
        let mut b = [0u8; field::SET_SIZE];
        self.emit(&mut b);
        let mut w = [0u32; 4];
        for (i, c) in b.chunks_exact(4).enumerate() {
            w[i] = u32::from_le_bytes(c.try_into().expect("4 bytes"));
        }
        w
    }
    /// Number of slots (M), 0 without an array.
    pub fn bucket_slots(&self) -> u32 {
        if self.bucket_log2 == 0 {
            0
        } else {
            1u32 << self.bucket_log2
        }
    }
}

/// A valid LB entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub struct LbEntry {
    /// Index (0/1) of the set the device uses.
    pub active_set: u8,
    /// ICMP policy.
    pub icmp: IcmpPolicy,
    /// Software's generation number (ignored by the device).
    pub generation: u32,
    /// Flow epoch (v1.2): kept across hitless updates, different for an LB re-created on a reused slot or id, so
    /// its flow-table entries never match a predecessor's (docs/hw-spec.md §11.2). 0 on a device without a flow
    /// table.
    pub flow_epoch: u8,
    /// Domain (VNI or public).
    pub domain: u32,
    /// LB id: row of the per-LB counter table.
    pub lb_id: u32,
    /// The VIP; FAMILY is derived from it.
    pub vip: Vip,
    /// Both configuration sets.
    pub sets: [LbSet; 2],
}

impl LbEntry {
    /// The entry's key.
    pub fn key(&self) -> LbKey {
        LbKey {
            domain: self.domain,
            vip: self.vip,
        }
    }

    /// The set the device uses.
    pub fn active(&self) -> &LbSet {
        &self.sets[self.active_set as usize & 1]
    }

    /// The CTRL (commit) word of this entry.
    pub fn ctrl(&self) -> u32 {
        let mut c = CTRL_VALID
            | (self.vip.family().code() << CTRL_FAMILY_SHIFT)
            | (u32::from(self.flow_epoch) << CTRL_FLOW_EPOCH_SHIFT);
        if self.active_set & 1 == 1 {
            c |= CTRL_ACTIVE_SET;
        }
        if self.icmp.allow_echo {
            c |= CTRL_ICMP_ALLOW_ECHO;
        }
        if self.icmp.deliver_errors {
            c |= CTRL_ICMP_DELIVER_ERRORS;
        }
        c
    }

    /// Decode 64 bytes. `Ok(None)` for an invalid (free) entry, whatever its other bytes hold.
    pub fn parse(b: &[u8; SIZE]) -> Result<Option<LbEntry>, DecodeError> {
        let ctrl = get_u32(b, field::CTRL);
        if ctrl & CTRL_VALID == 0 {
            return Ok(None);
        }
        if ctrl & !CTRL_DEFINED != 0 {
            return Err(DecodeError::Reserved { entry: "lb.ctrl" });
        }
        let family =
            Family::from_code((ctrl & CTRL_FAMILY_MASK) >> CTRL_FAMILY_SHIFT).ok_or(DecodeError::Field {
                entry: "lb",
                field: "family",
            })?;
        let vip = Vip(get_16(b, field::VIP));
        if vip.family() != family {
            return Err(DecodeError::Field {
                entry: "lb",
                field: "family (does not match VIP)",
            });
        }
        let set = |s: usize| {
            let off = field::SET0 + s * field::SET_SIZE;
            LbSet::parse(&b[off..off + field::SET_SIZE])
        };
        Ok(Some(LbEntry {
            active_set: u8::from(ctrl & CTRL_ACTIVE_SET != 0),
            icmp: IcmpPolicy {
                allow_echo: ctrl & CTRL_ICMP_ALLOW_ECHO != 0,
                deliver_errors: ctrl & CTRL_ICMP_DELIVER_ERRORS != 0,
            },
            generation: get_u32(b, field::GENERATION),
            flow_epoch: ((ctrl & CTRL_FLOW_EPOCH_MASK) >> CTRL_FLOW_EPOCH_SHIFT) as u8,
            domain: get_u32(b, field::DOMAIN),
            lb_id: get_u32(b, field::LB_ID),
            vip,
            sets: [set(0)?, set(1)?],
        }))
    }

    /// Encode to 64 bytes.
    pub fn emit(&self) -> [u8; SIZE] {
        let mut b = [0u8; SIZE];
        b[field::CTRL].copy_from_slice(&self.ctrl().to_le_bytes());
        b[field::GENERATION].copy_from_slice(&self.generation.to_le_bytes());
        b[field::DOMAIN].copy_from_slice(&self.domain.to_le_bytes());
        b[field::LB_ID].copy_from_slice(&self.lb_id.to_le_bytes());
        b[field::VIP].copy_from_slice(&self.vip.0);
        for (s, set) in self.sets.iter().enumerate() {
            let off = field::SET0 + s * field::SET_SIZE;
            set.emit(&mut b[off..off + field::SET_SIZE]);
        }
        b
    }
}

/// Hot-path accessors on raw entry bytes (the device compares keys of up to 8 candidates per packet).
pub mod view {
    use super::*;

    /// CTRL word.
    #[inline]
    pub fn ctrl(b: &[u8]) -> u32 {
        get_u32(b, field::CTRL)
    }
    /// FLOW_EPOCH of a CTRL word (v1.2).
    #[inline]
    pub fn flow_epoch(ctrl: u32) -> u8 {
        ((ctrl & CTRL_FLOW_EPOCH_MASK) >> CTRL_FLOW_EPOCH_SHIFT) as u8
    }
    /// True when the entry is valid and holds exactly this key.
    #[inline]
    pub fn matches(b: &[u8], key: &LbKey) -> bool {
        ctrl(b) & CTRL_VALID != 0
            && get_u32(b, field::DOMAIN) == key.domain
            && b[field::VIP] == key.vip.0
            && (ctrl(b) & CTRL_FAMILY_MASK) >> CTRL_FAMILY_SHIFT == key.vip.family().code()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> LbEntry {
        LbEntry {
            active_set: 1,
            icmp: IcmpPolicy::default(),
            generation: 7,
            flow_epoch: 0x5a,
            domain: 100,
            lb_id: 3,
            vip: Vip::from_ipv4([10, 0, 0, 1]),
            sets: [
                LbSet {
                    range_base: 16,
                    range_count: 2,
                    bucket_log2: 12,
                    bucket_base: 4096,
                },
                LbSet {
                    range_base: 32,
                    range_count: 3,
                    bucket_log2: 12,
                    bucket_base: 8192,
                },
            ],
        }
    }

    #[test]
    fn fixed_bytes() {
        let b = sample().emit();
        // CTRL: VALID | ACTIVE_SET | FAMILY=1<<24 | FLOW_EPOCH=0x5a<<16 | DELIVER_ERRORS = 0xC15A_0200, LE.
        assert_eq!(&b[0..4], &[0x00, 0x02, 0x5A, 0xC1]);
        assert_eq!(&b[4..8], &[7, 0, 0, 0]);
        assert_eq!(&b[8..12], &[100, 0, 0, 0]);
        assert_eq!(&b[12..16], &[3, 0, 0, 0]);
        assert_eq!(
            &b[16..32],
            &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 1]
        );
        assert_eq!(&b[32..48], &[16, 0, 0, 0, 2, 0, 12, 0, 0, 0x10, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&b[48..64], &[32, 0, 0, 0, 3, 0, 12, 0, 0, 0x20, 0, 0, 0, 0, 0, 0]);
        assert_eq!(LbEntry::parse(&b).unwrap(), Some(sample()));
        assert_eq!(sample().active().range_base, 32);
    }

    #[test]
    fn invalid_and_reserved() {
        assert_eq!(LbEntry::parse(&[0u8; SIZE]).unwrap(), None);
        let mut b = sample().emit();
        b[0] |= 1; // reserved CTRL bit 0
        assert_eq!(
            LbEntry::parse(&b),
            Err(DecodeError::Reserved { entry: "lb.ctrl" })
        );
        let mut b = sample().emit();
        b[0x20 + 7] = 1;
        assert_eq!(LbEntry::parse(&b), Err(DecodeError::Reserved { entry: "lb.set" }));
        let mut b = sample().emit();
        b[16] = 0x20; // VIP no longer IPv4-mapped, FAMILY still says IPv4
        assert!(matches!(LbEntry::parse(&b), Err(DecodeError::Field { .. })));
    }

    #[test]
    fn view_matches_key() {
        let e = sample();
        let b = e.emit();
        assert!(view::matches(&b, &e.key()));
        assert!(!view::matches(
            &b,
            &LbKey {
                domain: 101,
                vip: e.vip
            }
        ));
        assert!(!view::matches(&[0u8; SIZE], &e.key()));
    }

    fn arb_entry() -> impl Strategy<Value = LbEntry> {
        let set = (any::<u32>(), any::<u16>(), 0u8..=16, any::<u32>()).prop_map(|(rb, rc, bl, bb)| LbSet {
            range_base: rb,
            range_count: rc,
            bucket_log2: bl,
            bucket_base: bb,
        });
        (
            any::<bool>(),
            any::<[bool; 2]>(),
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            any::<[u8; 16]>(),
            any::<bool>(),
            (set.clone(), set, any::<u8>()),
        )
            .prop_map(
                |(a, icmp, generation, domain, lb_id, vip, v4, (s0, s1, flow_epoch))| LbEntry {
                    active_set: u8::from(a),
                    icmp: IcmpPolicy {
                        allow_echo: icmp[0],
                        deliver_errors: icmp[1],
                    },
                    generation,
                    flow_epoch,
                    domain,
                    lb_id,
                    vip: if v4 {
                        Vip::from_ipv4([vip[0], vip[1], vip[2], vip[3]])
                    } else {
                        Vip(vip)
                    },
                    sets: [s0, s1],
                },
            )
    }

    proptest! {
        #[test]
        fn round_trip(e in arb_entry()) {
            prop_assert_eq!(LbEntry::parse(&e.emit()).unwrap(), Some(e));
        }

        #[test]
        fn parse_never_panics(b in proptest::array::uniform32(any::<u8>()), c in proptest::array::uniform32(any::<u8>())) {
            let mut full = [0u8; SIZE];
            full[..32].copy_from_slice(&b);
            full[32..].copy_from_slice(&c);
            let _ = LbEntry::parse(&full);
        }
    }
}
