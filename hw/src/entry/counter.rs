//! Counter entry, 16 bytes (docs/hw-spec.md §5.5): per-LB and per-target packets and bytes.
//!
//! ```text
//! 0x00 u64 PACKETS
//! 0x08 u64 BYTES   sum of inner IP datagram lengths (the bytes the client sent, without encapsulation)
//! ```

use super::get_u64;

/// Entry size in bytes.
pub const SIZE: usize = 16;

/// Packets and bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize)]
pub struct CounterEntry {
    /// Packets forwarded.
    pub packets: u64,
    /// Inner bytes forwarded.
    pub bytes: u64,
}

impl CounterEntry {
    /// Decode (every bit pattern is valid).
    pub fn parse(b: &[u8; SIZE]) -> CounterEntry {
        CounterEntry {
            packets: get_u64(b, 0..8),
            bytes: get_u64(b, 8..16),
        }
    }
    /// Encode.
    pub fn emit(&self) -> [u8; SIZE] {
        let mut b = [0u8; SIZE];
        b[0..8].copy_from_slice(&self.packets.to_le_bytes());
        b[8..16].copy_from_slice(&self.bytes.to_le_bytes());
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_bytes() {
        let c = CounterEntry {
            packets: 0x0102,
            bytes: 0x0A0B_0C0D_0E0F,
        };
        assert_eq!(
            c.emit(),
            [2, 1, 0, 0, 0, 0, 0, 0, 0x0F, 0x0E, 0x0D, 0x0C, 0x0B, 0x0A, 0, 0]
        );
        assert_eq!(CounterEntry::parse(&c.emit()), c);
    }
}
