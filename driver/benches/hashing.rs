//! Bucket-array figures across target counts (issue 13): flows of kept targets moved by one removal, one addition and
//! random histories of 100 changes; balance; memory per LB; compute time. Three schemes in one run:
//!
//! - `bounded-hrw`: the default, M = 4,096 for every LB (driver/src/tables/buckets.rs);
//! - `old`: StableMaglev at the sizing used before issue 13 (M = smallest power of two >= 64 N, at most 65,536);
//! - `maglev-65537`: classic Maglev (Eisenbud et al., NSDI 2016) at the paper's prime M = 65,537, flows indexed by
//!   `hash mod M`: the reference row. Computed here only (the device indexes by `hash & (M - 1)`, so it cannot use a
//!   prime M); offset = `crc(MAGLEV_OFFSET_SEED, key) mod M`, skip = `crc(MAGLEV_SKIP_SEED, key) mod (M - 1) + 1`,
//!   targets in key order take the next free slot of their permutation in rounds.
//!
//! N sweeps 1..=4,096 (`CAP_MAX_TARGETS_PER_LB` of the reference part): every 16th N up to 1,024, every 256th above,
//! every power of two +-1 and the N. An addition or a history step never goes above 4,096 targets.
//!
//! "Moved" is the share of ALL flows (uniformly hashed: the share of slots of the larger array, each slot j of an
//! array of M taken as slot j mod M) whose old target stays but which go elsewhere afterwards. Histories: from N
//! targets, 100 random single changes (add or remove, probability 1/2, never below one target); the worst step and
//! the mean step are reported. Nothing is asserted here (the property tests in buckets.rs hold the bound).
//!
//! `cargo bench -p ironlb-driver --bench hashing` (several minutes on one core). `-- --quick` sweeps fewer N.

use ironlb_driver::buckets::{
    mix64, BoundedRendezvous, BucketHasher, StableMaglev, TargetKey, ARRAY_LOG2, MAGLEV_OFFSET_SEED,
    MAGLEV_SKIP_SEED,
};
use std::collections::HashSet;
use std::hint::black_box;
use std::net::Ipv6Addr;
use std::time::Instant;

/// Largest N swept: `CAP_MAX_TARGETS_PER_LB` of the reference part (docs/hw-spec.md §3.1).
const MAX_N: usize = 4096;

/// A scheme as the driver would run it: the array (index into `keys` per slot) for a target set.
struct Scheme {
    name: &'static str,
    array: fn(&[TargetKey]) -> Vec<u32>,
}

const SCHEMES: [Scheme; 3] = [
    Scheme {
        name: "bounded-hrw",
        array: |keys| BoundedRendezvous.assign(keys, ARRAY_LOG2),
    },
    Scheme {
        name: "old",
        array: |keys| {
            let m_log2 = ((64 * keys.len()).next_power_of_two().trailing_zeros() as u8).clamp(1, 16);
            StableMaglev.assign(keys, m_log2)
        },
    },
    Scheme {
        name: "maglev-65537",
        array: |keys| classic_maglev(keys, 65_537),
    },
];

/// CRC-32 of the 16 key bytes started from `seed` (zlib's `crc32(key, seed)`), as the driver's Maglev permutations.
fn seeded_crc(seed: u32, key: &TargetKey) -> u32 {
    let mut h = crc32fast::Hasher::new_with_initial(seed);
    h.update(&key.0);
    h.finalize()
}

/// Classic Maglev population for a prime `m` (module docs).
fn classic_maglev(keys: &[TargetKey], m: usize) -> Vec<u32> {
    let mut order: Vec<usize> = (0..keys.len()).collect();
    order.sort_unstable_by_key(|&i| keys[i]);
    let perms: Vec<(usize, usize)> = order
        .iter()
        .map(|&i| {
            let offset = seeded_crc(MAGLEV_OFFSET_SEED, &keys[i]) as usize % m;
            let skip = seeded_crc(MAGLEV_SKIP_SEED, &keys[i]) as usize % (m - 1) + 1;
            (offset, skip)
        })
        .collect();
    let mut next: Vec<usize> = perms.iter().map(|p| p.0).collect();
    let mut out = vec![u32::MAX; m];
    let mut filled = 0;
    loop {
        for (r, &(_, skip)) in perms.iter().enumerate() {
            let mut s = next[r];
            while out[s] != u32::MAX {
                s = (s + skip) % m;
            }
            out[s] = order[r] as u32;
            next[r] = (s + skip) % m;
            filled += 1;
            if filled == m {
                return out;
            }
        }
    }
}

