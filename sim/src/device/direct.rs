//! Direct table access: a backdoor for tests and fixtures; the driver never uses it.
//!
//! A real device's table memory is reachable only through the mailbox and the DMA command ring (docs/hw-spec.md
//! §4). Tests and fixtures (see [`crate::testing`]) program the model faster and independently of that command
//! path by writing entry bytes straight into table memory. Nothing here exists on hardware.

use super::Device;
use ironlb_hw::regs::TableId;

impl Device {
    /// Backdoor for tests and fixtures; the driver never uses it. Writes `bytes` (a whole number of entries of
    /// table `t`, in the contract layout of docs/hw-spec.md §5) into table memory from entry `index`. Any table,
    /// counters included. Takes effect for the next packet, like an atomic entry write.
    ///
    /// # Panics
    /// When `bytes` is not a non-empty multiple of the entry size, or the entries are outside the table.
    pub fn write_entry(&mut self, t: TableId, index: u32, bytes: &[u8]) {
        let eb = t.entry_bytes();
        assert!(
            !bytes.is_empty() && bytes.len().checked_rem(eb) == Some(0),
            "write_entry: {} bytes is not a whole number of {}-byte {} entries",
            bytes.len(),
            eb,
            t.name()
        );
        let count = (bytes.len() / eb) as u32;
        let n = self.tables.entries(t);
        let Some(mem) = self.tables.get_mut(t, index, count) else {
            panic!(
                "write_entry: {} entries {index}..{} outside the table ({n} entries)",
                t.name(),
                u64::from(index) + u64::from(count)
            );
        };
        mem.copy_from_slice(bytes);
    }
}

#[cfg(test)]
mod tests {
    use crate::{Device, DeviceConfig};
    use ironlb_hw::regs::TableId;

    #[test]
    fn writes_whole_entries() {
        let mut d = Device::new(DeviceConfig::small()).unwrap();
        d.write_entry(TableId::Bucket, 5, &[1, 0, 0, 0, 2, 0, 0, 0]);
        assert_eq!(
            d.tables().get(TableId::Bucket, 5, 2).unwrap(),
            &[1, 0, 0, 0, 2, 0, 0, 0]
        );
        let last = d.tables().entries(TableId::Range) - 1;
        d.write_entry(TableId::Range, last, &[6, 0, 0, 0, 80, 0, 80, 0]);
        assert_eq!(d.tables().entry(TableId::Range, last)[0], 6);
    }

    #[test]
    #[should_panic(expected = "outside the table")]
    fn rejects_out_of_range() {
        let mut d = Device::new(DeviceConfig::small()).unwrap();
        let last = d.tables().entries(TableId::Range) - 1;
        d.write_entry(TableId::Range, last, &[0; 16]);
    }

    #[test]
    #[should_panic(expected = "whole number")]
    fn rejects_partial_entries() {
        let mut d = Device::new(DeviceConfig::small()).unwrap();
        d.write_entry(TableId::Target, 0, &[0; 31]);
    }
}
