//! Per-packet trace: what each pipeline stage saw and decided (for `ironlb trace`, pcap replay JSON and tests).
//!
//! The pipeline is one generic function over a [`TraceSink`]. [`NoTrace`] ignores everything; its methods are empty
//! and `#[inline(always)]`, so the closures producing trace text are never called and compile away on the hot path.

use ironlb_hw::DropReason;
use serde::{Serialize, Serializer};
use std::net::{IpAddr, Ipv6Addr};

/// One stage of the pipeline and its outcome in a few words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TraceStage {
    /// Stage name: `ingress`, `l3`, `ext_headers`, `lookup`, `l4`, `icmp`, `port_filter`, `hash`, `flow`,
    /// `bucket`, `target`, `mtu`, `egress`.
    pub stage: &'static str,
    /// Human-readable outcome; a failing stage's outcome starts with `drop <reason>:`.
    pub outcome: String,
}

/// The tuple the flow hash was computed over (docs/hw-spec.md §6.1/§6.2; for ICMP errors the embedded tuple
/// reversed, for fragments without ports).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FlowTrace {
    /// Domain.
    pub domain: u32,
    /// Client address.
    pub src: IpAddr,
    /// VIP.
    pub dst: IpAddr,
    /// Protocol.
    pub protocol: u8,
    /// Client port (echo: identifier).
    pub src_port: u16,
    /// VIP port.
    pub dst_port: u16,
}

/// Everything the pipeline learned about one packet. Fields stay `None` for stages the packet did not reach.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Trace {
    /// Ingress domain (VNI or DOMAIN_PUBLIC).
    pub domain: Option<u32>,
    /// 4 or 6.
    pub family: Option<u8>,
    /// Outer source address.
    pub src: Option<IpAddr>,
    /// Outer destination address (the VIP).
    pub dst: Option<IpAddr>,
    /// Upper-layer protocol (after the IPv6 extension chain).
    pub protocol: Option<u8>,
    /// L4 source port (TCP/UDP/SCTP with ports).
    pub src_port: Option<u16>,
    /// L4 destination port.
    pub dst_port: Option<u16>,
    /// `"first"` or `"non_first"` for fragments.
    pub fragment: Option<&'static str>,
    /// Datagram length (the inner bytes forwarded and counted).
    pub datagram_len: Option<u32>,
    /// ICMP summary, e.g. `"echo_request id=7"`, `"error type=3 code=4 (embedded tcp ...)"`.
    pub icmp: Option<String>,
    /// LB-table index of the matching entry (bucket × 4 + way).
    pub lb_index: Option<u32>,
    /// LB_ID of the matching entry.
    pub lb_id: Option<u32>,
    /// Its ACTIVE_SET.
    pub active_set: Option<u8>,
    /// Range-table index of the entry that admitted the packet.
    pub range_match: Option<u32>,
    /// The hashed tuple.
    pub flow: Option<FlowTrace>,
    /// Flow hash (CRC32).
    pub flow_hash: Option<u32>,
    /// Absolute bucket-memory slot read (BUCKET_BASE + (hash & (M − 1))).
    pub bucket_slot: Option<u32>,
    /// Target-table index from the slot.
    pub target: Option<u32>,
    /// Flow table (v1.2): `hit` (took the pinned target), `learned`, `relearned` (pinned target removed),
    /// `stale` (an ICMP error hit a removed target), `overflow` (set full), `not_learned` (FIN/RST, ICMP error).
    /// `None` when the flow table is off or the packet did not reach it.
    pub pinned: Option<&'static str>,
    /// Flow-table index of the entry hit or learned.
    pub flow_entry: Option<u32>,
    /// The target's underlay address (outer destination).
    pub underlay: Option<Ipv6Addr>,
    /// Egress port of a forwarded packet.
    pub egress_port: Option<u32>,
    /// Stages passed, in order; the last one is the failing stage of a dropped packet.
    pub stages: Vec<TraceStage>,
    /// Drop reason (serialized as its name).
    #[serde(serialize_with = "ser_drop")]
    pub drop: Option<DropReason>,
}

