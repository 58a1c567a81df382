//! End-to-end harness (docs/testing.md "End to end"): real network namespaces, the model serving TUN ports
//! (`ironlb-sim serve --tun`), the `ironlb` daemon programming it over sim-shm, the underlay fabric
//! (`ironlb-fabric`, [`fabric`]), target VMs running real servers, and real clients (curl, nmap, ping, scapy).
//!
//! Every process is started inside a namespace of the test (so a run killed before its teardown can be cleaned
//! up by the next one, [`cleanup_stale`]), every command is bounded by a timeout, and [`topology::Topology`]
//! tears everything down on drop, also when the test panics.

pub mod capture;
pub mod fabric;
pub mod topology;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Prefix of every namespace and shared-memory file the e2e tests create: `ilbe2e-PID-N-...`.
pub const PREFIX: &str = "ilbe2e";

/// The Debian interpreter (it has python3-scapy; a `python3` earlier on PATH may not).
pub const PYTHON: &str = "/usr/bin/python3";

/// Why the e2e tests cannot run here, if they cannot.
pub fn unavailable() -> Option<String> {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(str::to_string));
    if uid.is_none_or(|l| l.split_whitespace().nth(1) != Some("0")) {
        return Some("not running as root (network namespaces and TUN devices need it)".into());
    }
    if !Path::new("/dev/net/tun").exists() {
        return Some("/dev/net/tun does not exist (no TUN support)".into());
    }
    static PROBES: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = PROBES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let probe = format!("{PREFIX}-{}-probe{n}", std::process::id());
    match Command::new("ip").args(["netns", "add", &probe]).output() {
        Ok(o) if o.status.success() => {
            let _ = Command::new("ip").args(["netns", "del", &probe]).output();
        }
        Ok(o) => {
            return Some(format!(
                "`ip netns add` fails: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ))
        }
        Err(e) => return Some(format!("`ip` (iproute2) cannot run: {e}")),
    }
    for tool in ["curl", "nmap", "tshark", "ping", PYTHON] {
        if which(tool).is_none() {
            return Some(format!(
                "{tool} is not installed (.ci/run installs the e2e tools)"
            ));
        }
    }
    let scapy = Command::new(PYTHON).args(["-c", "import scapy"]).output();
    if !scapy.is_ok_and(|o| o.status.success()) {
        return Some(format!("{PYTHON} cannot import scapy (Debian python3-scapy)"));
    }
    None
}

fn which(tool: &str) -> Option<PathBuf> {
    if tool.contains('/') {
        return Path::new(tool).exists().then(|| PathBuf::from(tool));
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(tool))
        .find(|p| p.exists())
}

/// True when the test may run. Otherwise prints why and returns false (skip) — or panics under `CI=true`, where
/// a skipped e2e test must fail the run.
pub fn should_run(test: &str) -> bool {
    let Some(why) = unavailable() else {
        return true;
    };
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: e2e environment unavailable under CI=true: {why}");
    }
    eprintln!("SKIPPED {test}: {why}");
    false
}

/// The workspace's built binaries (`ironlb`, `ironlb-sim`) beside the test executable.
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>");
    let bin = dir.join(name);
    assert!(
        bin.exists(),
        "{} is missing: build it first (`cargo build -p ironlb-runtime -p ironlb-sim --bins`; \
         `cargo nextest run --workspace` builds it)",
        bin.display()
    );
    bin
}

/// Path of a helper script in tests/e2e.
pub fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("e2e").join(name)
}

/// Remove what e2e runs that were killed before their teardown left behind: namespaces (and the processes in
/// them) and shared-memory files whose creating test process is gone.
pub fn cleanup_stale() {
    let dead = |name: &str| {
        let pid = name
            .strip_prefix(PREFIX)
            .and_then(|r| r.strip_prefix('-'))?
            .split('-')
            .next()?;
        let pid: u32 = pid.parse().ok()?;
        (!Path::new(&format!("/proc/{pid}")).exists()).then_some(())
    };
    let list = run_quiet(None, &["ip", "netns", "list"]);
    for ns in list.lines().filter_map(|l| l.split_whitespace().next()) {
        if dead(ns).is_some() {
            kill_netns_processes(ns);
            let _ = run_quiet(None, &["ip", "netns", "del", ns]);
        }
    }
    if let Ok(dir) = std::fs::read_dir("/dev/shm") {
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if dead(&name).is_some() {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// SIGKILL every process inside namespace `ns`.
pub fn kill_netns_processes(ns: &str) {
    for pid in run_quiet(None, &["ip", "netns", "pids", ns]).split_whitespace() {
        let _ = Command::new("kill").args(["-9", pid]).output();
    }
}

fn command(ns: Option<&str>, argv: &[&str]) -> Command {
    let mut c = match ns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]);
            c.args(argv);
            c
        }
        None => {
            let mut c = Command::new(argv[0]);
            c.args(&argv[1..]);
            c
        }
    };
    c.stdin(Stdio::null());
    c
}

