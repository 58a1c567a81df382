//! LB exact-match table placement: cuckoo hashing with the contract's two hashes and 4-way buckets
//! (docs/hw-spec.md §5.1, §6.3, §8.4).
//!
//! The driver keeps a mirror of the entries it wrote (rebuilt from the device on open), plans an insertion as a
//! bounded breadth-first search for a chain of moves ending in a free way, and emits the moves last-first: each
//! moved entry is written to its new location before its old location is overwritten, so every key stays findable by
//! the device at every instant.

use ironlb_hw::entry::LbEntry;
use ironlb_hw::LbKey;
use std::collections::VecDeque;

/// Ways per bucket (contract v1).
pub const WAYS: u32 = 4;
/// Upper bound on positions the displacement search visits per insertion.
pub const MAX_SEARCH: usize = 4096;

/// A planned insertion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// Moves `(from, to)` in the order they must be written.
    pub moves: Vec<(u32, u32)>,
    /// Where the new key goes (written after all moves).
    pub index: u32,
}

/// Mirror of the device's LB table.
#[derive(Debug, Clone)]
pub struct LbTable {
    buckets: u32,
    slots: Vec<Option<LbEntry>>,
    used: u32,
}

impl LbTable {
    /// Empty table of `buckets` x 4 entries.
    pub fn new(buckets: u32) -> Self {
        LbTable {
            buckets,
            slots: vec![None; (buckets * WAYS) as usize],
            used: 0,
        }
    }

    /// Entries in the table.
    pub fn capacity(&self) -> u32 {
        self.buckets * WAYS
    }

    /// Entries in use.
    pub fn used(&self) -> u32 {
        self.used
    }

    /// The entry at `index`.
    pub fn get(&self, index: u32) -> Option<&LbEntry> {
        self.slots.get(index as usize).and_then(Option::as_ref)
    }

    /// Put `e` at `index` (mirror only).
    pub fn set(&mut self, index: u32, e: LbEntry) {
        let s = &mut self.slots[index as usize];
        if s.is_none() {
            self.used += 1;
        }
        *s = Some(e);
    }

    /// Clear `index` (mirror only).
    pub fn clear(&mut self, index: u32) {
        if self.slots[index as usize].take().is_some() {
            self.used -= 1;
        }
    }

    fn positions(&self, bucket: u32) -> std::ops::Range<u32> {
        bucket * WAYS..(bucket + 1) * WAYS
    }

    /// Where `key` is, if present.
    pub fn find(&self, key: &LbKey) -> Option<u32> {
        key.buckets(self.buckets)
            .into_iter()
            .flat_map(|b| self.positions(b))
            .find(|&i| self.slots[i as usize].as_ref().is_some_and(|e| e.key() == *key))
    }

    fn free_in(&self, bucket: u32) -> Option<u32> {
        self.positions(bucket).find(|&i| self.slots[i as usize].is_none())
    }

    /// Plan where a new key goes. `None` when no chain of at most [`MAX_SEARCH`] visited positions ends in a
    /// free way: the table is full for this key, and nothing has changed.
    pub fn plan_insert(&self, key: &LbKey) -> Option<Placement> {
        let [b1, b2] = key.buckets(self.buckets);
        for b in [b1, b2] {
            if let Some(i) = self.free_in(b) {
                return Some(Placement {
                    moves: vec![],
                    index: i,
                });
            }
        }
        // BFS over positions; parent links rebuild the chain.
        let mut nodes: Vec<(u32, usize)> = Vec::new(); // (position, parent node or usize::MAX)
        let mut seen = std::collections::HashSet::new();
        let mut queue = VecDeque::new();
        for p in self.positions(b1).chain(self.positions(b2)) {
            seen.insert(p);
            nodes.push((p, usize::MAX));
            queue.push_back(nodes.len() - 1);
        }
        while let Some(n) = queue.pop_front() {
            let (pos, _) = nodes[n];
            let occupant = self.slots[pos as usize]
                .as_ref()
                .expect("searched positions are occupied");
            let [o1, o2] = occupant.key().buckets(self.buckets);
            let alt = if pos / WAYS == o1 { o2 } else { o1 };
            if let Some(free) = self.free_in(alt) {
                // Chain: node n's occupant -> free, its parent's occupant -> pos, ...; key -> root position.
                let mut moves = vec![(pos, free)];
                let mut cur = n;
                while nodes[cur].1 != usize::MAX {
                    let parent = nodes[cur].1;
                    moves.push((nodes[parent].0, nodes[cur].0));
                    cur = parent;
                }
                return Some(Placement {
                    moves,
                    index: nodes[cur].0,
                });
            }
            if nodes.len() >= MAX_SEARCH {
                continue;
            }
            for p in self.positions(alt) {
                if seen.insert(p) {
                    nodes.push((p, n));
                    queue.push_back(nodes.len() - 1);
                }
            }
        }
        None
    }

