//! The diagnostics behind `ironlb dump`, `stats`, `trace` and `status`, rendered as text or JSON.
//!
//! The same functions run in the CLI (against the example, a manifest directory programmed into an in-process
//! model, or a device opened directly) and in the daemon (answering its control socket), so every target gives
//! the same output. JSON shapes are documented in docs/operations.md and stable.

use crate::api::ObjectKey;
use crate::cli::{render_dump, render_trace, BadInput, TracePacket};
use crate::printable::printable;
use crate::status::{ConditionType, LbStatus};
use ironlb_driver::{Device, SharedModel};
use ironlb_hw::entry::PortKind;
use ironlb_sim::Verdict;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::Ipv6Addr;

/// Why an operation failed: the request was bad (exit code 2), or the device failed (exit code 1).
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// The request is invalid.
    #[error(transparent)]
    BadInput(#[from] BadInput),
    /// A device command failed.
    #[error(transparent)]
    Device(#[from] ironlb_driver::DriverError),
    /// Another failure (the control socket, the model copy of a trace).
    #[error("{0}")]
    Failed(String),
}

/// What an operation needs: the device, the in-process model when there is one, and the names of the load
/// balancers by lb_id (`namespace/name`; empty when unknown).
pub struct View<'a> {
    /// The device.
    pub dev: &'a mut Device,
    /// The in-process model (traces need it).
    pub model: Option<&'a SharedModel>,
    /// `namespace/name` per lb_id.
    pub names: &'a BTreeMap<u32, String>,
    /// `model` holds a copy of a device's tables ([`mirror`]): not its flow table, so a trace cannot say whether a
    /// packet hits a pinned flow there and says so.
    pub copy: bool,
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Human-readable text.
    Table,
    /// One JSON document.
    Json,
}

/// Which flows `ironlb dump --table flows` shows (all filters must match).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct FlowFilter {
    /// Flows of this lb_id.
    pub lb: Option<u32>,
    /// Flows pinned to this target (underlay address).
    pub target: Option<Ipv6Addr>,
    /// Flows whose client (source) or VIP (destination) is this address.
    pub address: Option<std::net::IpAddr>,
}

/// One pinned flow as `ironlb dump --table flows -o json` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FlowRow {
    /// Flow-table index.
    pub index: u32,
    /// The entry, decoded.
    #[serde(flatten)]
    pub entry: ironlb_hw::entry::FlowEntry,
    /// `namespace/name` of the LB, when known.
    pub name: Option<String>,
    /// Underlay address of the pinned target, when it is one of the LB's targets.
    pub underlay: Option<Ipv6Addr>,
    /// Timeout class (`tcp`, `tcp_closing`, `udp`, `sctp`, `other`).
    pub class: &'static str,
    /// Milliseconds since the last packet, by the device's flow clock.
    pub idle_ms: u32,
}

