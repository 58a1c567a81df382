//! Counters that cannot tear (docs/hw-spec.md §3.2): a 64-bit drop counter is two 32-bit registers the device keeps
//! incrementing. Here every register read the driver makes in the counter area is preceded by packets the device
//! drops (the increments race the reads, deterministically), starting just below a 2^32 (and a 2^33) boundary. The
//! naive low-then-high read returns values the counter never had; the driver's reads — the v1.1 snapshot, and the
//! high-low-high fallback on a v1.0 device — always return a value between the counter before and after the read.

use ironlb_driver::{AccessCounts, AccessError, Device, DeviceAccess, DmaRegion, InprocBackend, SharedModel};
use ironlb_hw::regs::{DROP_COUNTERS, DROP_SNAPSHOT_DATA, FEATURE_DROP_SNAPSHOT};
use ironlb_hw::DropReason;
use ironlb_sim::DeviceConfig;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

/// The in-process backend, with `race` packets dropped by the device before every read of a counter register
/// (live or snapshot).
struct Racing {
    inner: InprocBackend,
    model: SharedModel,
    race: Arc<AtomicU32>,
}

impl DeviceAccess for Racing {
    fn bar_len(&self) -> usize {
        self.inner.bar_len()
    }
    fn read32(&mut self, offset: u32) -> u32 {
        if (DROP_COUNTERS..DROP_SNAPSHOT_DATA + 0x100).contains(&offset) {
            let mut m = self.model.lock().unwrap();
            for _ in 0..self.race.load(Ordering::Relaxed) {
                // The pipeline is disabled: dropped `device_disabled`.
                m.process(0, &[0x45]);
            }
        }
        self.inner.read32(offset)
    }
    fn write32(&mut self, offset: u32, value: u32) {
        self.inner.write32(offset, value)
    }
    fn alloc_dma(&mut self, len: usize) -> Result<DmaRegion, AccessError> {
        self.inner.alloc_dma(len)
    }
    fn counts(&self) -> AccessCounts {
        self.inner.counts()
    }
    fn wait_hint(&mut self) {
        self.inner.wait_hint()
    }
}

fn racing(cfg: DeviceConfig) -> (Device, SharedModel, Arc<AtomicU32>) {
    let inner = InprocBackend::new(cfg).unwrap();
    let model = inner.model();
    let race = Arc::new(AtomicU32::new(0));
    let dev = Device::open(Box::new(Racing {
        inner,
        model: model.clone(),
        race: race.clone(),
    }))
    .unwrap();
    (dev, model, race)
}

const R: DropReason = DropReason::DeviceDisabled;

fn truth(model: &SharedModel) -> u64 {
    model.lock().unwrap().drop_counters()[R.index()]
}

/// (tears of the naive read, tears of the driver's read) over starts just below 2^32 and 2^33 and 1–3 racing
/// increments per register read.
fn sweep(cfg: DeviceConfig) -> (usize, usize) {
    let (mut dev, model, race) = racing(cfg);
    let (mut naive_torn, mut driver_torn) = (0, 0);
    for boundary in [1u64 << 32, 1 << 33] {
        for below in 0..8 {
            for n in 1..=3 {
                for naive in [true, false] {
                    model.lock().unwrap().preset_drop_counter(R, boundary - below);
                    race.store(n, Ordering::Relaxed);
                    let before = truth(&model);
                    let v = if naive {
                        dev.drop_counter_naive_for_test(R)
                    } else {
                        dev.drop_counters()[&R]
                    };
                    race.store(0, Ordering::Relaxed);
                    let after = truth(&model);
                    if !(before..=after).contains(&v) {
                        if naive {
                            naive_torn += 1;
                        } else {
                            driver_torn += 1;
                            eprintln!("torn: {v:#x} outside [{before:#x}, {after:#x}]");
                        }
                    }
                }
            }
        }
    }
    (naive_torn, driver_torn)
}

#[test]
fn v1_1_snapshot_reads_never_tear() {
    let (naive, driver) = sweep(DeviceConfig::small());
    assert!(naive > 0, "the racing increments must make the naive read tear");
    assert_eq!(driver, 0);
}

#[test]
fn v1_0_high_low_high_reads_never_tear() {
    let cfg = DeviceConfig::small().as_v1_0();
    let (dev, _, _) = racing(cfg.clone());
    assert!(!dev.caps().has(FEATURE_DROP_SNAPSHOT));
    let (naive, driver) = sweep(cfg);
    assert!(naive > 0, "the racing increments must make the naive read tear");
    assert_eq!(driver, 0);
}
