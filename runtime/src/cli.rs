//! Pieces of the `ironlb` CLI that are worth testing without the binary: the packet a trace runs (`--packet`,
//! `--hex`, `--in FILE --index N`), and the text renderings of `trace` and `dump`.

use etherparse::{IpNumber, PacketBuilder};
use ironlb_driver::Snapshot;
use ironlb_hw::entry::CounterEntry;
use ironlb_hw::DOMAIN_PUBLIC;
use ironlb_sim::{Trace, Verdict};
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

/// A packet spec or backend string that does not parse: bad input (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(pub String);

/// Build the IP packet described by `<proto> <src>[:<sport>] -> <dst>[:<dport>]`, e.g.
/// `tcp 198.51.100.7:40000 -> 203.0.113.10:80`, `udp [2001:db8::7]:5000 -> [2001:db8:ff::10]:1500`,
/// `icmp 198.51.100.7 -> 203.0.113.10` (an echo request). TCP packets are SYNs; SCTP carries a bare common header.
pub fn build_packet(spec: &str) -> Result<Vec<u8>, BadInput> {
    let bad = |m: &str| {
        BadInput(format!(
            "--packet '{spec}': {m}; expected '<tcp|udp|sctp|icmp> <src>:<sport> -> <dst>:<dport>'"
        ))
    };
    let (proto, rest) = spec
        .trim()
        .split_once(char::is_whitespace)
        .ok_or_else(|| bad("no protocol"))?;
    let (src, dst) = rest.split_once("->").ok_or_else(|| bad("no '->'"))?;
    let endpoint = |s: &str| -> Result<(IpAddr, u16), BadInput> {
        let s = s.trim();
        if let Ok(sa) = s.parse::<SocketAddr>() {
            return Ok((sa.ip(), sa.port()));
        }
        let bare = s.trim_start_matches('[').trim_end_matches(']');
        bare.parse::<IpAddr>()
            .map(|ip| (ip, 0))
            .map_err(|_| bad(&format!("'{s}' is not an address[:port]")))
    };
    let ((sip, sport), (dip, dport)) = (endpoint(src)?, endpoint(dst)?);
    let builder = match (sip, dip) {
        (IpAddr::V4(s), IpAddr::V4(d)) => PacketBuilder::ipv4(s.octets(), d.octets(), 64),
        (IpAddr::V6(s), IpAddr::V6(d)) => PacketBuilder::ipv6(s.octets(), d.octets(), 64),
        _ => return Err(bad("source and destination are of different families")),
    };
    let mut v = Vec::new();
    let r = match proto.to_ascii_lowercase().as_str() {
        "tcp" => builder.tcp(sport, dport, 1, 64240).syn().write(&mut v, &[]),
        "udp" => builder.udp(sport, dport).write(&mut v, b"ironlb"),
        "sctp" => {
            let mut h = Vec::with_capacity(12);
            h.extend_from_slice(&sport.to_be_bytes());
            h.extend_from_slice(&dport.to_be_bytes());
            h.extend_from_slice(&[0; 8]); // verification tag, checksum (not interpreted by the device)
            builder.write(&mut v, IpNumber::SCTP, &h)
        }
        "icmp" if sip.is_ipv4() => builder.icmpv4_echo_request(1, 1).write(&mut v, b"ping"),
        "icmp" => builder.icmpv6_echo_request(1, 1).write(&mut v, b"ping"),
        other => return Err(bad(&format!("unknown protocol '{other}'"))),
    };
    r.map_err(|e| bad(&e.to_string()))?;
    Ok(v)
}

/// The packet `ironlb trace` runs through the pipeline: described (`--packet`), or an IP packet as it is (`--hex`,
/// or `--in FILE --index N`, read by the CLI), so that fragments, extension headers and ICMP errors can be traced.
/// On the control socket a described packet is a JSON string (the request's shape before bytes could be given).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum TracePacket {
    /// `<proto> <src>:<sport> -> <dst>:<dport>` ([`build_packet`]).
    Spec(String),
    /// An IP packet (from its first IP header byte), as hex digits, with where it came from.
    Bytes {
        /// Where the packet came from (`--hex`, `FILE packet index N`), for the output.
        label: String,
        /// The packet, hex digits.
        hex: String,
    },
}

impl TracePacket {
    /// An IP packet given as bytes.
    pub fn bytes(label: impl Into<String>, bytes: &[u8]) -> TracePacket {
        TracePacket::Bytes {
            label: label.into(),
            hex: hex::encode(bytes),
        }
    }