/// `ironlb dump --table flows`: the flow table read back from the device (DMA), filtered.
fn dump_flows(v: View<'_>, filter: &FlowFilter, format: Format) -> Result<String, OpError> {
    if !v.dev.has_flow_table() {
        return Ok(match format {
            Format::Json => serde_json::json!({"flows": [], "flow_table": false}).to_string(),
            Format::Table => format!(
                "the device (contract 1.{}) has no flow table: flows are not pinned\n",
                v.dev.caps().minor
            ),
        });
    }
    let now = v.dev.flow_clock();
    let flows = v.dev.read_flows()?;
    let underlay = |lb_id: u32, target: u32, dev: &Device| {
        let st = dev.lb_state(lb_id)?;
        st.target_index
            .iter()
            .find(|(_, i)| **i == target)
            .map(|(a, _)| *a)
    };
    let rows: Vec<FlowRow> = flows
        .into_iter()
        .map(|(index, e)| FlowRow {
            index,
            name: v.names.get(&e.key.lb_id).cloned(),
            underlay: underlay(e.key.lb_id, e.target, v.dev),
            class: e.class().name(),
            idle_ms: now.wrapping_sub(e.last_seen),
            entry: e,
        })
        .filter(|r| {
            let t = &r.entry.key.tuple;
            filter.lb.is_none_or(|lb| r.entry.key.lb_id == lb)
                && filter.target.is_none_or(|a| r.underlay == Some(a))
                && filter
                    .address
                    .is_none_or(|a| t.src.to_ip() == a || t.dst.to_ip() == a)
        })
        .collect();
    Ok(match format {
        Format::Json => serde_json::json!({"flows": rows, "flow_table": true}).to_string(),
        Format::Table => {
            let mut out = String::new();
            for r in &rows {
                let t = &r.entry.key.tuple;
                let _ = writeln!(
                    out,
                    "flow {:<8} lb {:<5} {:<28} {:<4} {} {} -> {} {}  target {} {}  {} idle {} ms",
                    r.index,
                    r.entry.key.lb_id,
                    r.name.as_deref().unwrap_or("-"),
                    ironlb_sim::protocol_name(t.protocol),
                    t.src,
                    t.src_port,
                    t.dst,
                    t.dst_port,
                    r.entry.target,
                    r.underlay.map_or("(removed)".to_string(), |a| a.to_string()),
                    r.class,
                    r.idle_ms
                );
            }
            let _ = writeln!(out, "{} pinned flow(s)", rows.len());
            out
        }
    })
}

/// `ironlb dump`: the tables decoded from the device (read back, not driver state).
pub fn dump(v: View<'_>, table: &str, format: Format, flows: &FlowFilter) -> Result<String, OpError> {
    if table == "flows" {
        return dump_flows(v, flows, format);
    }
    if !["lbs", "ranges", "targets", "buckets", "counters", "all"].contains(&table) {
        return Err(BadInput(format!(
            "--table {table}: expected lbs, ranges, targets, buckets, counters, flows or all"
        ))
        .into());
    }
    let snap = v.dev.read_state()?;
    let lbc = v.dev.lb_counters()?;
    let tc = v.dev.target_counters()?;
    Ok(match format {
        Format::Json => {
            let drops: BTreeMap<&str, u64> = v
                .dev
                .drop_counters()
                .into_iter()
                .map(|(r, n)| (r.name(), n))
                .collect();
            let names: BTreeMap<u32, &String> = snap
                .lbs
                .keys()
                .filter_map(|id| Some((*id, v.names.get(id)?)))
                .collect();
            serde_json::json!({"lbs": snap.lbs, "names": names, "orphan_targets": snap.orphan_targets, "drops": drops})
                .to_string()
        }
        Format::Table => {
            let text = render_dump(&snap, &lbc, &tc, table);
            // Name each `lb N` header.
            let mut out = String::with_capacity(text.len());
            for line in text.lines() {
                out.push_str(line);
                if let Some(id) = line
                    .strip_prefix("lb ")
                    .and_then(|r| r.split(' ').next()?.parse::<u32>().ok())
                {
                    if let Some(n) = v.names.get(&id) {
                        let _ = write!(out, "  {n}");
                    }
                }
                out.push('\n');
            }
            out
        }
    })
}

/// Counters of one load balancer, as `ironlb stats -o json` prints them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct LbCounters {
    /// lb_id.
    pub lb_id: u32,
    /// `namespace/name`, when known.
    pub name: Option<String>,
    /// Packets forwarded.
    pub packets: u64,
    /// Bytes forwarded (inner datagram bytes).
    pub bytes: u64,
    /// Per target.
    pub targets: Vec<TargetCounters>,
}

/// Counters of one target of a load balancer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct TargetCounters {
    /// Underlay address.
    pub target: Ipv6Addr,
    /// Packets forwarded to it.
    pub packets: u64,
    /// Bytes forwarded to it.
    pub bytes: u64,
}

/// Occupancy of one device table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct TableUse {
    /// `lb`, `range`, `target`, `bucket` or `flow` (contract v1.2).
    pub table: String,
    /// Entries in use.
    pub used: u64,
    /// Entries the device has.
    pub capacity: u64,
}

