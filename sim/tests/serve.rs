//! The model as its own process: `serve_loop` over shared-memory files, driven from a second mapping of the same
//! files exactly as a driver in another process does; and the real `ironlb-sim serve` binary.

use ironlb_hw::entry::ring::{Completion, Descriptor, CPL_SIZE};
use ironlb_hw::entry::{bytes_to_words, words_to_bytes};
use ironlb_hw::regs::*;
use ironlb_sim::serve_loop;
use ironlb_sim::{Device, DeviceConfig};
use ironlb_sim::{HostMemory, Region};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(20);

/// Poll `cond` until it holds; panics after [`TIMEOUT`] (never an unbounded loop).
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(t0.elapsed() < TIMEOUT, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_micros(100));
    }
}

/// The driver's side: its own mappings of the model's files.
struct Client {
    bar: Region,
    host: HostMemory,
    seq: u32,
}

impl Client {
    fn open(bar: &Path, host: &Path, host_len: usize, base: u64) -> Client {
        Client {
            bar: Region::file(bar, BAR0_SIZE, false).expect("map BAR file"),
            host: HostMemory {
                region: Region::file(host, host_len, false).expect("map host file"),
                base,
            },
            seq: 0,
        }
    }

    fn r(&self, off: u32) -> u32 {
        self.bar.read32(off as usize).unwrap()
    }

    fn w(&self, off: u32, v: u32) {
        assert!(self.bar.write32(off as usize, v));
    }

    fn wait_ready(&self) {
        wait_for("ID_MAGIC and STATUS.READY", || {
            self.r(ID) == ID_MAGIC && self.r(STATUS) & STATUS_READY != 0
        });
    }

    /// One mailbox command with the §4.1 handshake; returns MB_STATUS.
    fn mailbox(&mut self, op: Opcode, table: TableId, index: u32, count: u32, arg: u32, data: &[u32]) -> u32 {
        for (i, v) in data.iter().enumerate() {
            self.w(MB_DATA + 4 * i as u32, *v);
        }
        self.w(MB_OPCODE, op as u32);
        self.w(MB_TABLE, table as u32);
        self.w(MB_INDEX, index);
        self.w(MB_COUNT, count);
        self.w(MB_ARG, arg);
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        fence(Ordering::SeqCst);
        self.w(MB_DOORBELL, seq);
        wait_for("MB_DONE_SEQ", || self.r(MB_DONE_SEQ) == seq);
        fence(Ordering::SeqCst);
        self.r(MB_STATUS)
    }

    fn mb_data(&self, n: usize) -> Vec<u32> {
        (0..n as u32).map(|i| self.r(MB_DATA + 4 * i)).collect()
    }
}

fn lb_entry_words() -> Vec<u32> {
    (0..16u32)
        .map(|i| 0x1000_0000 * (i % 7) + i * 0x0101 + 1)
        .collect()
}

