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
use crate::state::Intent;
use crate::LbSpec;
use ironlb_hw::regs::*;
use std::collections::BTreeMap;

/// What a restore that did not finish still owes the device: everything the driver had configured before the
/// reset, kept up to date with the changes made since (`apply`, `remove` and the register setters record theirs).
#[derive(Debug, Clone)]
pub(crate) struct Owed {
    pub(crate) specs: BTreeMap<u32, LbSpec>,
    pub(crate) intent: Intent,
}

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
        if self.owed.is_some() {
            return Ok(Some(ResetSeen {
                before: None,
                after: None,
                evidence: "a restore after an earlier reset did not finish",
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
    ///
    /// A restore that fails part-way (the device resets again, or stops answering) leaves the driver state holding
    /// only what it re-programmed; what it still owes is kept, [`Device::check_reset`] keeps reporting a reset, and
    /// the next restore programs all of it. Nothing the driver had configured is forgotten by a failed restore.
    pub fn restore(&mut self) -> Result<RestoreReport, DriverError> {
        let owed = match self.owed.take() {
            Some(owed) => owed,
            None => Owed {
                specs: self.lbs.iter().map(|(&id, s)| (id, s.spec.clone())).collect(),
                intent: self.intent.clone(),
            },
        };
        self.reprogram(&owed).inspect_err(|_| self.owed = Some(owed))
    }

    /// While a restore is owed, a change made through the driver is also a change of what the restore programs.
    pub(crate) fn owe(&mut self, change: impl FnOnce(&mut Owed)) {
        if let Some(owed) = self.owed.as_mut() {
            change(owed);
        }
    }

    fn reprogram(&mut self, owed: &Owed) -> Result<RestoreReport, DriverError> {
        let Owed { specs, intent } = owed;
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
        for spec in specs.values() {
            report.commands += self.apply(spec)?.commands;
            report.load_balancers += 1;
        }
        self.set_enabled(intent.enabled);
        // A reset in the middle of the re-programming (GENERATION moved on since `reset` read it, or on v1.0 its
        // effects) may have emptied the device again without any command failing: then the restore is not done.
        if let Some(again) = self.check_reset()? {
            return Err(DriverError::ResetDuringRestore {
                evidence: again.to_string(),
            });
        }
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