/// Everything `ironlb stats` shows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Stats {
    /// Per load balancer, by lb_id.
    pub lbs: Vec<LbCounters>,
    /// Drops by reason name (all reasons, zeros included).
    pub drops: BTreeMap<String, u64>,
    /// Table occupancy.
    pub tables: Vec<TableUse>,
    /// Flow-table counters (contract v1.2); `None` when the device has no flow table.
    #[serde(default)]
    pub flows: Option<ironlb_driver::FlowCounters>,
}

/// Reads the counters of every programmed load balancer and target, the drop counters, and table occupancy.
pub fn collect_stats(dev: &mut Device, names: &BTreeMap<u32, String>) -> Result<Stats, OpError> {
    let lbc = dev.lb_counters()?;
    let tc = dev.target_counters()?;
    let caps = dev.caps().clone();
    let (mut vips, mut ranges, mut targets, mut slots) = (0u64, 0u64, 0u64, 0u64);
    let mut lbs = Vec::new();
    let ids: Vec<u32> = dev.programmed().map(|s| s.lb_id).collect();
    for id in ids {
        let st = dev.lb_state(id).expect("programmed LB has state");
        vips += st.vip_index.len() as u64;
        ranges += u64::from(st.range.len);
        targets += st.target_index.len() as u64;
        slots += st.array.map_or(0, |(b, _)| u64::from(b.len));
        let c = lbc.get(id as usize).copied().unwrap_or_default();
        lbs.push(LbCounters {
            lb_id: id,
            name: names.get(&id).cloned(),
            packets: c.packets,
            bytes: c.bytes,
            targets: st
                .target_index
                .iter()
                .map(|(t, i)| {
                    let c = tc.get(*i as usize).copied().unwrap_or_default();
                    TargetCounters {
                        target: *t,
                        packets: c.packets,
                        bytes: c.bytes,
                    }
                })
                .collect(),
        });
    }
    let table = |t: &str, used: u64, capacity: u32| TableUse {
        table: t.to_string(),
        used,
        capacity: u64::from(capacity),
    };
    let flows = dev.flow_counters();
    let flow_capacity = dev.flow_capacity();
    let mut tables = vec![
        table("lb", vips, caps.lb_buckets * caps.lb_ways),
        table("range", ranges, caps.ranges),
        table("target", targets, caps.targets),
        table("bucket", slots, caps.bucket_slots),
    ];
    if let Some(f) = flows {
        tables.push(table("flow", f.active(), flow_capacity));
    }
    Ok(Stats {
        flows,
        lbs,
        drops: dev
            .drop_counters()
            .into_iter()
            .map(|(r, n)| (r.name().to_string(), n))
            .collect(),
        tables,
    })
}

/// `ironlb stats`: counters per load balancer and target, drops by reason, table occupancy.
pub fn stats(v: View<'_>, format: Format) -> Result<String, OpError> {
    let s = collect_stats(v.dev, v.names)?;
    if format == Format::Json {
        return Ok(serde_json::to_string(&s).expect("stats serialize"));
    }
    let mut out = String::new();
    for lb in &s.lbs {
        let _ = writeln!(
            out,
            "lb {:<5} {:<40} packets {:>12} bytes {:>14}",
            lb.lb_id,
            lb.name.as_deref().unwrap_or("-"),
            lb.packets,
            lb.bytes
        );
        for t in &lb.targets {
            let _ = writeln!(
                out,
                "  target {:<39} packets {:>12} bytes {:>14}",
                t.target.to_string(),
                t.packets,
                t.bytes
            );
        }
    }
    let _ = writeln!(out, "drops:");
    for (r, n) in &s.drops {
        let _ = writeln!(out, "  {r:<24} {n:>12}");
    }
    match &s.flows {
        Some(f) => {
            let _ = writeln!(out, "flows:");
            for (c, n) in f.named() {
                let _ = writeln!(out, "  {:<24} {n:>12}", c.name());
            }
        }
        None => {
            let _ = writeln!(out, "flows: not pinned (the device has no flow table)");
        }
    }
    let _ = writeln!(out, "tables:");
    for t in &s.tables {
        let pct = if t.capacity == 0 {
            0.0
        } else {
            100.0 * t.used as f64 / t.capacity as f64
        };
        let _ = writeln!(
            out,
            "  {:<8} {:>10} / {:<10} {pct:>5.1}%",
            t.table, t.used, t.capacity
        );
    }
    Ok(out)
}

