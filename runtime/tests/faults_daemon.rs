//! The `ironlb run` binary under local faults and hostile neighbours (issue 12 items 7, 9, 10): file modes that do
//! not follow the umask, a lock file other users cannot hold, a control socket that a second daemon does not steal
//! and whose removal does not stop SIGTERM from completing.

use std::io::Read as _;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Bound of every wait.
const BOUND: Duration = Duration::from_secs(30);

#[path = "common/served.rs"]
mod served;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

/// A daemon child process, killed when dropped.
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

impl Running {
    /// Sends SIGTERM and waits (bounded) for the exit; returns the exit code.
    fn terminate(&mut self) -> i32 {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let t0 = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st.code().unwrap_or(-1);
            }
            assert!(
                t0.elapsed() < BOUND,
                "the daemon did not stop within {BOUND:?} of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stderr(&mut self) -> String {
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            e.read_to_string(&mut err).unwrap();
        }
        err
    }
}

/// `ironlb run` under umask 000 (through a shell), with `extra` arguments.
fn daemon(state: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg("umask 000 && exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_ironlb"))
        .args(["run", "--manifests"])
        .arg(examples())
        .arg("--state-dir")
        .arg(state)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

/// Starts a daemon and waits until it has synced and its socket exists.
fn start(state: &Path, socket: &Path, extra: &[&str]) -> Running {
    let mut args = vec!["--socket", socket.to_str().unwrap()];
    args.extend_from_slice(extra);
    let child = daemon(state, &args).spawn().expect("start daemon");
    let mut r = Running {
        child,
        socket: socket.to_path_buf(),
    };
    let t0 = Instant::now();
    while !(state.join("status.json").exists() && r.socket.exists()) {
        if let Ok(Some(st)) = r.child.try_wait() {
            panic!("daemon exited with {st}: {}", r.stderr());
        }
        assert!(t0.elapsed() < BOUND, "daemon did not come up");
        std::thread::sleep(Duration::from_millis(20));
    }
    r
}

fn status(socket: &Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ironlb"))
        .args(["status", "--socket"])
        .arg(socket)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

/// A temporary directory other users can traverse (tempfile's are 0700), so that only the modes ironlb chooses
/// decide what they can reach.
fn open_tempdir() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    d
}

#[test]
fn modes_are_explicit_whatever_the_umask() {
    let d = open_tempdir();
    let state = d.path().join("state");
    let socket = state.join("ironlb.sock");
    let mut r = start(&state, &socket, &["--socket-group", "65534"]);
    assert_eq!(mode(&state), 0o750, "state directory");
    assert_eq!(mode(&state.join("alloc.json")), 0o640, "alloc.json");
    assert_eq!(mode(&state.join("status.json")), 0o640, "status.json");
    assert_eq!(mode(&state.join("ironlb.lock")), 0o600, "lock");
    assert_eq!(mode(&socket), 0o660, "socket");
    assert_eq!(std::fs::metadata(&socket).unwrap().gid(), 65534, "--socket-group");
    assert_eq!(status(&socket).0, 0);
    assert_eq!(r.terminate(), 0);
    assert!(!socket.exists(), "the socket is removed on exit");
}

