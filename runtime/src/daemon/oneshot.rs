//! One-shot programming of a manifest directory into an in-process model, as the daemon would: what `replay`,
//! `trace`, `dump` and `stats --manifests` run against.

use super::config::{io_err, DaemonError};
use crate::alloc::{Allocator, Pools};
use crate::backend::BackendSpec;
use crate::manifest::LoadOptions;
use crate::reconcile::{HostConfig, Reconciler, SyncReport};
use ironlb_driver::SharedModel;
use ironlb_sim::DeviceConfig;
use std::path::Path;

/// A manifest directory programmed once into an in-process model ([`program_dir`]).
pub struct Programmed {
    /// The reconciler, owning the device.
    pub rec: Reconciler,
    /// The model.
    pub model: SharedModel,
    /// What the sync did.
    pub report: SyncReport,
    /// Documents that did not load.
    pub load_errors: Vec<crate::manifest::LoadError>,
    /// Unknown fields accepted under [`LoadOptions::LENIENT`].
    pub load_warnings: Vec<crate::manifest::LoadError>,
    _state: tempfile::TempDir,
}

/// Programs the manifests in `dir` into a new in-process model through the reconciler (as the daemon would),
/// with allocations in a temporary state directory. Used by `replay`, `trace`, `dump` and `stats --manifests`.
pub fn program_dir(
    dir: &Path,
    pools: Pools,
    host: &HostConfig,
    load: LoadOptions,
) -> Result<Programmed, DaemonError> {
    let state = tempfile::tempdir().map_err(io_err(Path::new("temporary state directory")))?;
    let opened = BackendSpec::Inproc
        .open(&DeviceConfig::default())
        .map_err(|source| DaemonError::Device {
            backend: "inproc".into(),
            source,
        })?;
    let model = opened.model.expect("inproc has a model");
    let cap = opened.device.caps().lb_ids;
    let alloc = Allocator::open(&state.path().join("alloc.json"), pools, cap)?;
    let mut rec = Reconciler::new(opened.device, alloc, host)?;
    let loaded = crate::manifest::load_dir_with(dir, load);
    let (objects, load_errors) = (loaded.objects, loaded.errors);
    let report = rec.sync(&objects, &load_errors)?;
    Ok(Programmed {
        rec,
        model,
        report,
        load_errors,
        load_warnings: loaded.warnings,
        _state: state,
    })
}
