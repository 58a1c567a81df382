//! Issue 12 item 2: a lost allocation state must not re-number live load balancers. A model served over shared
//! memory keeps its tables across daemon runs (as a real device does); with `alloc.json` deleted, or valid but
//! empty, `ironlb run` refuses to start and says how to recover, the device keeps every VIP, and
//! `--remove-unclaimed` is the explicit way to accept new ones.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
#[path = "common/served.rs"]
mod served;
use served::small_model_at;

fn ironlb(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ironlb"))
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .args(args)
        .output()
        .expect("run ironlb");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `(lb_id, VIPs)` of every load balancer the device holds, read through `ironlb dump --backend`.
fn device_lbs(backend: &str) -> String {
    let (code, out, err) = ironlb(&["dump", "--backend", backend, "--table", "lbs"]);
    assert_eq!(code, 0, "{err}");
    out
}

fn run_once(backend: &str, state: &Path, extra: &[&str]) -> (i32, String, String) {
    let mut args = vec![
        "run",
        "--once",
        "--manifests",
        "examples",
        "--backend",
        backend,
        "--state-dir",
        state.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    ironlb(&args)
}

#[test]
fn a_lost_allocation_state_is_refused_not_renumbered() {
    use ironlb_sim::serve;
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("dev");
    let args = small_model_at(&prefix);
    let stop = Arc::new(AtomicBool::new(false));
    let model = {
        let stop = stop.clone();
        std::thread::spawn(move || serve(&args, &stop))
    };
    let backend = format!("sim-shm:{}", prefix.display());
    let t0 = Instant::now();
    while std::fs::read(prefix.with_extension("bar")).map_or(true, |b| b.len() < 4 || b[..4] != *b"ILB1") {
        assert!(t0.elapsed() < Duration::from_secs(10), "model not serving");
        std::thread::sleep(Duration::from_millis(20));
    }
    let state = tempfile::tempdir().unwrap();
    let alloc = state.path().join("alloc.json");
    let (code, _, err) = run_once(&backend, state.path(), &[]);
    assert_eq!(code, 0, "{err}");
    let programmed = device_lbs(&backend);
    assert!(programmed.contains("203.0.113."), "{programmed}");
    let saved = std::fs::read(&alloc).unwrap();
    let version = serde_json::from_slice::<serde_json::Value>(&saved).unwrap()["version"].clone();

    // Deleted, then valid but empty: refused with the recovery, the device untouched.
    for empty in [None, Some(serde_json::json!({ "version": version }).to_string())] {
        match &empty {
            None => std::fs::remove_file(&alloc).unwrap(),
            Some(text) => std::fs::write(&alloc, text).unwrap(),
        }
        let (code, _, err) = run_once(&backend, state.path(), &[]);
        assert_eq!(code, 1, "{err}");
        assert!(
            err.contains("does not claim 2 load balancers the device holds"),
            "{err}"
        );
        assert!(
            err.contains("Restore") && err.contains("--remove-unclaimed"),
            "{err}"
        );
        assert_eq!(
            device_lbs(&backend),
            programmed,
            "a refused start changed the device"
        );
    }

    // Restored from the backup: starts, nothing changes.
    std::fs::write(&alloc, &saved).unwrap();
    let (code, out, err) = run_once(&backend, state.path(), &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("0 created, 0 updated, 0 removed"), "{out}");
    assert_eq!(device_lbs(&backend), programmed);

    // The explicit way to accept new lb_ids and VIPs.
    std::fs::remove_file(&alloc).unwrap();
    let (code, out, err) = run_once(&backend, state.path(), &["--remove-unclaimed"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("2 removed"), "{out}");

    stop.store(true, Ordering::Relaxed);
    model.join().unwrap().unwrap();
}
