//! The packet pipeline (docs/hw-spec.md §7): ingress → L3 parse → IPv6 extension headers → LB lookup → L4 / ICMP
//! policy → port filter → flow hash → bucket slot → target → MTU → IP-in-IPv6 encapsulation.
//!
//! The pipeline reads only registers and table memory (what the hardware has), never host-side state. It is one
//! generic implementation over a [`trace::TraceSink`]: [`Device::process`], [`Device::process_into`] (the
//! allocation-free hot path) and [`Device::process_traced`] all run it; without tracing the trace calls compile away.
//!
//! It is split at its memory stages, each a function: `front` (§7.1–§7.8 up to the bucket-slot index: parse, LB
//! lookup, L4 / ICMP policy, port filter, flow hash), `bucket` (one bucket-memory read), `target_entry` (one
//! target-entry read), `egress` (MTU, egress port, encapsulation) and `Device::account` (counters). The single-packet
//! path (`pipeline`) chains them for one packet; [`Device::process_burst`] (burst.rs) runs each stage over a whole
//! burst before the next, so the cache misses of many packets overlap, as a hardware pipeline keeps many packets in
//! flight.

mod burst;
mod classify;
mod crc;
mod encap;
mod filter;
pub mod flow;
pub mod inflight;
mod lookup;
pub mod parse;
mod trace;

pub use burst::BurstResult;
pub use encap::{NH_IPV4, NH_IPV6, OUTER_LEN};
pub use trace::{FlowTrace, Trace, TraceStage};

use crate::device::Device;
use encap::Outer;
use flow::{FlowEffect, FlowUse};
use ironlb_hw::entry::target::raw_underlay;
use ironlb_hw::entry::FlowKey;
use ironlb_hw::entry::NO_TARGET;
use ironlb_hw::regs::{TableId, PORT_CFG, UNDERLAY_SRC};
use ironlb_hw::{DropReason, DOMAIN_PUBLIC};
use ironlb_hw::{FlowTuple, Vip};
use std::net::Ipv6Addr;
use trace::{fail, fail_bad, ip_of, NoTrace, TraceSink};

/// The device's decision for one packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Sent on `egress_port` (an underlay port) as `packet`: the outer IPv6 header followed by the unchanged inner
    /// datagram.
    Forward {
        /// Egress port.
        egress_port: u32,
        /// Outer IPv6 header + inner datagram.
        packet: Vec<u8>,
    },
    /// Dropped and counted in `DROP_COUNTERS[reason]`.
    Drop(DropReason),
}

/// What [`front`] decided: the bucket slot to read next and what encapsulation needs of the packet.
#[derive(Debug, Clone, Copy)]
struct Front<'a> {
    /// Bucket-memory slot (bounds-checked).
    slot: u32,
    /// Flow hash (outer flow label).
    hash: u32,
    /// LB_ID of the matched entry (per-LB counter row).
    lb_id: u32,
    /// Inner datagram is IPv6.
    v6: bool,
    /// Inner TOS / traffic class.
    traffic_class: u8,
    /// The inner datagram (forwarded unchanged).
    datagram: &'a [u8],
    /// The flow-table key (v1.2): the hashed tuple and the LB.
    key: FlowKey,
    /// How the packet may use the flow table.
    flow_use: FlowUse,
}

/// A forwarding decision before counters are updated.
#[derive(Debug, Clone, Copy)]
struct Fwd {
    egress_port: u32,
    lb_id: u32,
    target: u32,
    len: u64,
    /// The flow-table write the packet causes (applied with the counters).
    flow: FlowEffect,
}

impl Device {
    /// Process one packet arriving on `port`; updates the counters (per-LB and per-target on forward, the drop
    /// counter of the reason on drop). Table memory is read, never host-side state.
    pub fn process(&mut self, port: u32, pkt: &[u8]) -> Verdict {
        let mut out = Vec::new();
        match self.run(port, pkt, &mut out, &mut NoTrace) {
            Ok(egress_port) => Verdict::Forward {
                egress_port,
                packet: out,
            },
            Err(r) => Verdict::Drop(r),
        }
    }

