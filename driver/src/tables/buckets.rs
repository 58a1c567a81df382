//! Consistent hashing of an LB's targets onto its bucket array (docs/hw-spec.md §5.4, §7.8; docs/architecture.md
//! "Bucket arrays").
//!
//! The device forwards a flow to the target in slot `flow_hash & (M - 1)` of the LB's array of `M = 2^k` slots.
//! Which target owns which slot is the driver's choice, and part of the cross-host agreement: every host must compute
//! the bit-identical array from the *set* of target keys alone, whatever order the targets arrived in and whatever
//! arrays existed before.
//!
//! # Array size: one M for every LB
//!
//! Every array has [`ARRAY_LOG2`] = 12 (M = 4,096 slots) whatever its number of targets N ([`array_log2`]). A size that
//! follows N cannot keep flows: with `hash & (M-1)` indexing a doubled array whose slot j and j+M both keep the old
//! slot j is not the array a fresh host computes for the same set at 2M, so either hosts disagree or half the flows
//! move (issue 13: 51% at 65 -> 64 targets under the previous `choose_m_log2`). With M fixed the array is a pure
//! function of the target set, so a restarted host, a new host and a host with any other history compute the same
//! array, and no size change ever happens. 4,096 slots per LB is what the capacity goal allows (2^24 slots of the
//! reference part hold 4,096 LBs of any N up to `CAP_MAX_TARGETS_PER_LB` = 4,096).
//!
//! # The contract: [`BoundedRendezvous`] (the default)
//!
//! `mix(z)` is the splitmix64 finaliser (`z += 0x9E3779B97F4A7C15; z = (z ^ z>>30) * 0xBF58476D1CE4E5B9;
//! z = (z ^ z>>27) * 0x94D049BB133111EB; z ^ z>>31`, wrapping). For a target key (16 bytes, big-endian halves `hi`,
//! `lo`) `kh = mix(mix(hi ^ KEY_SEED) ^ lo)`; for slot `c` `sh(c) = mix(c ^ SLOT_SEED)`; the weight of target t at
//! slot c is `w(t, c) = mix(kh(t) ^ sh(c))` (rendezvous / highest-random-weight hashing).
//!
//! Each target has a capacity `cap(t) = (floor(LOAD_NUM * M * 2^32 / (LOAD_DEN * N)) + (kh(t) >> 32)) >> 32`: the
//! load bound `LOAD_NUM/LOAD_DEN * M/N` (1.2 x the mean), rounded up or down by the target's own hash so that one
//! target more or less changes only about `1.2 M/N` capacities by one instead of all of them. Then:
//!
//! 1. every slot's *favourite* is its target of highest `w(t, c)` (ties, which need equal 64-bit weights, to the
//!    lower key);
//! 2. every target keeps at most `cap(t)` of the slots that favour it: those of highest `w(t, c)` (lower slot index
//!    on ties); the others are *shed*;
//! 3. shed slots, in increasing index order, go to the target of highest `w(t, c)` among those holding fewer than
//!    `cap(t)` slots (kept plus already received); if all are full (never seen: the capacities sum to about 1.2 M), to
//!    their favourite.
//!
//! Properties (docs/performance.md, `cargo bench -p ironlb-driver --bench hashing`; property tests in
//! buckets_tests.rs):
//! - Balance: no target owns more than `cap(t) <= floor(1.2 M/N) + 1` slots, i.e. max/mean <= 1.2 + N/M (1.22 at
//!   N = 64, 1.45 at N = 1,024, 2.2 at N = 4,096).
//! - Disruption: without capacities (step 1 alone, plain rendezvous hashing) one target added or removed changes
//!   only the slots that target wins or won. The capacities move a few more (a target that receives one favourite
//!   more, or whose capacity changes by one, sheds or keeps one slot more): measured at most 0.51% of all slots
//!   between targets that stay, mean 0.13%, for N from 1 to 4,096 ([`MAX_KEPT_MOVED_PERCENT`] is the bound the tests
//!   hold).
//!
//! [`Maglev`] (Maglev's round-robin population adapted to M = 2^k) and [`StableMaglev`] (the default until issue 13,
//! kept for the bench's "old" rows) fill the same M from per-target permutations; both are exactly balanced pure
//! functions of (targets, M), but a change moves slots between targets that stay (Maglev at M = 65,536: up to 1.45%
//! of all flows; StableMaglev at M = 4,096: over 1% from N ~ 30). The bench's reference row is classic Maglev at the
//! paper's prime M = 65,537 (up to 1.03%), computed in the bench itself.
//!
//! The Maglev permutations: sort the targets by key (byte-wise); the target of rank `r` gets
//! `offset = crc(MAGLEV_OFFSET_SEED, key) mod M`, `skip = (crc(MAGLEV_SKIP_SEED, key) mod M) | 1` and visits slot
//! `(offset + j * skip) mod M` at position `j = 0, 1, …, M-1`. `crc(seed, key)` is CRC-32 (IEEE, as zlib's
//! `crc32(key, seed)`) of the 16 key bytes. [`Maglev`]: in rounds, each target in rank order takes the next free slot
//! of its permutation. [`StableMaglev`]: target `r` has capacity `floor(M/N) + (r < M mod N)`; level by level each
//! target below capacity takes slot `(offset + j * skip) mod M` if it is free (the stable matching of targets and
//! slots by permutation position).