    /// `--hex`: hex digits, optionally split by whitespace, `:` or `-` and led by `0x`.
    pub fn from_hex(text: &str) -> Result<TracePacket, BadInput> {
        let bytes = parse_hex(text)?;
        Ok(TracePacket::bytes(
            format!("--hex packet ({} bytes)", bytes.len()),
            &bytes,
        ))
    }

    /// The packet's bytes.
    pub fn build(&self) -> Result<Vec<u8>, BadInput> {
        match self {
            TracePacket::Spec(spec) => build_packet(spec),
            TracePacket::Bytes { label, hex } => {
                hex::decode(hex).map_err(|e| BadInput(format!("{label}: not hex digits: {e}")))
            }
        }
    }

    /// What the output calls the packet.
    pub fn label(&self) -> &str {
        match self {
            TracePacket::Spec(spec) => spec,
            TracePacket::Bytes { label, .. } => label,
        }
    }
}

/// `--hex` text as bytes: hex digits, split anywhere by whitespace, `:` or `-` (as tcpdump, Wireshark's "copy as
/// hex" and `xxd -p` print them), optionally led by `0x`. An empty packet is an error.
pub fn parse_hex(text: &str) -> Result<Vec<u8>, BadInput> {
    let t = text.trim();
    let t = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")).unwrap_or(t);
    let digits: String = t
        .chars()
        .filter(|c| !c.is_whitespace() && *c != ':' && *c != '-')
        .collect();
    if digits.is_empty() {
        return Err(BadInput(
            "--hex: no hex digits (an IP packet, from its first header byte)".into(),
        ));
    }
    hex::decode(&digits).map_err(|e| {
        BadInput(format!(
            "--hex: {e} (an IP packet as hex digits, e.g. 4500003c...; separators: space, ':' or '-')"
        ))
    })
}

/// Text rendering of a trace: one line per stage, then the verdict.
pub fn render_trace(v: &Verdict, t: &Trace) -> String {
    let mut s = String::new();
    for st in &t.stages {
        let _ = writeln!(s, "  {:<12} {}", st.stage, st.outcome);
    }
    match v {
        Verdict::Forward { egress_port, packet } => {
            let _ = writeln!(
                s,
                "verdict: forward on port {egress_port}, {} bytes (40-byte IPv6 outer header + inner)",
                packet.len()
            );
        }
        Verdict::Drop(r) => {
            let _ = writeln!(s, "verdict: drop ({r})");
        }
    }
    s
}

fn domain(d: u32) -> String {
    if d == DOMAIN_PUBLIC {
        "public".into()
    } else {
        format!("vni:{d}")
    }
}

