//! `ironlb`: the ironlb command line. Exit codes: 0 ok, 1 runtime error, 2 bad input.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use ironlb_driver::SharedModel;
use ironlb_runtime::alloc::Pools;
use ironlb_runtime::backend::{BackendSpec, Opened};
use ironlb_runtime::cli::{BadInput, ColorChoice, TracePacket};
use ironlb_runtime::cluster::cli as cluster;
use ironlb_runtime::config::{LogFormat, RunSettings};
use ironlb_runtime::daemon::{self, Daemon, Request, StatusFile};
use ironlb_runtime::example;
use ironlb_runtime::manifest::LoadOptions;
use ironlb_runtime::ops::{self, Format, OpError, View};
use ironlb_runtime::reconcile::{HostConfig, Reconciler};
use ironlb_sim::{DeviceConfig, Verdict};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// `println!` that returns the write error instead of panicking (a closed pipe, as with `ironlb ... | head`).
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout(), $($arg)*)?
    }};
}

#[derive(Parser)]
#[command(
    name = "ironlb",
    version,
    about = "L3 load balancer offloaded to a SmartNIC (or its software model)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

/// Where diagnostics come from: the built-in example, a manifest directory programmed into an in-process model, a
/// device opened directly, or (the default) a running daemon.
#[derive(clap::Args, Debug, Clone)]
struct Target {
    /// Program the built-in example configuration into an in-process model.
    #[arg(long, conflicts_with_all = ["manifests", "backend", "socket"])]
    example: bool,
    /// Program this manifest directory into an in-process model (allocations from --public-pool).
    #[arg(long, conflicts_with_all = ["backend", "socket"])]
    manifests: Option<PathBuf>,
    /// Open a device directly: `sim-shm:PREFIX` or `vfio:PCI_ADDR[@BAR]` (not while a daemon drives it).
    #[arg(long, conflicts_with = "socket")]
    backend: Option<String>,
    /// The daemon's control socket (default: STATE_DIR/ironlb.sock).
    #[arg(long)]
    socket: Option<PathBuf>,
    /// The daemon's state directory (for its default socket).
    #[arg(long, env = "IRONLB_STATE_DIR")]
    state_dir: Option<PathBuf>,
    #[command(flatten)]
    pools: PoolArgs,
}

#[derive(clap::Args, Debug, Clone)]
struct PoolArgs {
    /// Public address pool(s), CIDR, comma-separated or repeated; one per family at least.
    #[arg(long = "public-pool", default_value = daemon::DEFAULT_PUBLIC_POOLS)]
    public_pool: Vec<String>,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Configuration file (TOML, docs/operations.md "Configuration file"); flags given override its keys.
    #[arg(long, env = "IRONLB_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    settings: RunSettings,
    /// Print the effective configuration (flags over the file over the defaults) as TOML and exit.
    #[arg(long)]
    print_config: bool,
    /// Sync once, print what was programmed and exit (exit 2 if a manifest does not load or an object is
    /// invalid, 1 if a LoadBalancer could not be programmed).
    #[arg(long)]
    once: bool,
    /// Start even though the allocation state (alloc.json) does not claim load balancers the device holds:
    /// remove them and re-create them with new lb_ids and VIPs (see docs/operations.md "Lost allocation state").
    #[arg(long)]
    remove_unclaimed: bool,
}