/// Random 16-byte keys (`seq = false`) or sequential underlay addresses fd00::base+i (`seq = true`).
fn key(seq: bool, set: u64, i: u64) -> TargetKey {
    if seq {
        TargetKey::from(Ipv6Addr::from(
            (0xfd00u128 << 112) + (u128::from(set) << 24) + u128::from(i),
        ))
    } else {
        let (a, b) = (mix64(set << 32 ^ i), mix64(!(set << 32 ^ i)));
        TargetKey((u128::from(a) << 64 | u128::from(b)).to_be_bytes())
    }
}

/// An LB's array: key per slot.
fn array(s: &Scheme, keys: &[TargetKey]) -> Vec<TargetKey> {
    (s.array)(keys).into_iter().map(|i| keys[i as usize]).collect()
}

/// Share of all flows whose old target is still a target afterwards but which changed target (see module docs).
fn kept_moved(old_keys: &[TargetKey], old: &[TargetKey], new_keys: &[TargetKey], new: &[TargetKey]) -> f64 {
    let before: HashSet<&TargetKey> = old_keys.iter().collect();
    let after: HashSet<&TargetKey> = new_keys.iter().collect();
    let m = old.len().max(new.len());
    let moved = (0..m)
        .filter(|&j| {
            let (o, n) = (&old[j % old.len()], &new[j % new.len()]);
            o != n && after.contains(o) && before.contains(n)
        })
        .count();
    moved as f64 / m as f64
}

fn max_over_mean(keys: &[TargetKey], arr: &[TargetKey]) -> f64 {
    let mut count = std::collections::HashMap::new();
    for k in arr {
        *count.entry(k).or_insert(0usize) += 1;
    }
    let max = count.values().copied().max().unwrap_or(0);
    max as f64 * keys.len() as f64 / arr.len() as f64
}

#[derive(Default)]
struct Moves {
    worst: f64,
    sum: f64,
    n: usize,
}

impl Moves {
    fn add(&mut self, x: f64) {
        self.worst = self.worst.max(x);
        self.sum += x;
        self.n += 1;
    }
    fn mean(&self) -> f64 {
        self.sum / self.n.max(1) as f64
    }
}

struct Row {
    removal: Moves,
    addition: Moves,
    history: Moves,
    balance: f64,
    bytes: usize,
    micros: f64,
}

/// Key sets per N (alternately random and sequential); removals and additions per set; history steps.
const SETS: u64 = 2;
const REMOVALS: usize = 3;
const ADDITIONS: u64 = 3;
const HISTORY: usize = 100;

fn measure(s: &Scheme, n: usize) -> Row {
    let mut row = Row {
        removal: Moves::default(),
        addition: Moves::default(),
        history: Moves::default(),
        balance: 0.0,
        bytes: 0,
        micros: 0.0,
    };
    let mut times = Vec::new();
    for set in 0..SETS {
        let seq = set % 2 == 1;
        let keys: Vec<TargetKey> = (0..n as u64).map(|i| key(seq, set, i)).collect();
        let t = Instant::now();
        let base = black_box(array(s, &keys));
        times.push(t.elapsed().as_secs_f64() * 1e6);
        row.bytes = 4 * base.len();
        row.balance = row.balance.max(max_over_mean(&keys, &base));
        if n > 1 {
            for r in 0..REMOVALS.min(n) {
                let gone = (r * 7919 + set as usize) % n;
                let fewer: Vec<TargetKey> = keys
                    .iter()
                    .enumerate()
                    .filter(|&(i, _)| i != gone)
                    .map(|(_, &k)| k)
                    .collect();
                row.removal
                    .add(kept_moved(&keys, &base, &fewer, &array(s, &fewer)));
            }
        }
        for a in 0..if n < MAX_N { ADDITIONS } else { 0 } {
            let mut more = keys.clone();
            more.push(key(seq, set, 1 << 20 | a));
            row.addition
                .add(kept_moved(&keys, &base, &more, &array(s, &more)));
        }
    }
    // One history per N, on random keys.
    let mut keys: Vec<TargetKey> = (0..n as u64).map(|i| key(false, 7, i)).collect();
    let mut arr = array(s, &keys);
    let mut next_key = 1u64 << 21;
    for step in 0..HISTORY as u64 {
        let r = mix64(n as u64 ^ step << 32);
        let mut next = keys.clone();
        if (r & 1 == 0 || next.len() == 1) && next.len() < MAX_N {
            next.push(key(false, 7, next_key));
            next_key += 1;
        } else {
            next.remove((r >> 1) as usize % next.len());
        }
        let after = array(s, &next);
        row.history.add(kept_moved(&keys, &arr, &next, &after));
        (keys, arr) = (next, after);
    }
    times.sort_by(f64::total_cmp);
    row.micros = times[0];
    row
}

