//! Issue 12 item 3: load failures are failures. `validate`, `run --once` and the daemon read the same files and
//! agree on every object: a file that does not parse, an unknown kind, a file that cannot be read, and one
//! LoadBalancer defined in two files all exit 2 from `validate` and `run --once`, and the running daemon shows
//! them in `ironlb status`, its metrics and status.json instead of silently dropping or picking.

#[path = "common/scrape.rs"]
mod common_scrape;
use ironlb_runtime::daemon::{Daemon, Request};
use ironlb_runtime::ops::Format;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
#[path = "common/daemon.rs"]
mod common_daemon;
use common_daemon::test_config;

fn ironlb(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ironlb"))
        .args(args)
        .output()
        .expect("run ironlb");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn copy_examples(to: &Path) {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    for e in std::fs::read_dir(examples).unwrap() {
        let p = e.unwrap().path();
        // Files only: examples/upstream/ is the same set in upstream's shape.
        if !p.is_file() {
            continue;
        }
        std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
    }
}

const LB: &str = "apiVersion: networking.ironcore.dev/v1alpha1
kind: LoadBalancer
metadata: {name: twice}
spec:
  type: Public
  ipFamilies: [IPv4]
  networkRef: {name: my-network}
  ports: [{protocol: TCP, port: 8443}]
";

/// The faults: (file name, content or `None` for a FIFO, what the error names).
fn faults() -> Vec<(&'static str, Option<String>, &'static str)> {
    vec![
        (
            "broken.yaml",
            Some("apiVersion: v1\nkind: [\n".into()),
            "broken.yaml",
        ),
        (
            "unknown.yaml",
            Some(
                "apiVersion: networking.ironcore.dev/v1alpha1\nkind: VirtualIP\nmetadata: {name: v}\n".into(),
            ),
            "unsupported apiVersion/kind",
        ),
        // Cannot be read as a manifest (tests run as root, so a mode would not stop a read; a FIFO is refused).
        ("fifo.yaml", None, "fifo.yaml"),
        ("dup-a.yaml", Some(LB.into()), "dup-b.yaml"),
    ]
}

fn plant(dir: &Path, name: &str, content: &Option<String>) {
    match content {
        Some(text) => std::fs::write(dir.join(name), text).unwrap(),
        None => {
            nix::unistd::mkfifo(&dir.join(name), nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap()
        }
    }
    if name == "dup-a.yaml" {
        std::fs::write(dir.join("dup-b.yaml"), LB.replace("8443", "9443")).unwrap();
    }
}

#[test]
fn validate_and_run_once_exit_2_on_every_load_failure() {
    for (name, content, names) in faults() {
        let dir = tempfile::tempdir().unwrap();
        copy_examples(dir.path());
        plant(dir.path(), name, &content);
        let d = dir.path().to_str().unwrap();
        let (code, out, err) = ironlb(&["validate", d]);
        assert_eq!(code, 2, "validate, {name}: {out}{err}");
        assert!(out.contains(names), "validate, {name}: {out}");
        let state = tempfile::tempdir().unwrap();
        let (code, out, err) = ironlb(&[
            "run",
            "--once",
            "--manifests",
            d,
            "--state-dir",
            state.path().to_str().unwrap(),
        ]);
        assert_eq!(code, 2, "run --once, {name}: {out}{err}");
        assert!(out.contains(names), "run --once, {name}: {out}");
        // The good load balancers were programmed all the same.
        assert!(out.contains("default/my-load-balancer"), "{out}");
    }
}

fn daemon(manifests: &Path, state: &Path) -> Daemon {
    let cfg = test_config(manifests, state);
    Daemon::start(cfg).unwrap()
}

fn scrape(d: &Daemon) -> String {
    common_scrape::scrape(d.metrics_addr().unwrap())
}

/// Every load failure but the duplicate (its own test below), added while the daemon runs (the live-event path,
/// not the start-up scan): `ironlb status` (through the control socket) lists it under the manifest errors,
/// status.json has it, `ironlb_manifest_load_errors` counts it, and the good load balancers stay Ready.
#[test]
fn the_daemon_shows_every_load_failure_in_status_and_metrics() {
    for (name, content, names) in faults().into_iter().filter(|f| f.0 != "dup-a.yaml") {
        let dir = tempfile::tempdir().unwrap();
        copy_examples(dir.path());
        let state = tempfile::tempdir().unwrap();
        let mut d = daemon(dir.path(), state.path());
        d.sync().unwrap();
        assert!(scrape(&d).contains("ironlb_manifest_load_errors 0"), "{name}");
        let socket = d.socket_path().to_path_buf();
        // The daemon's own loop (watcher events, debounce, sync), as `ironlb run` runs it.
        let stop = Arc::new(AtomicBool::new(false));
        let runner = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                d.run(&stop).unwrap();
                d
            })
        };
        plant(dir.path(), name, &content);
        let t0 = Instant::now();
        let shown = loop {
            let s = ironlb_runtime::daemon::request(
                &socket,
                &Request::Status {
                    format: Format::Table,
                },
            )
            .unwrap();
            if s.contains("manifest errors (1;") {
                break s;
            }
            assert!(t0.elapsed() < Duration::from_secs(20), "{name} never shown:\n{s}");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(shown.contains(name) && shown.contains(names), "{name}: {shown}");
        assert!(
            shown.contains("default/my-load-balancer  lb_id 0  Ready"),
            "{name}: {shown}"
        );
        stop.store(true, Ordering::Relaxed);
        let d = runner.join().unwrap();
        let json = std::fs::read_to_string(state.path().join("status.json")).unwrap();
        assert!(json.contains(name), "{name}: {json}");
        assert!(scrape(&d).contains("ironlb_manifest_load_errors 1"), "{name}");
    }
}

