//! Device operations of the reconciler, and the device-down state: a command that times out marks the device
//! down, and no further command is sent until [`Reconciler::probe_device`] sees it answer again.

use super::Reconciler;
use crate::clock::rfc3339;
use crate::status::{DeviceDown, Reason};
use ironlb_driver::{Device, DriverError};

/// A device operation that failed, or was not attempted because the device is down.
#[derive(Debug, thiserror::Error)]
pub(super) enum DevFail {
    #[error("not attempted: the device is down ({0})")]
    Down(String),
    #[error(transparent)]
    Driver(#[from] DriverError),
}

impl DevFail {
    /// The condition reason this failure gives its load balancer.
    pub(super) fn reason(&self) -> Reason {
        match self {
            DevFail::Down(_) => Reason::DeviceDown,
            DevFail::Driver(e) => Reason::of_driver(e),
        }
    }
}

impl Reconciler {
    /// Runs one device operation, unless the device is down. A timeout marks the device down, so the rest of the
    /// sync (and every later one, until [`Reconciler::probe_device`] succeeds) fails fast instead of waiting for
    /// one timeout per load balancer.
    pub(super) fn dev_op<T>(
        &mut self,
        f: impl FnOnce(&mut Device) -> Result<T, DriverError>,
    ) -> Result<T, DevFail> {
        if let Some(d) = &self.device_down {
            return Err(DevFail::Down(d.error.clone()));
        }
        f(&mut self.dev).map_err(|e| {
            if matches!(e, DriverError::Timeout { .. }) {
                tracing::error!(error = %e, "device command timed out: the device is down; no further commands until it answers again");
                self.device_down = Some(DeviceDown {
                    since: rfc3339(self.clock.wall()),
                    error: e.to_string(),
                    failed_probes: 0,
                });
            }
            DevFail::Driver(e)
        })
    }

    /// `Some` while the device is down (a command timed out and no probe has succeeded since).
    pub fn device_down(&self) -> Option<&DeviceDown> {
        self.device_down.as_ref()
    }

    /// While the device is down: resynchronises the command paths and sends one read; when it answers, the device
    /// is up again and the load balancers that failed because it was down are due at once (the caller runs a full
    /// [`Reconciler::resync`]). Returns whether the device is up. Takes at most one command timeout.
    pub fn probe_device(&mut self) -> bool {
        let Some(down) = self.device_down.as_mut() else {
            return true;
        };
        let r = self
            .dev
            .recover_commands()
            .and_then(|()| self.dev.read_entries(ironlb_hw::regs::TableId::Lb, 0, 1));
        match r {
            Ok(_) => {
                tracing::info!(down_since = %down.since, "the device answers again");
                self.device_down = None;
                self.failures.retain(|_, f| f.reason != Reason::DeviceDown);
                true
            }
            Err(e) => {
                down.failed_probes += 1;
                down.error = e.to_string();
                false
            }
        }
    }
}