#[derive(Subcommand)]
enum Cmd {
    /// The daemon: watch a manifest directory and keep the device programmed. With no --backend it runs the
    /// software model in-process (the embedded default).
    Run(RunArgs),
    /// Load balancer status: IPs, routing, programmed targets, conditions (from the daemon, or STATE_DIR/status.json
    /// when it is not running).
    Status {
        #[command(flatten)]
        target: Target,
        /// Output format.
        #[arg(short = 'o', long, default_value = "table", value_parser = ["table", "json"])]
        output: String,
    },
    /// Show, stage by stage, what the device does with one packet: which LB entry matched, the port-filter
    /// decision, the flow hash, the bucket slot, the target, or the drop reason. The packet is not counted.
    ///
    /// The packet is described (`--packet`), or given as it is (`--hex`, or `--in FILE --index N` from a pcap):
    /// fragments, extension headers and ICMP errors can be traced as they arrived.
    #[command(group(clap::ArgGroup::new("what").required(true).args(["packet", "hex", "input"])))]
    Trace {
        #[command(flatten)]
        target: Target,
        /// Ingress: `public` or `vni:N`.
        #[arg(long)]
        ingress: String,
        /// `<tcp|udp|sctp|icmp> <src>:<sport> -> <dst>:<dport>` (IPv6 in brackets; TCP is a SYN, ICMP an echo
        /// request).
        #[arg(long)]
        packet: Option<String>,
        /// An IP packet as hex digits, from its first IP header byte (spaces, `:` and `-` between digits are
        /// ignored).
        #[arg(long)]
        hex: Option<String>,
        /// A pcap (RAW, IPV4, IPV6 or ETHERNET link type, as `replay --in`) holding the packet.
        #[arg(long = "in")]
        input: Option<PathBuf>,
        /// `--in`: the packet's 0-based index in the capture (the `index` of `replay --verdicts` lines; Wireshark's
        /// frame number minus one).
        #[arg(long, requires = "input", default_value_t = 0)]
        index: u64,
        /// Output format.
        #[arg(short = 'o', long, default_value = "table", value_parser = ["table", "json"])]
        output: String,
    },
    /// Decode the device's tables (read back from device memory, not from driver state).
    Dump {
        #[command(flatten)]
        target: Target,
        /// Which table.
        #[arg(long, default_value = "all", value_parser = ["lbs", "ranges", "targets", "buckets", "counters", "flows", "all"])]
        table: String,
        /// `--table flows`: only the flows of this lb_id.
        #[arg(long)]
        lb: Option<u32>,
        /// `--table flows`: only the flows pinned to this target (underlay address).
        #[arg(long = "target-address")]
        target_address: Option<std::net::Ipv6Addr>,
        /// `--table flows`: only the flows of this client or VIP address.
        #[arg(long)]
        address: Option<std::net::IpAddr>,
        /// Output format.
        #[arg(short = 'o', long, default_value = "table", value_parser = ["table", "json"])]
        output: String,
    },
    /// Counters: per load balancer and target, drops by reason, table occupancy.
    Stats {
        #[command(flatten)]
        target: Target,
        /// Output format.
        #[arg(short = 'o', long, default_value = "table", value_parser = ["table", "json"])]
        output: String,
    },
    /// Validate manifests (a file or a directory of *.yaml) without touching a device. Prints every error with
    /// its file, object and field; exit code 2 when there is any.
    Validate {
        /// File or directory.
        path: PathBuf,
        /// Unknown fields are warnings instead of errors (the objects load without them).
        #[arg(long)]
        lenient: bool,
    },
    /// Program the software model and replay packets through it.
    ///
    /// The model is programmed from `--manifests DIR` (through the reconciler, as the daemon does), with the
    /// built-in `--example`, or with a copy of the tables of a device (`--backend sim-shm:PREFIX|vfio:PCI`, read
    /// back through the driver; the device itself forwards and counts nothing). Without `--in`, a built-in set of
    /// client packets for the example addresses is replayed and every verdict printed; with `--in`, a pcap is
    /// replayed on one ingress, forwarded packets are written to `--out` and one JSON line per packet to
    /// `--verdicts` (docs/sim.md).
    Replay {
        /// Program the built-in example configuration.
        #[arg(long, conflicts_with_all = ["manifests", "backend"], required_unless_present_any = ["manifests", "backend"])]
        example: bool,
        /// Program this manifest directory.
        #[arg(long, conflicts_with = "backend")]
        manifests: Option<PathBuf>,
        /// Copy the tables of this device (`sim-shm:PREFIX` or `vfio:PCI_ADDR[@BAR]`) into the model; needs --in.
        #[arg(long, requires = "input")]
        backend: Option<String>,
        #[command(flatten)]
        pools: PoolArgs,
        /// Ingress of the input capture: `public` or `vni:N`.
        #[arg(long, requires = "input")]
        ingress: Option<String>,
        /// Input pcap (RAW, IPV4, IPV6 or ETHERNET link type).
        #[arg(long = "in", requires_all = ["ingress", "out"])]
        input: Option<PathBuf>,
        /// Output pcap of forwarded (encapsulated) packets, LINKTYPE_RAW.
        #[arg(long, requires = "input")]
        out: Option<PathBuf>,
        /// One JSON line per input packet.
        #[arg(long, requires = "input")]
        verdicts: Option<PathBuf>,
        #[command(flatten)]
        host: HostArgs,
        /// Unknown fields in the manifests are warnings instead of errors.
        #[arg(long, requires = "manifests")]
        lenient: bool,
    },
    /// The NIC: hand it to vfio-pci (docs/operations.md §3).
    #[command(subcommand)]
    Device(DeviceCmd),
    /// What is wrong on this host: configuration, IOMMU, the NIC's binding and device node permissions, the device,
    /// the daemon's socket, its metrics. Exit 1 when a check fails.
    Doctor {
        /// Configuration file, as for `ironlb run`.
        #[arg(long, env = "IRONLB_CONFIG")]
        config: Option<PathBuf>,
        #[command(flatten)]
        settings: RunSettings,
    },
    /// Write the manual pages (ironlb.1, ironlb-run.1, ...) into a directory: what the package installs.
    #[command(hide = true)]
    Manpages {
        /// Output directory (created if missing).
        dir: PathBuf,
    },
    /// Cluster mode: validate manifests and write their objects to etcd (docs/cluster.md). Nothing is written when
    /// any object is invalid (exit 2) or changed concurrently (exit 1).
    Apply(cluster::ApplyArgs),
    /// Cluster mode: delete objects from etcd, named by manifests or by KIND NAME...
    Delete(cluster::DeleteArgs),
    /// Cluster mode: show objects stored in etcd (`-o yaml` output can be applied again).
    Get(cluster::GetArgs),
    /// Cluster mode: the per-host agent. Follows the objects and the controller's allocations in etcd and keeps
    /// this host's device programmed with them; never allocates (docs/cluster.md).
    Agent(ironlb_runtime::cluster::agent_cli::AgentArgs),
    /// Cluster mode: the controller. One leads at a time (etcd lease); it gives every LoadBalancer its lb_id and
    /// public or Prefix IPs in etcd, never one value twice (docs/cluster.md).
    Controller(ironlb_runtime::cluster::controller_cli::ControllerArgs),
    /// Print a shell completion script.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

#[derive(Subcommand)]
enum DeviceCmd {
    /// Bind a NIC function to vfio-pci (driver_override, unbind, probe), then run the driver's pre-checks (IOMMU,
    /// group viability, device nodes). Idempotent; the systemd unit runs it before the daemon starts.
    Bind {
        /// `DDDD:BB:DD.F` or `VVVV:DDDD` (vendor:device, every matching function). Default: the vfio backend of
        /// --config; nothing to do for another backend.
        device: Option<String>,
        /// Configuration file whose `backend` names the device.
        #[arg(long, env = "IRONLB_CONFIG")]
        config: Option<PathBuf>,
        /// Give the VFIO group node (/dev/vfio/N) to this group, mode 0660, so the daemon needs no privileges.
        #[arg(long)]
        group: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            // The reader went away (`| head`): not an error of ours.
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ironlb: error: {e:#}");
            if e.downcast_ref::<BadInput>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

fn format(o: &str) -> Format {
    if o == "json" {
        Format::Json
    } else {
        Format::Table
    }
}

/// A cluster command's typed error, as the exit code wants it (bad input: 2).
fn cluster_cmd(r: Result<(), cluster::CliError>) -> Result<()> {
    r.map_err(|e| {
        if e.is_bad_input() {
            bad(e)
        } else {
            anyhow::Error::new(e)
        }
    })
}

fn bad(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::Error::new(BadInput(e.to_string()))
}

fn op_err(e: OpError) -> anyhow::Error {
    match e {
        OpError::BadInput(b) => anyhow::Error::new(b),
        OpError::Device(e) => anyhow::Error::new(e),
        OpError::Failed(m) => anyhow::anyhow!(m),
    }
}

fn pools(p: &PoolArgs) -> Result<Pools> {
    Pools::parse(&p.public_pool).map_err(|e| bad(format!("--public-pool: {e}")))
}

/// Ports and underlay of an in-process model programmed from `--manifests` (the `ironlb run` defaults).
fn default_host() -> Result<HostConfig> {
    HostArgs::default().host()
}

/// The host options `replay` shares with `run` (same names, meanings and defaults: `run`'s [`RunSettings`] turns
/// them into the [`HostConfig`]; a test keeps their help the same).
#[derive(clap::Args, Debug, Clone, Default)]
struct HostArgs {
    /// Port roles `N=public`, `N=vni:V` or `N=underlay`, comma-separated or repeated
    /// [default: 0=public,1=vni:100,2=vni:200,3=underlay].
    #[arg(long = "port", value_delimiter = ',')]
    port: Option<Vec<String>>,
    /// Outer IPv6 source address of encapsulated packets [default: fd00:ffff::1].
    #[arg(long)]
    underlay_src: Option<std::net::Ipv6Addr>,
    /// Underlay MTU [default: 9000].
    #[arg(long)]
    mtu: Option<u32>,
    /// Outer hop limit [default: 64].
    #[arg(long)]
    hop_limit: Option<u8>,
}

impl HostArgs {
    /// The host configuration, through `run`'s own settings (so defaults and checks are `run`'s).
    fn host(&self) -> Result<HostConfig> {
        let probe = RunSettings {
            manifests: Some(PathBuf::new()),
            port: self.port.clone(),
            underlay_src: self.underlay_src,
            mtu: self.mtu,
            hop_limit: self.hop_limit,
            ..RunSettings::default()
        };
        Ok(probe.daemon_config(false).map_err(bad)?.host)
    }
}

/// A device programmed in this process: the example, or a manifest directory through the reconciler.
struct Local {
    holder: Holder,
    model: SharedModel,
    names: BTreeMap<u32, String>,
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
    fn dev(&mut self) -> &mut ironlb_driver::Device {
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
fn open_backend(b: &str) -> Result<Opened> {
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
fn local_copy(b: &str) -> Result<Local> {
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

fn local_example() -> Result<Local> {
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
struct ManifestProblems {
    bad_input: usize,
}

fn local_manifests(dir: &Path, pools: Pools, quiet: bool) -> Result<Local> {
    local_manifests_with(dir, pools, &default_host()?, LoadOptions::default(), quiet).map(|(l, _)| l)
}

fn local_manifests_with(
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

fn socket_of(t: &Target) -> PathBuf {
    t.socket.clone().unwrap_or_else(|| {
        t.state_dir
            .clone()
            .unwrap_or_else(daemon::default_state_dir)
            .join("ironlb.sock")
    })
}

/// Runs a diagnostics request against the target: in-process, a directly opened device, or the daemon.
fn diagnose(t: &Target, req: Request) -> Result<String> {
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
        if let (Request::Trace { .. }, None) = (&req, &opened.model) {
            let (mut copy, model) = ops::mirror(&mut opened.device)
                .map_err(op_err)
                .with_context(|| format!("copying the tables of --backend {b}"))?;
            return answer(
                View {
                    dev: &mut copy,
                    model: Some(&model),
                    names: &names,
                    copy: true,
                },
                &req,
            );
        }
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
            Ok(daemon::Published {
                statuses: f.by_key(),
                device_down: f.device_down,
                device_conditions: f.device_conditions,
                load_errors: f.load_errors,
            }
            .render(fmt))
        }
        Err(e) => Err(op_err(e)),
    }
}

fn answer(v: View<'_>, req: &Request) -> Result<String> {
    match req {
        Request::Dump { table, format, flows } => ops::dump(v, table, *format, flows),
        Request::Stats { format } => ops::stats(v, *format),
        Request::Trace {
            ingress,
            packet,
            format,
        } => ops::trace(v, ingress, packet, *format),
        Request::Status { .. } => unreachable!("handled by the caller"),
    }
    .map_err(op_err)
}

fn init_logs(format: LogFormat, color: ColorChoice) {
    use std::io::IsTerminal as _;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(color.use_ansi(std::io::stderr().is_terminal(), no_color))
        .with_writer(std::io::stderr);
    if format == LogFormat::Json {
        b.json().init();
    } else {
        b.init();
    }
}

fn progress_bar() -> Option<ironlb_runtime::reconcile::ProgressFn> {
    use std::io::IsTerminal as _;
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::hidden();
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} programming {pos}/{len} load balancers {wide_bar} {eta}",
        )
        .expect("progress template"),
    );
    Some(Box::new(move |done, total| {
        if total < 64 {
            return;
        }
        if bar.is_hidden() && done < total {
            bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        }
        bar.set_length(total);
        bar.set_position(done);
        if done == total {
            bar.finish_and_clear();
            bar.reset();
            bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        }
    }))
}

fn run_daemon(args: RunArgs) -> Result<()> {
    let RunArgs {
        config,
        settings: flags,
        print_config,
        once,
        remove_unclaimed,
    } = args;
    flags.check("--").map_err(bad)?;
    let file = match &config {
        Some(path) => RunSettings::load(path).map_err(bad)?,
        None => RunSettings::default(),
    };
    let settings = file.overlay(flags).with_defaults();
    if print_config {
        out!("{}", settings.to_toml().trim_end());
        return Ok(());
    }
    let cfg = settings.daemon_config(remove_unclaimed).map_err(bad)?;
    init_logs(
        settings.log_format.unwrap_or(LogFormat::Text),
        settings.color.unwrap_or_default(),
    );
    if !cfg.manifests.is_dir() {
        bail!(bad(format!(
            "--manifests {}: not a directory",
            cfg.manifests.display()
        )));
    }
    let mut d = Daemon::start(cfg).context("starting the daemon")?;
    d.set_progress(progress_bar());
    if once {
        let report = d.sync()?;
        let shared = d.shared();
        let mut sh = shared.lock().expect("daemon state lock");
        out!("{}", ops::status(sh.rec.status(), Format::Table).trim_end());
        // The same files and the same rules as `validate`: every load and validation error, and exit 2.
        let load_errors = sh.rec.load_errors();
        let invalid = sh.rec.validation_errors();
        for e in &load_errors {
            out!("error: {e}");
        }
        for e in &invalid {
            out!("error: {e}");
        }
        let names = sh.names();
        let model = sh.model.clone();
        let view = View {
            dev: sh.rec.device(),
            model: model.as_ref(),
            names: &names,
            copy: false,
        };
        let stats = ops::stats(view, Format::Table).map_err(op_err)?;
        if let Some(tables) = stats.split("tables:\n").nth(1) {
            out!("\ndevice tables:\n{}", tables.trim_end());
        }
        out!(
            "\nsynced in {:.1} ms: {} created, {} updated, {} removed, {} unchanged, {} errors",
            report.duration.as_secs_f64() * 1e3,
            report.created,
            report.updated,
            report.removed,
            report.unchanged,
            report.errors.len()
        );
        let bad_input = load_errors.len() + invalid.len();
        if bad_input > 0 {
            bail!(bad(format!(
                "{bad_input} manifest errors ({} load balancers not programmed as desired)",
                report.errors.len()
            )));
        }
        if report.errors.iter().any(|e| e.reason.is_bad_input()) {
            bail!(bad(format!(
                "{} load balancers not programmed",
                report.errors.len()
            )));
        }
        if !report.errors.is_empty() {
            bail!("{} load balancers not programmed", report.errors.len());
        }
        return Ok(());
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone()).context("installing signal handlers")?;
    }
    let reload = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, reload.clone())
        .context("installing signal handlers")?;
    d.set_reload_flag(reload);
    d.run(&stop)?;
    Ok(())
}

fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Run(args) => run_daemon(args),
        Cmd::Status { target, output } => {
            let o = diagnose(
                &target,
                Request::Status {
                    format: format(&output),
                },
            )?;
            out!("{}", o.trim_end());
            Ok(())
        }
        Cmd::Trace {
            target,
            ingress,
            packet,
            hex,
            input,
            index,
            output,
        } => {
            let packet = match (packet, hex, input) {
                (Some(spec), _, _) => TracePacket::Spec(spec),
                (_, Some(hex), _) => TracePacket::from_hex(&hex)?,
                (_, _, Some(file)) => pcap_packet(&file, index)?,
                (None, None, None) => unreachable!("clap: one of --packet, --hex, --in"),
            };
            let o = diagnose(
                &target,
                Request::Trace {
                    ingress,
                    packet,
                    format: format(&output),
                },
            )?;
            out!("{}", o.trim_end());
            Ok(())
        }
        Cmd::Dump {
            target,
            table,
            output,
            lb,
            target_address,
            address,
        } => {
            let o = diagnose(
                &target,
                Request::Dump {
                    table,
                    format: format(&output),
                    flows: ops::FlowFilter {
                        lb,
                        target: target_address,
                        address,
                    },
                },
            )?;
            out!("{}", o.trim_end());
            Ok(())
        }
        Cmd::Stats { target, output } => {
            let o = diagnose(
                &target,
                Request::Stats {
                    format: format(&output),
                },
            )?;
            out!("{}", o.trim_end());
            Ok(())
        }
        Cmd::Apply(a) => cluster_cmd(cluster::apply(&a, &mut std::io::stdout(), &mut std::io::stderr())),
        Cmd::Delete(a) => cluster_cmd(cluster::delete(
            &a,
            &mut std::io::stdout(),
            &mut std::io::stderr(),
        )),
        Cmd::Get(a) => cluster_cmd(cluster::get(&a, &mut std::io::stdout())),
        Cmd::Agent(a) => {
            init_logs(a.log_format(), a.settings.color.unwrap_or_default());
            cluster_cmd(ironlb_runtime::cluster::agent_cli::agent(&a))
        }
        Cmd::Controller(a) => {
            init_logs(LogFormat::Text, ColorChoice::default());
            cluster_cmd(ironlb_runtime::cluster::controller_cli::controller(&a))
        }
        Cmd::Completions { shell } => {
            use clap::CommandFactory as _;
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "ironlb", &mut buf);
            std::io::Write::write_all(&mut std::io::stdout(), &buf)?;
            Ok(())
        }
        Cmd::Device(DeviceCmd::Bind {
            device,
            config,
            group,
        }) => device_bind(device, config, group),
        Cmd::Doctor { config, settings } => {
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
        Cmd::Manpages { dir } => {
            use clap::CommandFactory as _;
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            clap_mangen::generate_to(Cli::command(), &dir)
                .with_context(|| format!("writing manual pages into {}", dir.display()))?;
            Ok(())
        }
        Cmd::Validate { path, lenient } => {
            if !path.exists() {
                bail!(BadInput(format!("{}: no such file or directory", path.display())));
            }
            let opts = if lenient {
                LoadOptions::LENIENT
            } else {
                LoadOptions::default()
            };
            let report = ironlb_runtime::manifest::load_dir_with(&path, opts);
            let (loaded, load_errors) = (report.objects, report.errors);
            let (valid, errors) = ironlb_runtime::validate::validate(&loaded);
            for w in &report.warnings {
                out!("warning: {w}");
            }
            for e in &load_errors {
                out!("error: {e}");
            }
            for e in &errors {
                out!("error: {e}");
            }
            let bad = load_errors.len() + errors.len();
            out!(
                "{}: {} objects, {} valid, {bad} errors",
                path.display(),
                loaded.len(),
                valid.len()
            );
            if bad > 0 {
                bail!(BadInput(format!("{bad} errors in {}", path.display())));
            }
            Ok(())
        }
        Cmd::Replay {
            example,
            manifests,
            backend,
            pools: pool_args,
            ingress,
            input,
            out,
            verdicts,
            host,
            lenient,
        } => {
            let opts = if lenient {
                LoadOptions::LENIENT
            } else {
                LoadOptions::default()
            };
            let mut bad_input = 0;
            let mut l = if example {
                local_example()?
            } else if let Some(b) = &backend {
                local_copy(b)?
            } else {
                let (l, problems) = local_manifests_with(
                    manifests.as_deref().expect("clap: manifests"),
                    pools(&pool_args)?,
                    &host.host()?,
                    opts,
                    false,
                )?;
                bad_input = problems.bad_input;
                l
            };
            match (ingress, input, out) {
                (Some(ingress), Some(input), Some(out)) => {
                    let port = ops::ingress_port(l.dev(), &ingress).map_err(op_err)?;
                    let inp =
                        File::open(&input).map_err(|e| BadInput(format!("--in {}: {e}", input.display())))?;
                    let outf = File::create(&out).with_context(|| format!("--out {}", out.display()))?;
                    let vf = match &verdicts {
                        Some(p) => Some(BufWriter::new(
                            File::create(p).with_context(|| format!("--verdicts {}", p.display()))?,
                        )),
                        None => None,
                    };
                    let mut m = l.model.lock().expect("model lock");
                    let s =
                        ironlb_sim::pcap::replay(&mut m, port, BufReader::new(inp), BufWriter::new(outf), vf)
                            .with_context(|| format!("replaying {}", input.display()))?;
                    out!(
                        "replayed {} packets on {ingress}: {} forwarded, {} dropped, {} skipped",
                        s.packets,
                        s.forwarded,
                        s.dropped.values().sum::<u64>(),
                        s.skipped
                    );
                    for (r, n) in &s.dropped {
                        out!("  dropped {n:>6}  {r}");
                    }
                }
                _ => builtin(&mut l)?,
            }
            // Like `validate`: the packets were replayed through what did load, but the input was not all good.
            if bad_input > 0 {
                bail!(BadInput(format!(
                    "{bad_input} manifest errors (see above): replayed without them"
                )));
            }
            Ok(())
        }
    }
}

/// `trace --in FILE --index N`: the IP packet at that index of a pcap, read here (the daemon may not see the file).
fn pcap_packet(file: &Path, index: u64) -> Result<TracePacket> {
    let f = File::open(file).map_err(|e| bad(format!("--in {}: {e}", file.display())))?;
    let bytes = ironlb_sim::pcap::packet_at(BufReader::new(f), index)
        .map_err(|e| bad(format!("--in {}: {e}", file.display())))?;
    Ok(TracePacket::bytes(
        format!("{} packet index {index} ({} bytes)", file.display(), bytes.len()),
        &bytes,
    ))
}

/// `ironlb device bind`: the named device, or the config's vfio backend.
fn device_bind(device: Option<String>, config: Option<PathBuf>, group: Option<String>) -> Result<()> {
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

fn builtin(l: &mut Local) -> Result<()> {
    out!("programmed by the driver into the software model:");
    let ids: Vec<u32> = l.names.keys().copied().collect();
    for id in &ids {
        let name = l.names[id].clone();
        let st = l.dev().lb_state(*id).context("programmed LB missing")?.clone();
        let vips: Vec<String> = st.spec.vips.iter().map(|k| k.vip.to_string()).collect();
        out!("  lb {id} {name}");
        out!(
            "       VIPs {}  targets {}  bucket array M={}",
            vips.join(", "),
            st.spec
                .targets
                .iter()
                .map(|t| t.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            st.slots.len()
        );
    }
    out!("\nreplaying {} client packets:", example::packets().len());
    for p in example::packets() {
        let v = l.model.lock().expect("model lock").process(p.port, &p.bytes);
        let what = match v {
            Verdict::Forward { packet, .. } => {
                let dst = std::net::Ipv6Addr::from(<[u8; 16]>::try_from(&packet[24..40]).expect("outer dst"));
                format!("forward -> target {dst}")
            }
            Verdict::Drop(r) => format!("drop ({r})"),
        };
        out!("  {:<66} {what}", p.what);
    }
    out!("\ncounters read back from the device:");
    let lbc = l.dev().lb_counters()?;
    let tc = l.dev().target_counters()?;
    for id in &ids {
        let c = lbc[*id as usize];
        out!(
            "  lb {:<12}     packets {:>4} bytes {:>6}",
            id,
            c.packets,
            c.bytes
        );
    }
    for id in &ids {
        let st = l.dev().lb_state(*id).context("programmed LB")?.clone();
        for (addr, i) in &st.target_index {
            let c = tc[*i as usize];
            out!(
                "  target {addr:<12} packets {:>4} bytes {:>6}",
                c.packets,
                c.bytes
            );
        }
    }
    for (r, n) in l.dev().drop_counters() {
        if n > 0 {
            out!("  drop {:<20} {n:>4}", r.name());
        }
    }
    Ok(())
}
