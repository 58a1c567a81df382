//! Flow-table entry, 64 bytes (contract v1.2, docs/hw-spec.md §11.2).
//!
//! ```text
//! 0x00 u32 CTRL       [31] VALID [30] CLOSING [25:24] FAMILY [23:16] LB_EPOCH [7:0] PROTOCOL (other bits reserved)
//! 0x04 u32 DOMAIN
//! 0x08 u32 LB_ID
//! 0x0C u32 TARGET     target-table index the flow is pinned to
//! 0x10 [16] SRC       hashed source
//! 0x20 [16] DST       hashed destination (the VIP)
//! 0x30 u16 SRC_PORT
//! 0x32 u16 DST_PORT
//! 0x34 u32 HASH       the flow hash of §6.1
//! 0x38 u32 LAST_SEEN  FLOW_CLOCK at the learn or last hit (ms)
//! 0x3C u32 reserved (0)
//! ```
//! The key is the §6.1 flow tuple plus (LB_ID, LB_EPOCH) ([`FlowKey`]). [`FlowEntry`] is the Repr (`parse`/`emit`);
//! [`view`] reads and updates raw entry bytes on the device's hot path.

use super::{get_16, get_u16, get_u32};
use crate::addr::{Family, Vip};
use crate::error::DecodeError;
use crate::hash::FlowTuple;
use crate::regs::FlowClass;

/// Entry size in bytes.
pub const SIZE: usize = 64;
/// CTRL bit: entry valid.
pub const CTRL_VALID: u32 = 1 << 31;
/// CTRL bit: a TCP FIN or RST was seen (timeout class `tcp_closing`).
pub const CTRL_CLOSING: u32 = 1 << 30;
const CTRL_FAMILY_SHIFT: u32 = 24;
const CTRL_FAMILY_MASK: u32 = 0b11 << CTRL_FAMILY_SHIFT;
const CTRL_EPOCH_SHIFT: u32 = 16;
const CTRL_EPOCH_MASK: u32 = 0xFF << CTRL_EPOCH_SHIFT;
const CTRL_PROTOCOL_MASK: u32 = 0xFF;
const CTRL_DEFINED: u32 = CTRL_VALID | CTRL_CLOSING | CTRL_FAMILY_MASK | CTRL_EPOCH_MASK | CTRL_PROTOCOL_MASK;

mod field {
    use std::ops::Range;
    pub const CTRL: Range<usize> = 0x00..0x04;
    pub const DOMAIN: Range<usize> = 0x04..0x08;
    pub const LB_ID: Range<usize> = 0x08..0x0C;
    pub const TARGET: Range<usize> = 0x0C..0x10;
    pub const SRC: Range<usize> = 0x10..0x20;
    pub const DST: Range<usize> = 0x20..0x30;
    pub const SRC_PORT: Range<usize> = 0x30..0x32;
    pub const DST_PORT: Range<usize> = 0x32..0x34;
    pub const HASH: Range<usize> = 0x34..0x38;
    pub const LAST_SEEN: Range<usize> = 0x38..0x3C;
    pub const RESERVED: Range<usize> = 0x3C..0x40;
}

/// What a flow entry is matched on: the hashed tuple and the LB (id and epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub struct FlowKey {
    /// The §6.1 tuple (domain, src, dst, protocol, ports) as hashed (§6.2).
    pub tuple: FlowTuple,
    /// The LB entry's LB_ID.
    pub lb_id: u32,
    /// The LB entry's FLOW_EPOCH.
    pub lb_epoch: u8,
}

impl FlowKey {
    /// The CTRL word of a valid entry with this key (CLOSING as given).
    fn ctrl(&self, closing: bool) -> u32 {
        let mut c = CTRL_VALID
            | (self.tuple.dst.family().code() << CTRL_FAMILY_SHIFT)
            | (u32::from(self.lb_epoch) << CTRL_EPOCH_SHIFT)
            | u32::from(self.tuple.protocol);
        if closing {
            c |= CTRL_CLOSING;
        }
        c
    }
}

/// A valid flow-table entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub struct FlowEntry {
    /// The key.
    pub key: FlowKey,
    /// Target-table index the flow is pinned to.
    pub target: u32,
    /// The flow hash h of §6.1.
    pub hash: u32,
    /// FLOW_CLOCK (ms) at the learn or last hit.
    pub last_seen: u32,
    /// A TCP FIN or RST was seen.
    pub closing: bool,
}

