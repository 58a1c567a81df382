//! `ironlb`: the ironlb command line. Exit codes: 0 ok, 1 runtime error, 2 bad input.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use ironlb_hw::entry::PortKind;
use ironlb_runtime::example;
use ironlb_sim::Verdict;
use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::PathBuf;
use std::process::ExitCode;

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

#[derive(Subcommand)]
enum Cmd {
    /// Show, stage by stage, what the device does with one packet: which LB entry matched, the port-filter
    /// decision, the flow hash, the bucket slot, the target, or the drop reason.
    Trace {
        /// Program the example configuration (required until the daemon serves traces).
        #[arg(long, required = true)]
        example: bool,
        /// Ingress: `public` or `vni:N`.
        #[arg(long)]
        ingress: String,
        /// `<tcp|udp|sctp|icmp> <src>:<sport> -> <dst>:<dport>` (IPv6 in brackets).
        #[arg(long)]
        packet: String,
        /// Output format.
        #[arg(short = 'o', long, default_value = "table", value_parser = ["table", "json"])]
        output: String,
    },
    /// Decode the device's tables (read back from device memory, not from driver state).
    Dump {
        /// Program the example configuration into an in-process model and dump it.
        #[arg(long, conflicts_with = "backend")]
        example: bool,
        /// The device: `sim-shm:PREFIX` (a model served from PREFIX.bar / PREFIX.host) or `vfio:PCI_ADDR[@BAR]`.
        #[arg(long, required_unless_present = "example")]
        backend: Option<String>,
        /// Which table.
        #[arg(long, default_value = "all", value_parser = ["lbs", "ranges", "targets", "buckets", "counters", "all"])]
        table: String,
        /// Output format.
        #[arg(short = 'o', long, default_value = "table", value_parser = ["table", "json"])]
        output: String,
    },
    /// Validate manifests (a file or a directory of *.yaml) without touching a device. Prints every error with
    /// its file, object and field; exit code 2 when there is any.
    Validate {
        /// File or directory.
        path: PathBuf,
    },
    /// Program the software model and replay packets through it.
    ///
    /// With `--example`, the model is programmed by the driver with the example load balancers of docs/sim.md (the
    /// IronCore seeds). Without `--in`, a built-in set of client packets is replayed and every verdict is printed;
    /// with `--in`, a pcap is replayed on one ingress, forwarded packets are written to `--out` and one JSON line per
    /// packet to `--verdicts` (docs/sim.md).
    Replay {
        /// Program the example configuration (required until manifest loading lands).
        #[arg(long, required = true)]
        example: bool,
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
    },
}

use ironlb_runtime::cli::BadInput;

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

fn open_backend(spec: &str) -> Result<ironlb_driver::Device> {
    let access: Box<dyn ironlb_driver::access::DeviceAccess> = if let Some(prefix) =
        spec.strip_prefix("sim-shm:")
    {
        let paths = ironlb_driver::shm::ShmPaths::from_prefix(std::path::Path::new(prefix));
        Box::new(ironlb_driver::shm::ShmBackend::open(&paths).with_context(|| format!("--backend {spec}"))?)
    } else if let Some(rest) = spec.strip_prefix("vfio:") {
        let (pci, bar) = match rest.split_once('@') {
            Some((p, b)) => (
                p,
                b.parse::<u32>()
                    .map_err(|_| BadInput(format!("--backend {spec}: BAR index must be a number")))?,
            ),
            None => (rest, 0),
        };
        Box::new(
            ironlb_driver::vfio::VfioBackend::open(pci, bar).with_context(|| format!("--backend {spec}"))?,
        )
    } else {
        bail!(BadInput(format!(
            "--backend {spec}: expected sim-shm:PREFIX or vfio:PCI_ADDR[@BAR]"
        )));
    };
    Ok(ironlb_driver::Device::open(access)?)
}

fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Trace {
            example: _,
            ingress,
            packet,
            output,
        } => {
            let (mut dev, model) = example::device().context("programming the example configuration")?;
            let port = ingress_port(&mut dev, &ingress)?;
            let pkt = ironlb_runtime::cli::build_packet(&packet)?;
            let (v, t) = model.lock().expect("model lock").process_traced(port, &pkt);
            if output == "json" {
                let verdict = match &v {
                    Verdict::Forward { egress_port, packet } => {
                        serde_json::json!({"verdict": "forward", "egress_port": egress_port, "len": packet.len()})
                    }
                    Verdict::Drop(r) => serde_json::json!({"verdict": "drop", "reason": r.name()}),
                };
                out!("{}", serde_json::json!({"trace": t, "result": verdict}));
            } else {
                out!("{packet} on {ingress}:");
                out!("{}", ironlb_runtime::cli::render_trace(&v, &t).trim_end());
            }
            Ok(())
        }
        Cmd::Dump {
            example,
            backend,
            table,
            output,
        } => {
            let mut dev = match backend {
                Some(b) => open_backend(&b)?,
                None if example => {
                    example::device()
                        .context("programming the example configuration")?
                        .0
                }
                None => bail!(BadInput("give --backend or --example".into())),
            };
            let snap = dev.read_state().context("reading the device's tables")?;
            let lbc = dev.lb_counters()?;
            let tc = dev.target_counters()?;
            if output == "json" {
                let drops: std::collections::BTreeMap<&str, u64> = dev
                    .drop_counters()
                    .into_iter()
                    .map(|(r, n)| (r.name(), n))
                    .collect();
                out!(
                    "{}",
                    serde_json::json!({"lbs": snap.lbs, "orphan_targets": snap.orphan_targets, "drops": drops})
                );
            } else {
                out!(
                    "{}",
                    ironlb_runtime::cli::render_dump(&snap, &lbc, &tc, &table).trim_end()
                );
            }
            Ok(())
        }
        Cmd::Validate { path } => {
            if !path.exists() {
                bail!(BadInput(format!("{}: no such file or directory", path.display())));
            }
            let (loaded, load_errors) = ironlb_runtime::manifest::load_dir(&path);
            let (valid, errors) = ironlb_runtime::validate::validate(&loaded);
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
            example: _,
            ingress,
            input,
            out,
            verdicts,
        } => {
            let (mut dev, model) = example::device().context("programming the example configuration")?;
            match (ingress, input, out) {
                (Some(ingress), Some(input), Some(out)) => {
                    let port = ingress_port(&mut dev, &ingress)?;
                    let inp =
                        File::open(&input).map_err(|e| BadInput(format!("--in {}: {e}", input.display())))?;
                    let outf = File::create(&out).with_context(|| format!("--out {}", out.display()))?;
                    let vf = match &verdicts {
                        Some(p) => Some(BufWriter::new(
                            File::create(p).with_context(|| format!("--verdicts {}", p.display()))?,
                        )),
                        None => None,
                    };
                    let mut m = model.lock().expect("model lock");
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
                _ => builtin(&mut dev, &model)?,
            }
            Ok(())
        }
    }
}

fn ingress_port(dev: &mut ironlb_driver::Device, ingress: &str) -> Result<u32> {
    let want = if ingress == "public" {
        None
    } else if let Some(v) = ingress.strip_prefix("vni:") {
        Some(
            v.parse::<u32>()
                .map_err(|_| BadInput(format!("--ingress {ingress}: VNI must be a number")))?,
        )
    } else {
        bail!(BadInput(format!(
            "--ingress {ingress}: expected `public` or `vni:N`"
        )));
    };
    for p in 0..dev.caps().ports {
        let cfg = dev.port(p)?;
        let hit = match (cfg.enabled, cfg.kind, want) {
            (true, PortKind::Public, None) => true,
            (true, PortKind::Network { vni }, Some(w)) => vni == w,
            _ => false,
        };
        if hit {
            return Ok(p);
        }
    }
    bail!(BadInput(format!(
        "--ingress {ingress}: no such port in the example configuration (public, vni:100, vni:200)"
    )))
}

fn builtin(dev: &mut ironlb_driver::Device, model: &ironlb_driver::inproc::SharedModel) -> Result<()> {
    out!("programmed by the driver into the software model:");
    for (name, s) in example::specs() {
        let st = dev.lb_state(s.lb_id).context("example LB missing after apply")?;
        let vips: Vec<String> = s.vips.iter().map(|k| k.vip.to_string()).collect();
        out!("  lb {} {name}", s.lb_id);
        out!(
            "       VIPs {}  targets {}  bucket array M={}",
            vips.join(", "),
            s.targets
                .iter()
                .map(|t| t.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            st.slots.len()
        );
    }
    out!("\nreplaying {} client packets:", example::packets().len());
    for p in example::packets() {
        let v = model.lock().expect("model lock").process(p.port, &p.bytes);
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
    let lbc = dev.lb_counters()?;
    for (_, s) in example::specs() {
        let c = lbc[s.lb_id as usize];
        out!(
            "  lb {:<12}     packets {:>4} bytes {:>6}",
            s.lb_id,
            c.packets,
            c.bytes
        );
    }
    let tc = dev.target_counters()?;
    for (_, s) in example::specs() {
        for (addr, i) in &dev.lb_state(s.lb_id).context("example LB")?.target_index {
            let c = tc[*i as usize];
            out!(
                "  target {addr:<12} packets {:>4} bytes {:>6}",
                c.packets,
                c.bytes
            );
        }
    }
    for (r, n) in dev.drop_counters() {
        if n > 0 {
            out!("  drop {:<20} {n:>4}", r.name());
        }
    }
    Ok(())
}
