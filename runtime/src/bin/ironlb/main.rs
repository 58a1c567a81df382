//! `ironlb`: the ironlb command line. Exit codes: 0 ok, 1 runtime error, 2 bad input.
//!
//! This file holds the command-line definition and the dispatch; `local` the diagnostics targets (an in-process
//! model, a device opened directly, the daemon), `run` the daemon command, `replay` the model replay, `host` the
//! host commands (`device bind`, `doctor`).

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use ironlb_runtime::alloc::Pools;
use ironlb_runtime::cli::{BadInput, ColorChoice, TracePacket};
use ironlb_runtime::cluster::cli as cluster;
use ironlb_runtime::config::{LogFormat, RunSettings};
use ironlb_runtime::daemon::{self, Request};
use ironlb_runtime::manifest::LoadOptions;
use ironlb_runtime::ops::{self, Format, OpError};
use ironlb_runtime::reconcile::HostConfig;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `println!` that returns the write error instead of panicking (a closed pipe, as with `ironlb ... | head`).
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout(), $($arg)*)?
    }};
}

mod host;
mod local;
mod replay;
mod run;

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
    /// Open a device directly: `sim-shm:PREFIX` or `vfio:PCI_ADDR[@BAR]` (not while a daemon or agent drives it).
    #[arg(long, conflicts_with = "socket")]
    backend: Option<String>,
    /// The control socket of `ironlb run` or `ironlb agent` (default: STATE_DIR/ironlb.sock).
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Their state directory (for the default socket, and status.json when neither runs).
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
    Replay(ReplayArgs),
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
/// `ironlb replay`: where the model's tables come from, and the capture to replay.
#[derive(clap::Args)]
struct ReplayArgs {
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
            eprintln!("ironlb: error: {}", chain(&e));
            if e.downcast_ref::<BadInput>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

/// The error and its causes, `: `-separated as `{:#}` would print them, leaving out a cause whose text the message
/// before it already ends with (an error that names its cause in its own message, as `path: cause` errors do).
fn chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.ends_with(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
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

fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Run(args) => run::run_daemon(args),
        Cmd::Status { target, output } => {
            let o = local::diagnose(
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
                (_, _, Some(file)) => local::pcap_packet(&file, index)?,
                (None, None, None) => unreachable!("clap: one of --packet, --hex, --in"),
            };
            let o = local::diagnose(
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
            let o = local::diagnose(
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
            let o = local::diagnose(
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
            run::init_logs(a.log_format(), a.settings.color.unwrap_or_default());
            cluster_cmd(ironlb_runtime::cluster::agent_cli::agent(&a))
        }
        Cmd::Controller(a) => {
            run::init_logs(LogFormat::Text, ColorChoice::default());
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
        }) => host::device_bind(device, config, group),
        Cmd::Doctor { config, settings } => host::doctor(config, settings),
        Cmd::Manpages { dir } => {
            use clap::CommandFactory as _;
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            clap_mangen::generate_to(Cli::command(), &dir)
                .with_context(|| format!("writing manual pages into {}", dir.display()))?;
            Ok(())
        }
        Cmd::Validate { path, lenient } => validate(&path, lenient),
        Cmd::Replay(a) => replay::replay(a),
    }
}

/// `ironlb validate`: every load and validation error of a file or directory, exit 2 when there is any.
fn validate(path: &Path, lenient: bool) -> Result<()> {
    if !path.exists() {
        bail!(BadInput(format!("{}: no such file or directory", path.display())));
    }
    let opts = if lenient {
        LoadOptions::LENIENT
    } else {
        LoadOptions::default()
    };
    let report = ironlb_runtime::manifest::load_dir_with(path, opts);
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
