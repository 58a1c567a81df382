//! `ironlb apply`, `ironlb delete` and `ironlb get`: IronCore objects in etcd, in the manner of kubectl
//! (docs/cluster.md "Writing objects").
//!
//! `apply` loads and validates exactly as `ironlb validate` does, then validates the objects together with what is
//! stored; any problem writes nothing (exit 2). Writes are transactions that check each object's revision: a
//! `metadata.resourceVersion` in a manifest pins it, and a concurrent change to a pinned object is a conflict
//! (exit 1). Connection settings come from `--etcd-*` flags over the `[etcd]` table of `--config`.

use super::print::{render, Output};
use crate::config::{ConfigError, RunSettings};
use ironlb_api::load::{load_dir_with, LoadError, LoadOptions};
use ironlb_api::types::DEFAULT_NAMESPACE;
use ironlb_api::{Kind, ObjectKey, ObjectRef};
use ironlb_cluster::client::WriteError;
use ironlb_cluster::codec::resource_version_of;
use ironlb_cluster::settings::SettingsError;
use ironlb_cluster::write::{Incoming, Plan, Refusal};
use ironlb_cluster::{Client, EtcdConfig, EtcdSettings, StoreError};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Where the store is: `--config` and the `--etcd-*` flags.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct Connection {
    /// Configuration file whose `[etcd]` table says how to reach etcd; flags given override its keys.
    #[arg(long, env = "IRONLB_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub etcd: EtcdSettings,
}

impl Connection {
    /// The effective, checked settings.
    pub fn resolve(&self) -> Result<EtcdConfig, CliError> {
        let file = match &self.config {
            Some(path) => RunSettings::load(path)?.etcd,
            None => EtcdSettings::default(),
        };
        Ok(file.overlay(self.etcd.clone()).resolve()?)
    }

    fn connect(&self) -> Result<Client, CliError> {
        Ok(Client::connect(&self.resolve()?)?)
    }
}

/// `ironlb apply`.
#[derive(clap::Args, Debug, Clone)]
pub struct ApplyArgs {
    /// Manifest file, or directory of manifests (read as `ironlb validate` reads them); repeatable.
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<PathBuf>,
    /// Unknown fields are warnings instead of errors (the objects are stored without them).
    #[arg(long)]
    pub lenient: bool,
    #[command(flatten)]
    pub conn: Connection,
}

/// `ironlb delete`.
#[derive(clap::Args, Debug, Clone)]
pub struct DeleteArgs {
    /// Delete the objects of this manifest file or directory; repeatable.
    #[arg(short = 'f', long = "filename", conflicts_with = "kind")]
    pub files: Vec<PathBuf>,
    /// Kind (`LoadBalancer`, `loadbalancers`, `lb`, ...), then one or more names.
    #[arg(required_unless_present = "files")]
    pub kind: Option<String>,
    /// Names of objects of KIND.
    #[arg(requires = "kind")]
    pub names: Vec<String>,
    /// Namespace of the named objects.
    #[arg(short = 'n', long, default_value = DEFAULT_NAMESPACE)]
    pub namespace: String,
    /// An object that does not exist is not an error.
    #[arg(long)]
    pub ignore_not_found: bool,
    #[command(flatten)]
    pub conn: Connection,
}

/// `ironlb get`.
#[derive(clap::Args, Debug, Clone)]
pub struct GetArgs {
    /// Kind (`LoadBalancer`, `loadbalancers`, `lb`, `lbr`, `network`, `nic`, `prefix`, ...).
    pub kind: String,
    /// Names (default: every object of KIND in the namespace).
    pub names: Vec<String>,
    /// Namespace.
    #[arg(short = 'n', long, default_value = DEFAULT_NAMESPACE)]
    pub namespace: String,
    /// Every namespace.
    #[arg(short = 'A', long, conflicts_with = "names")]
    pub all_namespaces: bool,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    pub output: Output,
    #[command(flatten)]
    pub conn: Connection,
}

