//! `ironlb agent`: the per-host agent of cluster mode (docs/cluster.md "Agents"). Its settings are `ironlb run`'s
//! (backend, ports, underlay, state directory, control socket and its group, log format, metrics, drain timeout)
//! plus the `[etcd]` table, from `--config` and flags. `manifests`, `public-pool`, `lenient`, `release-grace` and
//! `debounce-ms` do not apply (objects and allocations come from etcd, where `apply` validated them and the
//! controller keeps the allocations): given as flags they are refused rather than ignored.

use super::agent::{Agent, AgentConfig, ControlSocket};
use super::cli::CliError;
use crate::config::{ConfigError, LogFormat, RunSettings};
use ironlb_sim::DeviceConfig;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// `ironlb agent`.
#[derive(clap::Args, Debug, Clone)]
pub struct AgentArgs {
    /// Configuration file (TOML, as for `ironlb run`, with an `[etcd]` table); flags given override its keys.
    #[arg(long, env = "IRONLB_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub settings: RunSettings,
}

impl AgentArgs {
    /// The effective settings (flags over the file over the defaults).
    pub fn effective(&self) -> Result<RunSettings, CliError> {
        let file = match &self.config {
            Some(p) => RunSettings::load(p)?,
            None => RunSettings::default(),
        };
        self.settings.check("--")?;
        let flags = &self.settings;
        for (key, given) in [
            ("manifests", flags.manifests.is_some()),
            ("public-pool", flags.public_pool.is_some()),
            ("lenient", flags.lenient.is_some()),
            ("release-grace", flags.release_grace.is_some()),
            ("debounce-ms", flags.debounce_ms.is_some()),
        ] {
            if given {
                return Err(CliError::Config(ConfigError::Value {
                    origin: "--".into(),
                    key,
                    reason: "does not apply to ironlb agent (objects and allocations come from etcd)".into(),
                }));
            }
        }
        Ok(file.overlay(self.settings.clone()).with_defaults())
    }

    /// The agent's configuration.
    pub fn agent_config(&self) -> Result<AgentConfig, CliError> {
        let s = self.effective()?;
        Ok(AgentConfig {
            etcd: s.etcd.resolve()?,
            backend: s.backend.clone().expect("defaulted"),
            device_config: DeviceConfig::default(),
            host: s.host_config()?,
            control: Some(ControlSocket {
                path: s.socket.clone().expect("defaulted"),
                group: s.socket_gid()?,
            }),
            state_dir: s.state_dir.clone(),
        })
    }

    /// The log format to set up before running.
    pub fn log_format(&self) -> LogFormat {
        self.effective()
            .ok()
            .and_then(|s| s.log_format)
            .unwrap_or(LogFormat::Text)
    }
}

/// Runs the agent until SIGTERM or SIGINT.
pub fn agent(args: &AgentArgs) -> Result<(), CliError> {
    let cfg = args.agent_config()?;
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone()).map_err(CliError::Output)?;
    }
    let s = args.effective()?;
    let mut a = Agent::start(cfg).map_err(CliError::Agent)?;
    a.set_drain_timeout(s.drain_timeout.expect("defaulted"));
    if let Some(addr) = s.metrics {
        a.serve_metrics(addr).map_err(CliError::Agent)?;
    }
    a.run(&stop).map_err(CliError::Agent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    #[derive(clap::Parser)]
    struct Cmd {
        #[command(flatten)]
        agent: AgentArgs,
    }

    #[test]
    fn flags_that_do_not_apply_are_refused() {
        for (flag, key) in [
            ("--manifests=/m", "--manifests"),
            ("--public-pool=10.0.0.0/24", "--public-pool"),
            ("--lenient", "--lenient"),
            ("--release-grace=1m", "--release-grace"),
            ("--debounce-ms=5", "--debounce-ms"),
        ] {
            let c = Cmd::try_parse_from(["agent", "--etcd-endpoints=http://127.0.0.1:2379", flag]).unwrap();
            let Err(e) = c.agent.agent_config() else {
                panic!("{flag}: accepted");
            };
            let e = e.to_string();
            assert!(
                e.starts_with(key) && e.contains("does not apply to ironlb agent"),
                "{flag}: {e}"
            );
        }
        let c = Cmd::try_parse_from(["agent", "--etcd-endpoints=http://127.0.0.1:2379"]).unwrap();
        c.agent.agent_config().unwrap();
    }
}
