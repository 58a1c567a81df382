//! A device reset under a running daemon (issue 14 item 3, issue 12 item 6): the daemon notices it — through
//! GENERATION on a contract v1.1 part, by its effects on a v1.0 part — and re-programs every LoadBalancer without
//! operator action, with a log line, `ironlb_device_resets_total` and the `DeviceRestored` condition in
//! `ironlb status` and status.json.

#[path = "common/scrape.rs"]
mod common_scrape;
use ironlb_runtime::daemon::{Daemon, DaemonConfig, Request, StatusFile};
use ironlb_runtime::ops::Format;
use ironlb_sim::DeviceConfig;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
#[path = "common/daemon.rs"]
mod common_daemon;
use common_daemon::test_config;
#[path = "common/served.rs"]
mod served;
use served::small_model_at;

/// Upper bound for anything the daemon does here (it checks the device every HEALTH_INTERVAL = 1 s).
const BOUND: Duration = Duration::from_secs(30);

fn config(manifests: &Path, state: &Path, device_config: DeviceConfig) -> DaemonConfig {
    DaemonConfig {
        device_config,
        ..test_config(manifests, state)
    }
}

fn examples_into(dir: &Path) {
    let ex = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    for e in std::fs::read_dir(ex).unwrap() {
        let p = e.unwrap().path();
        // Files only: examples/upstream/ is the same set in upstream's shape.
        if !p.is_file() {
            continue;
        }
        std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
    }
}

fn scrape(d: &Daemon) -> String {
    common_scrape::scrape(d.metrics_addr().unwrap())
}

/// What the device holds, by lb_id.
fn device_specs(d: &Daemon) -> std::collections::BTreeMap<u32, ironlb_driver::LbSpec> {
    let sh = d.shared();
    let mut sh = sh.lock().unwrap();
    sh.rec.device().read_state().unwrap().specs()
}

/// No LB entry in the model's table memory (read past the driver, whose ring a reset has stopped).
fn lb_table_empty(d: &Daemon) -> bool {
    let sh = d.shared();
    let model = sh.lock().unwrap().model.clone().expect("in-process model");
    let m = model.lock().unwrap();
    let t = m.tables();
    let n = t.entries(ironlb_hw::regs::TableId::Lb);
    t.get(ironlb_hw::regs::TableId::Lb, 0, n)
        .unwrap()
        .iter()
        .all(|b| *b == 0)
}

fn inject_reset(d: &Daemon) {
    let sh = d.shared();
    let model = sh.lock().unwrap().model.clone().expect("in-process model");
    model.lock().unwrap().reset();
}

fn reset_is_restored(device_config: DeviceConfig) {
    let m = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    examples_into(m.path());
    let mut d = Daemon::start(config(m.path(), state.path(), device_config)).unwrap();
    d.sync().unwrap();
    let before = device_specs(&d);
    assert!(
        before.len() >= 2,
        "the examples program load balancers: {before:?}"
    );
    assert!(!d.check_device(), "no reset yet");

    inject_reset(&d);
    assert!(lb_table_empty(&d), "the reset emptied the device");
    assert!(d.check_device(), "reset detected");
    assert_eq!(device_specs(&d), before, "every load balancer re-programmed");
    assert!(!d.check_device(), "nothing more to restore");
    d.sync().unwrap();
    let st = StatusFile::read(state.path()).unwrap();
    let c = &st.device_conditions[0];
    assert_eq!(
        (c.kind, c.reason),
        (
            ironlb_runtime::status::ConditionType::DeviceRestored,
            ironlb_runtime::status::Reason::DeviceReset
        )
    );
    assert!(
        c.message.contains("load balancers re-programmed"),
        "{}",
        c.message
    );
    assert!(st.load_balancers.iter().all(|s| s.ready()));
    let status = d
        .shared()
        .lock()
        .unwrap()
        .handle(&Request::Status {
            format: Format::Table,
        })
        .unwrap();
    assert!(status.contains("device: DeviceRestored DeviceReset"), "{status}");
    assert!(scrape(&d).contains("ironlb_device_resets_total 1"), "metric");
}

#[test]
fn a_reset_of_a_v1_1_device_is_restored() {
    reset_is_restored(DeviceConfig::small());
}

#[test]
fn a_reset_of_a_v1_0_device_is_restored() {
    reset_is_restored(DeviceConfig::small().as_v1_0());
}