/// The device port whose role is `ingress` (`public` or `vni:N`).
pub fn ingress_port(dev: &mut Device, ingress: &str) -> Result<u32, OpError> {
    let want = if ingress == "public" {
        None
    } else if let Some(v) = ingress.strip_prefix("vni:") {
        Some(
            v.parse::<u32>()
                .map_err(|_| BadInput(format!("--ingress {ingress}: VNI must be a number")))?,
        )
    } else {
        return Err(BadInput(format!("--ingress {ingress}: expected `public` or `vni:N`")).into());
    };
    let mut have = Vec::new();
    for p in 0..dev.caps().ports {
        let cfg = dev.port(p)?;
        if !cfg.enabled {
            continue;
        }
        match (cfg.kind, want) {
            (PortKind::Public, None) => return Ok(p),
            (PortKind::Network { vni }, Some(w)) if vni == w => return Ok(p),
            (PortKind::Public, _) => have.push("public".to_string()),
            (PortKind::Network { vni }, _) => have.push(format!("vni:{vni}")),
            _ => {}
        }
    }
    Err(BadInput(format!(
        "--ingress {ingress}: no enabled port has that role (the device has: {})",
        if have.is_empty() {
            "none".to_string()
        } else {
            have.join(", ")
        }
    ))
    .into())
}

/// A software model holding a copy of `dev`'s forwarding state (see [`Device::mirror_to`]), with the in-process
/// driver that loaded it: traces and replays of a device that is not an in-process model run through this copy.
/// The model has the device's table sizes; it counts only what is sent through it.
pub fn mirror(dev: &mut Device) -> Result<(Device, SharedModel), OpError> {
    let cfg = ironlb_sim::DeviceConfig {
        caps: dev.caps().clone(),
        ..ironlb_sim::DeviceConfig::default()
    };
    let backend = ironlb_driver::InprocBackend::new(cfg)
        .map_err(|e| OpError::Failed(format!("creating the software model for the copy: {e}")))?;
    let model = backend.model();
    let mut local = Device::open(Box::new(backend))?;
    let n = dev.mirror_to(&mut local)?;
    tracing::debug!(load_balancers = n, "device tables copied into a software model");
    Ok((local, model))
}

/// `ironlb trace`: what the device does with one packet, stage by stage. Runs the model's pipeline on the
/// device's table memory without counting the packet.
pub fn trace(v: View<'_>, ingress: &str, packet: &TracePacket, format: Format) -> Result<String, OpError> {
    let port = ingress_port(v.dev, ingress)?;
    let pkt = packet.build()?;
    let Some(model) = v.model else {
        return Err(OpError::Failed(
            "trace needs the software model's pipeline: run it against the daemon of an inproc device, \
             --manifests, --example or --backend (a copy of the device's tables)"
                .to_string(),
        ));
    };
    let (verdict, t) = model.lock().expect("model lock").dry_run(port, &pkt);
    // The flow table is device state a copy does not have (pinned flows are learned by the device itself).
    let flow_table = if v.copy {
        "not_copied"
    } else if v.dev.has_flow_table() {
        "device"
    } else {
        "none"
    };
    Ok(match format {
        Format::Json => {
            let result = match &verdict {
                Verdict::Forward { egress_port, packet } => {
                    serde_json::json!({"verdict": "forward", "egress_port": egress_port, "len": packet.len()})
                }
                Verdict::Drop(r) => serde_json::json!({"verdict": "drop", "reason": r.name()}),
            };
            let name = t.lb_id.and_then(|id| v.names.get(&id));
            serde_json::json!({"trace": t, "result": result, "lb": name, "flow_table": flow_table})
                .to_string()
        }
        Format::Table => {
            let mut out = format!("{} on {ingress}:\n", packet.label());
            if let Some(n) = t.lb_id.and_then(|id| v.names.get(&id)) {
                let _ = writeln!(out, "load balancer {n}");
            }
            out.push_str(&render_trace(&verdict, &t));
            match flow_table {
                "not_copied" => out.push_str(
                    "note: traced on a copy of the device's tables without its flow table: this is what a new flow \
                     does; an established flow pinned on the device may go to another target (ironlb dump --table \
                     flows shows the pinned ones)\n",
                ),
                "none" => out.push_str("note: the device has no flow table (contract < 1.2): no flow is pinned\n"),
                _ => {}
            }
            out
        }
    })
}

