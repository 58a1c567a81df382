//! The daemon's configuration file (`ironlb run --config FILE`, docs/operations.md §2 "Configuration file").
//!
//! One struct, [`RunSettings`], is both the TOML file (every key optional, unknown keys refused) and the `ironlb run`
//! flags (every flag optional): the effective settings are the flags given, then the file, then the defaults
//! ([`RunSettings::overlay`], [`RunSettings::with_defaults`]). Each key is named as its flag (`--public-pool` is
//! `public-pool`). Values are checked once, here, into a typed [`crate::daemon::DaemonConfig`]; an error names the
//! file (or the flag) and the key.

use crate::alloc::Pools;
use crate::backend::BackendSpec;
use crate::cli::ColorChoice;
use crate::control::drain::DRAIN_TIMEOUT;
use crate::daemon::{self, DaemonConfig};
use crate::manifest::LoadOptions;
use crate::reconcile::{HostConfig, RELEASE_GRACE};
use ironlb_cluster::EtcdSettings;
use ironlb_sim::DeviceConfig;
use serde::{Deserialize, Serialize};
use std::net::{Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default quiet time of the manifest watcher (`debounce-ms`).
pub const DEFAULT_DEBOUNCE_MS: u64 = 2;

/// Log line format (`log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Every `ironlb run` setting that belongs in a configuration file. As flags, each is optional (an absent flag
/// leaves the file's value or the default); as TOML keys, likewise. The one-shot actions (`--once`,
/// `--remove-unclaimed`, `--print-config`) are flags only: a file that re-creates VIPs at every start would be a trap.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, clap::Args)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RunSettings {
    /// Manifest directory (watched: create, modify, delete). Required, as a flag or in the config file.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifests: Option<PathBuf>,
    /// The device: `inproc` (software model in this process), `sim-shm:PREFIX` or `vfio:PCI_ADDR[@BAR]`
    /// [default: inproc].
    #[arg(long)]
    #[serde(default, with = "as_str", skip_serializing_if = "Option::is_none")]
    pub backend: Option<BackendSpec>,
    /// State directory: allocations, status.json, control socket, lock [default: $XDG_STATE_HOME/ironlb, else
    /// $HOME/.local/state/ironlb, else /var/lib/ironlb].
    #[arg(long, env = "IRONLB_STATE_DIR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_dir: Option<PathBuf>,
    /// Public address pool(s), CIDR, comma-separated or repeated; one per family at least
    /// [default: 203.0.113.0/24,2001:db8:ff::/64].
    #[arg(long = "public-pool")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_pool: Option<Vec<String>>,
    /// Port roles `N=public`, `N=vni:V` or `N=underlay`, comma-separated or repeated
    /// [default: 0=public,1=vni:100,2=vni:200,3=underlay].
    #[arg(long = "port", value_delimiter = ',')]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<Vec<String>>,
    /// Outer IPv6 source address of encapsulated packets [default: fd00:ffff::1].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub underlay_src: Option<Ipv6Addr>,
    /// Underlay MTU [default: 9000].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// Outer hop limit [default: 64].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hop_limit: Option<u8>,
    /// Control socket, mode 0660 [default: STATE_DIR/ironlb.sock].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socket: Option<PathBuf>,
    /// Group (name or number) owning the control socket: its members may run `ironlb status`, `dump`, `stats` and
    /// `trace` against the daemon [default: the daemon's group].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socket_group: Option<String>,
    /// Serve Prometheus metrics on this address, e.g. 127.0.0.1:9477 [default: off].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<SocketAddr>,
    /// Log format [default: text].
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,
    /// Colour in text logs: `auto` (only when stderr is a terminal and NO_COLOR is not set), `always` or `never`
    /// [default: auto].
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub color: Option<ColorChoice>,
    /// Quiet time before a burst of manifest changes is applied, in milliseconds [default: 2].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub debounce_ms: Option<u64>,
    /// How long a deleted LoadBalancer's lb_id and IPs stay allocated after it left the device, e.g. 10m, 1h, 0s.
    /// A LoadBalancer that comes back within it keeps its VIPs [default: 10m].
    #[arg(long, value_parser = humantime::parse_duration)]
    #[serde(default, with = "as_duration", skip_serializing_if = "Option::is_none")]
    pub release_grace: Option<Duration>,
    /// How long a target whose NetworkInterface leaves `Available` or stops matching the selector drains (keeps its
    /// pinned flows, gets no new ones) before it is removed, e.g. 5m, 30s; 0s cuts at once. A deleted
    /// NetworkInterface is always cut at once [default: 5m].
    #[arg(long, value_parser = humantime::parse_duration)]
    #[serde(default, with = "as_duration", skip_serializing_if = "Option::is_none")]
    pub drain_timeout: Option<Duration>,
    /// Unknown fields in the manifests are warnings (logged; the object loads without the field) instead of errors
    /// that keep the object out (`--lenient`, or `lenient = true`; docs/api.md "Unknown fields fail closed")
    /// [default: false].
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lenient: Option<bool>,
    /// How to reach etcd in cluster mode (`--etcd-*` flags; the `[etcd]` table of the file; docs/cluster.md).
    #[command(flatten)]
    #[serde(default, skip_serializing_if = "EtcdSettings::is_empty")]
    pub etcd: EtcdSettings,
}

