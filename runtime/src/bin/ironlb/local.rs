//! Where diagnostics run: the built-in example or a manifest directory programmed into an in-process model, a
//! device opened directly (a copy of its tables when a trace needs the model's pipeline), or the daemon.

use super::{bad, op_err, pools, HostArgs, Target};
use anyhow::{bail, Context, Result};
use ironlb_driver::SharedModel;
use ironlb_runtime::alloc::Pools;
use ironlb_runtime::backend::{BackendSpec, Opened};
use ironlb_runtime::cli::TracePacket;
use ironlb_runtime::daemon::{self, Request, StatusFile};
use ironlb_runtime::example;
use ironlb_runtime::manifest::LoadOptions;
use ironlb_runtime::ops::{self, OpError, View};
use ironlb_runtime::reconcile::{HostConfig, Reconciler};
use ironlb_sim::DeviceConfig;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

/// Ports and underlay of an in-process model programmed from `--manifests` (the `ironlb run` defaults).
pub(super) fn default_host() -> Result<HostConfig> {
    HostArgs::default().host()
}

/// A device programmed in this process: the example, or a manifest directory through the reconciler.
pub(super) struct Local {
    holder: Holder,
    /// The model (a replay drives its pipeline).
    pub(super) model: SharedModel,
    /// `namespace/name` per lb_id.
    pub(super) names: BTreeMap<u32, String>,
    /// The model is a copy of another device's tables ([`ops::mirror`]).
    copy: bool,
}

/// What owns the local device: the reconciler (`--manifests`) or nothing but the driver (`--example`).
enum Holder {
    Rec(Box<Reconciler>),
    Dev(Box<ironlb_driver::Device>),
}

impl Holder {
    fn dev(&mut self) -> &mut ironlb_driver::Device {
        match self {
            Holder::Rec(r) => r.device(),
            Holder::Dev(d) => d,
        }
    }
}

impl Local {
    pub(super) fn dev(&mut self) -> &mut ironlb_driver::Device {
        self.holder.dev()
    }

    fn view(&mut self) -> View<'_> {
        View {
            dev: self.holder.dev(),
            model: Some(&self.model),
            names: &self.names,
            copy: self.copy,
        }
    }
}

/// The device `--backend b` names, opened directly (not the empty `inproc`).
pub(super) fn open_backend(b: &str) -> Result<Opened> {
    let spec: BackendSpec = b.parse().map_err(|e| bad(format!("--backend {e}")))?;
    if spec == BackendSpec::Inproc {
        bail!(bad(
            "--backend inproc: an in-process model is empty; use --manifests or --example"
        ));
    }
    spec.open(&DeviceConfig::default())
        .with_context(|| format!("--backend {b}"))
}

/// A model loaded with a copy of a device's tables (`replay --backend`).
pub(super) fn local_copy(b: &str) -> Result<Local> {
    let mut opened = open_backend(b)?;
    let (copy, model) = ops::mirror(&mut opened.device)
        .map_err(op_err)
        .with_context(|| format!("copying the tables of --backend {b}"))?;
    Ok(Local {
        holder: Holder::Dev(Box::new(copy)),
        model,
        names: BTreeMap::new(),
        copy: true,
    })
}

pub(super) fn local_example() -> Result<Local> {
    let (dev, model) = example::device().context("programming the example configuration")?;
    let names = example::specs()
        .into_iter()
        .map(|(n, s)| (s.lb_id, n.to_string()))
        .collect();
    Ok(Local {
        holder: Holder::Dev(Box::new(dev)),
        model,
        names,
        copy: false,
    })
}

/// What [`local_manifests`] found wrong in the manifests: documents that did not load, and objects that did not
/// program for bad input (`replay` exits 2 on either, as `validate` does).
pub(super) struct ManifestProblems {
    pub(super) bad_input: usize,
}

pub(super) fn local_manifests(dir: &Path, pools: Pools, quiet: bool) -> Result<Local> {
    local_manifests_with(dir, pools, &default_host()?, LoadOptions::default(), quiet).map(|(l, _)| l)
}

