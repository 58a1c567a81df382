//! Reconciler benchmarks (docs/performance.md "runtime"), a bench binary that prints its figures:
//!
//! 1. cold sync: N dual-stack public load balancers × T targets from a manifest directory to the device (load,
//!    validate, allocate, program), on a fresh software model;
//! 2. event → device: one target added or removed (a NetworkInterface's state flips), in-process: from the
//!    changed file's objects handed to `Reconciler::apply` to the device holding the new bucket arrays, p50/p99
//!    over many events; once for a NetworkInterface that one load balancer selects, once for one that 63 select;
//! 3. file write → device: the same changes written to a manifest file of a watched directory (the daemon's path:
//!    notify event, debounce, re-read and parse the file, apply), p50/p99.
//!
//! `cargo bench -p ironlb-runtime --bench sync` runs all three at N = 4096, T = 64 (the scale).
//! `-- --lbs N --targets T --events E` changes the scale.

#[path = "common/fleet.rs"]
mod fleet;

use fleet::{host, lb, nic_group, pct, GROUPS, NETWORK, SOLO};
use ironlb_driver::{Device, InprocBackend};
use ironlb_runtime::alloc::{Allocator, Pools};
use ironlb_runtime::manifest::{load_dir, LoadCache};
use ironlb_runtime::reconcile::Reconciler;
use ironlb_runtime::source::{DirSource, Source};
use ironlb_runtime::store::FileChange;
use ironlb_sim::DeviceConfig;
use std::path::Path;
use std::time::{Duration, Instant};

struct Args {
    lbs: usize,
    targets: usize,
    events: usize,
}

fn args() -> Args {
    let f = fleet::number_flags(&["--lbs", "--targets", "--events"]);
    let n = |flag: &str, default: usize| f.get(flag).map_or(default, |v| *v as usize);
    Args {
        lbs: n("--lbs", 4096),
        targets: n("--targets", 64),
        events: n("--events", 1000),
    }
}

/// Writes the manifests: one Network, `GROUPS` groups of `targets` NetworkInterfaces (one file per group), and
/// `lbs` public dual-stack load balancers (one file per 256), LB i selecting group i mod GROUPS, except LB 0,
/// which alone selects the group SOLO.
fn write_manifests(dir: &Path, a: &Args) {
    std::fs::write(dir.join("network.yaml"), NETWORK).unwrap();
    for g in 0..GROUPS {
        std::fs::write(
            dir.join(format!("nics-{g:03}.yaml")),
            nic_group(g, a.targets, None),
        )
        .unwrap();
    }
    std::fs::write(dir.join("nics-solo.yaml"), nic_group(SOLO, a.targets, None)).unwrap();
    let mut text = String::new();
    for i in 0..a.lbs {
        text.push_str(&lb(i));
        if i % 256 == 255 || i + 1 == a.lbs {
            std::fs::write(dir.join(format!("lbs-{:03}.yaml", i / 256)), &text).unwrap();
            text.clear();
        }
    }
}

fn reconciler(cfg: DeviceConfig, state: &Path) -> Reconciler {
    let dev = Device::open(Box::new(InprocBackend::new(cfg).unwrap())).unwrap();
    let cap = dev.caps().lb_ids;
    let pools = Pools::parse(&["198.18.0.0/15".into(), "2001:db8:ff::/64".into()]).unwrap();
    let alloc = Allocator::open(&state.join("alloc.json"), pools, cap).unwrap();
    Reconciler::new(dev, alloc, &host()).unwrap()
}

/// Prints p50 and p99 of `lat` after `what`.
fn report(what: &str, lat: &mut [Duration]) {
    println!(
        "{what}: p50 {:.3} ms, p99 {:.3} ms",
        pct(lat, 0.5).as_secs_f64() * 1e3,
        pct(lat, 0.99).as_secs_f64() * 1e3
    );
}