    /// [`Device::process`], also returning what every stage saw and decided.
    pub fn process_traced(&mut self, port: u32, pkt: &[u8]) -> (Verdict, Trace) {
        let mut t = Trace::default();
        let mut out = Vec::new();
        let v = match self.run(port, pkt, &mut out, &mut t) {
            Ok(egress_port) => Verdict::Forward {
                egress_port,
                packet: out,
            },
            Err(r) => Verdict::Drop(r),
        };
        (v, t)
    }

    /// What the device would do with `pkt` arriving on `port`, stage by stage, without counting it: no counter
    /// changes (diagnostics such as `ironlb trace` must not show up in the statistics).
    pub fn dry_run(&self, port: u32, pkt: &[u8]) -> (Verdict, Trace) {
        let mut t = Trace::default();
        let mut out = Vec::new();
        let v = match pipeline(self, port, pkt, &mut out, &mut t) {
            Ok(f) => Verdict::Forward {
                egress_port: f.egress_port,
                packet: out,
            },
            Err(r) => {
                t.drop = Some(r);
                Verdict::Drop(r)
            }
        };
        (v, t)
    }

    /// The hot path: writes the outer packet into `out` (cleared first; left empty on a drop) and returns the egress
    /// port, or the drop reason. Counters as [`Device::process`]. No allocation once `out` has grown to the largest
    /// packet.
    #[inline]
    pub fn process_into(&mut self, port: u32, pkt: &[u8], out: &mut Vec<u8>) -> Result<u32, DropReason> {
        out.clear();
        self.run(port, pkt, out, &mut NoTrace)
    }

    #[inline(always)]
    fn run<S: TraceSink>(
        &mut self,
        port: u32,
        pkt: &[u8],
        out: &mut Vec<u8>,
        t: &mut S,
    ) -> Result<u32, DropReason> {
        let r = pipeline(self, port, pkt, out, t);
        if let Err(r) = r {
            out.clear();
            t.set(|t| t.drop = Some(r));
        }
        self.account(r)
    }

    /// Update the counters for one decision: per-LB and per-target rows on forward, the drop counter of the reason
    /// on drop.
    #[inline(always)]
    fn account(&mut self, r: Result<Fwd, DropReason>) -> Result<u32, DropReason> {
        match r {
            Ok(f) => {
                self.apply_flow(&f.flow);
                self.tables.count(TableId::LbCounter, f.lb_id, f.len);
                self.tables.count(TableId::TargetCounter, f.target, f.len);
                Ok(f.egress_port)
            }
            Err(r) => {
                self.count_drop(r);
                Err(r)
            }
        }
    }
}

fn domain_name(domain: u32) -> String {
    if domain == DOMAIN_PUBLIC {
        "public".to_string()
    } else {
        format!("vni {domain}")
    }
}

/// PORT_CFG value of an enabled underlay port: ENABLED set, KIND = 2, reserved bits 30 and 27:24 clear — exactly
/// the values `PortCfg::from_raw` decodes as an enabled `PortKind::Underlay` (VNI bits are ignored for that kind).
#[inline]
fn is_enabled_underlay(raw: u32) -> bool {
    raw & 0xFF00_0000 == 0xA000_0000
}

/// UNDERLAY_SRC as 16 bytes (4 register reads; register 0x50 holds address bytes 0–3 little-endian).
#[inline]
fn underlay_src(d: &Device) -> [u8; 16] {
    let mut a = [0u8; 16];
    for (i, c) in a.chunks_exact_mut(4).enumerate() {
        c.copy_from_slice(&d.reg(UNDERLAY_SRC + 4 * i as u32).to_le_bytes());
    }
    a
}

#[inline]
fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// §7.1–§7.9 for one packet, read-only: the decision and (on forward) the outer packet appended to `out`. The
/// stages in order; [`Device::process_burst`] runs the same stages over a burst.
#[inline(always)]
fn pipeline<S: TraceSink>(
    d: &Device,
    port: u32,
    pkt: &[u8],
    out: &mut Vec<u8>,
    t: &mut S,
) -> Result<Fwd, DropReason> {
    pipeline_pinned(d, port, pkt, out, t, None)
}

