//! Table entry layouts (docs/hw-spec.md §5). Each entry is a fixed-size byte array in device memory; integer
//! fields are little-endian, address fields are 16 bytes in network order. Word `i` of an entry (as staged in the
//! mailbox or sent in a ring payload) is bytes `4i..4i+4` read little-endian.
//!
//! Every layout is a plain `Repr` with `parse` (from bytes) and `emit` (to bytes); byte offsets live in a private
//! `mod field`. `parse` never panics on any input of the entry's size: reserved bits and impossible values are
//! reported as [`crate::DecodeError`].

pub mod counter;
pub mod flow;
pub mod lb;
pub mod port;
pub mod range;
pub mod ring;
pub mod target;

pub use counter::CounterEntry;
pub use flow::{FlowEntry, FlowKey};
pub use lb::{IcmpPolicy, LbEntry, LbSet};
pub use port::{PortCfg, PortKind};
pub use range::{Protocol, RangeEntry};
pub use ring::{Completion, Descriptor};
pub use target::{TargetEntry, NO_TARGET};

use std::ops::Range;

pub(crate) fn get_u16(b: &[u8], r: Range<usize>) -> u16 {
    u16::from_le_bytes(b[r].try_into().expect("2-byte field"))
}
pub(crate) fn get_u32(b: &[u8], r: Range<usize>) -> u32 {
    u32::from_le_bytes(b[r].try_into().expect("4-byte field"))
}
pub(crate) fn get_u64(b: &[u8], r: Range<usize>) -> u64 {
    u64::from_le_bytes(b[r].try_into().expect("8-byte field"))
}
pub(crate) fn get_16(b: &[u8], r: Range<usize>) -> [u8; 16] {
    b[r].try_into().expect("16-byte field")
}

/// Convert entry bytes to the little-endian words staged in the mailbox / sent in ring payloads.
pub fn bytes_to_words(bytes: &[u8]) -> Vec<u32> {
    bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
        .collect()
}

/// Convert staged words back to entry bytes.
pub fn words_to_bytes(words: &[u32]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}