/// `ironlb status`: [`status`], followed in text form by the manifest files and documents that do not load (`errors`, rendered
/// load errors; their files keep their last good content). JSON is [`status`]'s list unchanged.
pub fn status_with_errors(
    statuses: &BTreeMap<ObjectKey, LbStatus>,
    errors: &[String],
    format: Format,
) -> String {
    let mut out = status(statuses, format);
    if format == Format::Table && !errors.is_empty() {
        let _ = writeln!(
            out,
            "manifest errors ({}; what they held keeps its last good state):",
            errors.len()
        );
        for e in errors {
            let _ = writeln!(out, "  {}", printable(e));
        }
    }
    out
}

/// Each load balancer's IPs, targets and conditions: a text table (escaped, see [`crate::printable`]) or a JSON
/// list.
pub fn status(statuses: &BTreeMap<ObjectKey, LbStatus>, format: Format) -> String {
    if format == Format::Json {
        let list: Vec<&LbStatus> = statuses.values().collect();
        return serde_json::to_string(&list).expect("status serialize");
    }
    let mut out = String::new();
    // Names and messages come from manifests: escaped, so a manifest cannot forge lines of this output.
    for s in statuses.values() {
        let ready = s.condition(ConditionType::Ready);
        let _ = writeln!(
            out,
            "{}/{}  lb_id {}  {}",
            printable(&s.namespace),
            printable(&s.name),
            s.lb_id.map_or("-".to_string(), |i| i.to_string()),
            match ready {
                Some(c) if c.is_true() => "Ready".to_string(),
                Some(c) => format!("NOT READY ({}: {})", c.reason, printable(&c.message)),
                None => "unknown".to_string(),
            }
        );
        let ips: Vec<String> = s.ips.iter().map(|i| i.to_string()).collect();
        let _ = writeln!(
            out,
            "  ips      {}",
            if ips.is_empty() {
                "-".to_string()
            } else {
                ips.join(", ")
            }
        );
        // The seeds' `name`, or upstream's `targetRef.name` and `ip`.
        let dests: Vec<String> = s
            .destinations
            .iter()
            .map(|d| match (d.interface_name(), &d.ip) {
                (Some(n), Some(ip)) => format!("{} ({})", printable(n), printable(ip)),
                (Some(n), None) => printable(n).into_owned(),
                (None, Some(ip)) => printable(ip).into_owned(),
                (None, None) => "-".to_string(),
            })
            .collect();
        let _ = writeln!(
            out,
            "  routing  {}",
            if dests.is_empty() {
                "-".to_string()
            } else {
                dests.join(", ")
            }
        );
        let targets: Vec<String> = s.programmed_targets.iter().map(|t| t.to_string()).collect();
        let _ = writeln!(
            out,
            "  targets  {}",
            if targets.is_empty() {
                "-".to_string()
            } else {
                targets.join(", ")
            }
        );
        for d in &s.draining_targets {
            let _ = writeln!(
                out,
                "  draining {}{}  until {} (pinned flows only; then removed)",
                d.address,
                d.network_interface
                    .as_deref()
                    .map_or(String::new(), |n| format!(" ({})", printable(n))),
                d.deadline
            );
        }
        if s.serving_last_good {
            let _ = writeln!(out, "  serving its last good configuration");
        }
        if let Some(c) = s
            .condition(ConditionType::TargetsResolved)
            .filter(|c| !c.is_true())
        {
            let _ = writeln!(out, "  warning  {}: {}", c.reason, printable(&c.message));
        }
    }
    out
}
