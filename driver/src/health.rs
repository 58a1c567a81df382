//! Reset detection and restore (docs/hw-spec.md §3.4).
//!
//! A device can be reset under a running driver: a PCIe function level reset, another agent writing
//! `CONTROL.RESET`, a restarted software model. Its tables are then empty while the driver's state (and the
//! runtime's status) still says every LB is programmed. The driver remembers what it configured ([`Intent`](crate::state::Intent)) and
//! the device generation it did it in; [`Device::check_reset`] compares, [`Device::restore`] re-programs
//! everything from the driver's own state.
//!
//! - Contract v1.1 (`CAP_FEATURES.GENERATION`): `GENERATION` changes on every reset; all-ones means the device is
//!   gone.
//! - v1.0 (documented fallback): a reset is recognised by its effects — the command ring no longer `ACTIVE`, the
//!   pipeline disabled although this driver enabled it, or `MB_DONE_SEQ` different from the last sequence number
//!   this driver completed.

use crate::device::Device;
use crate::error::DriverError;
use ironlb_hw::regs::*;

/// A reset the driver did not cause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResetSeen {
    /// `GENERATION` the driver configured the device in (`None` on v1.0).
    pub before: Option<u32>,
    /// `GENERATION` now (`None` on v1.0).
    pub after: Option<u32>,
    /// How it was recognised.
    pub evidence: &'static str,
}

impl std::fmt::Display for ResetSeen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.before, self.after) {
            (Some(b), Some(a)) => write!(f, "{} ({b:#010x} -> {a:#010x})", self.evidence),
            _ => write!(f, "{}", self.evidence),
        }
    }
}

/// What [`Device::restore`] re-programmed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RestoreReport {
    /// Load balancers re-programmed.
    pub load_balancers: usize,
    /// Commands issued for them.
    pub commands: usize,
}

impl Device {
    /// Has the device been reset (or removed) since this driver configured it? Reads at most 4 registers.
    /// `Err(DeviceGone)` when registers read all-ones.
    pub fn check_reset(&mut self) -> Result<Option<ResetSeen>, DriverError> {
        let ring = self.has_ring();
        let acc = self.acc.as_mut();
        let id = acc.read32(ID);
        if id == u32::MAX {
            return Err(DriverError::DeviceGone { register: "ID" });
        }
        if id != ID_MAGIC {
            // In the middle of a reset the registers may not hold their values yet.
            return Ok(Some(ResetSeen {
                before: self.intent.generation,
                after: None,
                evidence: "ID register does not read the ironlb magic (device in reset)",
            }));
        }
        if self.caps.has(FEATURE_GENERATION) {
            let g = acc.read32(GENERATION);
            if g == u32::MAX {
                return Err(DriverError::DeviceGone {
                    register: "GENERATION",
                });
            }
            return Ok((Some(g) != self.intent.generation).then_some(ResetSeen {
                before: self.intent.generation,
                after: Some(g),
                evidence: "GENERATION changed",
            }));
        }
        let evidence = if ring && acc.read32(RING_STATUS) & RING_STATUS_ACTIVE == 0 {
            Some("the command ring is no longer active")
        } else if self.intent.enabled && acc.read32(CONTROL) & CONTROL_ENABLE == 0 {
            Some("the pipeline is no longer enabled")
        } else if acc.read32(MB_DONE_SEQ) != self.mb.seq() {
            Some("MB_DONE_SEQ is not the last sequence number this driver completed")
        } else {
            None
        };
        Ok(evidence.map(|evidence| ResetSeen {
            before: None,
            after: None,
            evidence,
        }))
    }

    /// Re-program everything this driver had configured — ports, underlay, every LB, the pipeline enable — on a
    /// device that lost it. The device is reset first, so the result does not depend on what a reset left (or,
    /// for a v1.0 device whose reset was only inferred, on what is still there).
    pub fn restore(&mut self) -> Result<RestoreReport, DriverError> {
        let specs: Vec<crate::LbSpec> = self.programmed().cloned().collect();
        let intent = self.intent.clone();
        self.reset()?;
        for (&p, &c) in &intent.ports {
            self.set_port(p, c)?;
        }
        if let Some((src, mtu, hop)) = intent.underlay {
            self.set_underlay(src, mtu, hop);
        }
        if let Some(flow) = intent.flow.filter(|_| self.has_flow_table()) {
            self.set_flow_table(&flow)?;
        }
        let mut report = RestoreReport::default();
        for spec in &specs {
            report.commands += self.apply(spec)?.commands;
            report.load_balancers += 1;
        }
        self.set_enabled(intent.enabled);
        self.intent.generation = self
            .caps
            .has(FEATURE_GENERATION)
            .then(|| self.acc.read32(GENERATION));
        Ok(report)
    }

    /// [`Device::check_reset`], and [`Device::restore`] when it finds one.
    pub fn check_and_restore(&mut self) -> Result<Option<(ResetSeen, RestoreReport)>, DriverError> {
        match self.check_reset()? {
            None => Ok(None),
            Some(seen) => {
                let r = self.restore()?;
                Ok(Some((seen, r)))
            }
        }
    }
}
