//! `ironlb doctor`: one command that says what is wrong on this host, check by check, each with what it found and
//! what to do: the configuration, the IOMMU, the NIC's binding and device node permissions (the driver's own
//! pre-checks), the device itself (identity and contract version), the daemon's control socket and its metrics.

use crate::backend::BackendSpec;
use crate::config::RunSettings;
use crate::daemon::{self, Request};
use crate::ops::Format;
use ironlb_driver::{precheck, PciAddress, VfioRoots};
use ironlb_sim::DeviceConfig;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

/// How long the metrics check waits for the endpoint.
pub const METRICS_TIMEOUT: Duration = Duration::from_secs(3);

/// A check's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Fine.
    Ok,
    /// Not needed with this configuration.
    Skip,
    /// Works, but worth a look.
    Warn,
    /// Broken: the detail says what to do.
    Fail,
}

impl Outcome {
    /// The word printed in the first column.
    pub fn word(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Skip => "skip",
            Outcome::Warn => "warn",
            Outcome::Fail => "FAIL",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What was checked (`iommu`, `binding`, ...).
    pub name: &'static str,
    /// The result.
    pub outcome: Outcome,
    /// What was found, or what is wrong and how to fix it.
    pub detail: String,
}

impl Check {
    fn new(name: &'static str, outcome: Outcome, detail: impl Into<String>) -> Check {
        Check {
            name,
            outcome,
            detail: detail.into(),
        }
    }
}

/// What the doctor looks at.
#[derive(Debug, Clone)]
pub struct Inputs {
    /// The configuration file, and whether it loaded (`Err`: the error).
    pub config: Option<(PathBuf, Result<(), String>)>,
    /// Effective settings (flags over the file over the defaults).
    pub settings: RunSettings,
    /// Where sysfs and devfs are.
    pub roots: VfioRoots,
}

/// Runs every check, in the order an operator fixes things.
pub fn run(inputs: &Inputs) -> Vec<Check> {
    let s = inputs.settings.clone().with_defaults();
    let backend = s.backend.clone().unwrap_or(BackendSpec::Inproc);
    let mut checks = vec![config(inputs)];
    let vfio = match &backend {
        BackendSpec::Vfio(pci, _) => Some(pci.clone()),
        _ => None,
    };
    checks.push(iommu(&inputs.roots, vfio.is_some()));
    checks.push(binding(&inputs.roots, vfio.as_deref()));
    let socket = s.socket.clone().expect("defaulted");
    let (daemon_check, reachable) = daemon_reachable(&socket);
    checks.push(device(&backend, reachable));
    checks.push(daemon_check);
    checks.push(metrics(s.metrics));
    checks
}

fn config(inputs: &Inputs) -> Check {
    match &inputs.config {
        None => Check::new("config", Outcome::Skip, "no --config: flags and defaults only"),
        Some((p, Ok(()))) => Check::new("config", Outcome::Ok, format!("{} loads", p.display())),
        Some((_, Err(e))) => Check::new("config", Outcome::Fail, e.clone()),
    }
}

fn iommu(roots: &VfioRoots, needed: bool) -> Check {
    let dir = roots.sysfs.join("kernel/iommu_groups");
    let groups = std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0);
    match (groups, needed) {
        (0, true) => Check::new(
            "iommu",
            Outcome::Fail,
            format!(
                "no IOMMU groups under {}: the IOMMU is off; boot with intel_iommu=on (Intel) or amd_iommu=on \
                 (AMD) and iommu=pt",
                dir.display()
            ),
        ),
        (0, false) => Check::new("iommu", Outcome::Skip, "off, and not needed: the backend is not vfio"),
        (n, _) => Check::new("iommu", Outcome::Ok, format!("on: {n} groups under {}", dir.display())),
    }
}

