//! Host commands: `ironlb device bind` (hand the NIC to vfio-pci) and `ironlb doctor` (what is wrong on this host).

use super::bad;
use anyhow::{bail, Result};
use ironlb_runtime::backend::BackendSpec;
use ironlb_runtime::config::RunSettings;
use std::path::PathBuf;

/// `ironlb doctor`: every check, exit 1 when one fails.
pub(super) fn doctor(config: Option<PathBuf>, settings: RunSettings) -> Result<()> {
    use ironlb_runtime::host::doctor;
    settings.check("--").map_err(bad)?;
    let (file, loaded) = match &config {
        Some(p) => match RunSettings::load(p) {
            Ok(f) => (f, Some((p.clone(), Ok(())))),
            Err(e) => (RunSettings::default(), Some((p.clone(), Err(e.to_string())))),
        },
        None => (RunSettings::default(), None),
    };
    let checks = doctor::run(&doctor::Inputs {
        config: loaded,
        settings: file.overlay(settings),
        roots: ironlb_driver::VfioRoots::default(),
    });
    out!("{}", doctor::render(&checks).trim_end());
    let failed = checks
        .iter()
        .filter(|c| c.outcome == doctor::Outcome::Fail)
        .count();
    if failed > 0 {
        bail!("{failed} checks failed");
    }
    Ok(())
}

/// `ironlb device bind`: the named device, or the config's vfio backend.
pub(super) fn device_bind(
    device: Option<String>,
    config: Option<PathBuf>,
    group: Option<String>,
) -> Result<()> {
    use ironlb_runtime::host::bind::{self, BindError, Selector};
    let roots = ironlb_driver::VfioRoots::default();
    let sel: Selector = match (&device, &config) {
        (Some(d), _) => d.parse().map_err(bad)?,
        (None, Some(p)) => match RunSettings::load(p).map_err(bad)?.backend {
            Some(BackendSpec::Vfio(pci, _)) => pci.parse().map_err(bad)?,
            other => {
                let b = other.unwrap_or(BackendSpec::Inproc);
                out!("{}: backend {b}: no device to bind", p.display());
                return Ok(());
            }
        },
        (None, None) => bail!(bad(
            "name a device (PCI address or vendor:device) or give --config"
        )),
    };
    let gid = group
        .as_deref()
        .map(ironlb_runtime::config::group_id)
        .transpose()
        .map_err(|e| bad(format!("--group {e}")))?;
    let addrs = bind::resolve(&roots, &sel).map_err(|e| match e {
        BindError::BadSelector { .. } => bad(e),
        e => anyhow::Error::new(e),
    })?;
    for addr in addrs {
        let b = bind::bind(&roots, &addr, gid)?;
        let before = match &b.previous {
            Some(d) if *d == b.checked.driver => "already".to_string(),
            Some(d) => format!("was {d}"),
            None => "was unbound".to_string(),
        };
        out!(
            "{addr}: bound to {} ({before}), IOMMU group {} viable, {}{}",
            b.checked.driver,
            b.checked.group,
            b.checked.group_path.display(),
            gid.map(|g| format!(" given to gid {g}, mode 0660"))
                .unwrap_or_default()
        );
    }
    Ok(())
}
