//! Consistent hashing of an LB's targets onto its bucket array (docs/hw-spec.md §5.4, §7.8).
//!
//! The device forwards a flow to the target in slot `flow_hash & (M - 1)` of the LB's array of `M = 2^k` slots.
//! Which target owns which slot is the driver's choice, and part of the cross-host agreement: every host must compute
//! the bit-identical array from the *set* of target keys and M alone, whatever order the targets arrived in and
//! whatever arrays existed before. Both schemes here are such pure functions.
//!
//! # The contract
//!
//! Both schemes start from the same per-target permutation of the slots. Sort the targets by key (byte-wise); the
//! target of rank `r` gets `offset = crc(MAGLEV_OFFSET_SEED, key) mod M`, `skip = (crc(MAGLEV_SKIP_SEED, key) mod
//! M) | 1` and visits slot `(offset + j * skip) mod M` at position `j = 0, 1, …, M-1`; an odd skip is coprime to
//! `2^k`, so this is a permutation. `crc(seed, key)` is CRC-32 (IEEE, as zlib's `crc32(key, seed)`) of the 16
//! key bytes, started from `seed` ([`crc32fast::Hasher::new_with_initial`]).
//!
//! - [`Maglev`] (Eisenbud et al., NSDI'16): in rounds, each target in rank order takes the next slot of its
//!   permutation that is still free, until all M slots are taken. Target `r` gets `ceil(M/N)` slots if
//!   `r < M mod N`, else `floor(M/N)`.
//! - [`StableMaglev`] (the default): target `r` has capacity `floor(M/N) + (r < M mod N ? 1 : 0)`. Level by level
//!   (`j = 0, 1, …`), each target in rank order that is below capacity looks at slot `(offset + j * skip) mod M`
//!   and takes it if it is free. Unlike Maglev, a target whose slot is taken does not skip ahead within the level:
//!   a slot goes to the target that reaches it at the earliest position (lowest rank on ties). This is the unique
//!   stable matching between targets (preferring early positions) and slots (preferring the target reaching them
//!   earliest): what deferred acceptance with targets proposing along their permutation produces.
//!
//! # Why StableMaglev is the default (N = 64, `cargo bench -p ironlb-driver --bench hashing`)
//!
//! Both are exactly balanced (max/mean = min/mean = 1 when N divides M). Slots moved when one target is removed,
//! relative to the ideal M/N, for random keys / sequential addresses fd00::1..: Maglev 3.00x / 2.48x at M = 4096,
//! 1.75x / 1.67x at M = 16384, 1.31x / 1.31x at M = 65536; StableMaglev 1.83x / 1.76x, 1.39x / 1.35x, 1.18x / 1.17x.
//! Adding a target behaves alike. Worst single removal at M = 4096: 4.39x vs 2.61x. The price is time: at M = 16384
//! one array takes about 0.20 ms (Maglev) vs 0.28 ms (StableMaglev) on one core, a cold sync of 4,096 LBs x 64
//! targets 0.9 s vs 1.1 s.
//!
//! Also tried, with the same permutations and capacities: deferred acceptance where a contended slot keeps the
//! target with the higher pairwise score `splitmix64(salt(target) ^ slot)`: removal moved 2.47x / 2.34x / 1.67x
//! (worse than Maglev from M = 16384 on, single removals up to 17x) and was several times slower. Breaking
//! StableMaglev's level ties by a pairwise hash instead of the rank, or hash-mixed permutations instead of
//! offset/skip, changed disruption by under 0.05x.

/// Smallest supported log2 of the array size.
pub const MIN_M_LOG2: u8 = 1;
/// Largest supported log2 of the array size (M = 65,536 slots).
pub const MAX_M_LOG2: u8 = 16;
/// [`choose_m_log2`] aims at this many slots per target. StableMaglev balances exactly (every target owns
/// floor(M/N) or ceil(M/N) slots), so 64 slots keep each target's share within 1/64 of its ideal; more slots only
/// lower the excess disruption on removal (docs/performance.md: 1.83x the ideal at M = 4096, N = 64) at 4x the
/// memory and programming time. At 64, the default device's 2^24 bucket slots hold 4,096 LBs of 64 targets.
pub const SLOTS_PER_TARGET: usize = 64;

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

