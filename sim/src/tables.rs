//! Device-internal table memory (docs/hw-spec.md §5): each table is a byte array of `entries x entry_bytes`,
//! holding entries in exactly the contract's layout. The pipeline reads only this memory.

use crate::config::DeviceConfig;
use ironlb_hw::regs::TableId;

/// All table memory of the device. Counter tables are kept here too, in their contract layout.
#[derive(Debug, Clone)]
pub struct TableMemory {
    lb: Vec<u8>,
    range: Vec<u8>,
    target: Vec<u8>,
    bucket: Vec<u8>,
    lb_counter: Vec<u8>,
    target_counter: Vec<u8>,
    flow: Vec<u8>,
}

impl TableMemory {
    /// Zeroed memory sized from the config (all entries invalid, all slots 0).
    pub fn new(cfg: &DeviceConfig) -> Self {
        let z = |t: TableId, n: u32| vec![0u8; n as usize * t.entry_bytes()];
        TableMemory {
            lb: z(TableId::Lb, cfg.lb_entries()),
            range: z(TableId::Range, cfg.caps.ranges),
            target: z(TableId::Target, cfg.caps.targets),
            bucket: z(TableId::Bucket, cfg.caps.bucket_slots),
            lb_counter: z(TableId::LbCounter, cfg.caps.lb_ids),
            target_counter: z(TableId::TargetCounter, cfg.caps.targets),
            flow: z(
                TableId::Flow,
                if cfg.has_flow_table() {
                    cfg.caps.flow_entries
                } else {
                    0
                },
            ),
        }
    }

    fn mem(&self, t: TableId) -> &[u8] {
        match t {
            TableId::Lb => &self.lb,
            TableId::Range => &self.range,
            TableId::Target => &self.target,
            TableId::Bucket => &self.bucket,
            TableId::LbCounter => &self.lb_counter,
            TableId::TargetCounter => &self.target_counter,
            TableId::Flow => &self.flow,
        }
    }

    fn mem_mut(&mut self, t: TableId) -> &mut [u8] {
        match t {
            TableId::Lb => &mut self.lb,
            TableId::Range => &mut self.range,
            TableId::Target => &mut self.target,
            TableId::Bucket => &mut self.bucket,
            TableId::LbCounter => &mut self.lb_counter,
            TableId::TargetCounter => &mut self.target_counter,
            TableId::Flow => &mut self.flow,
        }
    }

    /// Number of entries of a table.
    pub fn entries(&self, t: TableId) -> u32 {
        (self.mem(t).len() / t.entry_bytes()) as u32
    }

    /// True when entries `index..index+count` exist.
    pub fn in_range(&self, t: TableId, index: u32, count: u32) -> bool {
        (index as u64) + (count as u64) <= self.entries(t) as u64
    }

    /// Bytes of `count` entries from `index`; `None` when outside the table.
    pub fn get(&self, t: TableId, index: u32, count: u32) -> Option<&[u8]> {
        let eb = t.entry_bytes();
        self.in_range(t, index, count)
            .then(|| &self.mem(t)[index as usize * eb..(index + count) as usize * eb])
    }

    /// Mutable bytes of `count` entries from `index`; `None` when outside the table.
    pub fn get_mut(&mut self, t: TableId, index: u32, count: u32) -> Option<&mut [u8]> {
        let eb = t.entry_bytes();
        let ok = self.in_range(t, index, count);
        ok.then(|| &mut self.mem_mut(t)[index as usize * eb..(index + count) as usize * eb])
    }

    /// Mutable bytes of one entry (panics outside the table: callers index with values they bounds-checked).
    #[inline]
    pub(crate) fn entry_mut(&mut self, t: TableId, index: u32) -> &mut [u8] {
        let eb = t.entry_bytes();
        &mut self.mem_mut(t)[index as usize * eb..(index as usize + 1) * eb]
    }

    /// One entry's bytes (panics outside the table: callers index with values they bounds-checked).
    #[inline]
    pub fn entry(&self, t: TableId, index: u32) -> &[u8] {
        let eb = t.entry_bytes();
        &self.mem(t)[index as usize * eb..(index as usize + 1) * eb]
    }

    /// Add one packet of `bytes` to counter row `index` of a counter table (no-op outside the table).
    #[inline]
    pub fn count(&mut self, t: TableId, index: u32, bytes: u64) {
        debug_assert!(t.is_counter());
        if let Some(e) = self.get_mut(t, index, 1) {
            let p = u64::from_le_bytes(e[0..8].try_into().expect("8 bytes")).wrapping_add(1);
            let b = u64::from_le_bytes(e[8..16].try_into().expect("8 bytes")).wrapping_add(bytes);
            e[0..8].copy_from_slice(&p.to_le_bytes());
            e[8..16].copy_from_slice(&b.to_le_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ironlb_hw::entry::CounterEntry;

    #[test]
    fn sizes_and_bounds() {
        let cfg = DeviceConfig::small();
        let mut t = TableMemory::new(&cfg);
        assert_eq!(t.entries(TableId::Lb), cfg.caps.lb_buckets * 4);
        assert_eq!(t.entries(TableId::Bucket), cfg.caps.bucket_slots);
        assert!(t.get(TableId::Range, cfg.caps.ranges - 1, 1).is_some());
        assert!(t.get(TableId::Range, cfg.caps.ranges - 1, 2).is_none());
        t.count(TableId::LbCounter, 3, 100);
        t.count(TableId::LbCounter, 3, 50);
        let e: &[u8; 16] = t.entry(TableId::LbCounter, 3).try_into().unwrap();
        assert_eq!(
            CounterEntry::parse(e),
            CounterEntry {
                packets: 2,
                bytes: 150
            }
        );
    }
}