/// Every 16th N up to 1,024 (64th with `--quick`), every 256th (512th) above up to [`MAX_N`], every power of two
/// +-1, and the N.
fn target_counts(quick: bool) -> Vec<usize> {
    let (small, large) = if quick { (64, 512) } else { (16, 256) };
    let mut v: Vec<usize> = (1..=1024).step_by(small).collect();
    v.extend((1024..=MAX_N).step_by(large));
    for k in 1..=12 {
        let p = 1usize << k;
        v.extend([p - 1, p, p + 1]);
    }
    v.extend([3, 5, 9, 17, 33, 65, 100, 129, 1000]);
    v.retain(|&n| (1..=MAX_N).contains(&n));
    v.sort();
    v.dedup();
    v
}

fn pct(x: f64) -> String {
    format!("{:.3}%", x * 100.0)
}

/// Worst and mean of `m` as percentages, or dashes when nothing was measured (no addition at the maximum N).
fn worst_mean(m: &Moves) -> (String, String) {
    if m.n == 0 {
        ("-".into(), "-".into())
    } else {
        (pct(m.worst), pct(m.mean()))
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `--quick` sweeps a coarser grid.
    let quick = std::env::args().any(|a| a == "--quick");
    let ns = target_counts(quick);
    println!("kept flows moved = share of all flows whose target stays but changes; worst / mean over {SETS} key sets x");
    println!("{REMOVALS} removals, x {ADDITIONS} additions, and over {HISTORY} random single changes from N (one history per N).");
    println!("balance = max/mean slots per target; time = fastest of {SETS} computations of the array.\n");
    println!(
        "{:>12} {:>5} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8} {:>9}",
        "scheme",
        "N",
        "KiB",
        "rm worst",
        "rm mean",
        "add worst",
        "add mean",
        "hist wrst",
        "hist mean",
        "max/mean",
        "assign us"
    );
    for s in &SCHEMES {
        let mut all = Row {
            removal: Moves::default(),
            addition: Moves::default(),
            history: Moves::default(),
            balance: 0.0,
            bytes: 0,
            micros: 0.0,
        };
        let mut argmax = (0, 0, 0, 0);
        let t = Instant::now();
        for &n in &ns {
            let r = measure(s, n);
            println!(
                "{:>12} {:>5} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8.3} {:>9.0}",
                s.name,
                n,
                r.bytes,
                worst_mean(&r.removal).0,
                worst_mean(&r.removal).1,
                worst_mean(&r.addition).0,
                worst_mean(&r.addition).1,
                worst_mean(&r.history).0,
                worst_mean(&r.history).1,
                r.balance,
                r.micros
            );
            for (total, part, at) in [
                (&mut all.removal, &r.removal, &mut argmax.0),
                (&mut all.addition, &r.addition, &mut argmax.1),
                (&mut all.history, &r.history, &mut argmax.2),
            ] {
                if part.worst > total.worst {
                    *at = n;
                }
                total.worst = total.worst.max(part.worst);
                total.sum += part.sum;
                total.n += part.n;
            }
            if r.balance > all.balance {
                argmax.3 = n;
            }
            all.balance = all.balance.max(r.balance);
            all.micros = all.micros.max(r.micros);
        }
        println!(
            "{:>12} summary over {} values of N: removal worst {} (N={}) mean {}; addition worst {} (N={}) mean {}; \
             history worst {} (N={}) mean {}; max/mean worst {:.3} (N={}); slowest array {:.0} us; sweep {:.1} s\n",
            s.name,
            ns.len(),
            pct(all.removal.worst),
            argmax.0,
            pct(all.removal.mean()),
            pct(all.addition.worst),
            argmax.1,
            pct(all.addition.mean()),
            pct(all.history.worst),
            argmax.2,
            pct(all.history.mean()),
            all.balance,
            argmax.3,
            all.micros,
            t.elapsed().as_secs_f64()
        );
    }
    // Cold computation of every array of a full default device: 4,096 LBs x 64 targets.
    let t = Instant::now();
    for lb in 0..4096u64 {
        let keys: Vec<TargetKey> = (0..64).map(|i| key(false, 1000 + lb, i)).collect();
        black_box(BoundedRendezvous.assign(&keys, ARRAY_LOG2));
    }
    println!(
        "cold sync, 4096 LBs x 64 targets, bounded-hrw at M = 4096, one core: {:.2} s",
        t.elapsed().as_secs_f64()
    );
}