#[test]
fn serve_loop_over_shared_files() {
    let dir = tempfile::tempdir().unwrap();
    let bar_path = dir.path().join("dev.bar");
    let host_path = dir.path().join("dev.host");
    let cfg = DeviceConfig::small();
    let (len, base) = (cfg.host_mem_len, cfg.host_iova_base);
    let bar = Region::file(&bar_path, BAR0_SIZE, true).unwrap();
    let host = Region::file(&host_path, len, true).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = Arc::clone(&stop);
    let model = std::thread::spawn(move || {
        let mut dev = Device::with_regions(cfg, bar, HostMemory { region: host, base });
        serve_loop(&mut dev, &stop2);
        dev
    });

    let mut c = Client::open(&bar_path, &host_path, len, base);
    c.wait_ready();
    assert_eq!(c.r(CAP_LB_BUCKETS), DeviceConfig::small().caps.lb_buckets);

    // Mailbox: WRITE one LB entry, READ it back.
    let entry = lb_entry_words();
    assert_eq!(
        c.mailbox(Opcode::Write, TableId::Lb, 37, 1, 0, &entry),
        Status::Ok as u32
    );
    assert_eq!(
        c.mailbox(Opcode::Read, TableId::Lb, 37, 1, 0, &[0; 16]),
        Status::Ok as u32
    );
    assert_eq!(c.mb_data(16), entry);
    // An error comes back through the same handshake.
    assert_eq!(
        c.mailbox(Opcode::Write, TableId::LbCounter, 0, 1, 0, &[]),
        Status::BadTable as u32
    );

    // Ring: one batch of 3 descriptors.
    let ring = base + 0x1000;
    let cpl = base + 0x800;
    let payload = base + 0x2000;
    let readback = base + 0x3000;
    c.w(RING_BASE_LO, ring as u32);
    c.w(RING_BASE_HI, (ring >> 32) as u32);
    c.w(RING_SIZE_LOG2, 3);
    c.w(RING_CPL_LO, cpl as u32);
    c.w(RING_CPL_HI, (cpl >> 32) as u32);
    c.w(RING_TAIL, 0);
    fence(Ordering::SeqCst);
    c.w(RING_CTRL, RING_CTRL_ENABLE);
    let targets = words_to_bytes(&(0..24u32).map(|i| 0xABCD_0000 + i).collect::<Vec<_>>());
    c.host.write(payload, &targets).unwrap();
    let descs = [
        Descriptor {
            opcode: Opcode::Write,
            table: Some(TableId::Target),
            index: 10,
            count: 3,
            arg: 0,
            iova: payload,
            value: 0,
        },
        Descriptor {
            opcode: Opcode::Fill,
            table: Some(TableId::Bucket),
            index: 100,
            count: 256,
            arg: 10,
            iova: 0,
            value: 0,
        },
        Descriptor {
            opcode: Opcode::Read,
            table: Some(TableId::Lb),
            index: 37,
            count: 1,
            arg: 0,
            iova: readback,
            value: 0,
        },
    ];
    for (i, d) in descs.iter().enumerate() {
        c.host.write(ring + 32 * i as u64, &d.emit()).unwrap();
    }
    fence(Ordering::SeqCst);
    c.w(RING_TAIL, 3);
    let mut rec = Completion::default();
    wait_for("the completion record", || {
        let mut b = [0u8; CPL_SIZE];
        c.host.read(cpl, &mut b).unwrap();
        rec = Completion::parse(&b);
        rec.seq != 0
    });
    assert_eq!(
        rec,
        Completion {
            head: 3,
            status: 0,
            err_index: 0,
            seq: 1
        }
    );
    assert_eq!(c.r(RING_HEAD), 3);
    let mut back = [0u8; 64];
    c.host.read(readback, &mut back).unwrap();
    assert_eq!(
        bytes_to_words(&back),
        entry,
        "ring READ of the mailbox-written entry"
    );

    stop.store(true, Ordering::SeqCst);
    let dev = model.join().expect("model thread");
    assert_eq!(dev.tables().get(TableId::Target, 10, 3).unwrap(), &targets[..]);
    let slots = bytes_to_words(dev.tables().get(TableId::Bucket, 99, 258).unwrap());
    assert_eq!(slots[0], 0);
    assert!(slots[1..257].iter().all(|s| *s == 10));
    assert_eq!(slots[257], 0);
    let counts = dev.command_counts();
    assert_eq!((counts.mailbox, counts.descriptors), (3, 3));
    assert_eq!(counts.entries_written, 1 + 3 + 256);
}

/// Kills the child if a test fails before it exited.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

impl Guard {
    fn wait_exit(&mut self) -> std::process::ExitStatus {
        let mut status = None;
        wait_for("ironlb-sim to exit", || {
            status = self.0.try_wait().unwrap();
            status.is_some()
        });
        status.unwrap()
    }

    fn stderr(&mut self) -> String {
        let mut s = String::new();
        if let Some(mut e) = self.0.stderr.take() {
            std::io::Read::read_to_string(&mut e, &mut s).unwrap();
        }
        s
    }
}

fn sim(args: &[&str]) -> Guard {
    Guard(
        Command::new(env!("CARGO_BIN_EXE_ironlb-sim"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ironlb-sim"),
    )
}

fn serve_args<'a>(bar: &'a Path, host: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "serve",
        "--bar",
        bar.to_str().unwrap(),
        "--host-mem",
        host.to_str().unwrap(),
        "--small",
    ];
    v.extend_from_slice(extra);
    v
}