fn ser_drop<S: Serializer>(r: &Option<DropReason>, s: S) -> Result<S::Ok, S::Error> {
    match r {
        Some(r) => s.serialize_some(r.name()),
        None => s.serialize_none(),
    }
}

impl Trace {
    /// The outcome of stage `name`, if the packet reached it.
    pub fn stage(&self, name: &str) -> Option<&str> {
        self.stages
            .iter()
            .find(|s| s.stage == name)
            .map(|s| s.outcome.as_str())
    }
}

impl std::fmt::Display for Trace {
    /// One line per stage: `stage: outcome`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for s in &self.stages {
            writeln!(f, "{:<12} {}", s.stage, s.outcome)?;
        }
        Ok(())
    }
}

/// Receiver of trace information. Implemented by [`Trace`] (records) and [`NoTrace`] (ignores).
pub trait TraceSink {
    /// Record that `stage` ran, with an outcome computed only when tracing.
    fn step(&mut self, stage: &'static str, outcome: impl FnOnce() -> String);
    /// Fill trace fields, only when tracing.
    fn set(&mut self, f: impl FnOnce(&mut Trace));
}

/// A sink that records nothing (the hot path).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoTrace;

impl TraceSink for NoTrace {
    #[inline(always)]
    fn step(&mut self, _: &'static str, _: impl FnOnce() -> String) {}
    #[inline(always)]
    fn set(&mut self, _: impl FnOnce(&mut Trace)) {}
}

impl TraceSink for Trace {
    fn step(&mut self, stage: &'static str, outcome: impl FnOnce() -> String) {
        self.stages.push(TraceStage {
            stage,
            outcome: outcome(),
        });
    }
    fn set(&mut self, f: impl FnOnce(&mut Trace)) {
        f(self)
    }
}

/// Record the failing stage (`drop <reason>: <why>`) and return the drop.
#[inline(always)]
pub(crate) fn fail<S: TraceSink, T>(
    t: &mut S,
    stage: &'static str,
    reason: DropReason,
    why: impl FnOnce() -> String,
) -> Result<T, DropReason> {
    t.step(stage, || format!("drop {reason}: {}", why()));
    Err(reason)
}

/// [`fail`] for a parse failure.
#[inline(always)]
pub(crate) fn fail_bad<S: TraceSink, T>(
    t: &mut S,
    stage: &'static str,
    bad: super::parse::Bad,
) -> Result<T, DropReason> {
    fail(t, stage, bad.reason, || bad.why.to_string())
}

/// An address of the given family from its 16 stored bytes (IPv4 unmapped).
pub fn ip_of(v6: bool, a: &[u8; 16]) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::from(*a))
    } else {
        IpAddr::V4(std::net::Ipv4Addr::new(a[12], a[13], a[14], a[15]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_drop_by_name_and_addresses_as_strings() {
        let mut t = Trace::default();
        t.step("ingress", || "port 0".into());
        t.set(|t| {
            t.src = Some(ip_of(false, &ironlb_hw::Vip::from_ipv4([192, 0, 2, 1]).0));
            t.underlay = Some("fd00::1".parse().unwrap());
            t.drop = Some(DropReason::NoVip);
        });
        let j = serde_json::to_value(&t).unwrap();
        assert_eq!(j["drop"], "no_vip");
        assert_eq!(j["src"], "192.0.2.1");
        assert_eq!(j["underlay"], "fd00::1");
        assert_eq!(j["stages"][0]["stage"], "ingress");
        assert_eq!(j["stages"][0]["outcome"], "port 0");
        assert_eq!(t.stage("ingress"), Some("port 0"));
        assert_eq!(t.to_string(), "ingress      port 0\n");
        let mut n = NoTrace;
        n.step("x", || unreachable!("NoTrace never evaluates outcomes"));
        n.set(|_| unreachable!());
    }
}