fn binding(roots: &VfioRoots, pci: Option<&str>) -> Check {
    let Some(pci) = pci else {
        return Check::new("binding", Outcome::Skip, "the backend is not vfio");
    };
    let addr = match PciAddress::parse(pci) {
        Ok(a) => a,
        Err(e) => return Check::new("binding", Outcome::Fail, e.to_string()),
    };
    match precheck(roots, &addr) {
        Ok(c) => Check::new(
            "binding",
            Outcome::Ok,
            format!(
                "{addr} bound to {}, IOMMU group {} viable, {} and {} open read-write for this user",
                c.driver,
                c.group,
                c.container_path.display(),
                c.group_path.display()
            ),
        ),
        Err(e) => Check::new("binding", Outcome::Fail, e.to_string()),
    }
}

/// The device's identity and contract version, read by opening it, unless the daemon drives it (two drivers would
/// share the mailbox).
fn device(backend: &BackendSpec, daemon_up: bool) -> Check {
    if daemon_up {
        return Check::new(
            "device",
            Outcome::Skip,
            format!("{backend} is driven by the daemon (see `daemon`)"),
        );
    }
    if *backend == BackendSpec::Inproc {
        return Check::new(
            "device",
            Outcome::Skip,
            "inproc: the model lives inside the daemon",
        );
    }
    match backend.open(&DeviceConfig::default()) {
        Ok(o) => {
            let c = o.device.caps();
            Check::new(
                "device",
                Outcome::Ok,
                format!("{backend}: ironlb device, contract {}.{}", c.major, c.minor),
            )
        }
        Err(e) => Check::new("device", Outcome::Fail, format!("{backend}: {e}")),
    }
}

fn daemon_reachable(socket: &std::path::Path) -> (Check, bool) {
    match daemon::request(socket, &Request::Stats { format: Format::Table }) {
        Ok(_) => (
            Check::new("daemon", Outcome::Ok, format!("answers on {}", socket.display())),
            true,
        ),
        Err(e) => (
            Check::new(
                "daemon",
                Outcome::Fail,
                format!("{e}; `systemctl status ironlb` tells whether it runs, `id` whether this user is in the socket's group"),
            ),
            false,
        ),
    }
}

fn metrics(addr: Option<SocketAddr>) -> Check {
    let Some(addr) = addr else {
        return Check::new(
            "metrics",
            Outcome::Skip,
            "not configured (metrics = \"127.0.0.1:9477\")",
        );
    };
    match scrape(addr) {
        Ok(body) if body.contains("ironlb_") => Check::new(
            "metrics",
            Outcome::Ok,
            format!(
                "http://{addr}/metrics serves {} ironlb_ series",
                body.lines().filter(|l| l.starts_with("ironlb_")).count()
            ),
        ),
        Ok(_) => Check::new(
            "metrics",
            Outcome::Fail,
            format!("http://{addr}/metrics answers without ironlb_ metrics: another server on this port?"),
        ),
        Err(e) => Check::new("metrics", Outcome::Fail, format!("http://{addr}/metrics: {e}")),
    }
}

/// One bounded `GET /metrics`.
fn scrape(addr: SocketAddr) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, METRICS_TIMEOUT)?;
    s.set_read_timeout(Some(METRICS_TIMEOUT))?;
    s.set_write_timeout(Some(METRICS_TIMEOUT))?;
    write!(
        s,
        "GET /metrics HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut body = String::new();
    s.take(16 << 20).read_to_string(&mut body)?;
    let status = body
        .strip_prefix("HTTP/1.")
        .and_then(|r| r.split_whitespace().nth(1));
    if status != Some("200") {
        return Err(std::io::Error::other(format!(
            "unexpected answer {:?}",
            body.lines().next().unwrap_or("")
        )));
    }
    Ok(body)
}

/// The report as printed: one line per check.
pub fn render(checks: &[Check]) -> String {
    checks
        .iter()
        .map(|c| format!("{:<5} {:<8} {}\n", c.outcome.word(), c.name, c.detail))
        .collect()
}

#[cfg(test)]
mod tests;
