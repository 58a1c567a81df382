//! Range (port filter) table entry, 8 bytes (docs/hw-spec.md §5.2).
//!
//! ```text
//! 0x00 u8  PROTOCOL  IP protocol number: 6 TCP, 17 UDP, 132 SCTP; 0 = empty entry (never matches)
//! 0x01 u8  reserved (0)
//! 0x02 u16 reserved (0)
//! 0x04 u16 LOW       first allowed destination port (inclusive)
//! 0x06 u16 HIGH      last allowed destination port (inclusive), HIGH >= LOW
//! ```

use super::get_u16;
use crate::error::DecodeError;

/// Entry size in bytes.
pub const SIZE: usize = 8;

mod field {
    use std::ops::Range;
    pub const PROTOCOL: usize = 0;
    pub const RESERVED: Range<usize> = 1..4;
    pub const LOW: Range<usize> = 4..6;
    pub const HIGH: Range<usize> = 6..8;
}

/// A port-filtered transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Protocol {
    /// TCP (6).
    Tcp,
    /// UDP (17).
    Udp,
    /// SCTP (132).
    Sctp,
}

impl Protocol {
    /// IP protocol number.
    pub const fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Sctp => 132,
        }
    }
    /// Protocol for an IP protocol number.
    pub const fn from_number(n: u8) -> Option<Protocol> {
        match n {
            6 => Some(Protocol::Tcp),
            17 => Some(Protocol::Udp),
            132 => Some(Protocol::Sctp),
            _ => None,
        }
    }
    /// Upper-case name as in IronCore manifests.
    pub const fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        }
    }
}

/// One allowed (protocol, port range).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct RangeEntry {
    /// Protocol.
    pub protocol: Protocol,
    /// First port.
    pub low: u16,
    /// Last port (inclusive).
    pub high: u16,
}

impl RangeEntry {
    /// True when this range admits (protocol, port).
    #[inline]
    pub fn admits(&self, protocol: u8, port: u16) -> bool {
        self.protocol.number() == protocol && self.low <= port && port <= self.high
    }

    /// Decode; `Ok(None)` for an empty entry (PROTOCOL 0).
    pub fn parse(b: &[u8; SIZE]) -> Result<Option<RangeEntry>, DecodeError> {
        if b[field::PROTOCOL] == 0 {
            return Ok(None);
        }
        if b[field::RESERVED].iter().any(|x| *x != 0) {
            return Err(DecodeError::Reserved { entry: "range" });
        }
        let protocol = Protocol::from_number(b[field::PROTOCOL]).ok_or(DecodeError::Field {
            entry: "range",
            field: "protocol",
        })?;
        let (low, high) = (get_u16(b, field::LOW), get_u16(b, field::HIGH));
        if high < low {
            return Err(DecodeError::Field {
                entry: "range",
                field: "high < low",
            });
        }
        Ok(Some(RangeEntry { protocol, low, high }))
    }

    /// Encode.
    pub fn emit(&self) -> [u8; SIZE] {
        let mut b = [0u8; SIZE];
        b[field::PROTOCOL] = self.protocol.number();
        b[field::LOW].copy_from_slice(&self.low.to_le_bytes());
        b[field::HIGH].copy_from_slice(&self.high.to_le_bytes());
        b
    }
}

/// Hot-path accessor: does the raw entry admit (protocol, port)? Empty entries never do.
#[inline]
pub fn raw_admits(b: &[u8], protocol: u8, port: u16) -> bool {
    b[field::PROTOCOL] == protocol
        && protocol != 0
        && get_u16(b, field::LOW) <= port
        && port <= get_u16(b, field::HIGH)
}

/// Hot-path accessor: the raw entry's protocol number (0 for empty).
#[inline]
pub fn raw_protocol(b: &[u8]) -> u8 {
    b[field::PROTOCOL]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn fixed_bytes() {
        let r = RangeEntry {
            protocol: Protocol::Udp,
            low: 1024,
            high: 2048,
        };
        let b = r.emit();
        assert_eq!(b, [17, 0, 0, 0, 0x00, 0x04, 0x00, 0x08]);
        assert_eq!(RangeEntry::parse(&b).unwrap(), Some(r));
        assert!(raw_admits(&b, 17, 1024) && raw_admits(&b, 17, 2048));
        assert!(!raw_admits(&b, 17, 1023) && !raw_admits(&b, 17, 2049) && !raw_admits(&b, 6, 1500));
        assert!(!raw_admits(&[0u8; SIZE], 0, 0));
        assert_eq!(RangeEntry::parse(&[0u8; SIZE]).unwrap(), None);
        assert!(RangeEntry::parse(&[6, 0, 0, 0, 2, 0, 1, 0]).is_err());
        assert!(RangeEntry::parse(&[1, 0, 0, 0, 1, 0, 1, 0]).is_err());
    }

    proptest! {
        #[test]
        fn round_trip(p in 0..3usize, a: u16, b: u16) {
            let protocol = [Protocol::Tcp, Protocol::Udp, Protocol::Sctp][p];
            let r = RangeEntry { protocol, low: a.min(b), high: a.max(b) };
            prop_assert_eq!(RangeEntry::parse(&r.emit()).unwrap(), Some(r));
        }
    }
}
