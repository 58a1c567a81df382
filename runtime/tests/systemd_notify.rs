//! `ironlb run` under systemd's `Type=notify` protocol: `READY=1` only after the first sync (status.json written),
//! SIGHUP (`systemctl reload`) → `RELOADING=1`, a sync that reads a file added meanwhile, `READY=1`; SIGTERM →
//! `STOPPING=1` and exit 0. The supervisor's socket is a datagram socket of the test's own (`NOTIFY_SOCKET`).

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The next notification, waiting at most a minute (a cold debug build syncs the examples in well under that).
fn next(sock: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).expect("a notification within the timeout");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn ready_after_first_sync_reload_on_sighup_stopping_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("manifests");
    std::fs::create_dir(&manifests).unwrap();
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples");
    for f in ["networks.yaml", "network-interfaces.yaml", "prefixes.yaml"] {
        std::fs::copy(format!("{examples}/{f}"), manifests.join(f)).unwrap();
    }
    let state = dir.path().join("state");
    let notify_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&notify_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(60))).unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_ironlb"))
        .args(["run", "--backend", "inproc", "--manifests"])
        .arg(&manifests)
        .arg("--state-dir")
        .arg(&state)
        .env("NOTIFY_SOCKET", &notify_path)
        .env_remove("IRONLB_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = Pid::from_raw(child.id() as i32);

    let ready = next(&sock);
    assert!(ready.contains("READY=1"), "{ready:?}");
    assert!(
        ready.contains("STATUS=synced: 0 load balancers programmed, 0 errors"),
        "{ready:?}"
    );
    assert!(
        state.join("status.json").exists(),
        "READY before the first status was written"
    );

    // A load balancer appears; the reload's sync programs it (whether or not the watcher saw it first).
    std::fs::copy(
        format!("{examples}/public-loadbalancer.yaml"),
        manifests.join("public-loadbalancer.yaml"),
    )
    .unwrap();
    kill(pid, Signal::SIGHUP).unwrap();
    let mut seen = Vec::new();
    loop {
        let m = next(&sock);
        seen.push(m.clone());
        if m.contains("READY=1") {
            break;
        }
    }
    assert!(seen.iter().any(|m| m.contains("RELOADING=1")), "{seen:?}");
    let status = std::fs::read_to_string(state.join("status.json")).unwrap();
    assert!(status.contains("\"name\": \"my-load-balancer\""), "{status}");

    kill(pid, Signal::SIGTERM).unwrap();
    assert_eq!(next(&sock).trim_end(), "STOPPING=1");
    let code = child.wait().unwrap();
    assert!(code.success(), "{code}");
}
