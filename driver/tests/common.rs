//! Backends for the driver test suite: every test runs against the in-process model and against a model served
//! from shared-memory files by a separate thread (the same protocol as a separate `ironlb-sim serve` process).

#![allow(dead_code)]

use ironlb_driver::{DeviceAccess, InprocBackend, SharedModel, ShmBackend, ShmPaths};
use ironlb_hw::entry::{IcmpPolicy, PortCfg, PortKind, Protocol, RangeEntry};
use ironlb_hw::{LbKey, Vip};
use ironlb_sim::{Device as Model, DeviceConfig};
use ironlb_sim::{HostMemory, Region};
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A served model: stops its thread and removes its files when dropped.
pub struct Served {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
    pub paths: ShmPaths,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Start a model serving its BAR and host memory from files in a fresh temp dir.
pub fn serve(cfg: DeviceConfig) -> Served {
    let dir = tempfile::tempdir().expect("tempdir");
    let paths = ShmPaths {
        bar: dir.path().join("dev.bar"),
        host: dir.path().join("dev.host"),
        host_iova_base: cfg.host_iova_base,
    };
    let bar = Region::file(&paths.bar, ironlb_hw::regs::BAR0_SIZE, true).expect("bar file");
    let host = Region::file(&paths.host, cfg.host_mem_len, true).expect("host file");
    let base = cfg.host_iova_base;
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    let thread = std::thread::spawn(move || {
        let mut dev = Model::with_regions(cfg, bar, HostMemory { region: host, base });
        ironlb_sim::serve_loop(&mut dev, &s2);
    });
    // Ready when the device has loaded its ID register.
    let probe = Region::file(&paths.bar, ironlb_hw::regs::BAR0_SIZE, false).expect("bar map");
    let t0 = std::time::Instant::now();
    while probe.read32(0) != Some(ironlb_hw::regs::ID_MAGIC) {
        assert!(t0.elapsed().as_secs() < 10, "served model did not come up");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    Served {
        stop,
        thread: Some(thread),
        _dir: dir,
        paths,
    }
}

/// A backend under test plus whatever keeps its device alive.
pub struct Bench {
    pub name: &'static str,
    pub access: Box<dyn DeviceAccess>,
    pub model: Option<SharedModel>,
    pub served: Option<Served>,
}

pub fn inproc(cfg: DeviceConfig) -> Bench {
    let b = InprocBackend::new(cfg).expect("inproc model");
    Bench {
        name: "inproc",
        model: Some(b.model()),
        access: Box::new(b),
        served: None,
    }
}

pub fn shm(cfg: DeviceConfig) -> Bench {
    let served = serve(cfg);
    let b = ShmBackend::open(&served.paths).expect("attach to served model");
    Bench {
        name: "sim-shm",
        access: Box::new(b),
        model: None,
        served: Some(served),
    }
}

/// Both backends, each over a fresh device.
pub fn all_backends(cfg: DeviceConfig) -> Vec<Bench> {
    vec![inproc(cfg.clone()), shm(cfg)]
}

pub fn v4(s: &str, domain: u32) -> LbKey {
    LbKey {
        domain,
        vip: Vip::from(s.parse::<IpAddr>().unwrap()),
    }
}

pub fn ul(i: u32) -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, (i >> 16) as u16, i as u16)
}

pub fn spec(
    lb_id: u32,
    vips: &[LbKey],
    ranges: &[(Protocol, u16, u16)],
    targets: impl IntoIterator<Item = u32>,
) -> ironlb_driver::LbSpec {
    ironlb_driver::LbSpec {
        lb_id,
        vips: vips.iter().copied().collect(),
        icmp: IcmpPolicy::default(),
        ranges: ranges
            .iter()
            .map(|&(protocol, low, high)| RangeEntry { protocol, low, high })
            .collect(),
        targets: targets.into_iter().map(ul).collect::<BTreeSet<_>>(),
        draining: Default::default(),
    }
}

/// Port 0 public, port 3 the underlay from fd00:ffff::1 (MTU 9000, hop limit 64): the host setup the packet tests
/// share.
pub fn public_and_underlay(dev: &mut ironlb_driver::Device) {
    for (port, kind) in [(0, PortKind::Public), (3, PortKind::Underlay)] {
        dev.set_port(port, PortCfg { enabled: true, kind }).unwrap();
    }
    dev.set_underlay("fd00:ffff::1".parse().unwrap(), 9000, 64);
}