/// [`pipeline`] with the LB lookup's result given (`pinned`) instead of read now: the pipelined mode
/// (inflight.rs) looks the LB table up when a packet enters and reads the other tables when it reaches their stage.
#[inline(always)]
fn pipeline_pinned<S: TraceSink>(
    d: &Device,
    port: u32,
    pkt: &[u8],
    out: &mut Vec<u8>,
    t: &mut S,
    pinned: Option<lookup::Lookup>,
) -> Result<Fwd, DropReason> {
    let f = front_pinned(d, port, pkt, t, pinned)?;
    let (target, underlay, fx) = select(d, &f, t)?;
    egress(d, &f, target, underlay, out, t).map(|fwd| Fwd { flow: fx, ..fwd })
}

/// §7.8 and §7.8a: the target of a packet: through the flow table when it is on (v1.2), else bucket slot → target.
#[inline(always)]
fn select<S: TraceSink>(
    d: &Device,
    f: &Front<'_>,
    t: &mut S,
) -> Result<(u32, [u8; 16], FlowEffect), DropReason> {
    if d.flow_enabled() {
        return flow::stage(d, f, t);
    }
    let target = bucket(d, f.slot, t)?;
    let underlay = target_entry(d, target, t)?;
    Ok((target, underlay, FlowEffect::None))
}

/// §7.1–§7.8 up to the bucket-slot index: ingress, L3, extension headers, LB lookup, L4 / ICMP policy, port filter,
/// flow hash, slot bounds. Reads registers, the LB table and the range table.
#[inline(always)]
fn front<'a, S: TraceSink>(d: &Device, port: u32, pkt: &'a [u8], t: &mut S) -> Result<Front<'a>, DropReason> {
    front_pinned(d, port, pkt, t, None)
}