fn main() {
    let a = args();
    let dir = tempfile::tempdir().unwrap();
    write_manifests(dir.path(), &a);
    let state = tempfile::tempdir().unwrap();
    println!(
        "runtime sync bench: {} dual-stack public LBs x {} targets ({} NetworkInterfaces in {} groups)",
        a.lbs,
        a.targets,
        GROUPS * a.targets,
        GROUPS
    );

    // 1. Cold sync.
    let t0 = Instant::now();
    let mut rec = reconciler(DeviceConfig::default(), state.path());
    let t_open = t0.elapsed();
    let (objects, errors) = load_dir(dir.path());
    assert!(errors.is_empty(), "{errors:?}");
    let t_load = t0.elapsed();
    let rep = rec.sync(&objects, &[]).unwrap();
    let t_total = t0.elapsed();
    assert!(
        rep.errors.is_empty(),
        "{:?}",
        &rep.errors[..rep.errors.len().min(3)]
    );
    assert_eq!(rep.created, a.lbs);
    println!(
        "cold sync: {:.2} s total (open device {:.0} ms, load+parse {:.0} ms, validate+allocate+program {:.2} s), {} commands",
        t_total.as_secs_f64(),
        t_open.as_secs_f64() * 1e3,
        (t_load - t_open).as_secs_f64() * 1e3,
        (t_total - t_load).as_secs_f64(),
        rep.commands
    );

    // 2. Event → device, in-process: one NetworkInterface's state flips between Available and Pending (a target
    // leaves or comes back), handed to the reconciler as the changed file's new objects.
    // (file, group, load balancers selecting it): the group only LB 0 selects, and a shared one.
    let cases = [
        ("nics-solo.yaml", SOLO, 1),
        ("nics-000.yaml", 0, a.lbs.div_ceil(GROUPS) - 1),
    ];
    let mut down: Option<usize> = None;
    let nic_change = |path: &Path, group: usize, down: Option<usize>| {
        let content = ironlb_runtime::manifest::load_str(path, &nic_group(group, a.targets, down));
        vec![FileChange {
            path: path.to_path_buf(),
            content: Some(content),
        }]
    };
    for (file, group, affected) in cases {
        let path = dir.path().join(file);
        let mut lat = Vec::with_capacity(a.events);
        for e in 0..a.events {
            down = if down.is_some() { None } else { Some(e % a.targets) };
            let change = nic_change(&path, group, down);
            let t = Instant::now();
            let rep = rec.apply(change).unwrap();
            lat.push(t.elapsed());
            assert_eq!(rep.updated, affected, "{rep:?}");
        }
        report(
            &format!("event -> device (one target of {affected} LB(s) added/removed, in-process)"),
            &mut lat,
        );
        // Leave the group as it was written.
        if down.is_some() {
            down = None;
            rec.apply(nic_change(&path, group, None)).unwrap();
        }
    }

    // 3. File write → device through the watched directory (the daemon's path: notify event, debounce, re-read
    // the changed file, parse it, apply).
    let mut src = DirSource::with_debounce(dir.path(), Duration::from_millis(2)).unwrap();
    let mut cache = LoadCache::default();
    let initial = cache.changes(&src.snapshot().unwrap());
    let rep = rec.apply(initial).unwrap();
    assert_eq!(rep.created + rep.updated + rep.removed, 0, "{rep:?}");
    for (file, group, affected) in cases {
        let path = dir.path().join(file);
        let mut lat = Vec::with_capacity(a.events);
        for e in 0..a.events {
            down = if down.is_some() { None } else { Some(e % a.targets) };
            let t = Instant::now();
            std::fs::write(&path, nic_group(group, a.targets, down)).unwrap();
            while !src.wait_change(Duration::from_secs(5)).unwrap() {}
            let changes = cache.changes(&src.snapshot().unwrap());
            let rep = rec.apply(changes).unwrap();
            lat.push(t.elapsed());
            assert_eq!(rep.updated, affected, "{rep:?}");
        }
        report(
            &format!(
                "file write -> device (one target of {affected} LB(s), watched directory, 2 ms debounce)"
            ),
            &mut lat,
        );
        if down.is_some() {
            down = None;
            std::fs::write(&path, nic_group(group, a.targets, None)).unwrap();
            while !src.wait_change(Duration::from_secs(5)).unwrap() {}
            rec.apply(cache.changes(&src.snapshot().unwrap())).unwrap();
        }
    }
}
