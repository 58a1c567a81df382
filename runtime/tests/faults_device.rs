//! The reconciler against a device that fails (issue 12 item 7 and the fault list): a device that stops answering
//! (commands time out) and one that rejects commands, injected by a [`DeviceAccess`] wrapper around the in-process
//! model; and a disk that fills up while allocations are persisted, on a small tmpfs.
//!
//! Assertions are on what was attempted (doorbells rung), statuses and device contents, never on wall-clock time.
//! The dead-device tests wait for the driver's real command timeout once per sync that meets it.

use ironlb_driver::{AccessCounts, AccessError, Device, DeviceAccess, DmaRegion, InprocBackend, SharedModel};
use ironlb_hw::regs::{Status, MB_DOORBELL, MB_STATUS, RING_TAIL};
use ironlb_runtime::alloc::{Allocator, Pools};
use ironlb_runtime::clock::ManualClock;
use ironlb_runtime::manifest::{load_str, Loaded};
use ironlb_runtime::reconcile::{HostConfig, Reconciler};
use ironlb_runtime::status::{ConditionStatus, ConditionType, Reason};
use ironlb_sim::DeviceConfig;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// Switches shared between a test and its [`Faulty`] backend.
#[derive(Default, Clone)]
struct Faults {
    /// The device ignores doorbells and never runs: every command times out.
    dead: Arc<AtomicBool>,
    /// Every mailbox command completes with an error status.
    reject: Arc<AtomicBool>,
    /// Doorbells that reached the device.
    doorbells: Arc<AtomicU64>,
    /// Doorbells rung while dead (commands attempted on a dead device).
    swallowed: Arc<AtomicU64>,
}

struct Faulty {
    inner: InprocBackend,
    f: Faults,
}

impl DeviceAccess for Faulty {
    fn bar_len(&self) -> usize {
        self.inner.bar_len()
    }
    fn read32(&mut self, offset: u32) -> u32 {
        let v = self.inner.read32(offset);
        if offset == MB_STATUS && self.f.reject.load(Ordering::SeqCst) {
            return Status::OutOfRange as u32;
        }
        v
    }
    fn write32(&mut self, offset: u32, value: u32) {
        if offset == MB_DOORBELL || offset == RING_TAIL {
            if self.f.dead.load(Ordering::SeqCst) {
                self.f.swallowed.fetch_add(1, Ordering::SeqCst);
                return;
            }
            self.f.doorbells.fetch_add(1, Ordering::SeqCst);
        }
        self.inner.write32(offset, value);
    }
    fn alloc_dma(&mut self, len: usize) -> Result<DmaRegion, AccessError> {
        self.inner.alloc_dma(len)
    }
    fn counts(&self) -> AccessCounts {
        self.inner.counts()
    }
    fn wait_hint(&mut self) {
        if !self.f.dead.load(Ordering::SeqCst) {
            self.inner.wait_hint();
        }
    }
}

#[path = "common/host.rs"]
mod common_host;

fn host() -> HostConfig {
    common_host::host_with_networks(&[(1, 100)])
}

fn pools() -> Pools {
    Pools::parse(&["203.0.113.0/24".into(), "2001:db8:ff::/64".into()]).unwrap()
}

/// A mailbox-only model (no DMA ring), so that every command passes the fault switches.
fn rig(state: &Path) -> (Reconciler, Faults, SharedModel) {
    let cfg = DeviceConfig::small().without_ring();
    let inner = InprocBackend::new(cfg).unwrap();
    let model = inner.model();
    let f = Faults::default();
    let dev = Device::open(Box::new(Faulty { inner, f: f.clone() })).unwrap();
    let cap = dev.caps().lb_ids;
    let alloc = Allocator::open(&state.join("alloc.json"), pools(), cap).unwrap();
    (Reconciler::new(dev, alloc, &host()).unwrap(), f, model)
}