pub(super) fn local_manifests_with(
    dir: &Path,
    pools: Pools,
    host: &HostConfig,
    load: LoadOptions,
    quiet: bool,
) -> Result<(Local, ManifestProblems)> {
    if !dir.is_dir() {
        bail!(bad(format!("--manifests {}: not a directory", dir.display())));
    }
    let p = daemon::program_dir(dir, pools, host, load)
        .with_context(|| format!("programming {}", dir.display()))?;
    let invalid = p.rec.validation_errors();
    let problems = ManifestProblems {
        bad_input: p.load_errors.len() + invalid.len(),
    };
    if !quiet {
        for e in &p.load_warnings {
            eprintln!("ironlb: warning: {e}");
        }
        for e in &p.load_errors {
            eprintln!("ironlb: error: {e}");
        }
        for e in &invalid {
            eprintln!("ironlb: error: {e}");
        }
        for e in &p.report.errors {
            eprintln!(
                "ironlb: warning: LoadBalancer {}: {}: {}",
                e.key, e.reason, e.message
            );
        }
    }
    Ok((
        Local {
            names: p.rec.names(),
            holder: Holder::Rec(Box::new(p.rec)),
            model: p.model,
            copy: false,
        },
        problems,
    ))
}

pub(super) fn socket_of(t: &Target) -> PathBuf {
    t.socket.clone().unwrap_or_else(|| {
        t.state_dir
            .clone()
            .unwrap_or_else(daemon::default_state_dir)
            .join("ironlb.sock")
    })
}

/// Runs a diagnostics request against the target: in-process, a directly opened device, or the daemon.
pub(super) fn diagnose(t: &Target, req: Request) -> Result<String> {
    if t.example || t.manifests.is_some() {
        let mut l = if t.example {
            local_example()?
        } else {
            local_manifests(
                t.manifests.as_deref().expect("manifests"),
                pools(&t.pools)?,
                false,
            )?
        };
        if let Request::Status { format: f } = req {
            return match &l.holder {
                Holder::Rec(r) => Ok(ops::status(r.status(), f)),
                Holder::Dev(_) => bail!(bad(
                    "status needs --manifests or a daemon (the example has no objects)"
                )),
            };
        }
        return answer(l.view(), &req);
    }
    if let Some(b) = &t.backend {
        let mut opened = open_backend(b)?;
        let names = BTreeMap::new();
        if let Request::Status { .. } = req {
            bail!(bad(
                "status comes from the daemon (--socket/--state-dir), not from a device"
            ));
        }
        // A trace runs the model's pipeline: on a copy of the device's tables when the device is not one.
        return answer(
            View {
                dev: &mut opened.device,
                model: opened.model.as_ref(),
                names: &names,
                copy: false,
            },
            &req,
        );
    }
    let socket = socket_of(t);
    match daemon::request(&socket, &req) {
        Ok(o) => Ok(o),
        Err(OpError::Failed(m)) if matches!(req, Request::Status { .. }) && !socket.exists() => {
            // No daemon: the status it last published.
            let dir = t.state_dir.clone().unwrap_or_else(daemon::default_state_dir);
            let f = StatusFile::read(&dir).map_err(|e| anyhow::anyhow!("{m}; and {e}"))?;
            let Request::Status { format: fmt } = req else {
                unreachable!()
            };
            Ok(f.published().render(fmt))
        }
        Err(e) => Err(op_err(e)),
    }
}

pub(super) fn answer(v: View<'_>, req: &Request) -> Result<String> {
    daemon::diagnose(v, req).map_err(op_err)
}

/// `trace --in FILE --index N`: the IP packet at that index of a pcap, read here (the daemon may not see the file).
pub(super) fn pcap_packet(file: &Path, index: u64) -> Result<TracePacket> {
    let f = File::open(file).map_err(|e| bad(format!("--in {}: {e}", file.display())))?;
    let bytes = ironlb_sim::pcap::packet_at(BufReader::new(f), index)
        .map_err(|e| bad(format!("--in {}: {e}", file.display())))?;
    Ok(TracePacket::bytes(
        format!("{} packet index {index} ({} bytes)", file.display(), bytes.len()),
        &bytes,
    ))
}