/// Smallest supported log2 of the array size.
pub const MIN_M_LOG2: u8 = 1;
/// Largest supported log2 of the array size (M = 65,536 slots).
pub const MAX_M_LOG2: u8 = 16;
/// log2 of every LB's bucket array (M = 4,096 slots), whatever its number of targets (module docs). Part of the
/// cross-host contract.
pub const ARRAY_LOG2: u8 = 12;
/// [`BoundedRendezvous`] caps every target at `LOAD_NUM / LOAD_DEN` times its mean share (rounded per target).
pub const LOAD_NUM: u64 = 6;
/// See [`LOAD_NUM`].
pub const LOAD_DEN: u64 = 5;
/// Seed of the per-target hash `kh` of [`BoundedRendezvous`]. Part of the cross-host contract.
pub const KEY_SEED: u64 = 0x6972_6f6e_6c62_6b65; // "ironlbke"
/// Seed of the per-slot hash `sh` of [`BoundedRendezvous`]. Part of the cross-host contract.
pub const SLOT_SEED: u64 = 0x6972_6f6e_6c62_736c; // "ironlbsl"
/// The bound the scheme is held to (issue 13): one target added or removed moves at most this share of all slots
/// between targets that stay. Checked by the property tests and measured by the bench.
pub const MAX_KEPT_MOVED_PERCENT: usize = 1;

/// CRC-32 seed of the permutation offset: `offset = crc(MAGLEV_OFFSET_SEED, key) mod M` (ASCII "offs"). Part of the
/// cross-host contract: changing it changes every array.
pub const MAGLEV_OFFSET_SEED: u32 = 0x6f66_6673;
/// CRC-32 seed of the permutation step: `skip = (crc(MAGLEV_SKIP_SEED, key) mod M) | 1` (ASCII "skip"). Part of the
/// cross-host contract: changing it changes every array.
pub const MAGLEV_SKIP_SEED: u32 = 0x736b_6970;

/// Stable identity of a target, identical on every host (e.g. the target's underlay IPv6 address bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TargetKey(pub [u8; 16]);

impl From<std::net::Ipv6Addr> for TargetKey {
    fn from(addr: std::net::Ipv6Addr) -> Self {
        TargetKey(addr.octets())
    }
}

/// A consistent-hashing scheme for bucket arrays.
pub trait BucketHasher: Sync {
    /// Short name for logs and benches.
    fn name(&self) -> &'static str;
    /// Returns a Vec of length 2^m_log2; element i is the index (into `targets`) of the target owning slot i.
    ///
    /// `targets` holds distinct keys, non-empty. The multiset of KEYS assigned does not depend on the order of
    /// `targets` (permuting the input permutes only the indices, the key per slot stays identical), nor on any
    /// history.
    ///
    /// # Panics
    /// If `targets` is empty or holds a key twice, or `m_log2` is outside `MIN_M_LOG2..=MAX_M_LOG2`.
    fn assign(&self, targets: &[TargetKey], m_log2: u8) -> Vec<u32>;
}