/// `n` public load balancers, each with one interface as target, on port `port`.
fn objects(n: usize, port: u16) -> Loaded {
    let mut y = String::from(
        "apiVersion: networking.ironcore.dev/v1alpha1\nkind: Network\nmetadata: {name: net}\nspec: {vni: 100}\n",
    );
    for i in 0..n {
        y.push_str(&format!(
            "---
apiVersion: networking.ironcore.dev/v1alpha1
kind: NetworkInterface
metadata: {{name: nic{i}, uid: uid-nic{i}, labels: {{app: a{i}}}}}
spec: {{networkRef: {{name: net}}}}
status: {{state: Available, underlayAddress: \"fd00:9::{i:x}\"}}
---
apiVersion: networking.ironcore.dev/v1alpha1
kind: LoadBalancer
metadata: {{name: lb{i}}}
spec:
  type: Public
  networkRef: {{name: net}}
  ipFamilies: [IPv4]
  networkInterfaceSelector: {{matchLabels: {{app: a{i}}}}}
  ports: [{{protocol: tcp, port: {port}}}]
"
        ));
    }
    let (o, e) = load_str(PathBuf::from("lbs.yaml"), &y);
    assert!(e.is_empty(), "{e:?}");
    o
}

fn reasons(rec: &Reconciler) -> Vec<(ConditionStatus, Reason)> {
    rec.status()
        .values()
        .map(|s| {
            let c = s.condition(ConditionType::Ready).unwrap();
            (c.status, c.reason)
        })
        .collect()
}

fn ports_on_device(rec: &mut Reconciler) -> Vec<u16> {
    let mut v: Vec<u16> = rec
        .device()
        .read_state()
        .unwrap()
        .specs()
        .values()
        .flat_map(|s| s.ranges.iter().map(|r| r.low))
        .collect();
    v.sort();
    v.dedup();
    v
}

/// 20 load balancers edited while the device is dead: one command is attempted (one timeout), not one or two per
/// load balancer; every status says DeviceDown; later syncs send nothing; once the device answers, a probe brings
/// it back and a resync programs the edit.
#[test]
fn a_dead_device_fails_fast_is_reported_and_is_recovered() {
    let state = tempfile::tempdir().unwrap();
    let (mut rec, f, _model) = rig(state.path());
    let r = rec.sync(&objects(20, 80), &[]).unwrap();
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(r.created, 20);
    assert!(rec.device_down().is_none());

    f.dead.store(true, Ordering::SeqCst);
    let edited = objects(20, 81);
    let r = rec.sync(&edited, &[]).unwrap();
    assert_eq!(
        f.swallowed.load(Ordering::SeqCst),
        1,
        "commands attempted on the dead device"
    );
    assert!(rec.device_down().is_some());
    assert_eq!(r.errors.len(), 20, "{:?}", r.errors);
    assert!(
        r.errors.iter().all(|e| e.reason == Reason::DeviceDown),
        "{:?}",
        r.errors
    );
    assert!(
        reasons(&rec)
            .iter()
            .all(|(st, re)| *st == ConditionStatus::False && *re == Reason::DeviceDown),
        "{:?}",
        reasons(&rec)
    );
    // While down, syncs (edits, retries, resyncs) send nothing.
    rec.sync(&objects(20, 82), &[]).unwrap();
    rec.resync().unwrap();
    assert_eq!(f.swallowed.load(Ordering::SeqCst), 1);

    // A probe of the still dead device fails (one command), then the device comes back.
    assert!(!rec.probe_device());
    assert_eq!(rec.device_down().unwrap().failed_probes, 1);
    f.dead.store(false, Ordering::SeqCst);
    assert!(rec.probe_device());
    assert!(rec.device_down().is_none());
    let r = rec.sync(&edited, &[]).unwrap();
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert!(
        reasons(&rec)
            .iter()
            .all(|(st, re)| *st == ConditionStatus::True && *re == Reason::Programmed),
        "{:?}",
        reasons(&rec)
    );
    assert_eq!(ports_on_device(&mut rec), vec![81]);
}

/// A device that rejects commands (it answers, with an error status) is not "down": every load balancer is
/// attempted and gets DeviceError, and nothing is marked down. Once it accepts again, the retry programs them.
#[test]
fn rejected_commands_fail_per_load_balancer_without_marking_the_device_down() {
    let state = tempfile::tempdir().unwrap();
    let (mut rec, f, _model) = rig(state.path());
    rec.sync(&objects(5, 80), &[]).unwrap();
    f.reject.store(true, Ordering::SeqCst);
    let before = f.doorbells.load(Ordering::SeqCst);
    let edited = objects(5, 81);
    let r = rec.sync(&edited, &[]).unwrap();
    assert!(rec.device_down().is_none());
    assert_eq!(r.errors.len(), 5, "{:?}", r.errors);
    assert!(
        r.errors.iter().all(|e| e.reason == Reason::DeviceError),
        "{:?}",
        r.errors
    );
    assert!(
        f.doorbells.load(Ordering::SeqCst) - before >= 5,
        "every load balancer is attempted"
    );
    // The last good state stays on the device.
    f.reject.store(false, Ordering::SeqCst);
    assert_eq!(ports_on_device(&mut rec), vec![80]);
    assert!(rec.status().values().all(|s| s.serving_last_good));
    // Retried once due (the backoff is stepped through the clock, no sleep).
    let clock = ManualClock::new();
    rec.set_clock(clock.shared());
    clock.advance(std::time::Duration::from_secs(60));
    let r = rec.sync(&edited, &[]).unwrap();
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(ports_on_device(&mut rec), vec![81]);
}

/// A small tmpfs mounted by the test (root), unmounted when dropped.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let d = tempfile::tempdir().unwrap();
        let st = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "ironlb-test"])
            .arg(d.path())
            .status()
            .unwrap();
        assert!(
            st.success(),
            "mounting a tmpfs (the disk-full test runs as root, like .ci/run)"
        );
        Tmpfs(d)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(self.0.path()).status();
    }
}