/// One LoadBalancer in two files: the first definition is programmed (as `validate` keeps the first), and the
/// name is in error everywhere: status, status.json, the reconcile-error metric.
#[test]
fn the_daemon_reports_a_load_balancer_defined_in_two_files() {
    let dir = tempfile::tempdir().unwrap();
    copy_examples(dir.path());
    plant(dir.path(), "dup-a.yaml", &Some(LB.into()));
    let state = tempfile::tempdir().unwrap();
    let mut d = daemon(dir.path(), state.path());
    let rep = d.sync().unwrap();
    let err = rep
        .errors
        .iter()
        .find(|e| e.key.name == "twice")
        .unwrap_or_else(|| panic!("the duplicate is not an error: {rep:?}"));
    assert_eq!(err.reason, ironlb_runtime::status::Reason::InvalidSpec);
    assert!(err.message.contains("dup-b.yaml"), "{}", err.message);
    // Through the control socket, as `ironlb status` asks.
    let status = ironlb_runtime::daemon::request(
        d.socket_path(),
        &Request::Status {
            format: Format::Table,
        },
    )
    .unwrap();
    assert!(status.contains("default/twice  lb_id"), "{status}");
    assert!(
        status.contains("NOT READY (InvalidSpec: defined more than once"),
        "{status}"
    );
    assert!(status.contains("serving its last good configuration"), "{status}");
    let json = std::fs::read_to_string(state.path().join("status.json")).unwrap();
    assert!(json.contains("defined more than once"), "{json}");
    let metrics = scrape(&d);
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("ironlb_reconcile_errors_total{") && l.contains("name=\"twice\"")),
        "{metrics}"
    );
}

/// An unknown field keeps its object out of `run --once` (exit 2, naming the field) unless `--lenient` (or
/// `lenient = true` in the configuration file) makes it a logged warning: then the object is programmed without it.
#[test]
fn run_is_strict_about_unknown_fields_unless_lenient() {
    let dir = tempfile::tempdir().unwrap();
    copy_examples(dir.path());
    std::fs::write(
        dir.path().join("typo.yaml"),
        LB.replace("name: twice", "name: typo")
            .replace("  ports:", "  prots: []\n  ports:"),
    )
    .unwrap();
    let d = dir.path().to_str().unwrap();
    let state = tempfile::tempdir().unwrap();
    let s = state.path().to_str().unwrap();
    let config = state.path().join("ironlb.toml");
    std::fs::write(&config, "lenient = true\n").unwrap();
    let c = config.to_str().unwrap();
    let field = "LoadBalancer default/typo: spec.prots: unknown field (did you mean ports?)";
    for (extra, lenient) in [
        (vec![], false),
        (vec!["--lenient"], true),
        (vec!["--config", c], true),
        (vec!["--config", c, "--lenient=false"], false),
    ] {
        let mut args = vec!["run", "--once", "--manifests", d, "--state-dir", s];
        args.extend_from_slice(&extra);
        let (code, out, err) = ironlb(&args);
        if lenient {
            assert_eq!(code, 0, "{extra:?}: {out}{err}");
            assert!(
                out.contains("default/typo"),
                "{extra:?}: programmed without the field: {out}"
            );
            assert!(
                err.contains("manifest field ignored (lenient)") && err.contains(field),
                "{extra:?}: the warning is logged: {err}"
            );
        } else {
            assert_eq!(code, 2, "{extra:?}: {out}{err}");
            assert!(out.contains(field), "{extra:?}: {out}");
        }
    }
}