    /// Apply a placement to the mirror (the caller emits the same moves to the device, in order).
    pub fn apply(&mut self, p: &Placement, e: LbEntry) {
        for &(from, to) in &p.moves {
            let moved = self.slots[from as usize].expect("move source occupied");
            self.set(to, moved);
            // `from` is overwritten by the next move or by the new entry.
        }
        if p.moves.is_empty() {
            self.set(p.index, e);
        } else {
            self.slots[p.index as usize] = Some(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ironlb_hw::entry::{IcmpPolicy, LbSet};
    use ironlb_hw::Vip;

    /// Pseudo-random (xorshift) IPv4 VIPs: CRC-based placement must cope with unstructured keys, not only with the
    /// sequential addresses a pool hands out (which a linear hash spreads perfectly).
    fn random_entry(domain: u32, n: u32) -> LbEntry {
        let mut x = (n as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        x ^= x >> 29;
        x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x ^= x >> 32;
        LbEntry {
            vip: Vip::from_ipv4((x as u32).to_be_bytes()),
            ..entry(domain, n)
        }
    }

    fn entry(domain: u32, n: u32) -> LbEntry {
        LbEntry {
            active_set: 0,
            icmp: IcmpPolicy::default(),
            generation: 0,
            flow_epoch: 0,
            domain,
            lb_id: n,
            vip: Vip::from_ipv4(n.to_be_bytes()),
            sets: [LbSet::default(); 2],
        }
    }

    /// Every key stays findable while moves are applied one by one, and the final table holds all keys once.
    #[test]
    fn fills_past_95_percent_and_keys_stay_findable() {
        fill(entry);
        fill(random_entry);
    }

    fn fill(make: fn(u32, u32) -> LbEntry) {
        let mut t = LbTable::new(256);
        let mut inserted = Vec::new();
        let mut n = 0u32;
        loop {
            let e = make(7, n);
            let Some(p) = t.plan_insert(&e.key()) else { break };
            // Simulate the device seeing each write in order.
            let mut dev = t.clone();
            for &(from, to) in &p.moves {
                let moved = *dev.get(from).unwrap();
                dev.set(to, moved);
                for k in &inserted {
                    assert!(dev.find(k).is_some(), "key {k:?} lost during a move");
                }
            }
            t.apply(&p, e);
            inserted.push(e.key());
            n += 1;
        }
        let occupancy = t.used() as f64 / t.capacity() as f64;
        assert!(occupancy >= 0.95, "first failure at {:.3} occupancy", occupancy);
        assert_eq!(t.used() as usize, inserted.len());
        for k in &inserted {
            let i = t.find(k).expect("present");
            assert!(
                k.buckets(256).contains(&(i / WAYS)),
                "entry outside its two buckets"
            );
        }
        // A failed plan changes nothing.
        let before = t.used();
        assert!(t.plan_insert(&entry(8, 1).key()).is_none() || t.used() == before);
    }
}