/// [`front`]; with `pinned`, the LB lookup's result is that instead of a read of the LB table now.
#[inline(always)]
fn front_pinned<'a, S: TraceSink>(
    d: &Device,
    port: u32,
    pkt: &'a [u8],
    t: &mut S,
    pinned: Option<lookup::Lookup>,
) -> Result<Front<'a>, DropReason> {
    let cfg = d.config();

    // §7.1 ingress.
    if !d.enabled() {
        return fail(t, "ingress", DropReason::DeviceDisabled, || {
            "CONTROL.ENABLE is clear".into()
        });
    }
    let Some(domain) = d.port_cfg(port).and_then(|c| c.ingress_domain()) else {
        return fail(t, "ingress", DropReason::PortDisabled, || {
            format!("port {port} is not an enabled ingress port")
        });
    };
    t.set(|t| t.domain = Some(domain));
    t.step("ingress", || {
        format!("port {port}, domain {}", domain_name(domain))
    });

    // §7.2 L3.
    let mut ip = parse::parse_l3(pkt).or_else(|b| fail_bad(t, "l3", b))?;
    t.set(|t| {
        t.family = Some(if ip.v6 { 6 } else { 4 });
        t.src = Some(ip_of(ip.v6, &ip.src));
        t.dst = Some(ip_of(ip.v6, &ip.dst));
        t.datagram_len = Some(ip.datagram.len() as u32);
    });
    t.step("l3", || {
        let trailing = pkt.len() - ip.datagram.len();
        format!(
            "ipv{} {} -> {}, header {} bytes, datagram {} bytes{}",
            if ip.v6 { 6 } else { 4 },
            ip_of(ip.v6, &ip.src),
            ip_of(ip.v6, &ip.dst),
            ip.header_len,
            ip.datagram.len(),
            if trailing > 0 {
                format!(" ({trailing} trailing bytes not forwarded)")
            } else {
                String::new()
            }
        )
    });

    // §7.3 IPv6 extension headers.
    if ip.v6 {
        parse::walk_ipv6_ext(&mut ip).or_else(|b| fail_bad(t, "ext_headers", b))?;
        t.step("ext_headers", || {
            format!(
                "{} extension header(s), upper-layer protocol {} ({}) at offset {}",
                ip.ext_headers,
                ip.protocol,
                parse::proto::name(ip.protocol),
                ip.l4
            )
        });
    }
    t.set(|t| {
        t.protocol = Some(ip.protocol);
        t.fragment = ip.fragment.name();
    });

    // §7.4 LB lookup.
    let lk = pinned.unwrap_or_else(|| lookup::lookup(&d.tables, cfg.caps.lb_buckets, domain, ip.v6, &ip.dst));
    let Some(lb) = lk.hit else {
        return fail(t, "lookup", DropReason::NoVip, || match lk.buckets {
            Some([b1, b2]) => format!(
                "no valid entry for ({}, ipv{}, {}) in buckets {b1} and {b2}",
                domain_name(domain),
                if ip.v6 { 6 } else { 4 },
                ip_of(ip.v6, &ip.dst)
            ),
            None => "IPv6 destination inside ::ffff:0:0/96 (no such VIP)".into(),
        });
    };
    let set = lb.set;
    t.set(|t| {
        t.lb_index = Some(lb.index);
        t.lb_id = Some(lb.lb_id);
        t.active_set = Some(lb.active_set);
    });
    t.step("lookup", || {
        format!(
            "hit lb_id={} at index {} (bucket {} way {}), active set {}",
            lb.lb_id, lb.index, lb.bucket, lb.way, lb.active_set
        )
    });

    // §7.5 L4 classification, §7.7 ICMP policy.
    let c = classify::classify(&ip, &lb, t)?;

    // §7.6 port filter.
    match c.filter {
        Some(ask) => {
            let what = || match ask {
                classify::Ask::Port(p, port) => format!("{}/{port}", parse::proto::name(p)),
                classify::Ask::Protocol(p) => format!("{} non-first fragment", parse::proto::name(p)),
                classify::Ask::AnyEntry => "non-first fragment of unknown upper-layer protocol".to_string(),
            };
            let cap = cfg.caps.max_ranges_per_lb;
            match filter::admit(&d.tables, cap, set.range_base, set.range_count, ask) {
                Some(i) => {
                    t.set(|t| t.range_match = Some(i));
                    t.step("port_filter", || format!("{} admitted by range {i}", what()));
                }
                None => {
                    return fail(t, "port_filter", DropReason::PortNotAllowed, || {
                        let b = filter::block(&d.tables, cap, set.range_base, set.range_count);
                        format!("{} not admitted by ranges [{}, {})", what(), b.start, b.end)
                    })
                }
            }
        }
        None => t.step("port_filter", || "not applied (echo request)".into()),
    }

    // §7.8 flow hash and target selection.
    let h = crc::flow_hash(&crc::flow_key(
        domain, &c.src, &c.dst, c.protocol, c.src_port, c.dst_port,
    ));
    let log2 = set.bucket_log2;
    let m = 1u64 << log2.min(63);
    t.set(|t| {
        t.flow_hash = Some(h);
        t.flow = Some(FlowTrace {
            domain,
            src: ip_of(ip.v6, &c.src),
            dst: ip_of(ip.v6, &c.dst),
            protocol: c.protocol,
            src_port: c.src_port,
            dst_port: c.dst_port,
        });
    });
    t.step("hash", || {
        let o = u64::from(h) & (m - 1);
        match log2 {
            0 => format!("crc32={h:#010x} (no bucket array)"),
            _ => format!("crc32={h:#010x} slot {o:#06x} of M={m}"),
        }
    });
    if log2 == 0 || log2 < cfg.caps.bucket_log2_min || log2 > cfg.caps.bucket_log2_max {
        return fail(t, "bucket", DropReason::NoTarget, || {
            format!(
                "BUCKET_LOG2 = {log2}: no bucket array (0) or outside CAP_BUCKET_LOG2 [{}, {}]",
                cfg.caps.bucket_log2_min, cfg.caps.bucket_log2_max
            )
        });
    }
    let slot = u64::from(set.bucket_base) + (u64::from(h) & (m - 1));
    let slots = cfg.caps.bucket_slots; // = entries of bucket memory
    if slot >= u64::from(slots) {
        return fail(t, "bucket", DropReason::NoTarget, || {
            format!("slot {slot} outside bucket memory ({slots} slots)")
        });
    }
    Ok(Front {
        slot: slot as u32,
        hash: h,
        lb_id: lb.lb_id,
        v6: ip.v6,
        traffic_class: ip.traffic_class,
        datagram: ip.datagram,
        key: FlowKey {
            tuple: FlowTuple {
                domain,
                src: Vip(c.src),
                dst: Vip(c.dst),
                protocol: c.protocol,
                src_port: c.src_port,
                dst_port: c.dst_port,
            },
            lb_id: lb.lb_id,
            lb_epoch: lb.flow_epoch,
        },
        flow_use: c.flow_use,
    })
}