/// A configuration that cannot be used: bad input (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("config file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not TOML, has an unknown key or a value of the wrong type (the message gives line and key).
    #[error("config file {}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// A key's value is of the right type but not acceptable.
    #[error("{origin}{key}: {reason}")]
    Value {
        /// `config file PATH: ` or `--` (a flag).
        origin: String,
        /// The key (flag name).
        key: &'static str,
        /// Why.
        reason: String,
    },
    /// A required setting is in neither the flags nor the file.
    #[error("--{key} (or `{key}` in the config file) is required")]
    Missing {
        /// The key.
        key: &'static str,
    },
}

impl RunSettings {
    /// Reads a configuration file. Unknown keys and values of the wrong type are errors naming the file, line and
    /// key; values that parse are checked as [`RunSettings::check`] does.
    pub fn load(path: &Path) -> Result<RunSettings, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let s = RunSettings::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.to_path_buf(),
            message,
        })?;
        s.check(&format!("config file {}: ", path.display()))?;
        Ok(s)
    }

    /// Parses TOML text (no value checks).
    pub fn parse(text: &str) -> Result<RunSettings, String> {
        toml::from_str(text).map_err(|e| e.to_string().trim_end().to_string())
    }

    /// These settings as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("settings serialize")
    }

    /// `over`'s settings where it has them, this one's otherwise (flags over a file).
    pub fn overlay(self, over: RunSettings) -> RunSettings {
        RunSettings {
            manifests: over.manifests.or(self.manifests),
            backend: over.backend.or(self.backend),
            state_dir: over.state_dir.or(self.state_dir),
            public_pool: over.public_pool.or(self.public_pool),
            port: over.port.or(self.port),
            underlay_src: over.underlay_src.or(self.underlay_src),
            mtu: over.mtu.or(self.mtu),
            hop_limit: over.hop_limit.or(self.hop_limit),
            socket: over.socket.or(self.socket),
            socket_group: over.socket_group.or(self.socket_group),
            metrics: over.metrics.or(self.metrics),
            log_format: over.log_format.or(self.log_format),
            color: over.color.or(self.color),
            debounce_ms: over.debounce_ms.or(self.debounce_ms),
            release_grace: over.release_grace.or(self.release_grace),
            drain_timeout: over.drain_timeout.or(self.drain_timeout),
            lenient: over.lenient.or(self.lenient),
            etcd: self.etcd.overlay(over.etcd),
        }
    }

    /// Every setting that has a default filled in (what `ironlb run --print-config` shows). `manifests`,
    /// `socket-group` and `metrics` have none and stay as they are.
    pub fn with_defaults(self) -> RunSettings {
        let state_dir = self.state_dir.unwrap_or_else(daemon::default_state_dir);
        let split = |s: &str| s.split(',').map(str::to_string).collect::<Vec<_>>();
        RunSettings {
            manifests: self.manifests,
            backend: Some(self.backend.unwrap_or(BackendSpec::Inproc)),
            socket: Some(self.socket.unwrap_or_else(|| state_dir.join("ironlb.sock"))),
            state_dir: Some(state_dir),
            public_pool: Some(
                self.public_pool
                    .unwrap_or_else(|| split(daemon::DEFAULT_PUBLIC_POOLS)),
            ),
            port: Some(self.port.unwrap_or_else(|| split(daemon::DEFAULT_PORTS))),
            underlay_src: Some(
                self.underlay_src
                    .unwrap_or_else(|| daemon::DEFAULT_UNDERLAY_SRC.parse().expect("default underlay")),
            ),
            mtu: Some(self.mtu.unwrap_or(daemon::DEFAULT_MTU)),
            hop_limit: Some(self.hop_limit.unwrap_or(daemon::DEFAULT_HOP_LIMIT)),
            socket_group: self.socket_group,
            metrics: self.metrics,
            log_format: Some(self.log_format.unwrap_or(LogFormat::Text)),
            color: Some(self.color.unwrap_or_default()),
            debounce_ms: Some(self.debounce_ms.unwrap_or(DEFAULT_DEBOUNCE_MS)),
            release_grace: Some(self.release_grace.unwrap_or(RELEASE_GRACE)),
            drain_timeout: Some(self.drain_timeout.unwrap_or(DRAIN_TIMEOUT)),
            lenient: Some(self.lenient.unwrap_or(false)),
            etcd: self.etcd,
        }
    }

    /// Checks the values that are present; `origin` prefixes the error (`config file PATH: ` or `--`).
    pub fn check(&self, origin: &str) -> Result<(), ConfigError> {
        let bad = |key: &'static str, reason: String| ConfigError::Value {
            origin: origin.to_string(),
            key,
            reason,
        };
        if let Some(p) = &self.public_pool {
            Pools::parse(p).map_err(|e| bad("public-pool", e.to_string()))?;
        }
        if let Some(ports) = &self.port {
            for p in ports {
                HostConfig::parse_port(p).map_err(|e| bad("port", e))?;
            }
        }
        if let Some(u) = self.underlay_src {
            if let Some(why) = crate::validate::addr::underlay_problem(u) {
                return Err(bad("underlay-src", why.to_string()));
            }
        }
        if let Some(g) = &self.socket_group {
            group_id(g).map_err(|e| bad("socket-group", e))?;
        }
        if !self.etcd.is_empty() {
            self.etcd.resolve().map_err(|e| bad("etcd", e.to_string()))?;
        }
        Ok(())
    }

    /// The daemon's configuration from effective settings (after [`RunSettings::with_defaults`]).
    pub fn daemon_config(&self, remove_unclaimed: bool) -> Result<DaemonConfig, ConfigError> {
        let s = self.clone().with_defaults();
        let manifests = s
            .manifests
            .clone()
            .ok_or(ConfigError::Missing { key: "manifests" })?;
        let pools = Pools::parse(s.public_pool.as_deref().unwrap_or_default())
            .map_err(|e| flag_value("public-pool", e.to_string()))?;
        let host = s.host_config()?;
        let socket_group = s.socket_gid()?;
        Ok(DaemonConfig {
            manifests,
            state_dir: s.state_dir.expect("defaulted"),
            backend: s.backend.expect("defaulted"),
            device_config: DeviceConfig::default(),
            pools,
            host,
            socket: s.socket,
            socket_group,
            metrics: s.metrics,
            debounce: Duration::from_millis(s.debounce_ms.expect("defaulted")),
            release_grace: s.release_grace.expect("defaulted"),
            drain_timeout: s.drain_timeout.expect("defaulted"),
            remove_unclaimed,
            load: if s.lenient == Some(true) {
                LoadOptions::LENIENT
            } else {
                LoadOptions::default()
            },
        })
    }
}

