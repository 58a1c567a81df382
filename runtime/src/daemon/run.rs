//! The daemon's loop ([`Daemon::run`]): sync, then wait for a manifest change, a due retry, the periodic resync
//! or a reload (SIGHUP); probe a down device with backoff; tell systemd (notify protocol) where it stands.

use super::{Daemon, DaemonError};
use crate::backoff::BACKOFF;
use crate::source::Source;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Full resync period even when nothing changed (repairs drift, retries backed-off load balancers).
pub const RESYNC: Duration = Duration::from_secs(30);

/// How often the daemon looks for a device reset between syncs (a few register reads).
pub const HEALTH_INTERVAL: Duration = Duration::from_secs(1);

impl Daemon {
    /// While the device is down, when the probe is due: probe it (at most one command timeout); when it answers, run
    /// a full resync at once (the load balancers it could not program are due) and forget the backoff.
    fn probe_if_down(&mut self) {
        if self.next_probe.is_none_or(|at| self.clock.now() < at) {
            return;
        }
        let mut sh = self.shared.lock().expect("daemon state lock");
        if sh.rec.probe_device() {
            self.probe_failures = 0;
            self.next_probe = None;
            if let Some(m) = &self.metrics {
                m.set_device_up(true);
            }
            if let Err(e) = sh.rec.resync() {
                tracing::error!(error = %e, "resync after the device came back failed");
            }
        } else {
            tracing::warn!(error = %sh.rec.device_down().map_or("", |d| d.error.as_str()), retry_in = ?BACKOFF.delay(self.probe_failures), "the device still does not answer");
        }
    }

    /// The time of the next device probe while the device is down ([`BACKOFF`]), `None` while it is up.
    fn schedule_probe(&mut self) -> Option<Instant> {
        let down = self
            .shared
            .lock()
            .expect("daemon state lock")
            .rec
            .device_down()
            .is_some();
        if !down {
            self.probe_failures = 0;
            self.next_probe = None;
            return None;
        }
        let now = self.clock.now();
        if self.next_probe.is_none_or(|at| now >= at) {
            self.probe_failures += 1;
            self.next_probe = Some(now + BACKOFF.delay(self.probe_failures));
        }
        self.next_probe
    }

    /// Runs until `stop` is set: sync, then wait for a manifest change, a due retry or the periodic resync. While the
    /// device is down, it is probed with backoff; syncs still run (without device commands), `status` is answered.
    /// A stop is seen within one command timeout (a probe or the one command that finds the device down).
    ///
    /// Under systemd (`Type=notify`, `NOTIFY_SOCKET` set) it reports `READY=1` once the first sync is done (and again
    /// after each reload), `RELOADING=1` when a reload is taken and `STOPPING=1` on the way out; elsewhere these are
    /// no-ops.
    pub fn run(&mut self, stop: &AtomicBool) -> Result<(), DaemonError> {
        tracing::info!(
            backend = %self.cfg.backend,
            manifests = %self.cfg.manifests.display(),
            state_dir = %self.cfg.state_dir.display(),
            socket = %self.socket_path().display(),
            "ironlb daemon started"
        );
        let mut failures = 0u32;
        let mut announce_ready = true;
        while !stop.load(Ordering::Relaxed) {
            self.probe_if_down();
            let synced = self.sync();
            if announce_ready {
                announce_ready = false;
                let status = match &synced {
                    Ok(r) => format!(
                        "synced: {} load balancers programmed, {} errors",
                        r.created + r.updated + r.unchanged,
                        r.errors.len()
                    ),
                    Err(e) => format!("first sync failed, retrying: {e}"),
                };
                notify_systemd(&[
                    sd_notify::NotifyState::Ready,
                    sd_notify::NotifyState::Status(&status),
                ]);
            }
            let deadline = match synced {
                Ok(_) => {
                    failures = 0;
                    let next_retry = self.shared.lock().expect("daemon state lock").rec.next_retry();
                    let deadline = self.clock.now() + RESYNC;
                    let deadline = next_retry.map_or(deadline, |r| r.min(deadline));
                    self.schedule_probe().map_or(deadline, |p| p.min(deadline))
                }
                // A sync that failed as a whole (allocator state not writable, device gone): nothing was
                // programmed by it; the device keeps its state. Retry with backoff instead of exiting.
                Err(e) => {
                    failures += 1;
                    let retry_in = BACKOFF.delay(failures);
                    tracing::error!(error = %e, ?retry_in, "sync failed");
                    self.clock.now() + retry_in
                }
            };
            let mut health_due = self.clock.now() + HEALTH_INTERVAL;
            loop {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                if self.reload.swap(false, Ordering::Relaxed) {
                    tracing::info!(manifests = %self.cfg.manifests.display(), "reload: re-reading the manifest directory");
                    notify_systemd(&[sd_notify::NotifyState::Reloading]);
                    self.source.rescan_all()?;
                    announce_ready = true;
                    break;
                }
                let now = self.clock.now();
                if now >= health_due {
                    health_due = now + HEALTH_INTERVAL;
                    if self.check_device() {
                        break;
                    }
                }
                // The source is looked at even when the deadline has passed: a change is never starved by retries.
                let left = deadline.saturating_duration_since(self.clock.now());
                if self.source.wait_change(left.min(Duration::from_millis(250)))? || left.is_zero() {
                    break;
                }
            }
        }
        tracing::info!("ironlb daemon stopping; the device keeps its tables");
        notify_systemd(&[sd_notify::NotifyState::Stopping]);
        Ok(())
    }
}

/// Tells systemd (when it started us with `NOTIFY_SOCKET`) about a state change. A failure is logged, never fatal:
/// the daemon serves whether or not its supervisor hears it.
fn notify_systemd(state: &[sd_notify::NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(state) {
        tracing::warn!(error = %e, "could not notify systemd (NOTIFY_SOCKET)");
    }
}
