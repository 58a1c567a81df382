//! How to reach etcd: endpoints, TLS files and the key prefix, as `--etcd-*` flags and as the `[etcd]` table of the
//! configuration file (docs/cluster.md "Connecting"). Flags override the file; [`EtcdSettings::resolve`] checks
//! the values once into an [`EtcdConfig`].
//!
//! The client key is a secret: only its path is ever kept in settings, printed or logged; its content is read when
//! connecting and handed to the TLS stack.

use crate::layout::{Layout, PrefixError};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// The endpoint used when none is configured (a local etcd's default client URL).
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:2379";

/// Default bound on one etcd request (and on connecting).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// etcd settings: each optional, as flags and as keys of the configuration file's `[etcd]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, clap::Args)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct EtcdSettings {
    /// etcd client URLs, comma-separated or repeated (`https://` with TLS) [default: http://127.0.0.1:2379].
    #[arg(long = "etcd-endpoints", value_delimiter = ',')]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<Vec<String>>,
    /// Key prefix of this fleet's objects in etcd; starts and ends with '/' [default: /ironlb/].
    #[arg(long = "etcd-prefix")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// CA certificate (PEM) that signed etcd's server certificate; turns TLS on.
    #[arg(long = "etcd-ca")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM) for etcd's client-certificate authentication; needs --etcd-key.
    #[arg(long = "etcd-cert")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    /// The client certificate's private key (PEM); needs --etcd-cert. Only its path is ever shown.
    #[arg(long = "etcd-key")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
}

/// TLS files (paths only; the key's content is read at connect time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// CA certificate.
    pub ca: Option<PathBuf>,
    /// Client certificate and key.
    pub identity: Option<(PathBuf, PathBuf)>,
}

/// Checked etcd settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdConfig {
    /// Client URLs.
    pub endpoints: Vec<String>,
    /// Key layout (prefix).
    pub layout: Layout,
    /// TLS, when on.
    pub tls: Option<TlsFiles>,
    /// Bound on connecting and on each request.
    pub timeout: Duration,
}

/// Settings that cannot be used (bad input).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    /// The prefix is malformed.
    #[error("etcd prefix: {0}")]
    Prefix(#[from] PrefixError),
    /// An endpoint is malformed.
    #[error("etcd endpoint {endpoint:?}: {reason}")]
    Endpoint {
        /// As given.
        endpoint: String,
        /// Why.
        reason: &'static str,
    },
    /// Only one of certificate and key.
    #[error("etcd client certificate and key go together: set both cert and key, or neither")]
    HalfIdentity,
}

impl EtcdSettings {
    /// `over`'s settings where it has them, this one's otherwise (flags over a file).
    pub fn overlay(self, over: EtcdSettings) -> EtcdSettings {
        EtcdSettings {
            endpoints: over.endpoints.or(self.endpoints),
            prefix: over.prefix.or(self.prefix),
            ca: over.ca.or(self.ca),
            cert: over.cert.or(self.cert),
            key: over.key.or(self.key),
        }
    }

    /// Nothing set.
    pub fn is_empty(&self) -> bool {
        *self == EtcdSettings::default()
    }

    /// The checked configuration, defaults filled in.
    pub fn resolve(&self) -> Result<EtcdConfig, SettingsError> {
        let endpoints = self
            .endpoints
            .clone()
            .filter(|e| !e.is_empty())
            .unwrap_or_else(|| vec![DEFAULT_ENDPOINT.to_string()]);
        let identity = match (&self.cert, &self.key) {
            (Some(c), Some(k)) => Some((c.clone(), k.clone())),
            (None, None) => None,
            _ => return Err(SettingsError::HalfIdentity),
        };
        let tls = (self.ca.is_some() || identity.is_some()).then(|| TlsFiles {
            ca: self.ca.clone(),
            identity,
        });
        for e in &endpoints {
            let bad = |reason| SettingsError::Endpoint {
                endpoint: e.clone(),
                reason,
            };
            let rest = if let Some(r) = e.strip_prefix("https://") {
                r
            } else if let Some(r) = e.strip_prefix("http://") {
                if tls.is_some() {
                    return Err(bad("TLS is configured (ca, cert): use an https:// URL"));
                }
                r
            } else {
                return Err(bad("expected http://HOST:PORT or https://HOST:PORT"));
            };
            if rest.is_empty() || rest.contains(char::is_whitespace) {
                return Err(bad("expected http://HOST:PORT or https://HOST:PORT"));
            }
        }
        let layout = Layout::new(self.prefix.as_deref().unwrap_or(crate::layout::DEFAULT_PREFIX))?;
        Ok(EtcdConfig {
            endpoints,
            layout,
            tls,
            timeout: DEFAULT_TIMEOUT,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let c = EtcdSettings::default().resolve().unwrap();
        assert_eq!(c.endpoints, vec![DEFAULT_ENDPOINT]);
        assert_eq!(c.layout.prefix(), "/ironlb/");
        assert_eq!(c.tls, None);
    }

    #[test]
    fn flags_override_the_file() {
        let file: EtcdSettings = toml::from_str("endpoints = [\"http://a:1\"]\nprefix = \"/f/\"\n").unwrap();
        let flags = EtcdSettings {
            prefix: Some("/g/".into()),
            ..EtcdSettings::default()
        };
        let c = file.overlay(flags).resolve().unwrap();
        assert_eq!(c.endpoints, vec!["http://a:1"]);
        assert_eq!(c.layout.prefix(), "/g/");
    }

    #[test]
    fn bad_settings_are_named() {
        let s = |t: &str| {
            toml::from_str::<EtcdSettings>(t)
                .unwrap()
                .resolve()
                .unwrap_err()
                .to_string()
        };
        assert!(s("endpoints = [\"a:1\"]").contains("\"a:1\""));
        assert!(s("prefix = \"x\"").contains("prefix"));
        assert!(s("cert = \"/c\"").contains("cert and key"));
        assert!(s("ca = \"/ca\"\nendpoints = [\"http://a:1\"]").contains("https://"));
        assert!(toml::from_str::<EtcdSettings>("password = \"x\"").is_err());
        let ok = toml::from_str::<EtcdSettings>(
            "ca = \"/ca\"\ncert = \"/c\"\nkey = \"/k\"\nendpoints = [\"https://a:1\"]",
        )
        .unwrap()
        .resolve()
        .unwrap();
        assert_eq!(
            ok.tls,
            Some(TlsFiles {
                ca: Some("/ca".into()),
                identity: Some(("/c".into(), "/k".into()))
            })
        );
    }
}