/// §7.8 bucket slot → target index: one read of bucket memory (`slot` is in range), then the target-index checks.
#[inline(always)]
fn bucket<S: TraceSink>(d: &Device, slot: u32, t: &mut S) -> Result<u32, DropReason> {
    let target = le32(d.tables.entry(TableId::Bucket, slot));
    t.set(|t| t.bucket_slot = Some(slot));
    if target == NO_TARGET {
        return fail(t, "bucket", DropReason::NoTarget, || {
            format!("slot {slot} holds NO_TARGET")
        });
    }
    t.set(|t| t.target = Some(target));
    let n_targets = d.config().caps.targets; // CAP_TARGETS = entries of the target table
    if target >= n_targets {
        return fail(t, "bucket", DropReason::NoTarget, || {
            format!("slot {slot} holds target {target} >= CAP_TARGETS ({n_targets})")
        });
    }
    t.step("bucket", || format!("slot {slot} -> target {target}"));
    Ok(target)
}

/// §7.8 target index (< CAP_TARGETS) → underlay address: one read of the target table.
#[inline(always)]
fn target_entry<S: TraceSink>(d: &Device, target: u32, t: &mut S) -> Result<[u8; 16], DropReason> {
    let Some(underlay) = raw_underlay(d.tables.entry(TableId::Target, target)) else {
        return fail(t, "target", DropReason::NoTarget, || {
            format!("target entry {target} is not valid")
        });
    };
    t.set(|t| t.underlay = Some(Ipv6Addr::from(underlay)));
    t.step("target", || {
        format!("target {target} underlay {}", Ipv6Addr::from(underlay))
    });
    Ok(underlay)
}

/// §7.9 MTU, egress port and encapsulation: appends the outer packet to `out` on forward (nothing on drop).
/// Reads registers only.
#[inline(always)]
fn egress<S: TraceSink>(
    d: &Device,
    f: &Front<'_>,
    target: u32,
    underlay: [u8; 16],
    out: &mut Vec<u8>,
    t: &mut S,
) -> Result<Fwd, DropReason> {
    let cfg = d.config();
    let len = f.datagram.len();
    let mtu = d.underlay_mtu();
    if (OUTER_LEN + len) as u64 > u64::from(mtu) {
        return fail(t, "mtu", DropReason::MtuExceeded, || {
            format!("outer packet {} bytes > UNDERLAY_MTU {mtu}", OUTER_LEN + len)
        });
    }
    if len > usize::from(u16::MAX) {
        return fail(t, "mtu", DropReason::MtuExceeded, || {
            format!("datagram {len} bytes does not fit the outer payload length field")
        });
    }
    t.step("mtu", || {
        format!("outer packet {} bytes <= UNDERLAY_MTU {mtu}", OUTER_LEN + len)
    });
    let Some(egress_port) = (0..cfg.caps.ports).find(|&p| is_enabled_underlay(d.reg(PORT_CFG + 4 * p)))
    else {
        return fail(t, "egress", DropReason::PortDisabled, || {
            "no enabled underlay port".into()
        });
    };
    let outer = Outer {
        traffic_class: f.traffic_class,
        flow_label: f.hash & 0xF_FFFF,
        next_header: if f.v6 { NH_IPV6 } else { NH_IPV4 },
        hop_limit: d.hop_limit(),
        src: underlay_src(d),
        dst: underlay,
    };
    let start = out.len();
    outer.write(f.datagram, out);
    t.set(|t| t.egress_port = Some(egress_port));
    t.step("egress", || {
        format!(
            "port {egress_port}: {} -> {} flow label {:#07x} hop limit {}, {} bytes",
            Ipv6Addr::from(outer.src),
            Ipv6Addr::from(outer.dst),
            outer.flow_label,
            outer.hop_limit,
            out.len() - start
        )
    });
    Ok(Fwd {
        egress_port,
        lb_id: f.lb_id,
        target,
        len: len as u64,
        flow: FlowEffect::None,
    })
}

#[cfg(test)]
mod tests;