/// Rendezvous hashing per slot with a per-target load bound (the default; module docs).
#[derive(Clone, Copy, Debug, Default)]
pub struct BoundedRendezvous;

/// Classic Maglev table population, adapted to M = 2^k (see the module docs).
#[derive(Clone, Copy, Debug, Default)]
pub struct Maglev;

/// Maglev permutations filled as a stable matching: fewer slots move when the target set changes (module docs).
#[derive(Clone, Copy, Debug, Default)]
pub struct StableMaglev;

/// The scheme the driver uses for every bucket array.
pub fn default_hasher() -> &'static dyn BucketHasher {
    static DEFAULT: BoundedRendezvous = BoundedRendezvous;
    &DEFAULT
}

/// log2(M) of every bucket array on a device whose `CAP_BUCKET_LOG2` range is `min_log2..=max_log2`: [`ARRAY_LOG2`],
/// clamped into the range (and to [`MAX_M_LOG2`]). It does not depend on the number of targets, so a change of
/// targets never resizes an array. Hosts whose devices have the same range (one part) use the same M; the reference
/// part's range 1..=16 holds 12.
///
/// # Panics
/// If `min_log2 > max_log2`.
pub fn array_log2(min_log2: u8, max_log2: u8) -> u8 {
    assert!(
        min_log2 <= max_log2,
        "bucket log2 range {min_log2}..={max_log2} is empty"
    );
    let hi = max_log2.min(MAX_M_LOG2).max(min_log2);
    ARRAY_LOG2.clamp(min_log2, hi)
}

/// The key owning each slot of an array returned by [`BucketHasher::assign`] for `targets`.
pub fn slot_keys(targets: &[TargetKey], array: &[u32]) -> Vec<TargetKey> {
    array.iter().map(|&i| targets[i as usize]).collect()
}

/// Slots whose target key differs between two arrays, each given with the target list it indexes into (the lists
/// may differ in order and content). If the arrays differ in length (M changed), every slot of `new` is returned.
pub fn changed_slots(
    old_targets: &[TargetKey],
    old: &[u32],
    new_targets: &[TargetKey],
    new: &[u32],
) -> Vec<usize> {
    if old.len() != new.len() {
        return (0..new.len()).collect();
    }
    (0..new.len())
        .filter(|&i| old_targets[old[i] as usize] != new_targets[new[i] as usize])
        .collect()
}

/// Slots that moved between targets present in both arrays' target lists: slot s counts when its old key is still
/// a target afterwards, its new key was a target before, and the two differ (issue 13's "flows of kept targets
/// moved"). Slots of a removed target and slots taken by an added one do not count. Both arrays must have one length.
///
/// # Panics
/// If the arrays differ in length.
pub fn kept_moved(old_targets: &[TargetKey], old: &[u32], new_targets: &[TargetKey], new: &[u32]) -> usize {
    assert_eq!(old.len(), new.len(), "arrays of different sizes");
    let before: std::collections::HashSet<TargetKey> = old_targets.iter().copied().collect();
    let after: std::collections::HashSet<TargetKey> = new_targets.iter().copied().collect();
    old.iter()
        .zip(new)
        .filter(|&(&o, &n)| {
            let (o, n) = (old_targets[o as usize], new_targets[n as usize]);
            o != n && after.contains(&o) && before.contains(&n)
        })
        .count()
}

/// One target's walk over the slots: slot `(offset + j * skip) mod M` at position `j`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Permutation {
    /// Slot at position 0.
    pub offset: u32,
    /// Step between positions; odd, so the walk visits every slot once.
    pub skip: u32,
}

impl Permutation {
    /// The contract's permutation of `key` for an array of `2^m_log2` slots.
    pub fn of(key: &TargetKey, m_log2: u8) -> Self {
        let mask = (1u32 << m_log2) - 1;
        Permutation {
            offset: seeded_crc(MAGLEV_OFFSET_SEED, key) & mask,
            skip: (seeded_crc(MAGLEV_SKIP_SEED, key) & mask) | 1,
        }
    }
}

