//! Bucket-array hashing figures: balance, disruption and speed of Maglev vs StableMaglev at N = 64.
//!
//! `cargo bench -p ironlb-driver --bench hashing` prints a table; nothing is asserted (the unit tests in
//! driver/src/tables/buckets.rs assert the bounds).

use ironlb_driver::tables::buckets::{changed_slots, BucketHasher, Maglev, StableMaglev, TargetKey};
use std::hint::black_box;
use std::net::Ipv6Addr;
use std::time::Instant;

const N: usize = 64;
/// Key sets per family; disruption is averaged over all of them.
const SETS: u64 = 4;
/// Targets removed per set (every N/REMOVALS-th by input position), one at a time.
const REMOVALS: usize = 16;
/// Keys added per set, one at a time.
const ADDS: u64 = 8;
/// Timed assign() calls per row, each on its own key set; the median is printed.
const RUNS: usize = 51;

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn random_key(seed: u64) -> TargetKey {
    let (a, b) = (splitmix(seed), splitmix(seed ^ 0x5555_5555_5555_5555));
    TargetKey((u128::from(a) << 64 | u128::from(b)).to_be_bytes())
}

/// Key families: independent random 16-byte keys, and sequential underlay addresses fd00::base+1.. (what a
/// deployment typically has, and CRC-32 is linear).
fn key_set(family: &str, set: u64, n: usize) -> Vec<TargetKey> {
    match family {
        "random" => (0..n as u64).map(|i| random_key(set << 32 | i)).collect(),
        _ => {
            let base = (0xfd00u128 << 112) + u128::from(set) * 0x1_0000;
            (1..=n as u128)
                .map(|i| TargetKey::from(Ipv6Addr::from(base + i)))
                .collect()
        }
    }
}

struct Row {
    max_mean: f64,
    min_mean: f64,
    removal: f64,
    removal_worst: f64,
    add: f64,
    micros: f64,
}

fn moved(h: &dyn BucketHasher, a: &[TargetKey], aa: &[u32], b: &[TargetKey], m_log2: u8) -> usize {
    changed_slots(a, aa, b, &h.assign(b, m_log2)).len()
}

fn measure(h: &dyn BucketHasher, family: &str, m_log2: u8) -> Row {
    let m = 1usize << m_log2;
    let mean = m as f64 / N as f64;
    let (mut max_mean, mut min_mean) = (0f64, f64::MAX);
    let (mut removals, mut adds) = (Vec::new(), Vec::new());
    for set in 0..SETS {
        let keys = key_set(family, set, N);
        let base = h.assign(&keys, m_log2);
        let mut count = vec![0usize; N];
        for &i in &base {
            count[i as usize] += 1;
        }
        max_mean = max_mean.max(*count.iter().max().unwrap() as f64 / mean);
        min_mean = min_mean.min(*count.iter().min().unwrap() as f64 / mean);
        for r in (0..N).step_by(N / REMOVALS) {
            let fewer: Vec<TargetKey> = keys
                .iter()
                .enumerate()
                .filter(|&(i, _)| i != r)
                .map(|(_, &k)| k)
                .collect();
            removals.push(moved(h, &keys, &base, &fewer, m_log2) as f64 / mean);
        }
        for a in 0..ADDS {
            let mut more = keys.clone();
            more.push(random_key(0xadd0_0000_0000 + set * 100 + a));
            adds.push(moved(h, &keys, &base, &more, m_log2) as f64 / (m as f64 / (N + 1) as f64));
        }
    }
    let mut times: Vec<f64> = (0..RUNS as u64)
        .map(|run| {
            let keys = key_set(family, 1000 + run, N);
            let t = Instant::now();
            black_box(h.assign(black_box(&keys), m_log2));
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    times.sort_by(f64::total_cmp);
    let avg = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    Row {
        max_mean,
        min_mean,
        removal: avg(&removals),
        removal_worst: removals.iter().copied().fold(0.0, f64::max),
        add: avg(&adds),
        micros: times[RUNS / 2],
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is accepted and ignored.
    let hashers: [&dyn BucketHasher; 2] = [&Maglev, &StableMaglev];
    println!(
        "N = {N} targets; disruption = slots whose target changed / ideal (M/N removed, M/(N+1) added),"
    );
    println!("averaged over {SETS} key sets x {REMOVALS} removals / x {ADDS} additions; time = median of {RUNS} assign() calls on distinct key sets.");
    println!();
    println!(
        "{:>7} {:>7} {:>14} {:>9} {:>9} {:>9} {:>10} {:>9} {:>11}",
        "M", "keys", "scheme", "max/mean", "min/mean", "remove", "rm worst", "add", "assign us"
    );
    for m_log2 in [12u8, 14, 16] {
        for family in ["random", "seq"] {
            for h in hashers {
                let r = measure(h, family, m_log2);
                println!(
                    "{:>7} {:>7} {:>14} {:>9.3} {:>9.3} {:>8.2}x {:>9.2}x {:>8.2}x {:>11.1}",
                    1u32 << m_log2,
                    family,
                    h.name(),
                    r.max_mean,
                    r.min_mean,
                    r.removal,
                    r.removal_worst,
                    r.add,
                    r.micros
                );
            }
        }
    }
    let keys = key_set("random", 0, N);
    for h in hashers {
        let t = Instant::now();
        for lb in 0..4096u64 {
            let mut k = keys.clone();
            k[0] = random_key(0xc01d_0000_0000 + lb);
            black_box(h.assign(&k, 14));
        }
        println!(
            "cold sync, 4096 LBs x {N} targets, M = 16384, one core: {:>14} {:.2} s",
            h.name(),
            t.elapsed().as_secs_f64()
        );
    }
}
