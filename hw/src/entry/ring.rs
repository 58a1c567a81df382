//! DMA command ring descriptor (32 bytes) and completion record (16 bytes), docs/hw-spec.md §4.2.
//!
//! ```text
//! Descriptor                               Completion record (written by the device)
//! 0x00 u8  OPCODE                          0x00 u32 HEAD    descriptors consumed (free-running)
//! 0x01 u8  TABLE                           0x04 u32 STATUS  0 ok, else Status of the failed descriptor
//! 0x02 u16 reserved (0)                    0x08 u32 ERR_INDEX free-running index of the failed descriptor
//! 0x04 u32 INDEX   first entry             0x0C u32 SEQ     incremented on every write of this record
//! 0x08 u32 COUNT   entries
//! 0x0C u32 ARG     WRITE_WORD: word offset; FILL: value
//! 0x10 u64 IOVA    WRITE: payload source; READ: destination
//! 0x18 u32 VALUE   WRITE_WORD: the word
//! 0x1C u32 reserved (0)
//! ```

use super::{get_u16, get_u32, get_u64};
use crate::error::DecodeError;
use crate::regs::{Opcode, Status, TableId};

/// Descriptor size in bytes.
pub const DESC_SIZE: usize = 32;
/// Completion record size in bytes.
pub const CPL_SIZE: usize = 16;

/// A ring command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Descriptor {
    /// What to do.
    pub opcode: Opcode,
    /// Which table (ignored for NOP and FENCE; encoded as 0 there).
    pub table: Option<TableId>,
    /// First entry.
    pub index: u32,
    /// Number of entries.
    pub count: u32,
    /// Word offset (WRITE_WORD) or fill value (FILL).
    pub arg: u32,
    /// Payload IOVA (WRITE source, READ destination).
    pub iova: u64,
    /// Word value (WRITE_WORD).
    pub value: u32,
}

impl Descriptor {
    /// Decode. Unknown opcodes/tables are errors the device reports as `BadOpcode`/`BadTable`.
    pub fn parse(b: &[u8; DESC_SIZE]) -> Result<Descriptor, DecodeError> {
        let opcode = Opcode::from_raw(b[0] as u32).ok_or(DecodeError::Field {
            entry: "descriptor",
            field: "opcode",
        })?;
        let table = match (opcode, b[1]) {
            (Opcode::Nop | Opcode::Fence, _) => None,
            (_, t) => Some(TableId::from_raw(t as u32).ok_or(DecodeError::Field {
                entry: "descriptor",
                field: "table",
            })?),
        };
        if get_u16(b, 2..4) != 0 || get_u32(b, 28..32) != 0 {
            return Err(DecodeError::Reserved { entry: "descriptor" });
        }
        Ok(Descriptor {
            opcode,
            table,
            index: get_u32(b, 4..8),
            count: get_u32(b, 8..12),
            arg: get_u32(b, 12..16),
            iova: get_u64(b, 16..24),
            value: get_u32(b, 24..28),
        })
    }

    /// Encode.
    pub fn emit(&self) -> [u8; DESC_SIZE] {
        let mut b = [0u8; DESC_SIZE];
        b[0] = self.opcode as u8;
        b[1] = self.table.map_or(0, |t| t as u8);
        b[4..8].copy_from_slice(&self.index.to_le_bytes());
        b[8..12].copy_from_slice(&self.count.to_le_bytes());
        b[12..16].copy_from_slice(&self.arg.to_le_bytes());
        b[16..24].copy_from_slice(&self.iova.to_le_bytes());
        b[24..28].copy_from_slice(&self.value.to_le_bytes());
        b
    }
}

/// The completion record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Completion {
    /// Descriptors consumed (free-running).
    pub head: u32,
    /// Raw status (0 = ok), see [`Status`].
    pub status: u32,
    /// Index of the failed descriptor when `status != 0`.
    pub err_index: u32,
    /// Write sequence number.
    pub seq: u32,
}

impl Completion {
    /// Decode (every bit pattern is representable).
    pub fn parse(b: &[u8; CPL_SIZE]) -> Completion {
        Completion {
            head: get_u32(b, 0..4),
            status: get_u32(b, 4..8),
            err_index: get_u32(b, 8..12),
            seq: get_u32(b, 12..16),
        }
    }
    /// Encode.
    pub fn emit(&self) -> [u8; CPL_SIZE] {
        let mut b = [0u8; CPL_SIZE];
        b[0..4].copy_from_slice(&self.head.to_le_bytes());
        b[4..8].copy_from_slice(&self.status.to_le_bytes());
        b[8..12].copy_from_slice(&self.err_index.to_le_bytes());
        b[12..16].copy_from_slice(&self.seq.to_le_bytes());
        b
    }
    /// Typed status.
    pub fn status(&self) -> Option<Status> {
        Status::from_raw(self.status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_bytes() {
        let d = Descriptor {
            opcode: Opcode::Write,
            table: Some(TableId::Bucket),
            index: 0x100,
            count: 4096,
            arg: 0,
            iova: 0x1_0000_2000,
            value: 0,
        };
        let b = d.emit();
        assert_eq!(&b[..16], &[1, 4, 0, 0, 0, 1, 0, 0, 0, 0x10, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&b[16..], &[0, 0x20, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(Descriptor::parse(&b).unwrap(), d);
        let nop = Descriptor {
            opcode: Opcode::Nop,
            table: None,
            index: 0,
            count: 0,
            arg: 0,
            iova: 0,
            value: 0,
        };
        assert_eq!(Descriptor::parse(&nop.emit()).unwrap(), nop);
        let mut bad = b;
        bad[1] = 9;
        assert!(Descriptor::parse(&bad).is_err());
        let c = Completion {
            head: 5,
            status: 0,
            err_index: 0,
            seq: 2,
        };
        assert_eq!(Completion::parse(&c.emit()), c);
    }
}