#[test]
fn an_unknown_socket_group_is_bad_input() {
    let d = open_tempdir();
    let state = d.path().join("state");
    let out = daemon(&state, &["--socket-group", "no-such-group-ironlb", "--once"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-group-ironlb: no such group"));
}

/// Another local user (uid 65534) cannot open, hence cannot flock, the state directory's lock: before, the lock was
/// 0644 in a 0755 directory and `flock -n` by anyone kept the daemon from starting.
#[test]
fn other_users_cannot_take_the_lock() {
    let d = open_tempdir();
    let state = d.path().join("state");
    let socket = state.join("ironlb.sock");
    let mut r = start(&state, &socket, &[]);
    assert_eq!(r.terminate(), 0);
    let lock = state.join("ironlb.lock");
    let out = Command::new("flock")
        .args(["-n", "-s"])
        .arg(&lock)
        .arg("true")
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "user 65534 could open and lock {}",
        lock.display()
    );
    // The daemon's own user can still start it (ready again once it has synced: a new status.json).
    std::fs::remove_file(state.join("status.json")).unwrap();
    let mut again = start(&state, &socket, &[]);
    assert_eq!(again.terminate(), 0);
}

#[test]
fn a_second_daemon_does_not_steal_a_live_socket() {
    let d = open_tempdir();
    let socket = d.path().join("shared.sock");
    let mut first = start(&d.path().join("a"), &socket, &[]);
    let out = daemon(&d.path().join("b"), &["--socket", socket.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("control socket of a running ironlb daemon or agent"),
        "{err}"
    );
    let (code, text, err) = status(&socket);
    assert_eq!(code, 0, "the first daemon no longer answers: {err}");
    assert!(text.contains("my-load-balancer"), "{text}");
    assert_eq!(first.terminate(), 0);
}

#[test]
fn a_stale_socket_is_replaced() {
    let d = open_tempdir();
    let socket = d.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(socket.exists());
    let mut r = start(&d.path().join("s"), &socket, &[]);
    assert_eq!(status(&socket).0, 0);
    assert_eq!(r.terminate(), 0);
}

#[test]
fn a_file_at_the_socket_path_is_not_replaced() {
    let d = open_tempdir();
    let socket = d.path().join("file.sock");
    std::fs::write(&socket, b"precious").unwrap();
    let out = daemon(&d.path().join("s"), &["--socket", socket.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a socket"));
    assert_eq!(std::fs::read(&socket).unwrap(), b"precious");
}

#[test]
fn sigterm_completes_when_the_socket_file_was_removed() {
    let d = open_tempdir();
    let state = d.path().join("state");
    let socket = state.join("ironlb.sock");
    let mut r = start(&state, &socket, &[]);
    std::fs::remove_file(&socket).unwrap();
    assert_eq!(r.terminate(), 0, "{}", r.stderr());
}

/// A served model (sim-shm) in a thread of the test that can be paused: while paused it never looks at its
/// registers, like a hung card or a stopped `ironlb-sim serve` process.
struct PausableModel {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    paused: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PausableModel {
    fn start(prefix: &Path) -> PausableModel {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        let args = served::small_model_at(prefix);
        let mut dev = args.open_device().unwrap();
        let (stop, paused) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        let thread = {
            let (stop, paused) = (stop.clone(), paused.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if paused.load(Ordering::Relaxed) || !dev.poll() {
                        std::thread::sleep(Duration::from_micros(50));
                    }
                }
            })
        };
        PausableModel {
            stop,
            paused,
            thread: Some(thread),
        }
    }

    fn pause(&self, on: bool) {
        self.paused.store(on, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for PausableModel {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Polls `ironlb status` (each answer bounded by the client) until `pred` holds.
fn status_until(socket: &Path, what: &str, pred: impl Fn(&str) -> bool) -> String {
    let t0 = Instant::now();
    loop {
        let (code, out, err) = status(socket);
        assert_eq!(code, 0, "status must keep answering: {err}");
        if pred(&out) {
            return out;
        }
        assert!(
            t0.elapsed() < BOUND,
            "timed out waiting for {what}; last status:\n{out}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The dead device, at the binary level: the served model stops answering under a running daemon and a
/// manifest is edited. `status` keeps answering and says the device is down, `dump` refuses at once; when the model
/// answers again the edit is programmed; with the model stopped again, SIGTERM still ends the daemon.
#[test]
fn a_dead_device_keeps_status_answering_recovers_and_sigterm_completes() {
    let d = open_tempdir();
    let prefix = d.path().join("dev");
    let model = PausableModel::start(&prefix);
    let manifests = d.path().join("m");
    std::fs::create_dir(&manifests).unwrap();
    for e in std::fs::read_dir(examples()).unwrap() {
        let p = e.unwrap().path();
        // Files only: examples/upstream/ is the same set in upstream's shape.
        if !p.is_file() {
            continue;
        }
        std::fs::copy(&p, manifests.join(p.file_name().unwrap())).unwrap();
    }
    let backend = format!("sim-shm:{}", prefix.display());
    let child = Command::new(env!("CARGO_BIN_EXE_ironlb"))
        .args(["run", "--manifests"])
        .arg(&manifests)
        .arg("--state-dir")
        .arg(d.path().join("state"))
        .args(["--socket", d.path().join("s.sock").to_str().unwrap()])
        .args(["--backend", &backend])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let socket = d.path().join("s.sock");
    let mut r = Running {
        child,
        socket: socket.clone(),
    };
    let t0 = Instant::now();
    while !socket.exists() {
        if let Ok(Some(st)) = r.child.try_wait() {
            panic!("daemon exited with {st}: {}", r.stderr());
        }
        assert!(t0.elapsed() < BOUND, "daemon did not come up");
        std::thread::sleep(Duration::from_millis(20));
    }
    status_until(&socket, "the examples programmed", |o| {
        o.contains("my-load-balancer  lb_id") && o.contains("  Ready\n")
    });

    model.pause(true);
    let lb = manifests.join("public-loadbalancer.yaml");
    let text = std::fs::read_to_string(&lb).unwrap();
    std::fs::write(&lb, text.replace("port: 80\n", "port: 8080\n")).unwrap();
    let out = status_until(&socket, "the device marked down", |o| o.contains("device: DOWN"));
    assert!(out.contains("DeviceDown"), "{out}");
    let dump = Command::new(env!("CARGO_BIN_EXE_ironlb"))
        .args(["dump", "--socket"])
        .arg(&socket)
        .output()
        .unwrap();
    assert_eq!(dump.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&dump.stderr).contains("the device is down"));

    model.pause(false);
    status_until(&socket, "the device back and the edit programmed", |o| {
        !o.contains("device: DOWN") && !o.contains("DeviceDown") && o.contains("  Ready\n")
    });
    let dump = Command::new(env!("CARGO_BIN_EXE_ironlb"))
        .args(["dump", "--table", "ranges", "--socket"])
        .arg(&socket)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&dump.stdout).contains("8080"),
        "{}",
        String::from_utf8_lossy(&dump.stdout)
    );

    model.pause(true);
    std::fs::write(&lb, text.replace("port: 80\n", "port: 8081\n")).unwrap();
    status_until(&socket, "down again", |o| o.contains("device: DOWN"));
    assert_eq!(r.terminate(), 0, "{}", r.stderr());
    drop(model);
}