/// Why a cluster command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Manifests that do not load (every error listed).
    #[error("{} manifest error(s), nothing written:\n{}", .0.len(), lines(.0))]
    Load(Vec<LoadError>),
    /// A kind name that is not one ironlb reads.
    #[error(
        "unknown kind {0:?} (one of LoadBalancer, LoadBalancerRouting, Network, NetworkInterface, Prefix)"
    )]
    Kind(String),
    /// The configuration file is not usable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The etcd settings are not usable.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// Refused before writing.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The store failed or a write conflicted.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Objects asked for by name that are not stored.
    #[error("not found: {}", lines(.0))]
    NotFound(Vec<ObjectRef>),
    /// Writing the output failed.
    #[error("writing output: {0}")]
    Output(#[source] std::io::Error),
    /// The agent failed as a whole.
    #[error(transparent)]
    Agent(#[from] super::agent::AgentError),
}

impl From<WriteError> for CliError {
    fn from(e: WriteError) -> CliError {
        match e {
            WriteError::Refused(r) => CliError::Refused(r),
            WriteError::Store(s) => CliError::Store(s),
        }
    }
}

impl CliError {
    /// Bad input (exit code 2): manifests, names, settings or objects that would be invalid.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            CliError::Load(_)
                | CliError::Kind(_)
                | CliError::Config(_)
                | CliError::Settings(_)
                | CliError::Refused(Refusal::Invalid(_) | Refusal::WouldBreak(_) | Refusal::Duplicate { .. })
        )
    }
}

fn lines<T: std::fmt::Display>(v: &[T]) -> String {
    v.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
}

/// The kind a command-line word names: the kind's name or plural in any case, or a short name.
pub fn parse_kind(s: &str) -> Result<Kind, CliError> {
    let l = s.to_ascii_lowercase();
    let short = match l.as_str() {
        "lb" | "lbs" => Some(Kind::LoadBalancer),
        "lbr" | "lbrs" => Some(Kind::LoadBalancerRouting),
        "net" | "nets" => Some(Kind::Network),
        "nic" | "nics" => Some(Kind::NetworkInterface),
        _ => None,
    };
    short
        .or_else(|| {
            Kind::ALL.into_iter().find(|k| {
                let n = k.as_str().to_ascii_lowercase();
                l == n || l == format!("{n}s") || l == format!("{n}es")
            })
        })
        .ok_or_else(|| CliError::Kind(s.to_string()))
}

fn out_err(e: std::io::Error) -> CliError {
    CliError::Output(e)
}

fn print_plan(plan: &Plan, out: &mut dyn Write) -> Result<(), CliError> {
    for (r, o) in &plan.outcomes {
        writeln!(out, "{} {} {o}", r.kind, r.key).map_err(out_err)?;
    }
    Ok(())
}

/// The `metadata.resourceVersion` written for each object of a manifest file (to pin its write).
fn resource_versions(path: &Path, errors: &mut Vec<LoadError>) -> BTreeMap<ObjectRef, i64> {
    let mut out = BTreeMap::new();
    let Ok(text) = std::fs::read_to_string(path) else {
        return out; // the loader has reported it
    };
    let mut docs = Vec::new();
    for d in serde_norway::Deserializer::from_str(&text) {
        use serde::Deserialize as _;
        let Ok(v) = serde_norway::Value::deserialize(d) else {
            return out; // the loader has reported it
        };
        match v.get("items").and_then(|i| i.as_sequence()) {
            Some(items) => docs.extend(items.iter().cloned()),
            None => docs.push(v),
        }
    }
    for d in docs {
        let s = |v: Option<&serde_norway::Value>| v.and_then(|v| v.as_str()).map(str::to_string);
        let (Some(kind), Some(name)) = (
            s(d.get("kind")).and_then(|k| Kind::from_name(&k)),
            s(d.get("metadata").and_then(|m| m.get("name"))),
        ) else {
            continue;
        };
        let ns =
            s(d.get("metadata").and_then(|m| m.get("namespace"))).unwrap_or_else(|| DEFAULT_NAMESPACE.into());
        let r = ObjectRef {
            kind,
            key: ObjectKey::new(ns, name),
        };
        match resource_version_of(&d) {
            Some(Ok(rv)) => {
                out.insert(r, rv);
            }
            Some(Err(message)) => errors.push(LoadError {
                field: Some("metadata.resourceVersion".into()),
                object: Some(r.into()),
                message,
                ..LoadError::whole_file(path, "")
            }),
            None => {}
        }
    }
    out
}

