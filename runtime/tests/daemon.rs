//! `ironlb run` as users run it: the binary against a manifest directory on the embedded default, the CLI's
//! diagnostics through its control socket, live manifest edits, status.json, and a kill -9 restart.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
#[path = "common/daemon.rs"]
mod common_daemon;
#[path = "common/pcap.rs"]
mod common_pcap;
use common_daemon::test_config;
#[path = "common/served.rs"]
mod served;
use served::small_model_at;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ironlb"));
    c.current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    // The default log level and colour choice, whatever the environment the tests run in.
    c.env("RUST_LOG", "info").env_remove("NO_COLOR");
    c
}

fn ironlb(args: &[&str]) -> (i32, String, String) {
    let out = bin().args(args).output().expect("run ironlb");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

fn copy_examples(to: &Path) {
    for e in std::fs::read_dir(examples()).unwrap() {
        let p = e.unwrap().path();
        // Files only: examples/upstream/ is the same set in upstream's shape.
        if !p.is_file() {
            continue;
        }
        std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
    }
}

/// A daemon child process, killed (SIGKILL) when dropped.
struct Running {
    child: Child,
    socket: PathBuf,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(manifests: &Path, state: &Path) -> Running {
    start_with(manifests, state, &[])
}

/// [`start`] with more arguments to `ironlb run`.
fn start_with(manifests: &Path, state: &Path, args: &[&str]) -> Running {
    let child = bin()
        .args(["run", "--manifests"])
        .arg(manifests)
        .arg("--state-dir")
        .arg(state)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start daemon");
    let socket = state.join("ironlb.sock");
    let mut r = Running { child, socket };
    // Ready once status.json exists (first sync done) and the socket answers.
    let t0 = Instant::now();
    loop {
        if state.join("status.json").exists() && r.socket.exists() {
            break;
        }
        if let Ok(Some(st)) = r.child.try_wait() {
            let mut err = String::new();
            r.child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
            panic!("daemon exited with {st}: {err}");
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "daemon did not come up");
        std::thread::sleep(Duration::from_millis(20));
    }
    r
}

fn with_socket(r: &Running, args: &[&str]) -> (i32, String, String) {
    let mut a: Vec<&str> = args.to_vec();
    a.push("--socket");
    a.push(r.socket.to_str().unwrap());
    ironlb(&a)
}

/// Polls `f` until it returns true (bounded).
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn run_once_programs_the_examples_and_shows_it() {
    let state = tempfile::tempdir().unwrap();
    let (code, out, err) = ironlb(&[
        "run",
        "--once",
        "--manifests",
        "examples",
        "--state-dir",
        state.path().to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    for want in [
        "default/my-load-balancer",
        "203.0.113.10",
        "2001:db8:ff::10",
        "2607:f0d0:1002:51::4",
        "fd00:1::1",
        "fd00:2::2",
        "device tables:",
        "2 created",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    // Allocations are durable: status.json and alloc.json are there.
    assert!(state.path().join("alloc.json").exists());
    assert!(state.path().join("status.json").exists());
    // One sync is not a daemon; stderr is a pipe, so the logs carry no colour codes.
    assert!(!err.contains("daemon started"), "{err}");
    assert!(err.contains("adopted the device"), "{err}");
    assert!(!err.contains('\x1b'), "{err:?}");
}

/// `--color always` colours even a pipe; `--color never` never does; `NO_COLOR` turns `auto` off (tested in
/// `ironlb_runtime::cli`, as a terminal cannot be had here).
#[test]
fn run_color_always_colours_a_pipe_and_never_does_not() {
    for (choice, coloured) in [("always", true), ("never", false)] {
        let state = tempfile::tempdir().unwrap();
        let (code, out, err) = ironlb(&[
            "run",
            "--once",
            "--color",
            choice,
            "--manifests",
            "examples",
            "--state-dir",
            state.path().to_str().unwrap(),
        ]);
        assert_eq!(code, 0, "{out}{err}");
        assert_eq!(err.contains('\x1b'), coloured, "--color {choice}: {err:?}");
    }
    let (code, _, err) = ironlb(&["run", "--once", "--color", "sometimes", "--manifests", "examples"]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn run_once_with_a_bad_manifest_exits_2_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    copy_examples(dir.path());
    let p = dir.path().join("public-loadbalancer.yaml");
    let text = std::fs::read_to_string(&p)
        .unwrap()
        .replace("port: 80", "port: 70000");
    std::fs::write(&p, text).unwrap();
    let state = tempfile::tempdir().unwrap();
    let (code, out, err) = ironlb(&[
        "run",
        "--once",
        "--manifests",
        dir.path().to_str().unwrap(),
        "--state-dir",
        state.path().to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(out.contains("NOT READY (InvalidSpec"), "{out}");
    assert!(out.contains("spec.ports[0].port"), "{out}");
    // The other load balancer was programmed.
    assert!(
        out.contains("default/my-loadbalancer  lb_id 0  Ready") || out.contains("my-loadbalancer  lb_id"),
        "{out}"
    );
}

#[test]
fn daemon_serves_diagnostics_and_follows_edits() {
    let dir = tempfile::tempdir().unwrap();
    copy_examples(dir.path());
    let state = tempfile::tempdir().unwrap();
    let d = start(dir.path(), state.path());

    let (code, out, err) = with_socket(&d, &["status"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("default/my-load-balancer") && out.contains("Ready"),
        "{out}"
    );

    let (code, out, err) = with_socket(
        &d,
        &[
            "trace",
            "--ingress",
            "public",
            "--packet",
            "tcp 198.51.100.7:40000 -> 203.0.113.10:80",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("load balancer default/my-load-balancer"), "{out}");
    assert!(out.contains("fd00:1::"), "{out}");

    // A trace is not counted.
    let (_, stats, _) = with_socket(&d, &["stats", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&stats).unwrap();
    assert!(
        v["lbs"].as_array().unwrap().iter().all(|l| l["packets"] == 0),
        "{v}"
    );
    assert_eq!(v["tables"][0]["table"], "lb");

    let (code, out, _) = with_socket(&d, &["dump", "--table", "targets"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("default/my-loadbalancer") && out.contains("fd00:2::1"),
        "{out}"
    );

    // Bad input through the socket keeps exit code 2.
    let (code, _, err) = with_socket(
        &d,
        &[
            "trace",
            "--ingress",
            "vni:999",
            "--packet",
            "tcp 1.2.3.4:1 -> 10.0.0.1:80",
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no enabled port"), "{err}");

    // Edit: a NetworkInterface goes away → its target leaves the routing and the device.
    let nics = dir.path().join("network-interfaces.yaml");
    let text = std::fs::read_to_string(&nics).unwrap();
    let docs: Vec<&str> = text
        .split("\n---\n")
        .filter(|d| !d.contains("name: web-2"))
        .collect();
    std::fs::write(&nics, docs.join("\n---\n")).unwrap();
    eventually("web-2 leaves the device", || {
        let (_, out, _) = with_socket(&d, &["dump", "--table", "targets"]);
        out.contains("fd00:2::1") && !out.contains("fd00:2::2")
    });

    // A broken file keeps the last good state (nothing removed), and status says why.
    std::fs::write(dir.path().join("public-loadbalancer.yaml"), "kind: [unclosed\n").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let (_, out, _) = with_socket(&d, &["dump", "--table", "lbs"]);
    assert!(
        out.contains("203.0.113.10"),
        "public LB must stay programmed:\n{out}"
    );
    let status: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state.path().join("status.json")).unwrap()).unwrap();
    assert!(
        status["sourceErrors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e.as_str().unwrap().contains("public-loadbalancer.yaml")),
        "{status}"
    );

    // Deleting the file deletes its load balancer.
    std::fs::remove_file(dir.path().join("public-loadbalancer.yaml")).unwrap();
    eventually("the public LB is removed", || {
        let (_, out, _) = with_socket(&d, &["dump", "--table", "lbs"]);
        !out.contains("203.0.113.10") && out.contains("10.0.0.1")
    });
}

#[test]
fn a_second_daemon_on_the_same_state_dir_is_refused() {
    let state = tempfile::tempdir().unwrap();
    let _d = start(&examples(), state.path());
    let (code, _, err) = ironlb(&[
        "run",
        "--manifests",
        "examples",
        "--state-dir",
        state.path().to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("another ironlb daemon uses this state directory"),
        "{err}"
    );
}

#[test]
fn status_without_a_daemon_reads_status_json() {
    let state = tempfile::tempdir().unwrap();
    let s = state.path().to_str().unwrap();
    let (code, _, err) = ironlb(&["run", "--once", "--manifests", "examples", "--state-dir", s]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = ironlb(&["status", "--state-dir", s, "-o", "json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2, "{v}");
    assert_eq!(v[0]["conditions"][0]["type"], "Ready");
}

#[test]
fn completions_are_generated() {
    let (code, out, _) = ironlb(&["completions", "bash"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("_ironlb") && out.contains("--manifests"),
        "{}",
        &out[..200.min(out.len())]
    );
    let (code, _, _) = ironlb(&["completions", "tcsh"]);
    assert_eq!(code, 2);
}

/// Crafted captures through `examples/` (programmed by the reconciler from the manifests) give the expected
/// verdicts: the public ingress's example packets, with the reason of every drop.
#[test]
fn replay_of_crafted_captures_through_the_examples() {
    let dir = tempfile::tempdir().unwrap();
    let packets: Vec<_> = ironlb_runtime::example::packets()
        .into_iter()
        .filter(|p| p.port == ironlb_runtime::example::PORT_PUBLIC)
        .collect();
    assert!(packets.len() >= 4);
    let input = dir.path().join("in.pcap");
    std::fs::write(
        &input,
        common_pcap::raw_pcap(
            packets
                .iter()
                .enumerate()
                .map(|(i, p)| (Duration::from_millis(i as u64), &p.bytes[..])),
        ),
    )
    .unwrap();
    let verdicts = dir.path().join("v.jsonl");
    let out = dir.path().join("out.pcap");
    let (code, stdout, err) = ironlb(&[
        "replay",
        "--manifests",
        "examples",
        "--ingress",
        "public",
        "--in",
        input.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--verdicts",
        verdicts.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stdout}{err}");
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&verdicts)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), packets.len());
    for (p, v) in packets.iter().zip(&lines) {
        let want_drop = if p.what.ends_with(":22") || p.what.ends_with(":2049") {
            Some("port_not_allowed")
        } else if p.what.contains("icmp") {
            Some("icmp_echo")
        } else if p.what.contains("203.0.113.99") || p.what.contains("(internal VIP)") {
            Some("no_vip")
        } else {
            None
        };
        match want_drop {
            Some(reason) => {
                assert_eq!(v["verdict"], "drop", "{}: {v}", p.what);
                assert_eq!(v["reason"], reason, "{}: {v}", p.what);
            }
            None => {
                assert_eq!(v["verdict"], "forward", "{}: {v}", p.what);
                assert!(
                    v["underlay"].as_str().unwrap().starts_with("fd00:1::"),
                    "{}: {v}",
                    p.what
                );
            }
        }
    }
    // The same capture through the built-in example gives the same verdicts.
    let example_dir = tempfile::tempdir().unwrap();
    let lines2 = common_pcap::replay_example_verdicts(&input, example_dir.path());
    let essence = |v: &serde_json::Value| {
        (
            v["verdict"].clone(),
            v["reason"].clone(),
            v["underlay"].clone(),
            v["flow_hash"].clone(),
        )
    };
    assert_eq!(
        lines.iter().map(essence).collect::<Vec<_>>(),
        lines2.iter().map(essence).collect::<Vec<_>>()
    );
}

/// The daemon's metrics endpoint shows device counters by LoadBalancer name and reconcile figures.
#[test]
fn metrics_show_device_counters_by_name() {
    use ironlb_runtime::daemon::Daemon;
    use std::io::Write as _;
    let state = tempfile::tempdir().unwrap();
    let cfg = test_config(&examples(), state.path());
    let mut d = Daemon::start(cfg).unwrap();
    let rep = d.sync().unwrap();
    assert!(rep.errors.is_empty(), "{rep:?}");
    // One packet to the public VIP.
    let pkt = ironlb_runtime::cli::build_packet("tcp 198.51.100.7:40000 -> 203.0.113.10:80").unwrap();
    let shared = d.shared();
    let model = shared.lock().unwrap().model.clone().unwrap();
    assert!(matches!(
        model.lock().unwrap().process(0, &pkt),
        ironlb_sim::Verdict::Forward { .. }
    ));

    let addr = d.metrics_addr().unwrap();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    let line = body
        .lines()
        .find(|l| l.starts_with("ironlb_lb_packets_total{") && l.contains("name=\"my-load-balancer\""))
        .unwrap_or_else(|| panic!("no per-LB packet counter in:\n{body}"));
    assert!(line.ends_with(" 1"), "{line}");
    assert!(body.contains("ironlb_drops_total{reason=\"no_vip\"} 0"), "{body}");
    assert!(
        body.contains("ironlb_load_balancers{state=\"ready\"} 2"),
        "{body}"
    );
    assert!(body.contains("ironlb_reconciles_total 1"), "{body}");
}

/// A model served over shared memory (as `ironlb-sim serve` runs it), programmed by `ironlb run --once
/// --backend sim-shm:`; `ironlb trace --backend` then traces on a copy of its tables and `stats --backend` reads
/// it; the served device counts none of the traced packets. A daemon driving that device traces on a copy too,
/// naming the load balancer.
#[test]
fn trace_and_stats_of_a_device_opened_directly_and_through_its_daemon() {
    use ironlb_sim::serve;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("dev");
    let args = small_model_at(&prefix);
    let stop = Arc::new(AtomicBool::new(false));
    let model = {
        let stop = stop.clone();
        std::thread::spawn(move || serve(&args, &stop))
    };
    let backend = format!("sim-shm:{}", prefix.display());
    let bar = prefix.with_extension("bar");
    let t0 = Instant::now();
    while std::fs::read(&bar).map_or(true, |b| b.len() < 4 || b[..4] != *b"ILB1") {
        assert!(t0.elapsed() < Duration::from_secs(10), "model not serving");
        std::thread::sleep(Duration::from_millis(20));
    }
    let state = tempfile::tempdir().unwrap();
    let (code, _, err) = ironlb(&[
        "run",
        "--once",
        "--manifests",
        "examples",
        "--backend",
        &backend,
        "--state-dir",
        state.path().to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");

    let trace = |packet: &str| {
        let (code, out, err) = ironlb(&[
            "trace",
            "--backend",
            &backend,
            "--ingress",
            "public",
            "--packet",
            packet,
            "-o",
            "json",
        ]);
        assert_eq!(code, 0, "{err}");
        serde_json::from_str::<serde_json::Value>(&out).unwrap()
    };
    let fwd = trace("tcp 198.51.100.7:40000 -> 203.0.113.10:80");
    assert_eq!(fwd["result"]["verdict"], "forward", "{fwd}");
    let drop = trace("tcp 198.51.100.7:40000 -> 203.0.113.10:81");
    assert_eq!(drop["result"]["reason"], "port_not_allowed", "{drop}");

    let (code, out, err) = ironlb(&["stats", "--backend", &backend, "-o", "json"]);
    assert_eq!(code, 0, "{err}");
    let stats: serde_json::Value = serde_json::from_str(&out).unwrap();
    let packets: u64 = stats["lbs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["packets"].as_u64().unwrap())
        .sum();
    assert_eq!(packets, 0, "traces must not count on the device: {stats}");
    assert_eq!(stats["drops"]["port_not_allowed"], 0, "{stats}");

    // The daemon that drives the device answers a trace on a copy of its tables (the device is not a model of
    // its own process), with the load balancer's name.
    let daemon = start_with(Path::new("examples"), state.path(), &["--backend", &backend]);
    let (code, out, err) = with_socket(
        &daemon,
        &[
            "trace",
            "--ingress",
            "public",
            "--packet",
            "tcp 198.51.100.7:40000 -> 203.0.113.10:80",
            "-o",
            "json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let t: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(t["result"]["verdict"], "forward", "{t}");
    assert_eq!(t["lb"], "default/my-load-balancer", "{t}");
    assert_eq!(t["flow_table"], "not_copied", "{t}");
    std::mem::drop(daemon);

    stop.store(true, Ordering::Relaxed);
    model.join().unwrap().unwrap();
}
