//! Target table entry, 32 bytes (docs/hw-spec.md §5.3), and bucket slots (§5.4).
//!
//! ```text
//! 0x00 u32 CTRL      [31] VALID; other bits reserved (0)
//! 0x04 u32 LB_ID     the LB this target entry belongs to (informational: dump, drift detection)
//! 0x08 u64 reserved (0)
//! 0x10 [16] UNDERLAY outer destination: the IPv6 underlay address traffic for this target is sent to
//! ```
//! A bucket slot is one little-endian u32: a target-table index, or [`NO_TARGET`].

use super::{get_16, get_u32, get_u64};
use crate::error::DecodeError;
use std::net::Ipv6Addr;

/// Entry size in bytes.
pub const SIZE: usize = 32;
/// Bucket-slot value meaning "no target" (packets hashing here are dropped `no_target`).
pub const NO_TARGET: u32 = 0xFFFF_FFFF;
/// CTRL bit: entry valid.
pub const CTRL_VALID: u32 = 1 << 31;

mod field {
    use std::ops::Range;
    pub const CTRL: Range<usize> = 0x00..0x04;
    pub const LB_ID: Range<usize> = 0x04..0x08;
    pub const RESERVED: Range<usize> = 0x08..0x10;
    pub const UNDERLAY: Range<usize> = 0x10..0x20;
}

/// A valid target entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub struct TargetEntry {
    /// Owning LB id.
    pub lb_id: u32,
    /// Underlay IPv6 address.
    pub underlay: Ipv6Addr,
}

impl TargetEntry {
    /// Decode; `Ok(None)` for a free entry.
    pub fn parse(b: &[u8; SIZE]) -> Result<Option<TargetEntry>, DecodeError> {
        let ctrl = get_u32(b, field::CTRL);
        if ctrl & CTRL_VALID == 0 {
            return Ok(None);
        }
        if ctrl & !CTRL_VALID != 0 || get_u64(b, field::RESERVED) != 0 {
            return Err(DecodeError::Reserved { entry: "target" });
        }
        Ok(Some(TargetEntry {
            lb_id: get_u32(b, field::LB_ID),
            underlay: Ipv6Addr::from(get_16(b, field::UNDERLAY)),
        }))
    }

    /// Encode.
    pub fn emit(&self) -> [u8; SIZE] {
        let mut b = [0u8; SIZE];
        b[field::CTRL].copy_from_slice(&CTRL_VALID.to_le_bytes());
        b[field::LB_ID].copy_from_slice(&self.lb_id.to_le_bytes());
        b[field::UNDERLAY].copy_from_slice(&self.underlay.octets());
        b
    }
}

/// Hot-path accessor: the underlay address of a raw entry, if valid.
#[inline]
pub fn raw_underlay(b: &[u8]) -> Option<[u8; 16]> {
    (get_u32(b, field::CTRL) & CTRL_VALID != 0).then(|| get_16(b, field::UNDERLAY))
}

/// Hot-path accessor: the LB_ID field of a raw entry (compared on a flow-table hit, docs/hw-spec.md §11.3).
#[inline]
pub fn raw_lb_id(b: &[u8]) -> u32 {
    get_u32(b, field::LB_ID)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_bytes() {
        let t = TargetEntry {
            lb_id: 9,
            underlay: "fd00::1:2".parse().unwrap(),
        };
        let b = t.emit();
        assert_eq!(&b[..16], &[0, 0, 0, 0x80, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&b[16..], &[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 2]);
        assert_eq!(TargetEntry::parse(&b).unwrap(), Some(t));
        assert_eq!(raw_underlay(&b), Some(t.underlay.octets()));
        assert_eq!(raw_lb_id(&b), 9);
        assert_eq!(TargetEntry::parse(&[0u8; SIZE]).unwrap(), None);
        assert_eq!(raw_underlay(&[0u8; SIZE]), None);
        let mut bad = b;
        bad[8] = 1;
        assert!(TargetEntry::parse(&bad).is_err());
    }
}