/// Classic Maglev table population, adapted to M = 2^k (see the module docs).
#[derive(Clone, Copy, Debug, Default)]
pub struct Maglev;

/// Maglev permutations filled as a stable matching: fewer slots move when the target set changes (module docs).
#[derive(Clone, Copy, Debug, Default)]
pub struct StableMaglev;

/// The scheme the driver uses for every bucket array.
pub fn default_hasher() -> &'static dyn BucketHasher {
    static DEFAULT: StableMaglev = StableMaglev;
    &DEFAULT
}

/// Choose M for N targets: the smallest power of two >= [`SLOTS_PER_TARGET`]*N, clamped to `[min_log2, max_log2]` (from device caps).
///
/// The upper end is also capped at [`MAX_M_LOG2`], the largest array [`BucketHasher::assign`] supports, unless
/// `min_log2` is above it.
///
/// # Panics
/// If `min_log2 > max_log2`.
pub fn choose_m_log2(n_targets: usize, min_log2: u8, max_log2: u8) -> u8 {
    assert!(
        min_log2 <= max_log2,
        "bucket log2 range {min_log2}..={max_log2} is empty"
    );
    let want = n_targets.saturating_mul(SLOTS_PER_TARGET).max(1);
    let log2 = want
        .checked_next_power_of_two()
        .map_or(usize::BITS, |p| p.trailing_zeros());
    let hi = max_log2.min(MAX_M_LOG2).max(min_log2);
    log2.clamp(u32::from(min_log2), u32::from(hi)) as u8
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

/// Inputs in canonical (key) order: `order[r]` is the input index of the target of rank `r`.
struct Prepared {
    m: usize,
    order: Vec<u32>,
    perms: Vec<Permutation>,
}

impl Prepared {
    fn new(targets: &[TargetKey], m_log2: u8) -> Self {
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
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;
    use std::net::Ipv6Addr;

    const HASHERS: [&dyn BucketHasher; 2] = [&Maglev, &StableMaglev];

    fn ip(s: &str) -> TargetKey {
        TargetKey::from(s.parse::<Ipv6Addr>().unwrap())
    }

    /// The known-answer key set, in this (unsorted) input order.
    fn kat_keys() -> Vec<TargetKey> {
        ["fd00::1", "fd00::2", "fd00::3", "fd00::a", "2001:db8::5"]
            .map(ip)
            .to_vec()
    }

    /// StableMaglev straight from its definition: level by level, ranks in order, O(M*N).
    fn reference_stable(targets: &[TargetKey], m_log2: u8) -> Vec<u32> {
        let (m, n) = (1usize << m_log2, targets.len());
        let mut ranked: Vec<usize> = (0..n).collect();
        ranked.sort_by_key(|&i| targets[i]);
        let perms: Vec<Permutation> = ranked
            .iter()
            .map(|&i| Permutation::of(&targets[i], m_log2))
            .collect();
        let mut left: Vec<usize> = (0..n).map(|r| m / n + usize::from(r < m % n)).collect();
        let mut out = vec![None; m];
        for j in 0..m {
            for r in 0..n {
                let s = (perms[r].offset as usize + j * perms[r].skip as usize) % m;
                if left[r] > 0 && out[s].is_none() {
                    out[s] = Some(ranked[r] as u32);
                    left[r] -= 1;
                }
            }
        }
        out.into_iter()
            .map(|o| o.expect("every slot filled within M levels"))
            .collect()
    }

    /// Slots per key.
    fn counts(targets: &[TargetKey], array: &[u32]) -> BTreeMap<TargetKey, usize> {
        let mut c: BTreeMap<TargetKey, usize> = targets.iter().map(|&k| (k, 0)).collect();
        for k in slot_keys(targets, array) {
            *c.get_mut(&k).unwrap() += 1;
        }
        c
    }

    /// Moved slots divided by `ideal` after going from `a` to `b`.
    fn moved_ratio(h: &dyn BucketHasher, a: &[TargetKey], b: &[TargetKey], m_log2: u8, ideal: f64) -> f64 {
        let (x, y) = (h.assign(a, m_log2), h.assign(b, m_log2));
        changed_slots(a, &x, b, &y).len() as f64 / ideal
    }

    fn key_set(max: usize) -> impl Strategy<Value = Vec<TargetKey>> {
        prop::collection::btree_set(any::<[u8; 16]>(), 1..=max)
            .prop_map(|s| s.into_iter().map(TargetKey).collect())
    }

    /// Random sets and, half of the time, sequential underlay addresses fd00::base+i (CRC is linear: the closest
    /// thing to an adversarial input that real deployments produce).
    fn realistic_keys(n: std::ops::RangeInclusive<usize>) -> impl Strategy<Value = Vec<TargetKey>> {
        let (lo, hi) = (*n.start(), *n.end());
        prop_oneof![
            key_set(hi).prop_filter("too few", move |v| v.len() >= lo),
            (lo..=hi, any::<u32>()).prop_map(|(n, base)| {
                (0..n as u128)
                    .map(|i| TargetKey::from(Ipv6Addr::from((0xfd00u128 << 112) + base as u128 + i)))
                    .collect()
            }),
        ]
    }

    #[test]
    fn seeded_crc_is_zlib_crc32_with_start_value() {
        // python3: zlib.crc32(ipaddress.IPv6Address("fd00::1").packed, seed)
        let k = ip("fd00::1");
        assert_eq!(seeded_crc(MAGLEV_OFFSET_SEED, &k), 0xda9b_3a79);
        assert_eq!(seeded_crc(MAGLEV_SKIP_SEED, &k), 0x3e9c_226c);
        assert_eq!(seeded_crc(0, &k), crc32fast::hash(&k.0));
        assert_eq!(
            Permutation::of(&k, 16),
            Permutation {
                offset: 0x3a79,
                skip: 0x226d
            }
        );
        assert_eq!(Permutation::of(&k, 4), Permutation { offset: 9, skip: 13 });
    }

    /// Pinned arrays: a failure here means the cross-host contract changed. Derived by running this implementation
    /// and, independently, a 40-line python3 transcription of the module docs (zlib.crc32(key, seed), sort by key
    /// bytes, Maglev rounds / StableMaglev levels); both gave these values. Indices refer to `kat_keys()` order,
    /// where 2001:db8::5 (index 4) has rank 0.
    #[test]
    fn known_answers_m16() {
        let keys = kat_keys();
        assert_eq!(
            Maglev.assign(&keys, 4),
            [4, 3, 4, 1, 1, 2, 0, 2, 1, 0, 4, 3, 2, 0, 3, 4]
        );
        assert_eq!(
            StableMaglev.assign(&keys, 4),
            [4, 3, 3, 1, 1, 2, 0, 2, 1, 0, 4, 3, 4, 0, 2, 4]
        );
        let three = &keys[..3];
        assert_eq!(
            Maglev.assign(three, 4),
            [0, 1, 1, 1, 0, 2, 0, 2, 2, 0, 1, 2, 2, 0, 0, 1]
        );
        assert_eq!(
            StableMaglev.assign(three, 4),
            [0, 1, 2, 1, 0, 2, 0, 2, 1, 0, 1, 2, 2, 0, 0, 1]
        );
    }

    /// Larger pinned arrays (both StableMaglev phases run), as zlib.crc32 of the little-endian u32 indices, from the
    /// same python3 transcription.
    #[test]
    fn known_answer_digests() {
        let keys = kat_keys();
        let digest =
            |a: Vec<u32>| crc32fast::hash(&a.iter().flat_map(|i| i.to_le_bytes()).collect::<Vec<u8>>());
        assert_eq!(digest(Maglev.assign(&keys, 10)), 0xb4f5_b56c);
        assert_eq!(digest(Maglev.assign(&keys, 12)), 0x39df_ab2f);
        assert_eq!(digest(StableMaglev.assign(&keys, 10)), 0x98cf_8f67);
        assert_eq!(digest(StableMaglev.assign(&keys, 12)), 0x41ab_9ffa);
    }

    #[test]
    fn default_is_stable_maglev() {
        assert_eq!(default_hasher().name(), "stable-maglev");
        let keys = kat_keys();
        assert_eq!(default_hasher().assign(&keys, 9), StableMaglev.assign(&keys, 9));
    }

    #[test]
    fn one_target_owns_everything() {
        for h in HASHERS {
            assert_eq!(h.assign(&[ip("fd00::7")], 1), [0, 0]);
            assert!(h.assign(&[ip("fd00::7")], 16).iter().all(|&i| i == 0));
        }
    }

    /// The design claim, on fixed inputs: StableMaglev moves fewer slots than Maglev at N = 64, M = 4096.
    #[test]
    fn stable_moves_fewer_slots_than_maglev() {
        let sets: [Vec<TargetKey>; 2] = [
            (1..=64u128)
                .map(|i| TargetKey::from(Ipv6Addr::from((0xfd00u128 << 112) + i)))
                .collect(),
            (1..=64u128)
                .map(|i| TargetKey::from(Ipv6Addr::from(i.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c))))
                .collect(),
        ];
        for keys in &sets {
            let mean = |h: &dyn BucketHasher| {
                let drop = |r: usize| {
                    keys.iter()
                        .enumerate()
                        .filter(|&(i, _)| i != r)
                        .map(|(_, &k)| k)
                        .collect::<Vec<TargetKey>>()
                };
                let ratios: Vec<f64> = (0..8)
                    .map(|r| moved_ratio(h, keys, &drop(r * 8), 12, 4096.0 / 64.0))
                    .collect();
                ratios.iter().sum::<f64>() / ratios.len() as f64
            };
            let (maglev, stable) = (mean(&Maglev), mean(&StableMaglev));
            assert!(stable < maglev, "stable {stable:.2} vs maglev {maglev:.2}");
            assert!(stable < 2.2, "stable {stable:.2}");
        }
    }

    #[test]
    fn choose_m_log2_examples() {
        assert_eq!(choose_m_log2(1, 1, 16), 6);
        assert_eq!(choose_m_log2(2, 1, 16), 7);
        assert_eq!(choose_m_log2(3, 1, 16), 8);
        assert_eq!(choose_m_log2(64, 1, 16), 12);
        assert_eq!(choose_m_log2(65, 1, 16), 13);
        assert_eq!(choose_m_log2(64, 1, 12), 12);
        assert_eq!(choose_m_log2(1, 10, 16), 10);
        assert_eq!(choose_m_log2(0, 1, 16), 1);
        assert_eq!(choose_m_log2(usize::MAX, 1, 16), 16);
        assert_eq!(choose_m_log2(1000, 1, 31), MAX_M_LOG2);
        assert_eq!(choose_m_log2(1, 20, 31), 20);
    }

    #[test]
    fn changed_slots_compares_keys_not_indices() {
        let (a, b) = (ip("fd00::1"), ip("fd00::2"));
        assert_eq!(
            changed_slots(&[a, b], &[0, 1, 0], &[b, a], &[1, 0, 1]),
            Vec::<usize>::new()
        );
        assert_eq!(
            changed_slots(&[a, b], &[0, 1, 0], &[b, a], &[1, 1, 0]),
            vec![1, 2]
        );
        assert_eq!(
            changed_slots(&[a], &[0, 0], &[a], &[0, 0, 0, 0]),
            vec![0, 1, 2, 3]
        );
    }

    #[test]
    #[should_panic(expected = "at least one target")]
    fn empty_target_list_panics() {
        StableMaglev.assign(&[], 4);
    }

    #[test]
    #[should_panic(expected = "duplicate target key")]
    fn duplicate_keys_panic() {
        Maglev.assign(&[ip("fd00::1"), ip("fd00::2"), ip("fd00::1")], 4);
    }

    #[test]
    #[should_panic(expected = "outside 1..=16")]
    fn oversized_array_panics() {
        StableMaglev.assign(&[ip("fd00::1")], 17);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// The two-phase implementation computes exactly the definition.
        #[test]
        fn stable_equals_reference(keys in realistic_keys(1..=40), m_log2 in 1u8..=11) {
            prop_assert_eq!(StableMaglev.assign(&keys, m_log2), reference_stable(&keys, m_log2));
        }

        /// Same key per slot whatever the input order; indices valid; each rank gets exactly its capacity
        /// (ceil(M/N) for the first M mod N keys in key order, floor(M/N) for the rest) under both schemes.
        #[test]
        fn order_independent_and_exactly_balanced(
            (keys, shuffled) in key_set(80).prop_flat_map(|k| (Just(k.clone()), Just(k).prop_shuffle())),
            m_log2 in 1u8..=12,
        ) {
            let (m, n) = (1usize << m_log2, keys.len());
            for h in HASHERS {
                let a = h.assign(&keys, m_log2);
                let b = h.assign(&shuffled, m_log2);
                prop_assert_eq!(a.len(), m);
                prop_assert!(b.iter().all(|&i| (i as usize) < n));
                prop_assert_eq!(slot_keys(&keys, &a), slot_keys(&shuffled, &b), "{}", h.name());
                // `keys` comes sorted from the BTreeSet, so its index is the rank.
                for (r, (_, c)) in counts(&keys, &a).into_iter().enumerate() {
                    prop_assert_eq!(c, m / n + usize::from(r < m % n), "{} rank {}", h.name(), r);
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// With M/N >= 64: removing a target moves all of its slots and at most 5x (StableMaglev) / 10x (Maglev)
        /// its share; adding one moves at most as much of the new share. Measured worst over ~2,000 random cases with
        /// N <= 200: 3.5x (StableMaglev), 7.1x (Maglev); a history-free random array would move N-1 >= 15x.
        #[test]
        fn bounded_disruption(keys in realistic_keys(16..=64), extra in 0u8..=1, pick in any::<prop::sample::Index>(),
                              new_key in any::<[u8; 16]>()) {
            let n = keys.len();
            let m_log2 = (64 * n).next_power_of_two().trailing_zeros() as u8 + extra;
            let m = 1usize << m_log2;
            let gone = keys[pick.index(n)];
            let fewer: Vec<TargetKey> = keys.iter().copied().filter(|&k| k != gone).collect();
            let mut more = keys.clone();
            prop_assume!(!keys.contains(&TargetKey(new_key)));
            more.push(TargetKey(new_key));
            for (h, bound) in [(&Maglev as &dyn BucketHasher, 10.0), (&StableMaglev, 5.0)] {
                let before = h.assign(&keys, m_log2);
                let after = h.assign(&fewer, m_log2);
                prop_assert!(after.iter().all(|&i| (i as usize) < fewer.len()));
                let changed = changed_slots(&keys, &before, &fewer, &after);
                let owned: Vec<usize> = (0..m).filter(|&s| keys[before[s] as usize] == gone).collect();
                prop_assert!(owned.iter().all(|s| changed.binary_search(s).is_ok()));
                let removal = changed.len() as f64 / (m as f64 / n as f64);
                prop_assert!(removal <= bound, "{} removal moved {:.2}x", h.name(), removal);
                let add = moved_ratio(h, &keys, &more, m_log2, m as f64 / (n + 1) as f64);
                prop_assert!(add <= bound, "{} add moved {:.2}x", h.name(), add);
            }
        }
    }
}