/// CRC-32 of the 16 key bytes, started from `seed` (zlib's `crc32(key, seed)`).
fn seeded_crc(seed: u32, key: &TargetKey) -> u32 {
    let mut h = crc32fast::Hasher::new_with_initial(seed);
    h.update(&key.0);
    h.finalize()
}

/// Slot value while unassigned (never a valid index: `Prepared::new` bounds N below it).
const UNASSIGNED: u32 = u32::MAX;

/// Checks the inputs of [`BucketHasher::assign`] and returns them in canonical (key) order: element `r` is the input
/// index of the target of rank `r`.
fn rank_order(targets: &[TargetKey], m_log2: u8) -> Vec<u32> {
    assert!(!targets.is_empty(), "a bucket array needs at least one target");
    assert!(
        (MIN_M_LOG2..=MAX_M_LOG2).contains(&m_log2),
        "bucket array log2 {m_log2} outside {MIN_M_LOG2}..={MAX_M_LOG2}"
    );
    assert!(targets.len() < UNASSIGNED as usize, "too many targets");
    let mut order: Vec<u32> = (0..targets.len() as u32).collect();
    order.sort_unstable_by_key(|&i| targets[i as usize]);
    if let Some(w) = order
        .windows(2)
        .find(|w| targets[w[0] as usize] == targets[w[1] as usize])
    {
        panic!("duplicate target key {:?}", targets[w[0] as usize]);
    }
    order
}

/// The splitmix64 finaliser (module docs).
pub fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// `kh(t)`: the target's 64-bit hash (module docs).
pub fn key_hash(key: &TargetKey) -> u64 {
    let (hi, lo) = key.0.split_at(8);
    let word = |b: &[u8]| u64::from_be_bytes(b.try_into().expect("8 bytes"));
    mix64(mix64(word(hi) ^ KEY_SEED) ^ word(lo))
}

/// `sh(c)`: the slot's 64-bit hash (module docs).
fn slot_hash(c: usize) -> u64 {
    mix64(c as u64 ^ SLOT_SEED)
}

/// `cap(t)` of every target, given their `kh`: `load` times the mean share `m/N`, rounded by the top 32 bits of `kh`.
fn capacities(kh: &[u64], m: usize, (num, den): (u64, u64)) -> impl Iterator<Item = u32> + '_ {
    let base = (u128::from(num) * m as u128) << 32;
    let base = base / (u128::from(den) * kh.len() as u128);
    kh.iter()
        .map(move |&h| ((base + u128::from(h >> 32)) >> 32).min(u128::from(u32::MAX)) as u32)
}

/// Slots of one target in the order it keeps them: highest weight first, lower slot index on equal weights.
fn by_weight(slots: &mut [(u64, u32)]) {
    slots.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
}

