//! The daemon's files in the state directory: `status.json` ([`StatusFile`]), and the start-up check that refuses
//! to re-number live load balancers when `alloc.json` was lost.

use super::config::{io_err, DaemonError};
use crate::alloc::Allocator;
use crate::api::ObjectKey;
use crate::status::{Condition, DeviceDown, LbStatus};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

/// The content of `STATE_DIR/status.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusFile {
    /// Source generation the status was computed from.
    pub generation: u64,
    /// Manifest files that do not parse (served from their last good content).
    pub source_errors: Vec<String>,
    /// How the source itself is doing when it cannot serve what it holds now (`ironlb agent`: etcd unreachable
    /// since when, or no listing yet); shown by `ironlb status` above the load balancers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_state: Vec<String>,
    /// Documents that did not load.
    pub load_errors: Vec<String>,
    /// One per LoadBalancer.
    pub load_balancers: Vec<LbStatus>,
    /// Set while the device does not answer (a command timed out; probed with backoff).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_down: Option<DeviceDown>,
    /// The device's own condition: `DeviceRestored` after a reset the daemon did not cause (docs/hw-spec.md §3.4).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_conditions: Vec<Condition>,
}

impl StatusFile {
    /// Reads `STATE_DIR/status.json`.
    pub fn read(state_dir: &Path) -> Result<StatusFile, String> {
        let p = state_dir.join("status.json");
        let bytes = fs::read(&p)
            .map_err(|e| format!("{}: {e} (has the daemon run with this --state-dir?)", p.display()))?;
        serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", p.display()))
    }

    /// The statuses by key.
    pub fn by_key(&self) -> BTreeMap<ObjectKey, LbStatus> {
        self.load_balancers
            .iter()
            .map(|s| (ObjectKey::new(s.namespace.clone(), s.name.clone()), s.clone()))
            .collect()
    }

    /// What `ironlb status` shows of it (the daemon or agent that wrote it is not running).
    pub fn published(self) -> super::Published {
        super::Published {
            statuses: self.by_key(),
            device_down: self.device_down,
            device_conditions: self.device_conditions,
            load_errors: self.load_errors,
            source_state: self.source_state,
        }
    }

    /// Writes `STATE_DIR/status.json` atomically (temporary file, fsync, rename, fsync of the directory).
    pub(super) fn write(&self, state_dir: &Path) -> Result<(), DaemonError> {
        let p = state_dir.join("status.json");
        let json = serde_json::to_vec_pretty(self).expect("status serializes");
        crate::fsmode::write_atomic(&p, &json, crate::fsmode::STATE_FILE_MODE)
            .map_err(|e| io_err(&e.path)(e.source))
    }
}

/// Refuses a start that would re-number live load balancers because their allocations were lost: the device holds
/// load balancers no allocation claims, and either the allocation state is empty (`alloc.json` deleted, or valid
/// but empty) or `status.json` names them as LoadBalancers of ours (an older `alloc.json` put back). Unclaimed
/// load balancers with neither sign (another writer's leftovers) are still removed as orphans.
pub(super) fn check_allocations_not_lost(
    state_dir: &Path,
    dev: &ironlb_driver::Device,
    alloc: &Allocator,
) -> Result<(), DaemonError> {
    let claimed: BTreeSet<u32> = alloc.state().lbs.values().filter_map(|a| a.lb_id).collect();
    let unclaimed: BTreeSet<u32> = dev
        .programmed()
        .map(|s| s.lb_id)
        .filter(|id| !claimed.contains(id))
        .collect();
    if unclaimed.is_empty() {
        return Ok(());
    }
    let evidence = if alloc.state().lbs.is_empty() {
        "the allocation state is empty".to_string()
    } else {
        let named = StatusFile::read(state_dir)
            .map(|s| {
                s.load_balancers
                    .iter()
                    .filter(|l| l.lb_id.is_some_and(|id| unclaimed.contains(&id)))
                    .count()
            })
            .unwrap_or(0);
        if named == 0 {
            return Ok(());
        }
        format!("status.json names {named} of them as LoadBalancers")
    };
    Err(DaemonError::AllocationsLost {
        path: alloc.path().to_path_buf(),
        unclaimed: unclaimed.len(),
        evidence,
    })
}