/// The daemon's own loop (`Daemon::run`) notices a reset injected while it runs, within its health interval, and
/// restores without any call from outside.
#[test]
fn the_running_daemon_restores_without_operator_action() {
    let m = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    examples_into(m.path());
    let mut d = Daemon::start(config(m.path(), state.path(), DeviceConfig::small())).unwrap();
    d.sync().unwrap();
    let before = device_specs(&d);
    let shared = d.shared();
    let stop = Arc::new(AtomicBool::new(false));
    let runner = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            d.run(&stop).unwrap();
            d
        })
    };
    let model = shared.lock().unwrap().model.clone().unwrap();
    model.lock().unwrap().reset();
    let t0 = Instant::now();
    loop {
        let restored = shared.lock().unwrap().device_resets == 1;
        if restored {
            break;
        }
        assert!(
            t0.elapsed() < BOUND,
            "the running daemon did not restore the device"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let specs = shared.lock().unwrap().rec.device().read_state().unwrap().specs();
    assert_eq!(specs, before);
    // The restore also reaches status.json without a manifest change.
    let t0 = Instant::now();
    while StatusFile::read(state.path())
        .unwrap()
        .device_conditions
        .is_empty()
    {
        assert!(t0.elapsed() < BOUND, "status.json lacks DeviceRestored");
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    let d = runner.join().unwrap();
    assert!(scrape(&d).contains("ironlb_device_resets_total 1"));
}

/// Issue 12 item 6 as reported: `ironlb run --backend sim-shm:...` on a served model; the model is stopped and
/// started again on the same files (an empty device in a new generation). The daemon notices within its health
/// interval and re-programs everything; `ironlb status` shows the `DeviceRestored` condition and every LB Ready.
#[test]
fn a_restarted_served_model_is_reprogrammed_by_the_running_daemon() {
    use ironlb_sim::{serve, ServeArgs};
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("dev");
    let args = small_model_at(&prefix);
    let start_model = |args: ServeArgs| {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let h = std::thread::spawn(move || serve(&args, &s));
        (stop, h)
    };
    let read_gen = || {
        std::fs::read(prefix.with_extension("bar"))
            .ok()
            .filter(|b| b.len() > 0x40 && b[..4] == *b"ILB1")
            .map(|b| u32::from_le_bytes(b[0x3C..0x40].try_into().unwrap()))
    };
    let (stop, model) = start_model(args.clone());
    let t0 = Instant::now();
    while read_gen().is_none() {
        assert!(t0.elapsed() < BOUND, "model not serving");
        std::thread::sleep(Duration::from_millis(20));
    }
    let state = tempfile::tempdir().unwrap();
    let socket = state.path().join("s.sock");
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_ironlb"))
        .args(["run", "--manifests"])
        .arg(&examples)
        .arg("--backend")
        .arg(format!("sim-shm:{}", prefix.display()))
        .arg("--state-dir")
        .arg(state.path())
        .arg("--socket")
        .arg(&socket)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    impl Kill {
        /// SIGTERM, a bounded wait for exit 0, and the daemon's log (stderr).
        fn terminate(&mut self) -> String {
            use std::io::Read as _;
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.0.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            )
            .unwrap();
            let t0 = Instant::now();
            let st = loop {
                if let Some(st) = self.0.try_wait().unwrap() {
                    break st;
                }
                assert!(t0.elapsed() < BOUND, "the daemon did not stop on SIGTERM");
                std::thread::sleep(Duration::from_millis(20));
            };
            let mut err = String::new();
            self.0.stderr.take().unwrap().read_to_string(&mut err).unwrap();
            assert_eq!(st.code(), Some(0), "{err}");
            err
        }
        /// SIGKILL and the daemon's log (stderr), for a failure message.
        fn kill_for_log(&mut self) -> String {
            use std::io::Read as _;
            let _ = self.0.kill();
            let _ = self.0.wait();
            let mut err = String::new();
            if let Some(mut e) = self.0.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            err
        }
    }
    let t0 = Instant::now();
    while !(state.path().join("status.json").exists() && socket.exists()) {
        assert!(daemon.try_wait().unwrap().is_none(), "daemon exited");
        assert!(t0.elapsed() < BOUND, "daemon did not come up");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut daemon_guard = Kill(daemon);
    let status = || {
        let out = Command::new(env!("CARGO_BIN_EXE_ironlb"))
            .args(["status", "--socket"])
            .arg(&socket)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // What the device holds, read back from its table memory through the daemon.
    let dump = || {
        let out = Command::new(env!("CARGO_BIN_EXE_ironlb"))
            .args(["dump", "--table", "all", "--socket"])
            .arg(&socket)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        // Target entry indexes are the driver's choice and may differ after a re-programming; what they hold
        // (address, slots in the bucket array) is compared.
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| match l.trim_start().strip_prefix("target ") {
                Some(rest) => format!("target {}", rest.trim_start().split_once(' ').map_or("", |x| x.1)),
                None => l.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let before = read_gen().unwrap();
    assert!(!status().contains("DeviceRestored"));
    let programmed = dump();
    assert!(programmed.contains("203.0.113.10"), "{programmed}");

    // Stop the model and serve the same files again: a new device generation with empty tables.
    stop.store(true, Ordering::Relaxed);
    model.join().unwrap().unwrap();
    let (stop, model) = start_model(args);
    let t0 = Instant::now();
    while read_gen() == Some(before) || read_gen().is_none() {
        assert!(t0.elapsed() < BOUND, "model did not come back");
        std::thread::sleep(Duration::from_millis(20));
    }
    let t0 = Instant::now();
    loop {
        let s = status();
        if s.contains("device: DeviceRestored DeviceReset") {
            break;
        }
        if t0.elapsed() >= BOUND {
            let log = daemon_guard.kill_for_log();
            panic!("the daemon did not restore the restarted model:\n{s}\ndaemon log:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let t0 = Instant::now();
    loop {
        let st = StatusFile::read(state.path()).unwrap();
        if let Some(c) = st.device_conditions.first() {
            assert!(st.load_balancers.iter().all(|s| s.ready()));
            assert!(
                c.message.contains("2 load balancers re-programmed"),
                "{}",
                c.message
            );
            break;
        }
        assert!(t0.elapsed() < BOUND, "status.json lacks DeviceRestored");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Not only the status: the device holds every entry again (the daemon said Ready over an empty one).
    assert_eq!(dump(), programmed, "the restarted model was not re-programmed");
    // And the daemon said so in its log.
    let err = daemon_guard.terminate();
    assert!(
        err.contains("device reset detected") && err.contains("re-programmed every load balancer"),
        "no log line for the reset:\n{err}"
    );
    stop.store(true, Ordering::Relaxed);
    model.join().unwrap().unwrap();
}
