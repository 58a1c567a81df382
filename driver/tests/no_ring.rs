//! A device without a DMA command ring (`CAP_RING_MAX_LOG2 = 0`, docs/hw-spec.md §4.2): the driver sends every
//! command and every read through the mailbox. The same history programmed on a device with a ring and on one
//! without must leave byte-identical table memory, with no ring doorbell on the ringless one.

mod common;

use common::*;
use ironlb_driver::{Cmd, Device, DriverError, InprocBackend, LbSpec, SharedModel, ShmBackend, ShmPaths};
use ironlb_hw::entry::Protocol::{Tcp, Udp};
use ironlb_hw::regs::{TableId, BAR0_SIZE};
use ironlb_hw::DOMAIN_PUBLIC;
use ironlb_sim::{Device as Model, DeviceConfig};
use ironlb_sim::{HostMemory, Region};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A history with creates, target changes (bucket arrays rewritten), a resize, range changes and a delete.
fn history() -> Vec<Result<LbSpec, u32>> {
    let a = spec(
        1,
        &[v4("203.0.113.1", DOMAIN_PUBLIC), v4("2001:db8::1", DOMAIN_PUBLIC)],
        &[(Tcp, 80, 80), (Tcp, 443, 443)],
        0..8,
    );
    let b = spec(2, &[v4("10.0.0.2", 7)], &[(Udp, 53, 53)], 100..103);
    let c = spec(
        3,
        &[v4("203.0.113.3", DOMAIN_PUBLIC)],
        &[(Tcp, 1, 65535)],
        200..300,
    );
    let mut a2 = a.clone();
    a2.targets.remove(&ul(3));
    a2.targets.insert(ul(50));
    let mut b2 = b.clone();
    b2.ranges.push(ironlb_hw::entry::RangeEntry {
        protocol: Tcp,
        low: 53,
        high: 53,
    });
    b2.targets.extend((104..140).map(ul));
    vec![Ok(a), Ok(b), Ok(c), Ok(a2), Ok(b2), Err(3)]
}

fn run(dev: &mut Device, steps: &[Result<LbSpec, u32>]) {
    for s in steps {
        match s {
            Ok(spec) => {
                dev.apply(spec)
                    .unwrap_or_else(|e| panic!("apply lb {}: {e}", spec.lb_id));
            }
            Err(id) => dev.remove(*id).unwrap_or_else(|e| panic!("remove lb {id}: {e}")),
        }
    }
}

fn table_bytes(model: &SharedModel) -> Vec<Vec<u8>> {
    let m = model.lock().unwrap();
    TableId::ALL
        .iter()
        .map(|&t| m.tables().get(t, 0, m.tables().entries(t)).unwrap().to_vec())
        .collect()
}

fn inproc_device(cfg: DeviceConfig) -> (Device, SharedModel) {
    let b = InprocBackend::new(cfg).unwrap();
    let model = b.model();
    (Device::open(Box::new(b)).unwrap(), model)
}

#[test]
fn same_history_same_table_memory_with_and_without_ring() {
    let (mut with, with_model) = inproc_device(DeviceConfig::small());
    let (mut without, without_model) = inproc_device(DeviceConfig::small().without_ring());
    assert!(with.has_ring());
    assert!(!without.has_ring());
    assert_eq!(without.caps().ring_max_log2, 0);

    run(&mut with, &history());
    run(&mut without, &history());

    let ring_stats = with.command_stats();
    assert!(
        ring_stats.ring_batches > 0,
        "the reference run used the ring: {ring_stats:?}"
    );
    let stats = without.command_stats();
    assert_eq!(
        (stats.ring_batches, stats.ring_commands),
        (0, 0),
        "a ringless device never sees a doorbell: {stats:?}"
    );
    assert!(stats.mailbox > ring_stats.mailbox, "{stats:?} vs {ring_stats:?}");

    let (a, b) = (table_bytes(&with_model), table_bytes(&without_model));
    for (i, t) in TableId::ALL.iter().enumerate() {
        assert!(
            a[i] == b[i],
            "{} table differs between the ring and mailbox-only paths",
            t.name()
        );
    }
    assert_eq!(
        with.read_state().unwrap(),
        without.read_state().unwrap(),
        "read-back (mailbox reads of whole tables) differs"
    );
    // Whole-table reads above 16 words went through chunked mailbox READs, still no doorbell.
    assert_eq!(without.command_stats().ring_batches, 0);
    assert!(without.lb_counters().unwrap().len() == DeviceConfig::small().caps.lb_ids as usize);
}