/// The disk fills up while allocations are persisted: the change is refused as a whole (nothing programmed, the
/// allocations on disk and in memory as before, the device unchanged), and goes through once there is room.
#[test]
fn disk_full_while_persisting_allocations_refuses_the_change_and_keeps_the_old_state() {
    let fs = Tmpfs::mount("256k");
    let state = fs.0.path().to_path_buf();
    let (mut rec, _f, _model) = rig(&state);
    rec.sync(&objects(3, 80), &[]).unwrap();
    let alloc_before = std::fs::read(state.join("alloc.json")).unwrap();
    let ids_before: Vec<Option<u32>> = rec.status().values().map(|s| s.lb_id).collect();

    // Fill the file system (the filler's last write fails with ENOSPC).
    let filler = state.join("filler");
    {
        use std::io::Write as _;
        let mut f = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 4096];
        loop {
            match f.write_all(&block) {
                Ok(()) => {}
                Err(e) => {
                    assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
                    break;
                }
            }
        }
        let _ = f.sync_all();
    }
    let e = rec.sync(&objects(6, 80), &[]).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("alloc.json") && msg.contains("No space left on device"),
        "{msg}"
    );
    assert_eq!(std::fs::read(state.join("alloc.json")).unwrap(), alloc_before);
    assert_eq!(
        rec.device().read_state().unwrap().specs().len(),
        3,
        "nothing programmed"
    );
    assert_eq!(
        rec.status().values().map(|s| s.lb_id).collect::<Vec<_>>(),
        ids_before
    );
    assert!(
        rec.allocator().state().lbs.len() == 3,
        "the in-memory allocations were rolled back"
    );

    std::fs::remove_file(&filler).unwrap();
    let r = rec.sync(&objects(6, 80), &[]).unwrap();
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(rec.device().read_state().unwrap().specs().len(), 6);
    drop(rec);
}