/// Every manifest file `path` names (itself, or the manifests directly in a directory).
fn manifest_files(path: &Path) -> Vec<PathBuf> {
    if !path.is_dir() {
        return vec![path.to_path_buf()];
    }
    let mut v: Vec<PathBuf> = std::fs::read_dir(path)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| ironlb_api::read::is_manifest_name(p) && p.is_file())
        .collect();
    v.sort();
    v
}

/// Loads the objects of `paths`, with warnings written to `err`; every load error is returned together.
fn load(paths: &[PathBuf], lenient: bool, err: &mut dyn Write) -> Result<Vec<Incoming>, CliError> {
    let opts = if lenient {
        LoadOptions::LENIENT
    } else {
        LoadOptions::default()
    };
    let mut errors = Vec::new();
    let mut incoming = Vec::new();
    for p in paths {
        let report = load_dir_with(p, opts);
        for w in &report.warnings {
            writeln!(err, "ironlb: warning: {w}").map_err(out_err)?;
        }
        errors.extend(report.errors);
        let mut versions = BTreeMap::new();
        for f in manifest_files(p) {
            versions.extend(resource_versions(&f, &mut errors));
        }
        incoming.extend(report.objects.into_iter().map(|(file, object)| Incoming {
            resource_version: versions.get(&object.object_ref()).copied(),
            file,
            object,
        }));
    }
    if !errors.is_empty() {
        return Err(CliError::Load(errors));
    }
    Ok(incoming)
}

/// `ironlb apply`: prints one line per object (`Kind namespace/name created|configured|unchanged`).
pub fn apply(args: &ApplyArgs, out: &mut dyn Write, err: &mut dyn Write) -> Result<(), CliError> {
    let incoming = load(&args.files, args.lenient, err)?;
    let client = args.conn.connect()?;
    let plan = client.apply(incoming)?;
    print_plan(&plan, out)
}

/// `ironlb delete`: prints one line per deleted object.
pub fn delete(args: &DeleteArgs, out: &mut dyn Write, err: &mut dyn Write) -> Result<(), CliError> {
    let refs: Vec<ObjectRef> = match &args.kind {
        Some(kind) => {
            let kind = parse_kind(kind)?;
            args.names
                .iter()
                .map(|n| ObjectRef::new(kind, args.namespace.clone(), n.clone()))
                .collect()
        }
        // Only the identities matter: unknown fields do not stop a delete.
        None => load(&args.files, true, err)?
            .into_iter()
            .map(|i| i.object.object_ref())
            .collect(),
    };
    let client = args.conn.connect()?;
    let plan = client.delete(refs, args.ignore_not_found)?;
    print_plan(&plan, out)
}

/// `ironlb get`.
pub fn get(args: &GetArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let kind = parse_kind(&args.kind)?;
    let client = args.conn.connect()?;
    let listing = client.list()?;
    let in_scope =
        |r: &ObjectRef| r.kind == kind && (args.all_namespaces || r.key.namespace == args.namespace);
    let selected: Vec<_> = if args.names.is_empty() {
        listing
            .objects
            .iter()
            .filter(|(r, _)| in_scope(r))
            .map(|(_, s)| s)
            .collect()
    } else {
        let mut found = Vec::new();
        let mut missing = Vec::new();
        for n in &args.names {
            let r = ObjectRef::new(kind, args.namespace.clone(), n.clone());
            match listing.objects.get(&r) {
                Some(s) => found.push(s),
                None => missing.push(r),
            }
        }
        if !missing.is_empty() {
            return Err(CliError::NotFound(missing));
        }
        found
    };
    let text = render(
        kind,
        &selected,
        args.output,
        args.all_namespaces,
        args.names.len() == 1,
    );
    out.write_all(text.as_bytes()).map_err(out_err)
}
