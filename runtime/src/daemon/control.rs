//! The control socket: one JSON [`Request`] per connection, one JSON [`Response`] line back. `status` is answered
//! from what the last sync [`Published`] (at once, even during a long sync); `dump`, `stats` and `trace` from the
//! device through [`Shared`], answered busy rather than waiting without bound.

use super::config::{io_err, DaemonError};
use crate::api::ObjectKey;
use crate::cli::TracePacket;
use crate::ops::{self, Format, OpError, View};
use crate::reconcile::Reconciler;
use crate::status::{Condition, DeviceDown, LbStatus};
use ironlb_driver::SharedModel;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A request on the control socket (one JSON line; the answer is one JSON line, [`Response`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Request {
    /// Load balancer statuses.
    Status {
        /// Output format.
        format: Format,
    },
    /// Decoded tables.
    Dump {
        /// Which table.
        table: String,
        /// Output format.
        format: Format,
        /// Filters of `--table flows`.
        #[serde(default)]
        flows: ops::FlowFilter,
    },
    /// Counters.
    Stats {
        /// Output format.
        format: Format,
    },
    /// A packet trace.
    Trace {
        /// `public` or `vni:N`.
        ingress: String,
        /// The packet: described, or as bytes.
        packet: TracePacket,
        /// Output format.
        format: Format,
    },
}

/// The answer to a [`Request`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// Rendered output, when the request succeeded.
    pub output: Option<String>,
    /// The error, when it failed.
    pub error: Option<String>,
    /// True when the error is about the request (exit code 2).
    #[serde(default)]
    pub bad_input: bool,
}

/// What the last sync published: answered on the control socket without waiting for the reconciler, so `status`
/// answers at once even while a sync or a device probe runs.
#[derive(Debug, Clone, Default)]
pub struct Published {
    /// Statuses by key.
    pub statuses: BTreeMap<ObjectKey, LbStatus>,
    /// Set while the device is down.
    pub device_down: Option<DeviceDown>,
    /// The device's own conditions (`DeviceRestored` after a reset).
    pub device_conditions: Vec<Condition>,
    /// Manifest files and documents that do not load, rendered (listed below the LoadBalancers).
    pub load_errors: Vec<String>,
    /// The source's own state when it cannot serve what it holds now ([`super::StatusFile::source_state`]).
    pub source_state: Vec<String>,
}

impl Published {
    /// The `status` answer.
    pub fn render(&self, format: Format) -> String {
        let mut body = ops::status_with_errors(&self.statuses, &self.load_errors, format);
        if format == Format::Table {
            for c in &self.device_conditions {
                body.push_str(&format!(
                    "device: {} {} since {}: {}\n",
                    c.kind, c.reason, c.last_transition_time, c.message
                ));
            }
        }
        if format != Format::Table {
            return body;
        }
        let mut head = String::new();
        for line in &self.source_state {
            head.push_str(&format!("source: {}\n", crate::printable::printable(line)));
        }
        if let Some(d) = &self.device_down {
            head.push_str(&format!(
                "device: DOWN since {} ({} failed probes): {}; retrying with backoff\n",
                d.since,
                d.failed_probes,
                crate::printable::printable(&d.error)
            ));
        }
        head + &body
    }
}

/// How long a diagnostics request (`dump`, `stats`, `trace`) waits for the reconciler before answering busy.
const BUSY_WAIT: Duration = Duration::from_secs(10);

/// What the daemon's threads share.
pub struct Shared {
    /// The reconciler (owns the device).
    pub rec: Reconciler,
    /// The in-process model, for `inproc`.
    pub model: Option<SharedModel>,
    /// Device resets detected (and answered by a restore) since the daemon started.
    pub device_resets: u64,
    /// `DeviceRestored` once a reset was detected: when, how, and what was re-programmed.
    pub device_conditions: Vec<Condition>,
}

/// What a control socket answers `dump`, `stats` and `trace` from (the device's owner: the daemon's [`Shared`],
/// the cluster agent's core); `status` is answered from [`Published`].
pub trait Answer {
    /// Answers one request from the device.
    fn answer(&mut self, req: &Request) -> Result<String, OpError>;
}

impl Answer for Shared {
    fn answer(&mut self, req: &Request) -> Result<String, OpError> {
        self.handle(req)
    }
}

impl Shared {
    /// `namespace/name` by lb_id, for what the device holds.
    pub fn names(&self) -> BTreeMap<u32, String> {
        self.rec.names()
    }

    /// Answers one control request.
    pub fn handle(&mut self, req: &Request) -> Result<String, OpError> {
        let names = self.names();
        let model = self.model.clone();
        let view = View {
            dev: self.rec.device(),
            model: model.as_ref(),
            names: &names,
            copy: false,
        };
        match req {
            Request::Status { format } => Ok(Published {
                statuses: self.rec.status().clone(),
                device_conditions: self.device_conditions.clone(),
                load_errors: self.rec.load_errors().iter().map(ToString::to_string).collect(),
                ..Published::default()
            }
            .render(*format)),
            _ => diagnose(view, req),
        }
    }
}

/// Answers `dump`, `stats` or `trace` from `view` (`status` is not the device's: a bad request here). A trace of a
/// device that is not an in-process model (sim-shm, vfio) runs through a copy of its tables ([`ops::mirror`]).
pub fn diagnose(view: View<'_>, req: &Request) -> Result<String, OpError> {
    if let (Request::Trace { .. }, None) = (req, view.model) {
        let (mut copy, model) = ops::mirror(view.dev)
            .map_err(|e| OpError::Failed(format!("copying the device's tables for the trace: {e}")))?;
        return diagnose(
            View {
                dev: &mut copy,
                model: Some(&model),
                names: view.names,
                copy: true,
            },
            req,
        );
    }
    match req {
        Request::Dump { table, format, flows } => ops::dump(view, table, *format, flows),
        Request::Stats { format } => ops::stats(view, *format),
        Request::Trace {
            ingress,
            packet,
            format,
        } => ops::trace(view, ingress, packet, *format),
        Request::Status { .. } => Err(crate::cli::BadInput(
            "status comes from the daemon or agent (--socket/--state-dir), not from a device".into(),
        )
        .into()),
    }
}

/// Sends `req` to the daemon at `socket` and returns its output.
pub fn request(socket: &Path, req: &Request) -> Result<String, OpError> {
    let fail = |m: String| OpError::Failed(format!("control socket {}: {m}", socket.display()));
    let mut s = UnixStream::connect(socket).map_err(|e| {
        fail(format!(
            "{e} (is `ironlb run` or `ironlb agent` running with this --state-dir / --socket?)"
        ))
    })?;
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(|e| fail(e.to_string()))?;
    let mut line = serde_json::to_string(req).expect("request serializes");
    line.push('\n');
    s.write_all(line.as_bytes()).map_err(|e| fail(e.to_string()))?;
    let mut answer = String::new();
    BufReader::new(s)
        .read_line(&mut answer)
        .map_err(|e| fail(e.to_string()))?;
    let r: Response = serde_json::from_str(&answer).map_err(|e| fail(format!("bad answer: {e}")))?;
    match (r.output, r.error) {
        (Some(o), None) => Ok(o),
        (_, Some(e)) if r.bad_input => Err(crate::cli::BadInput(e).into()),
        (_, Some(e)) => Err(OpError::Failed(e)),
        (None, None) => Err(fail("empty answer".into())),
    }
}

/// A served control socket: its thread, and the socket file it removes when dropped (only that file: another
/// daemon may have been given the same path since).
pub struct ControlServer {
    path: PathBuf,
    /// (device, inode) of the socket bound.
    id: (u64, u64),
    thread: Option<std::thread::JoinHandle<()>>,
    stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for ControlServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlServer")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl ControlServer {
    /// Binds the socket at `path` ([`bind_control`]: a live daemon's socket is refused) and serves it on a thread
    /// of its own: `status` from `published`, the other requests from `owner` (busy after [`BUSY_WAIT`]).
    pub fn start<T: Answer + Send + 'static>(
        path: &Path,
        group: Option<u32>,
        owner: Arc<Mutex<T>>,
        published: Arc<Mutex<Published>>,
    ) -> Result<ControlServer, DaemonError> {
        let (listener, id) = bind_control(path, group)?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("ironlb-control".into())
                .spawn(move || serve_control(listener, owner, published, stop))
                .map_err(io_err(path))?
        };
        Ok(ControlServer {
            path: path.to_path_buf(),
            id,
            thread: Some(thread),
            stop,
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        use std::os::unix::fs::MetadataExt;
        self.stop.store(true, Ordering::Relaxed);
        // The control thread sees the flag within CONTROL_POLL.
        if let Some(h) = self.thread.take() {
            let _ = h.join();
        }
        if fs::symlink_metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.id) {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Binds the control socket at `path` with mode [`crate::fsmode::SOCKET_MODE`] (and `group`), without ever
/// removing the socket of a live daemon: a socket that accepts a connection is refused; a stale one (nobody
/// listening) is replaced. The socket is bound under a temporary name, given its mode and group, then renamed into
/// place, so it is never reachable with the umask's mode. Returns the listener and the socket's inode.
fn bind_control(path: &Path, group: Option<u32>) -> Result<(UnixListener, (u64, u64)), DaemonError> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            if UnixStream::connect(path).is_ok() {
                return Err(DaemonError::SocketInUse {
                    path: path.to_path_buf(),
                });
            }
        }
        Ok(_) => {
            return Err(DaemonError::NotASocket {
                path: path.to_path_buf(),
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(path)(e)),
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let _ = fs::remove_file(&tmp);
    let listener = UnixListener::bind(&tmp).map_err(io_err(path))?;
    let placed = (|| {
        fs::set_permissions(&tmp, fs::Permissions::from_mode(crate::fsmode::SOCKET_MODE))?;
        if let Some(gid) = group {
            nix::unistd::chown(&tmp, None, Some(nix::unistd::Gid::from_raw(gid)))
                .map_err(std::io::Error::from)?;
        }
        fs::rename(&tmp, path)
    })();
    if let Err(e) = placed {
        let _ = fs::remove_file(&tmp);
        return Err(io_err(path)(e));
    }
    let m = fs::symlink_metadata(path).map_err(io_err(path))?;
    Ok((listener, (m.dev(), m.ino())))
}

/// How often the control thread looks at its stop flag while no client connects.
const CONTROL_POLL: Duration = Duration::from_millis(100);

fn serve_control<T: Answer + Send + 'static>(
    listener: UnixListener,
    shared: Arc<Mutex<T>>,
    published: Arc<Mutex<Published>>,
    stop: Arc<AtomicBool>,
) {
    use std::os::fd::AsFd;
    // Waits are bounded (poll with a timeout), so stopping needs no connection: it works even when the socket file
    // was removed.
    if let Err(e) = listener.set_nonblocking(true) {
        tracing::error!(error = %e, "control socket: cannot make it non-blocking; not serving");
        return;
    }
    while !stop.load(Ordering::Relaxed) {
        let mut fds = [nix::poll::PollFd::new(
            listener.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        match nix::poll::poll(
            &mut fds,
            nix::poll::PollTimeout::from(CONTROL_POLL.as_millis() as u16),
        ) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => {}
            Err(e) => {
                tracing::error!(error = %e, "control socket: poll failed; not serving");
                return;
            }
        }
        let conn = match listener.accept() {
            Ok((c, _)) => c,
            Err(_) => continue,
        };
        if conn.set_nonblocking(false).is_err() {
            continue;
        }
        let (shared, published) = (shared.clone(), published.clone());
        std::thread::spawn(move || answer_control(conn, &shared, &published));
    }
}

/// Answers one request: `status` from what was published; the others from the device, refused at once while it is
/// down, and answered busy rather than waiting without bound for a long sync.
fn answer_request<T: Answer>(
    req: &Request,
    shared: &Mutex<T>,
    published: &Mutex<Published>,
) -> Result<String, OpError> {
    let p = published.lock().expect("published lock");
    if let Request::Status { format } = req {
        return Ok(p.render(*format));
    }
    if let Some(d) = &p.device_down {
        return Err(OpError::Failed(format!(
            "the device is down since {} ({}); only `status` is served until it answers again",
            d.since, d.error
        )));
    }
    drop(p);
    let deadline = Instant::now() + BUSY_WAIT;
    loop {
        match shared.try_lock() {
            Ok(mut sh) => return sh.answer(req),
            Err(std::sync::TryLockError::Poisoned(e)) => return e.into_inner().answer(req),
            Err(std::sync::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(std::sync::TryLockError::WouldBlock) => {
                return Err(OpError::Failed(format!(
                    "busy (a sync or a device probe has run for over {BUSY_WAIT:?}); try again"
                )))
            }
        }
    }
}

fn answer_control<T: Answer>(conn: UnixStream, shared: &Mutex<T>, published: &Mutex<Published>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut line = String::new();
    let mut reader = BufReader::new(&conn);
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let resp = match serde_json::from_str::<Request>(&line) {
        Err(e) => Response {
            output: None,
            error: Some(format!("bad request: {e}")),
            bad_input: true,
        },
        Ok(req) => match answer_request(&req, shared, published) {
            Ok(o) => Response {
                output: Some(o),
                error: None,
                bad_input: false,
            },
            Err(e) => Response {
                output: None,
                error: Some(e.to_string()),
                bad_input: matches!(e, OpError::BadInput(_)),
            },
        },
    };
    let mut out = serde_json::to_string(&resp).expect("response serializes");
    out.push('\n');
    let _ = (&conn).write_all(out.as_bytes());
}