impl BoundedRendezvous {
    /// The fill of the module docs with load bound `load = (num, den)`; [`BucketHasher::assign`] uses
    /// `(LOAD_NUM, LOAD_DEN)`.
    fn fill(targets: &[TargetKey], m_log2: u8, load: (u64, u64)) -> Vec<u32> {
        let order = rank_order(targets, m_log2);
        let m = 1usize << m_log2;
        let kh: Vec<u64> = order.iter().map(|&i| key_hash(&targets[i as usize])).collect();
        let cap: Vec<u32> = capacities(&kh, m, load).collect();

        // Step 1: every slot's favourite, the target of highest weight (the lower rank on equal weights: ranks are
        // visited in order and only a strictly higher weight replaces). Target-major, so that the slots' updates
        // are independent of each other and pipeline.
        let sh: Vec<u64> = (0..m).map(slot_hash).collect();
        let mut best_w: Vec<u64> = sh.iter().map(|&s| mix64(kh[0] ^ s)).collect();
        let mut favourite = vec![0u32; m];
        for (r, &h) in kh.iter().enumerate().skip(1) {
            for ((bw, fav), &s) in best_w.iter_mut().zip(favourite.iter_mut()).zip(&sh) {
                let w = mix64(h ^ s);
                let better = w > *bw;
                *bw = if better { w } else { *bw };
                *fav = if better { r as u32 } else { *fav };
            }
        }
        let mut wanted: Vec<Vec<(u64, u32)>> = vec![Vec::new(); kh.len()];
        for (c, (&fav, &w)) in favourite.iter().zip(&best_w).enumerate() {
            wanted[fav as usize].push((w, c as u32));
        }

        // Step 2: each target keeps its `cap` favourite slots of highest weight and sheds the rest.
        let mut out = vec![UNASSIGNED; m];
        let mut load = vec![0u32; kh.len()];
        let mut shed = Vec::new();
        for (r, slots) in wanted.iter_mut().enumerate() {
            if slots.len() > cap[r] as usize {
                by_weight(slots);
                shed.extend(slots[cap[r] as usize..].iter().map(|&(_, c)| c));
                slots.truncate(cap[r] as usize);
            }
            for &(_, c) in slots.iter() {
                out[c as usize] = r as u32;
            }
            load[r] = slots.len() as u32;
        }

        // Step 3: shed slots in index order go to the target of highest weight below capacity (else the favourite).
        shed.sort_unstable();
        for c in shed {
            let s = slot_hash(c as usize);
            let mut best: Option<(usize, u64)> = None;
            for (r, &h) in kh.iter().enumerate() {
                if load[r] < cap[r] {
                    let w = mix64(h ^ s);
                    if best.is_none_or(|(_, bw)| w > bw) {
                        best = Some((r, w));
                    }
                }
            }
            let r = best.map_or(favourite[c as usize] as usize, |(r, _)| r);
            out[c as usize] = r as u32;
            load[r] += 1;
        }
        out.iter().map(|&r| order[r as usize]).collect()
    }
}

impl BucketHasher for BoundedRendezvous {
    fn name(&self) -> &'static str {
        "bounded-hrw"
    }

    fn assign(&self, targets: &[TargetKey], m_log2: u8) -> Vec<u32> {
        Self::fill(targets, m_log2, (LOAD_NUM, LOAD_DEN))
    }
}

/// Inputs in canonical (key) order: `order[r]` is the input index of the target of rank `r`.
struct Prepared {
    m: usize,
    order: Vec<u32>,
    perms: Vec<Permutation>,
}

impl Prepared {
    fn new(targets: &[TargetKey], m_log2: u8) -> Self {
        let order = rank_order(targets, m_log2);
        let perms = order
            .iter()
            .map(|&i| Permutation::of(&targets[i as usize], m_log2))
            .collect();
        Prepared {
            m: 1 << m_log2,
            order,
            perms,
        }
    }

    /// Slots of the target of rank `r`: `floor(M/N)`, plus one for the first `M mod N` ranks.
    fn capacity(&self, r: usize) -> u32 {
        let n = self.order.len();
        (self.m / n + usize::from(r < self.m % n)) as u32
    }
}

impl BucketHasher for Maglev {
    fn name(&self) -> &'static str {
        "maglev"
    }

    fn assign(&self, targets: &[TargetKey], m_log2: u8) -> Vec<u32> {
        let p = Prepared::new(targets, m_log2);
        let mask = p.m - 1;
        let mut next: Vec<usize> = p.perms.iter().map(|q| q.offset as usize).collect();
        let mut out = vec![UNASSIGNED; p.m];
        let mut filled = 0;
        loop {
            for (r, q) in p.perms.iter().enumerate() {
                let skip = q.skip as usize;
                let mut s = next[r];
                while out[s] != UNASSIGNED {
                    s = (s + skip) & mask;
                }
                out[s] = p.order[r];
                next[r] = (s + skip) & mask;
                filled += 1;
                if filled == p.m {
                    return out;
                }
            }
        }
    }
}

/// StableMaglev scans level by level while more than 1/LOCKSTEP_FREE_DIVISOR of the slots are free (most looks
/// find a free slot), then switches to walking each target straight to its next free slot (measured: 4..8 is best).
const LOCKSTEP_FREE_DIVISOR: usize = 8;

