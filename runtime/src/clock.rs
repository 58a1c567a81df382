//! The one source of time for the reconciler and the daemon.
//!
//! Logic that depends on time (retry backoff, the release grace period of deleted load balancers, device probes,
//! the periodic resync, condition transition times) reads it from a [`Clock`] it was given: [`SystemClock`] in
//! production, a [`ManualClock`] that a test steps explicitly, so no test waits for real time to pass and no
//! outcome depends on how fast the machine is. Only measurements (how long a sync took) use real time.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// Monotonic and wall time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Monotonic time (deadlines, backoff).
    fn now(&self) -> Instant;
    /// Wall time (condition transition times shown to people).
    fn wall(&self) -> SystemTime;
}

/// A shared clock handle.
pub type SharedClock = Arc<dyn Clock>;

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
    fn wall(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// The real clock as a [`SharedClock`].
pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}

/// A clock that moves only when told to ([`ManualClock::advance`]). Clones share the same time.
#[derive(Debug, Clone)]
pub struct ManualClock {
    at: Arc<Mutex<(Instant, SystemTime)>>,
}

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock::new()
    }
}

impl ManualClock {
    /// A clock frozen at the current real time (a fixed wall time: 2026-01-01T00:00:00Z, so transition times in
    /// test output do not depend on when the test ran).
    pub fn new() -> ManualClock {
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600);
        ManualClock {
            at: Arc::new(Mutex::new((Instant::now(), wall))),
        }
    }

    /// Moves both times forward by `d`.
    pub fn advance(&self, d: Duration) {
        let mut at = self.at.lock().expect("manual clock lock");
        at.0 += d;
        at.1 += d;
    }

    /// This clock as a [`SharedClock`] (sharing its time).
    pub fn shared(&self) -> SharedClock {
        Arc::new(self.clone())
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.at.lock().expect("manual clock lock").0
    }
    fn wall(&self) -> SystemTime {
        self.at.lock().expect("manual clock lock").1
    }
}

/// `t` as an RFC 3339 time with seconds (condition transition times).
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_advanced_and_clones_share_it() {
        let c = ManualClock::new();
        let other = c.shared();
        let (t0, w0) = (c.now(), c.wall());
        assert_eq!(other.now(), t0);
        c.advance(Duration::from_secs(3));
        assert_eq!(other.now() - t0, Duration::from_secs(3));
        assert_eq!(other.wall().duration_since(w0).unwrap(), Duration::from_secs(3));
        assert_eq!(rfc3339(w0), "2026-01-01T00:00:00Z");
    }
}
