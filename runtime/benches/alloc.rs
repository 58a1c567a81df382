//! Cold allocation of 4,096 dual-stack load balancers in one batch: an lb_id and an IPv4 and an IPv6 public IP
//! each, then the single crash-safe write of the state file (fsync included), starting from an empty allocator.
//! This is the allocation step of a cold reconciler sync.
//!
//! Run: `cargo bench -p ironlb-runtime --bench alloc`.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use ironlb_runtime::alloc::{Allocator, Pools};
use ironlb_runtime::api::IpFamily;
use std::hint::black_box;
use std::path::PathBuf;

const LBS: usize = 4096;

fn cold_batch(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("ironlb-alloc-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path: PathBuf = dir.join("alloc.json");
    let pools = Pools::parse(&["100.64.0.0/16".to_string(), "2001:db8::/64".to_string()]).unwrap();
    let keys: Vec<ironlb_runtime::api::ObjectKey> = (0..LBS)
        .map(|i| ironlb_runtime::api::ObjectKey::new(format!("ns-{}", i % 64), format!("lb-{i:05}")))
        .collect();
    let families = [IpFamily::IPv4, IpFamily::IPv6];

    c.bench_function("cold allocation of 4096 dual-stack LBs in one batch", |b| {
        b.iter_batched(
            || {
                let _ = std::fs::remove_file(&path);
                Allocator::open(&path, pools.clone(), LBS as u32).unwrap()
            },
            |mut a| {
                a.batch(|a| {
                    for k in &keys {
                        black_box(a.lb_id(k).unwrap());
                        black_box(a.public_ips(k, &families).unwrap());
                    }
                })
                .unwrap();
                a
            },
            BatchSize::PerIteration,
        )
    });
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, cold_batch);
criterion_main!(benches);
