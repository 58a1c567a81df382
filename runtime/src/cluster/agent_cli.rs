//! `ironlb agent`: the per-host agent of cluster mode (docs/cluster.md "Agents"). Its settings are `ironlb run`'s
//! (backend, ports, underlay, state directory, log format) plus the `[etcd]` table, from `--config` and flags;
//! `manifests` and `public-pool` do not apply (objects and allocations come from etcd).

use super::agent::{Agent, AgentConfig};
use super::cli::CliError;
use crate::config::{ConfigError, LogFormat, RunSettings};
use crate::reconcile::HostConfig;
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
        Ok(file.overlay(self.settings.clone()).with_defaults())
    }

    /// The agent's configuration.
    pub fn agent_config(&self) -> Result<AgentConfig, CliError> {
        let s = self.effective()?;
        let bad = |key: &'static str, reason: String| {
            CliError::Config(ConfigError::Value {
                origin: "--".into(),
                key,
                reason,
            })
        };
        let ports = s
            .port
            .clone()
            .unwrap_or_default()
            .iter()
            .map(|p| HostConfig::parse_port(p).map_err(|e| bad("port", e)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(AgentConfig {
            etcd: s.etcd.resolve()?,
            backend: s.backend.clone().expect("defaulted"),
            device_config: DeviceConfig::default(),
            host: HostConfig {
                ports,
                underlay_src: s.underlay_src.expect("defaulted"),
                mtu: s.mtu.expect("defaulted"),
                hop_limit: s.hop_limit.expect("defaulted"),
            },
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
    let mut a = Agent::start(cfg).map_err(CliError::Agent)?;
    a.run(&stop).map_err(CliError::Agent)
}