impl FlowEntry {
    /// The timeout class of this entry.
    pub fn class(&self) -> FlowClass {
        FlowClass::of(self.key.tuple.protocol, self.closing)
    }

    /// Decode; `Ok(None)` for an invalid (free) entry, whatever its other bytes hold.
    pub fn parse(b: &[u8; SIZE]) -> Result<Option<FlowEntry>, DecodeError> {
        let ctrl = get_u32(b, field::CTRL);
        if ctrl & CTRL_VALID == 0 {
            return Ok(None);
        }
        if ctrl & !CTRL_DEFINED != 0 || get_u32(b, field::RESERVED) != 0 {
            return Err(DecodeError::Reserved { entry: "flow" });
        }
        let family =
            Family::from_code((ctrl & CTRL_FAMILY_MASK) >> CTRL_FAMILY_SHIFT).ok_or(DecodeError::Field {
                entry: "flow",
                field: "family",
            })?;
        let (src, dst) = (Vip(get_16(b, field::SRC)), Vip(get_16(b, field::DST)));
        if src.family() != family || dst.family() != family {
            return Err(DecodeError::Field {
                entry: "flow",
                field: "family (does not match the addresses)",
            });
        }
        Ok(Some(FlowEntry {
            key: FlowKey {
                tuple: FlowTuple {
                    domain: get_u32(b, field::DOMAIN),
                    src,
                    dst,
                    protocol: (ctrl & CTRL_PROTOCOL_MASK) as u8,
                    src_port: get_u16(b, field::SRC_PORT),
                    dst_port: get_u16(b, field::DST_PORT),
                },
                lb_id: get_u32(b, field::LB_ID),
                lb_epoch: ((ctrl & CTRL_EPOCH_MASK) >> CTRL_EPOCH_SHIFT) as u8,
            },
            target: get_u32(b, field::TARGET),
            hash: get_u32(b, field::HASH),
            last_seen: get_u32(b, field::LAST_SEEN),
            closing: ctrl & CTRL_CLOSING != 0,
        }))
    }

    /// Encode.
    pub fn emit(&self) -> [u8; SIZE] {
        let mut b = [0u8; SIZE];
        view::learn(
            &mut b,
            &self.key,
            self.target,
            self.hash,
            self.last_seen,
            self.closing,
        );
        b
    }
}

/// Hot-path access to raw entry bytes (the device compares a whole set per packet and updates one entry).
/// Every function takes a slice of at least [`SIZE`] bytes and panics on a shorter one.
pub mod view {
    use super::*;

    fn put(b: &mut [u8], r: std::ops::Range<usize>, v: &[u8]) {
        b[r].copy_from_slice(v);
    }