#[test]
fn large_writes_and_reads_are_split_into_mailbox_commands() {
    let (mut dev, model) = inproc_device(DeviceConfig::small().without_ring());
    // 100 targets (8 words each: 2 per mailbox command) and 1000 bucket slots (16 per command), in one batch.
    let targets: Vec<u8> = (0..100 * 32).map(|i| (i % 251) as u8).collect();
    let slots: Vec<u8> = (0..1000u32).flat_map(|i| (i * 7).to_le_bytes()).collect();
    let before = dev.command_stats().mailbox;
    dev.submit_for_test(&[
        Cmd::Write {
            table: TableId::Target,
            index: 5,
            data: targets.clone(),
        },
        Cmd::Write {
            table: TableId::Bucket,
            index: 3,
            data: slots.clone(),
        },
        Cmd::WriteWord {
            table: TableId::Bucket,
            index: 3,
            word: 0,
            value: 0xdead,
        },
    ])
    .unwrap();
    assert_eq!(dev.command_stats().mailbox - before, 50 + 63 + 1);
    {
        let m = model.lock().unwrap();
        assert_eq!(m.tables().get(TableId::Target, 5, 100).unwrap(), &targets[..]);
        // The WRITE_WORD ran after the bulk write (commands execute in order).
        let mut want = slots.clone();
        want[0..4].copy_from_slice(&0xdeadu32.to_le_bytes());
        assert_eq!(m.tables().get(TableId::Bucket, 3, 1000).unwrap(), &want[..]);
    }
    let before = dev.command_stats().mailbox;
    let back = dev.read_entries(TableId::Target, 5, 100).unwrap();
    assert_eq!(back, targets);
    assert_eq!(dev.command_stats().mailbox - before, 50);
    assert_eq!(dev.command_stats().ring_batches, 0);
}

#[test]
fn ring_only_submission_is_refused_without_a_ring() {
    let (mut dev, _model) = inproc_device(DeviceConfig::small().without_ring());
    let e = dev
        .submit_ring_for_test(&[Cmd::Fill {
            table: TableId::Bucket,
            index: 0,
            count: 4,
            value: 1,
        }])
        .unwrap_err();
    assert!(matches!(e, DriverError::Invalid(_)), "{e:?}");
    assert!(e.to_string().contains("CAP_RING_MAX_LOG2 = 0"), "{e}");
}

#[test]
fn a_restarted_driver_adopts_a_ringless_device_and_writes_only_the_difference() {
    let (mut dev, model) = inproc_device(DeviceConfig::small().without_ring());
    let steps = history();
    run(&mut dev, &steps[..5]);
    let state = dev.read_state().unwrap();
    drop(dev);

    let mut again = Device::open(Box::new(InprocBackend::attach(model.clone()))).unwrap();
    assert_eq!(again.read_state().unwrap(), state);
    let mut b3 = match &steps[4] {
        Ok(s) => s.clone(),
        Err(_) => unreachable!("step 4 is an apply"),
    };
    // Unchanged: nothing is written.
    let r = again.apply(&b3).unwrap();
    assert_eq!(r.commands, 0, "{r:?}");
    // One target replaced.
    b3.targets.remove(&ul(104));
    b3.targets.insert(ul(999));
    let before = table_bytes(&model);
    again.apply(&b3).unwrap();
    let after = table_bytes(&model);
    assert_ne!(before, after);
    assert_eq!(again.read_state().unwrap().specs()[&2], {
        let mut s = b3.clone();
        s.ranges.sort();
        s
    });
    assert_eq!(again.command_stats().ring_batches, 0);
}

/// A model served from a BAR file only, as `ironlb-sim serve --no-dma` does: no host-memory file exists.
struct BarOnly {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
    paths: ShmPaths,
}

impl Drop for BarOnly {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve_bar_only(cfg: DeviceConfig) -> BarOnly {
    let dir = tempfile::tempdir().unwrap();
    let paths = ShmPaths::from_prefix(&dir.path().join("dev"));
    let bar = Region::file(&paths.bar, BAR0_SIZE, true).unwrap();
    let host = HostMemory {
        region: Region::anon(4096).unwrap(),
        base: cfg.host_iova_base,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    let thread = std::thread::spawn(move || {
        let mut dev = Model::with_regions(cfg, bar, host);
        ironlb_sim::serve_loop(&mut dev, &s2);
    });
    let probe = Region::file(&paths.bar, BAR0_SIZE, false).unwrap();
    let t0 = std::time::Instant::now();
    while probe.read32(0) != Some(ironlb_hw::regs::ID_MAGIC) {
        assert!(t0.elapsed().as_secs() < 10, "served model did not come up");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    BarOnly {
        stop,
        thread: Some(thread),
        _dir: dir,
        paths,
    }
}

#[test]
fn sim_shm_attaches_to_a_model_without_host_memory() {
    let served = serve_bar_only(DeviceConfig::small().without_ring());
    assert!(!served.paths.host.exists());
    let mut dev = Device::open(Box::new(ShmBackend::open(&served.paths).unwrap())).unwrap();
    assert!(!dev.has_ring());
    let steps = history();
    run(&mut dev, &steps);
    let state = dev.read_state().unwrap();
    let (mut reference, _) = inproc_device(DeviceConfig::small());
    run(&mut reference, &steps);
    assert_eq!(state, reference.read_state().unwrap());
    assert_eq!(dev.command_stats().ring_batches, 0);
    drop(dev);

    // A model that does have a ring but whose host-memory file is missing: the error names the file.
    let served = serve_bar_only(DeviceConfig::small());
    let e = Device::open(Box::new(ShmBackend::open(&served.paths).unwrap())).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains(&served.paths.host.display().to_string()), "{msg}");
}
