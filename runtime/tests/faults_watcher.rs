//! Fault injection into the manifest watcher (issue 12 item 8): special files and oversized files with manifest
//! names, present at start-up and created while watching. Each must be refused with an error naming the file and
//! what it is, without blocking the watcher and without reading past the size limit. The watcher runs in a thread
//! so that a blocking `open()` (the FIFO of the issue) fails the test instead of hanging it.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};
#[path = "common/daemon.rs"]
mod common_daemon;
use common_daemon::test_config;

use ironlb_runtime::source::read::MAX_MANIFEST_BYTES;
use ironlb_runtime::source::{DirSource, Snapshot, Source};

/// Bound of every wait (generous for a loaded CI machine; a blocked watcher never answers).
const BOUND: Duration = Duration::from_secs(20);

fn mkfifo(p: &Path) {
    nix::unistd::mkfifo(p, nix::sys::stat::Mode::from_bits_truncate(0o644))
        .unwrap_or_else(|e| panic!("mkfifo {}: {e}", p.display()));
}

/// Runs `f` on a fresh DirSource of `dir` in a thread and returns its result, failing if it takes over [`BOUND`].
fn bounded<T: Send + 'static>(dir: &Path, f: impl FnOnce(&mut DirSource) -> T + Send + 'static) -> T {
    let dir = dir.to_path_buf();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut s = DirSource::with_debounce(&dir, Duration::from_millis(20)).expect("DirSource");
        let _ = tx.send(f(&mut s));
        // Keep the source (and its watcher) alive until the answer is taken.
        std::mem::forget(s);
    });
    rx.recv_timeout(BOUND)
        .expect("the watcher blocked (or panicked) instead of refusing a special file")
}

/// Waits (bounded) for a snapshot satisfying `pred`.
fn wait_for(s: &mut DirSource, pred: impl Fn(&Snapshot) -> bool) -> Snapshot {
    let deadline = Instant::now() + BOUND;
    loop {
        let snap = s.snapshot().unwrap();
        if pred(&snap) || Instant::now() >= deadline {
            return snap;
        }
        s.wait_change(deadline.saturating_duration_since(Instant::now()))
            .unwrap();
    }
}

fn error_of<'a>(snap: &'a Snapshot, p: &Path) -> Option<&'a str> {
    snap.errors
        .iter()
        .find(|e| e.path == p)
        .map(|e| e.message.as_str())
}

const LB: &str = "apiVersion: networking.ironcore.dev/v1alpha1\nkind: Network\nmetadata: {namespace: default, name: n}\nspec: {vni: 100}\n";

/// The special and oversized files of the issue, created in `dir`; returns (path, what the error must say).
fn plant(dir: &Path) -> Vec<(PathBuf, &'static str)> {
    let fifo = dir.join("zz.yaml");
    mkfifo(&fifo);
    let zero = dir.join("zero.yaml");
    symlink("/dev/zero", &zero).unwrap();
    let big = dir.join("big.yaml");
    let f = fs::File::create(&big).unwrap();
    f.set_len(MAX_MANIFEST_BYTES + 1).unwrap();
    vec![
        (fifo, "FIFO"),
        (zero, "character device"),
        (big, "over the limit"),
    ]
}

#[test]
fn special_files_present_at_start_are_refused_with_a_clear_error() {
    let d = tempfile::tempdir().unwrap();
    fs::write(d.path().join("good.yaml"), LB).unwrap();
    let planted = plant(d.path());
    let (snap, refused) = bounded(d.path(), |s| (s.snapshot().unwrap(), s.refused()));
    assert_eq!(
        snap.files.keys().collect::<Vec<_>>(),
        [&d.path().join("good.yaml")],
        "only the regular file is content"
    );
    for (p, says) in &planted {
        let e =
            error_of(&snap, p).unwrap_or_else(|| panic!("no error for {}: {:?}", p.display(), snap.errors));
        assert!(e.contains(says), "{}: {e}", p.display());
    }
    let mut want: Vec<PathBuf> = planted.into_iter().map(|(p, _)| p).collect();
    want.sort();
    assert_eq!(refused, want);
}

#[test]
fn special_files_created_while_watching_are_refused_without_blocking() {
    let d = tempfile::tempdir().unwrap();
    fs::write(d.path().join("good.yaml"), LB).unwrap();
    let dir = d.path().to_path_buf();
    let (snap, refused, planted) = bounded(d.path(), move |s| {
        let planted = plant(&dir);
        let snap = wait_for(s, |snap| snap.errors.len() >= planted.len());
        (snap, s.refused(), planted)
    });
    assert_eq!(snap.files.len(), 1, "{:?}", snap.files.keys());
    for (p, says) in &planted {
        let e =
            error_of(&snap, p).unwrap_or_else(|| panic!("no error for {}: {:?}", p.display(), snap.errors));
        assert!(e.contains(says), "{}: {e}", p.display());
    }
    assert_eq!(refused.len(), planted.len());
}

#[test]
fn a_good_file_replaced_by_a_special_one_keeps_its_last_good_content() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("a.yaml");
    fs::write(&p, LB).unwrap();
    let p2 = p.clone();
    let snap = bounded(d.path(), move |s| {
        fs::remove_file(&p2).unwrap();
        symlink("/dev/zero", &p2).unwrap();
        wait_for(s, |snap| !snap.errors.is_empty())
    });
    assert_eq!(
        snap.files.get(&p).map(|f| f.bytes.as_slice()),
        Some(LB.as_bytes())
    );
    assert!(error_of(&snap, &p).unwrap().contains("character device"));
}

#[test]
fn validate_and_run_once_refuse_special_files_too() {
    let d = tempfile::tempdir().unwrap();
    fs::write(d.path().join("good.yaml"), LB).unwrap();
    let planted = plant(d.path());
    let dir = d.path().to_path_buf();
    let (objects, errors) = {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(ironlb_runtime::manifest::load_dir(&dir));
        });
        rx.recv_timeout(BOUND).expect("load_dir blocked")
    };
    assert_eq!(objects.len(), 1);
    for (p, says) in &planted {
        let e = errors
            .iter()
            .find(|e| e.file == *p)
            .unwrap_or_else(|| panic!("no load error for {}", p.display()));
        assert!(e.to_string().contains(says), "{e}");
    }
}

/// The daemon publishes each refusal: a source error in status.json naming the file, and the
/// `ironlb_manifest_files_refused` gauge.
#[test]
fn the_daemon_shows_refusals_in_status_and_metrics() {
    use ironlb_runtime::daemon::{Daemon, StatusFile};
    use std::io::{Read as _, Write as _};
    let m = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    fs::write(m.path().join("good.yaml"), LB).unwrap();
    let planted = plant(m.path());
    let cfg = test_config(m.path(), state.path());
    let mut d = Daemon::start(cfg).unwrap();
    d.sync().unwrap();
    let st = StatusFile::read(state.path()).unwrap();
    for (p, says) in &planted {
        assert!(
            st.source_errors
                .iter()
                .any(|e| e.contains(&*p.to_string_lossy()) && e.contains(says)),
            "{}: {:?}",
            p.display(),
            st.source_errors
        );
    }
    let mut s = std::net::TcpStream::connect(d.metrics_addr().unwrap()).unwrap();
    s.set_read_timeout(Some(BOUND)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    assert!(
        body.contains(&format!("ironlb_manifest_files_refused {}", planted.len())),
        "{body}"
    );
}