    /// CTRL word.
    #[inline]
    pub fn ctrl(b: &[u8]) -> u32 {
        get_u32(b, field::CTRL)
    }
    /// VALID bit.
    #[inline]
    pub fn valid(b: &[u8]) -> bool {
        ctrl(b) & CTRL_VALID != 0
    }
    /// The timeout class (from PROTOCOL and CLOSING).
    #[inline]
    pub fn class(b: &[u8]) -> FlowClass {
        let c = ctrl(b);
        FlowClass::of((c & CTRL_PROTOCOL_MASK) as u8, c & CTRL_CLOSING != 0)
    }
    /// LB_ID.
    #[inline]
    pub fn lb_id(b: &[u8]) -> u32 {
        get_u32(b, field::LB_ID)
    }
    /// TARGET.
    #[inline]
    pub fn target(b: &[u8]) -> u32 {
        get_u32(b, field::TARGET)
    }
    /// LAST_SEEN.
    #[inline]
    pub fn last_seen(b: &[u8]) -> u32 {
        get_u32(b, field::LAST_SEEN)
    }
    /// True when the entry is valid and holds exactly this key (expiry is the caller's check).
    #[inline]
    pub fn matches(b: &[u8], key: &FlowKey) -> bool {
        let t = &key.tuple;
        ctrl(b) & !CTRL_CLOSING == key.ctrl(false)
            && get_u32(b, field::DOMAIN) == t.domain
            && get_u32(b, field::LB_ID) == key.lb_id
            && get_u16(b, field::SRC_PORT) == t.src_port
            && get_u16(b, field::DST_PORT) == t.dst_port
            && b[field::SRC] == t.src.0
            && b[field::DST] == t.dst.0
    }
    /// Write a whole valid entry (a learn).
    pub fn learn(b: &mut [u8], key: &FlowKey, target: u32, hash: u32, now: u32, closing: bool) {
        let t = &key.tuple;
        put(b, field::CTRL, &key.ctrl(closing).to_le_bytes());
        put(b, field::DOMAIN, &t.domain.to_le_bytes());
        put(b, field::LB_ID, &key.lb_id.to_le_bytes());
        put(b, field::TARGET, &target.to_le_bytes());
        put(b, field::SRC, &t.src.0);
        put(b, field::DST, &t.dst.0);
        put(b, field::SRC_PORT, &t.src_port.to_le_bytes());
        put(b, field::DST_PORT, &t.dst_port.to_le_bytes());
        put(b, field::HASH, &hash.to_le_bytes());
        put(b, field::LAST_SEEN, &now.to_le_bytes());
        put(b, field::RESERVED, &[0; 4]);
    }
    /// A hit: LAST_SEEN := now, and CLOSING set when `closing` (never cleared by a hit).
    #[inline]
    pub fn refresh(b: &mut [u8], now: u32, closing: bool) {
        if closing {
            let c = ctrl(b) | CTRL_CLOSING;
            put(b, field::CTRL, &c.to_le_bytes());
        }
        put(b, field::LAST_SEEN, &now.to_le_bytes());
    }
    /// A re-learn after the pinned target was removed: TARGET := target, LAST_SEEN := now, CLOSING := closing.
    #[inline]
    pub fn relearn(b: &mut [u8], target: u32, now: u32, closing: bool) {
        let c = (ctrl(b) & !CTRL_CLOSING) | if closing { CTRL_CLOSING } else { 0 };
        put(b, field::CTRL, &c.to_le_bytes());
        put(b, field::TARGET, &target.to_le_bytes());
        put(b, field::LAST_SEEN, &now.to_le_bytes());
    }
    /// Invalidate (aging, flush): CTRL := 0; the other bytes are left as they are.
    #[inline]
    pub fn invalidate(b: &mut [u8]) {
        put(b, field::CTRL, &[0; 4]);
    }
    /// True when the entry is expired at `now` with timeout `timeout_ms` (docs/hw-spec.md §11.2).
    #[inline]
    pub fn expired(b: &[u8], now: u32, timeout_ms: u32) -> bool {
        now.wrapping_sub(last_seen(b)) > timeout_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> FlowEntry {
        FlowEntry {
            key: FlowKey {
                tuple: FlowTuple {
                    domain: 100,
                    src: Vip::from_ipv4([192, 0, 2, 7]),
                    dst: Vip::from_ipv4([10, 0, 0, 1]),
                    protocol: 6,
                    src_port: 40000,
                    dst_port: 443,
                },
                lb_id: 3,
                lb_epoch: 0x5a,
            },
            target: 0x0102_0304,
            hash: 0xDEAD_BEEF,
            last_seen: 1234,
            closing: true,
        }
    }

    #[test]
    fn fixed_bytes() {
        let b = sample().emit();
        // CTRL = VALID | CLOSING | FAMILY 1 << 24 | EPOCH 0x5a << 16 | PROTOCOL 6 = 0xC15A_0006, little-endian.
        assert_eq!(&b[0x00..0x04], &[0x06, 0x00, 0x5A, 0xC1]);
        assert_eq!(&b[0x04..0x10], &[100, 0, 0, 0, 3, 0, 0, 0, 4, 3, 2, 1]);
        assert_eq!(
            &b[0x10..0x20],
            &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 7]
        );
        assert_eq!(
            &b[0x20..0x30],
            &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 1]
        );
        // SRC_PORT 40000 = 0x9C40, DST_PORT 443 = 0x01BB, HASH, LAST_SEEN 1234 = 0x4D2, reserved.
        assert_eq!(
            &b[0x30..0x40],
            &[0x40, 0x9C, 0xBB, 0x01, 0xEF, 0xBE, 0xAD, 0xDE, 0xD2, 0x04, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(FlowEntry::parse(&b).unwrap(), Some(sample()));
        assert_eq!(sample().class(), FlowClass::TcpClosing);
        assert_eq!(view::class(&b), FlowClass::TcpClosing);
        assert_eq!(FlowEntry::parse(&[0u8; SIZE]).unwrap(), None);
    }

    #[test]
    fn bad_entries_are_errors() {
        let b = sample().emit();
        let mut reserved = b;
        reserved[0x3C] = 1;
        assert_eq!(
            FlowEntry::parse(&reserved),
            Err(DecodeError::Reserved { entry: "flow" })
        );
        let mut ctrl = b;
        ctrl[1] = 0x01; // bit 8: reserved
        assert!(FlowEntry::parse(&ctrl).is_err());
        let mut family = b;
        family[3] = 0xC2; // FAMILY 2 with IPv4-mapped addresses
        assert!(FlowEntry::parse(&family).is_err());
        let mut no_family = b;
        no_family[3] = 0xC0;
        assert!(FlowEntry::parse(&no_family).is_err());
    }

    #[test]
    fn view_updates() {
        let e = sample();
        let mut b = e.emit();
        assert!(view::matches(&b, &e.key));
        let mut other = e.key;
        other.lb_epoch = 0x5b;
        assert!(!view::matches(&b, &other));
        other = e.key;
        other.tuple.src_port += 1;
        assert!(!view::matches(&b, &other));
        view::relearn(&mut b, 9, 2000, false);
        let r = FlowEntry::parse(&b).unwrap().unwrap();
        assert_eq!((r.target, r.last_seen, r.closing), (9, 2000, false));
        assert!(view::matches(&b, &e.key), "CLOSING is not part of the key");
        view::refresh(&mut b, 2500, true);
        let r = FlowEntry::parse(&b).unwrap().unwrap();
        assert_eq!((r.target, r.last_seen, r.closing), (9, 2500, true));
        assert!(!view::expired(&b, 2500 + 10_000, 10_000));
        assert!(view::expired(&b, 2500 + 10_001, 10_000));
        view::invalidate(&mut b);
        assert!(!view::valid(&b));
        assert!(!view::matches(&b, &e.key));
    }

    #[test]
    fn expiry_across_the_clock_wrap() {
        let mut e = sample();
        e.last_seen = u32::MAX - 5;
        let b = e.emit();
        assert!(
            !view::expired(&b, 4, 10),
            "10 ms after LAST_SEEN, through the wrap"
        );
        assert!(view::expired(&b, 5, 10), "11 ms after LAST_SEEN");
    }

    fn arb_entry() -> impl Strategy<Value = FlowEntry> {
        (
            any::<(u32, [u8; 16], [u8; 16], bool, u8, u16, u16)>(),
            any::<(u32, u8, u32, u32, u32, bool)>(),
        )
            .prop_map(
                |((domain, s, d, v4, protocol, sp, dp), (lb_id, lb_epoch, target, hash, seen, closing))| {
                    let (src, dst) = if v4 {
                        (
                            Vip::from_ipv4([s[0], s[1], s[2], s[3]]),
                            Vip::from_ipv4([d[0], d[1], d[2], d[3]]),
                        )
                    } else {
                        let mut s = s;
                        let mut d = d;
                        s[0] |= 0x20; // never IPv4-mapped
                        d[0] |= 0x20;
                        (Vip(s), Vip(d))
                    };
                    FlowEntry {
                        key: FlowKey {
                            tuple: FlowTuple {
                                domain,
                                src,
                                dst,
                                protocol,
                                src_port: sp,
                                dst_port: dp,
                            },
                            lb_id,
                            lb_epoch,
                        },
                        target,
                        hash,
                        last_seen: seen,
                        closing,
                    }
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]
        #[test]
        fn round_trip(e in arb_entry()) {
            let b = e.emit();
            prop_assert_eq!(FlowEntry::parse(&b).unwrap(), Some(e));
            prop_assert!(view::matches(&b, &e.key));
        }

        #[test]
        fn parse_never_panics(a in proptest::array::uniform32(any::<u8>()), c in proptest::array::uniform32(any::<u8>())) {
            let mut full = [0u8; SIZE];
            full[..32].copy_from_slice(&a);
            full[32..].copy_from_slice(&c);
            let _ = FlowEntry::parse(&full);
        }
    }
}
