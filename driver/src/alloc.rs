//! Free-space allocator for contiguous blocks of table memory (range blocks, bucket arrays, target entries).
//!
//! First fit over a free list kept as a `BTreeMap<start, len>`, coalescing neighbours on free. Blocks of bucket
//! arrays are allocated aligned to their size (a power of two), which keeps fragmentation bounded.

use std::collections::BTreeMap;

/// A contiguous block `[start, start + len)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Block {
    /// First index.
    pub start: u32,
    /// Number of entries.
    pub len: u32,
}

/// Free-space map of one table.
#[derive(Debug, Clone)]
pub struct BlockAllocator {
    free: BTreeMap<u32, u32>,
}

impl BlockAllocator {
    /// All of `[0, size)` free.
    pub fn new(size: u32) -> Self {
        let mut free = BTreeMap::new();
        if size > 0 {
            free.insert(0, size);
        }
        BlockAllocator { free }
    }

    /// Entries free (tests: what is not free of a table of `n` is in use).
    #[cfg(test)]
    fn free_total(&self) -> u64 {
        self.free.values().map(|&len| u64::from(len)).sum()
    }

    /// Number of free blocks (1 = no fragmentation).
    pub fn free_blocks(&self) -> usize {
        self.free.len()
    }

    /// Largest free block.
    pub fn largest_free(&self) -> u32 {
        self.free.values().copied().max().unwrap_or(0)
    }

    /// Allocate `len` entries starting at a multiple of `align` (a power of two), first fit.
    pub fn alloc(&mut self, len: u32, align: u32) -> Option<Block> {
        debug_assert!(align.is_power_of_two());
        if len == 0 {
            return Some(Block { start: 0, len: 0 });
        }
        let (fs, fl, start) = self.free.iter().find_map(|(&fs, &fl)| {
            let start = fs.checked_add(align - 1)? & !(align - 1);
            (start as u64 + len as u64 <= fs as u64 + fl as u64).then_some((fs, fl, start))
        })?;
        self.free.remove(&fs);
        if start > fs {
            self.free.insert(fs, start - fs);
        }
        let end = start + len;
        if end < fs + fl {
            self.free.insert(end, fs + fl - end);
        }
        Some(Block { start, len })
    }

    /// Mark a specific block used (adoption of what the device already holds). False if any part is not free.
    pub fn reserve(&mut self, b: Block) -> bool {
        if b.len == 0 {
            return true;
        }
        let Some((&fs, &fl)) = self.free.range(..=b.start).next_back() else {
            return false;
        };
        if b.start as u64 + b.len as u64 > fs as u64 + fl as u64 {
            return false;
        }
        self.free.remove(&fs);
        if b.start > fs {
            self.free.insert(fs, b.start - fs);
        }
        let end = b.start + b.len;
        if end < fs + fl {
            self.free.insert(end, fs + fl - end);
        }
        true
    }

    /// Return a block. Panics on a double free (a driver bug that would otherwise corrupt the device's tables).
    pub fn free(&mut self, b: Block) {
        if b.len == 0 {
            return;
        }
        let (mut start, mut len) = (b.start, b.len);
        if let Some((&ps, &pl)) = self.free.range(..start).next_back() {
            assert!(ps + pl <= start, "double free of {b:?}");
            if ps + pl == start {
                self.free.remove(&ps);
                start = ps;
                len += pl;
            }
        }
        if let Some((&ns, &nl)) = self.free.range(b.start..).next() {
            assert!(b.start + b.len <= ns, "double free of {b:?}");
            if b.start + b.len == ns {
                self.free.remove(&ns);
                len += nl;
            }
        }
        self.free.insert(start, len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn alloc_free_coalesce() {
        let mut a = BlockAllocator::new(100);
        let x = a.alloc(10, 1).unwrap();
        let y = a.alloc(10, 16).unwrap();
        assert_eq!(x, Block { start: 0, len: 10 });
        assert_eq!(y, Block { start: 16, len: 10 });
        assert_eq!(100 - a.free_total(), 20);
        a.free(x);
        a.free(y);
        assert_eq!(a.largest_free(), 100);
        assert!(a.alloc(101, 1).is_none());
        assert!(a.reserve(Block { start: 50, len: 50 }));
        assert!(!a.reserve(Block { start: 49, len: 2 }));
        assert_eq!(a.alloc(60, 1), None);
        assert_eq!(a.alloc(50, 1), Some(Block { start: 0, len: 50 }));
    }

    proptest! {
        #[test]
        fn never_overlaps(ops in proptest::collection::vec((1u32..40, 0u32..4, any::<bool>()), 1..200)) {
            let mut a = BlockAllocator::new(512);
            let mut live: Vec<Block> = Vec::new();
            for (len, align_log, free_one) in ops {
                if free_one && !live.is_empty() {
                    let b = live.swap_remove(len as usize % live.len());
                    a.free(b);
                } else if let Some(b) = a.alloc(len, 1 << align_log) {
                    prop_assert_eq!(b.start % (1 << align_log), 0);
                    prop_assert!(b.start + b.len <= 512);
                    for o in &live {
                        prop_assert!(b.start + b.len <= o.start || o.start + o.len <= b.start, "{:?} overlaps {:?}", b, o);
                    }
                    live.push(b);
                }
                prop_assert_eq!(512 - a.free_total(), live.iter().map(|b| b.len as u64).sum::<u64>());
            }
            for b in live { a.free(b); }
            prop_assert_eq!(a.largest_free(), 512);
        }
    }
}