/// A target of StableMaglev below capacity.
#[derive(Clone, Copy)]
struct Walker {
    /// Slot at the target's current position.
    slot: u32,
    skip: u32,
    /// Slots still to take.
    left: u32,
    /// Position in its permutation (phase 2 only).
    level: u32,
    rank: u32,
}

/// Taken-slot bitmap (2 KiB at M = 65,536: stays in L1 while the permutation walks jump around).
struct Taken(Vec<u64>);

impl Taken {
    fn is_taken(&self, s: usize) -> bool {
        self.0[s >> 6] & (1 << (s & 63)) != 0
    }
    fn take(&mut self, s: usize) {
        self.0[s >> 6] |= 1 << (s & 63);
    }
}

impl BucketHasher for StableMaglev {
    fn name(&self) -> &'static str {
        "stable-maglev"
    }

    fn assign(&self, targets: &[TargetKey], m_log2: u8) -> Vec<u32> {
        let p = Prepared::new(targets, m_log2);
        let (m, mask) = (p.m, p.m as u32 - 1);
        let mut walkers: Vec<Walker> = (0..p.order.len())
            .map(|r| Walker {
                slot: p.perms[r].offset,
                skip: p.perms[r].skip,
                left: p.capacity(r),
                level: 0,
                rank: r as u32,
            })
            .filter(|w| w.left > 0)
            .collect();
        let mut out = vec![UNASSIGNED; m];
        let mut taken = Taken(vec![0; m.div_ceil(64)]);
        // Invariant: the walkers' `left` sum to `free`, so a walker below capacity always has a free slot ahead:
        // a free slot at a position it already passed would have been free then, and taken by it.
        let mut free = m;
        let mut level = 0u32;

        // Phase 1: every walker looks at one slot per level, in rank order; drop walkers that are full.
        while free * LOCKSTEP_FREE_DIVISOR > m {
            let mut kept = 0;
            for i in 0..walkers.len() {
                let mut w = walkers[i];
                let s = w.slot as usize;
                if !taken.is_taken(s) {
                    taken.take(s);
                    out[s] = p.order[w.rank as usize];
                    w.left -= 1;
                    free -= 1;
                }
                w.slot = (w.slot + w.skip) & mask;
                walkers[kept] = w;
                kept += usize::from(w.left > 0);
            }
            walkers.truncate(kept);
            level += 1;
        }

        // Phase 2, same result: bucket each walker by the level of the next slot it would take (the next free slot
        // of its permutation) and visit levels in order, each bucket in rank order. A walker whose slot was taken
        // meanwhile walks on. Walkers are still in rank order, so their indices sort like their ranks.
        const NIL: u32 = u32::MAX;
        let mut head = vec![NIL; if free > 0 { m } else { 0 }];
        let mut link = vec![NIL; walkers.len()];
        for i in (0..walkers.len()).rev() {
            walkers[i].level = level;
            link[i] = head[level as usize];
            head[level as usize] = i as u32;
        }
        let mut batch = Vec::with_capacity(walkers.len());
        let mut l = level as usize;
        while free > 0 {
            let mut h = std::mem::replace(&mut head[l], NIL);
            l += 1;
            batch.clear();
            while h != NIL {
                batch.push(h);
                h = link[h as usize];
            }
            batch.sort_unstable();
            for &i in &batch {
                let w = &mut walkers[i as usize];
                let mut s = w.slot as usize;
                if !taken.is_taken(s) {
                    taken.take(s);
                    out[s] = p.order[w.rank as usize];
                    w.left -= 1;
                    free -= 1;
                    if w.left == 0 {
                        continue;
                    }
                }
                loop {
                    w.level += 1;
                    s = (s + w.skip as usize) & mask as usize;
                    if !taken.is_taken(s) {
                        break;
                    }
                }
                debug_assert!((w.level as usize) < m, "walker passed the end of its permutation");
                w.slot = s as u32;
                link[i as usize] = head[w.level as usize];
                head[w.level as usize] = i;
            }
        }
        out
    }
}

#[cfg(test)]
#[path = "buckets_tests.rs"]
mod tests;