/// Map the model's files once it has created and sized them.
fn attach(bar: &PathBuf, host: &PathBuf, len: usize, base: u64) -> Client {
    let mut client = None;
    wait_for("the model's files", || {
        let sized = |p: &PathBuf, n: usize| std::fs::metadata(p).is_ok_and(|m| m.len() == n as u64);
        if sized(bar, BAR0_SIZE) && sized(host, len) {
            client = Some(Client::open(bar, host, len, base));
        }
        client.is_some()
    });
    client.unwrap()
}

#[test]
fn binary_serves_until_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let bar = dir.path().join("ironlb-bar");
    let host = dir.path().join("ironlb-host");
    let base = 0x2_0000_0000u64;
    let mut child = sim(&serve_args(
        &bar,
        &host,
        &["--host-mem-len", "1M", "--host-iova-base", "0x200000000"],
    ));
    let mut c = attach(&bar, &host, 1 << 20, base);
    c.wait_ready();
    assert_eq!(c.r(CAP_LB_BUCKETS), DeviceConfig::small().caps.lb_buckets);

    let entry = lb_entry_words();
    assert_eq!(
        c.mailbox(Opcode::Write, TableId::Lb, 3, 1, 0, &entry),
        Status::Ok as u32
    );
    assert_eq!(
        c.mailbox(Opcode::Read, TableId::Lb, 3, 1, 0, &[0; 16]),
        Status::Ok as u32
    );
    assert_eq!(c.mb_data(16), entry);

    // SIGTERM: clean exit, READY cleared, files left in place.
    let pid = child.0.id().to_string();
    let kill = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("run kill");
    assert!(kill.success());
    let status = child.wait_exit();
    assert!(status.success(), "exit status {status:?}");
    let err = child.stderr();
    let line = format!(
        "ironlb-sim: serving BAR {} host memory {} (1048576 bytes at IOVA 0x200000000)",
        bar.display(),
        host.display()
    );
    assert!(err.contains(&line), "stderr: {err}");
    assert_eq!(c.r(STATUS) & STATUS_READY, 0, "READY cleared on exit");
    assert_eq!(std::fs::metadata(&bar).unwrap().len(), BAR0_SIZE as u64);
    assert_eq!(std::fs::metadata(&host).unwrap().len(), 1 << 20);

    // Restarting over the same files reuses them (and resets the device: the table is gone).
    let mut again = sim(&serve_args(
        &bar,
        &host,
        &["--host-mem-len", "1M", "--host-iova-base", "0x200000000"],
    ));
    c.wait_ready();
    c.seq = c.r(MB_DONE_SEQ);
    assert_eq!(
        c.mailbox(Opcode::Read, TableId::Lb, 3, 1, 0, &[7; 16]),
        Status::Ok as u32
    );
    assert_eq!(c.mb_data(16), vec![0; 16], "a restarted model starts from reset");
    let _ = again.0.kill();
    let _ = again.wait_exit();

    // A host-memory file of another size is refused, not truncated.
    let mut wrong = sim(&serve_args(&bar, &host, &["--host-mem-len", "2M"]));
    let status = wrong.wait_exit();
    assert!(!status.success());
    assert!(wrong.stderr().contains("host-memory file"));
    assert_eq!(std::fs::metadata(&host).unwrap().len(), 1 << 20);
}

#[test]
fn binary_help_documents_readiness() {
    let out = Command::new(env!("CARGO_BIN_EXE_ironlb-sim"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for want in [
        "--bar",
        "--host-mem",
        "--host-mem-len",
        "--host-iova-base",
        "--small",
        "READY",
        "ID register",
    ] {
        assert!(text.contains(want), "help lacks {want:?}:\n{text}");
    }
    let bad = Command::new(env!("CARGO_BIN_EXE_ironlb-sim"))
        .args([
            "serve",
            "--bar-offset",
            "4096",
            "--bar",
            "/nonexistent/x",
            "--host-mem",
            "/nonexistent/y",
        ])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--bar-offset"));
}