/// Text rendering of a snapshot decoded from the device.
pub fn render_dump(
    snap: &Snapshot,
    lb_counters: &[CounterEntry],
    target_counters: &[CounterEntry],
    table: &str,
) -> String {
    let mut s = String::new();
    let all = table == "all";
    for lb in snap.lbs.values() {
        let _ = writeln!(
            s,
            "lb {}{}",
            lb.lb_id,
            if lb.consistent {
                ""
            } else {
                "  (VIP entries disagree: interrupted update)"
            }
        );
        if all || table == "lbs" {
            for v in &lb.vips {
                let e = &v.entry;
                let _ = writeln!(
                    s,
                    "  vip {:<28} {:<9} entry {:>6}  set {}  icmp echo={} errors={}  generation {}",
                    e.vip.to_string(),
                    domain(e.domain),
                    v.index,
                    e.active_set,
                    e.icmp.allow_echo,
                    e.icmp.deliver_errors,
                    e.generation
                );
            }
        }
        if all || table == "ranges" {
            for r in &lb.ranges {
                let _ = writeln!(s, "  allow {} {}-{}", r.protocol.name(), r.low, r.high);
            }
        }
        if all || table == "targets" || table == "buckets" || table == "counters" {
            for (i, t) in &lb.targets {
                let slots = lb.slots.iter().filter(|x| *x == i).count();
                let c = target_counters.get(*i as usize).copied().unwrap_or_default();
                let _ = writeln!(
                    s,
                    "  target {:>6} {:<24} slots {:>6}/{}  packets {} bytes {}",
                    i,
                    t.underlay.to_string(),
                    slots,
                    lb.slots.len(),
                    c.packets,
                    c.bytes
                );
            }
        }
        if all || table == "counters" {
            let c = lb_counters.get(lb.lb_id as usize).copied().unwrap_or_default();
            let _ = writeln!(s, "  forwarded packets {} bytes {}", c.packets, c.bytes);
        }
    }
    if !snap.orphan_targets.is_empty() {
        let _ = writeln!(
            s,
            "orphan target entries (no LB references them): {:?}",
            snap.orphan_targets
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packet_specs() {
        let p = build_packet("tcp 198.51.100.7:40000 -> 203.0.113.10:80").unwrap();
        assert_eq!((p[0] >> 4, p[9]), (4, 6));
        assert_eq!(&p[20..24], &[0x9c, 0x40, 0, 80]);
        let p = build_packet("UDP [2001:db8::7]:5000 -> [2001:db8:ff::10]:1500").unwrap();
        assert_eq!((p[0] >> 4, p[6]), (6, 17));
        assert_eq!(&p[40..44], &[0x13, 0x88, 0x05, 0xdc]);
        let p = build_packet("sctp 10.0.0.5:9 -> 10.0.0.1:2905").unwrap();
        assert_eq!((p[9], &p[20..24]), (132, &[0, 9, 0x0b, 0x59][..]));
        let p = build_packet("icmp 198.51.100.7 -> 203.0.113.10").unwrap();
        assert_eq!((p[9], p[20]), (1, 8));
        for bad in [
            "tcp 1.2.3.4:1",
            "gre 1.2.3.4 -> 5.6.7.8",
            "tcp 1.2.3.4:1 -> [::1]:2",
            "tcp x -> 1.2.3.4:5",
            "",
        ] {
            let e = build_packet(bad).unwrap_err().to_string();
            assert!(e.contains("expected '<tcp|udp|sctp|icmp>"), "{bad}: {e}");
        }
    }

    #[test]
    fn hex_packets() {
        assert_eq!(
            parse_hex("0x4500 00:1c\n de-ad").unwrap(),
            [0x45, 0, 0, 0x1c, 0xde, 0xad]
        );
        assert_eq!(parse_hex("60 00").unwrap(), [0x60, 0]);
        for (bad, why) in [
            ("", "no hex digits"),
            ("0x", "no hex digits"),
            ("450", "Odd number"),
            ("45zz", "'z'"),
        ] {
            let e = parse_hex(bad).unwrap_err().to_string();
            assert!(e.starts_with("--hex: ") && e.contains(why), "{bad:?}: {e}");
        }
        let p = build_packet("udp 10.0.0.5:9 -> 10.0.0.1:53").unwrap();
        let t = TracePacket::from_hex(&hex::encode(&p)).unwrap();
        assert_eq!(t.build().unwrap(), p);
        assert_eq!(t.label(), format!("--hex packet ({} bytes)", p.len()));
        // On the control socket: a described packet stays a plain string (older clients send that), bytes an object.
        let spec = TracePacket::Spec("tcp 1.2.3.4:1 -> 5.6.7.8:80".into());
        assert_eq!(
            serde_json::to_string(&spec).unwrap(),
            "\"tcp 1.2.3.4:1 -> 5.6.7.8:80\""
        );
        for t in [spec, t] {
            let back: TracePacket = serde_json::from_str(&serde_json::to_string(&t).unwrap()).unwrap();
            assert_eq!(back, t);
        }
    }
}

/// `ironlb run --color`: whether text logs carry ANSI colour codes.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum ColorChoice {
    /// Colour when stderr is a terminal and `NO_COLOR` is not set (never in files, journald or CI logs).
    #[default]
    Auto,
    /// Always colour.
    Always,
    /// Never colour.
    Never,
}

impl ColorChoice {
    /// Whether to colour, given whether stderr is a terminal and whether `NO_COLOR` is set (non-empty).
    pub fn use_ansi(self, stderr_is_terminal: bool, no_color: bool) -> bool {
        match self {
            ColorChoice::Auto => stderr_is_terminal && !no_color,
            ColorChoice::Always => true,
            ColorChoice::Never => false,
        }
    }
}

#[cfg(test)]
mod color_tests {
    use super::ColorChoice;

    #[test]
    fn auto_colours_only_a_terminal_without_no_color() {
        assert!(ColorChoice::Auto.use_ansi(true, false));
        assert!(!ColorChoice::Auto.use_ansi(false, false));
        assert!(!ColorChoice::Auto.use_ansi(true, true));
        assert!(ColorChoice::Always.use_ansi(false, true));
        assert!(!ColorChoice::Never.use_ansi(true, false));
    }
}