/// Run `argv` (inside `ns`, if given) to completion, killed after `timeout`.
pub fn run_bounded(ns: Option<&str>, argv: &[&str], timeout: Duration) -> Output {
    let mut child = command(ns, argv)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {argv:?}: {e}"));
    // Read both pipes on threads so a chatty child cannot block on a full pipe.
    let mut out = child.stdout.take().expect("piped");
    let mut err = child.stderr.take().expect("piped");
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let t0 = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait for child") {
            break st;
        }
        if t0.elapsed() > timeout {
            let _ = child.kill();
            let st = child.wait().expect("wait for killed child");
            eprintln!("{argv:?} killed after {timeout:?}");
            break st;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    Output {
        status,
        stdout: t_out.join().unwrap_or_default(),
        stderr: t_err.join().unwrap_or_default(),
    }
}

/// Run and require success; returns stdout.
pub fn run_ok(ns: Option<&str>, argv: &[&str]) -> String {
    let o = run_bounded(ns, argv, Duration::from_secs(20));
    assert!(
        o.status.success(),
        "{}{argv:?} failed ({}): {}",
        ns.map(|n| format!("[netns {n}] ")).unwrap_or_default(),
        o.status,
        String::from_utf8_lossy(&o.stderr).trim()
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Run ignoring failure; returns stdout.
pub fn run_quiet(ns: Option<&str>, argv: &[&str]) -> String {
    String::from_utf8_lossy(&run_bounded(ns, argv, Duration::from_secs(20)).stdout).into_owned()
}

/// A long-running child process, SIGKILLed and reaped when dropped. Its stderr (and stdout unless piped) goes to
/// a log file, named in failure messages.
pub struct Proc {
    /// What it is, for messages.
    pub name: String,
    child: Child,
    /// Its log file.
    pub log: PathBuf,
    lines: Option<mpsc::Receiver<String>>,
}

impl Proc {
    /// Start `argv` inside `ns`. With `piped_stdout`, stdout lines are available through [`Proc::line`].
    pub fn spawn(name: &str, ns: Option<&str>, argv: &[&str], log_dir: &Path, piped_stdout: bool) -> Proc {
        let log = log_dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("create log file");
        let mut c = command(ns, argv);
        c.stderr(file.try_clone().expect("dup log file"));
        if piped_stdout {
            c.stdout(Stdio::piped());
        } else {
            c.stdout(file);
        }
        let mut child = c
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({argv:?}): {e}"));
        let lines = child.stdout.take().map(|out| {
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
            rx
        });
        Proc {
            name: name.to_string(),
            child,
            log,
            lines,
        }
    }

    /// The next stdout line (piped processes only), waiting at most `timeout`.
    pub fn line(&mut self, timeout: Duration) -> Option<String> {
        self.lines.as_ref()?.recv_timeout(timeout).ok()
    }

    /// Wait for a stdout line equal to `want`; panics (with the log) if the process exits or `timeout` passes.
    pub fn expect_line(&mut self, want: &str, timeout: Duration) {
        let t0 = Instant::now();
        while t0.elapsed() < timeout {
            match self.line(Duration::from_millis(100)) {
                Some(l) if l.trim() == want => return,
                _ => self.assert_running(),
            }
        }
        panic!(
            "{} did not print {want:?} within {timeout:?}; log:\n{}",
            self.name,
            self.log_text()
        );
    }

    /// Panic with the log if the process has exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(st)) = self.child.try_wait() {
            panic!("{} exited with {st}; log:\n{}", self.name, self.log_text());
        }
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// True once the process has exited.
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Send SIGTERM and wait (bounded) for it to exit; SIGKILL after `timeout`.
    pub fn terminate(&mut self, timeout: Duration) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .output();
        let t0 = Instant::now();
        while t0.elapsed() < timeout {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.kill();
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Poll `f` until it returns `Some` (bounded by `timeout`), or panic naming `what`.
pub fn eventually<T>(what: &str, timeout: Duration, f: impl FnMut() -> Option<T>) -> T {
    poll_until(timeout, f).unwrap_or_else(|| panic!("timed out after {timeout:?} waiting for {what}"))
}

/// Poll `f` every 25 ms until it returns `Some`, or `None` once `timeout` has passed (for a caller whose own
/// assertions afterwards say better what went wrong than a timeout would).
pub fn poll_until<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let t0 = Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if t0.elapsed() >= timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}