impl RunSettings {
    /// The device ports and underlay of effective settings (after [`RunSettings::with_defaults`]): `ironlb run`'s
    /// and `ironlb agent`'s.
    pub fn host_config(&self) -> Result<HostConfig, ConfigError> {
        let ports = self
            .port
            .iter()
            .flatten()
            .map(|p| HostConfig::parse_port(p).map_err(|reason| flag_value("port", reason)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(HostConfig {
            ports,
            underlay_src: self.underlay_src.expect("defaulted"),
            mtu: self.mtu.expect("defaulted"),
            hop_limit: self.hop_limit.expect("defaulted"),
        })
    }

    /// The gid `socket-group` names, if given.
    pub fn socket_gid(&self) -> Result<Option<u32>, ConfigError> {
        self.socket_group
            .as_deref()
            .map(group_id)
            .transpose()
            .map_err(|reason| flag_value("socket-group", reason))
    }
}

/// A bad value of the effective settings (flags over the file), named by its flag.
fn flag_value(key: &'static str, reason: String) -> ConfigError {
    ConfigError::Value {
        origin: "--".to_string(),
        key,
        reason,
    }
}

/// A group name or number (`socket-group`) as a gid.
pub fn group_id(g: &str) -> Result<u32, String> {
    if let Ok(n) = g.parse::<u32>() {
        return Ok(n);
    }
    match nix::unistd::Group::from_name(g) {
        Ok(Some(grp)) => Ok(grp.gid.as_raw()),
        Ok(None) => Err(format!("{g}: no such group")),
        Err(e) => Err(format!("{g}: looking up the group: {e}")),
    }
}

/// `Option<T>` as its `Display` / `FromStr` string.
mod as_str {
    use serde::{de::Error as _, Deserialize, Deserializer, Serializer};
    use std::fmt::Display;
    use std::str::FromStr;

    pub fn serialize<T: Display, S: Serializer>(v: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.collect_str(v),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, T, D>(d: D) -> Result<Option<T>, D::Error>
    where
        T: FromStr,
        T::Err: Display,
        D: Deserializer<'de>,
    {
        let s = String::deserialize(d)?;
        s.parse().map(Some).map_err(D::Error::custom)
    }
}

/// `Option<Duration>` as a humantime string (`10m`, `1h 30m`, `0s`).
mod as_duration {
    use serde::{de::Error as _, Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(v: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(d) => s.collect_str(&humantime::format_duration(*d)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s)
            .map(Some)
            .map_err(|e| D::Error::custom(format!("{s:?}: {e} (e.g. 10m, 1h, 0s)")))
    }
}

#[cfg(test)]
mod tests;
