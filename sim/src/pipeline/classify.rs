//! L4 classification and ICMP policy (docs/hw-spec.md §7.5, §7.7): decide what is hashed (§6.2) and what the port
//! filter (§7.6) is asked.

use super::flow::FlowUse;
use super::lookup::LbHit;
use super::parse::{self, proto, Fragment, IcmpKind, Ip};
use super::trace::{fail, fail_bad, ip_of, TraceSink};
use ironlb_hw::DropReason;

/// What the rest of the pipeline needs from L4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Class {
    /// Hashed source (16 bytes).
    pub src: [u8; 16],
    /// Hashed destination (the VIP).
    pub dst: [u8; 16],
    /// Hashed protocol.
    pub protocol: u8,
    /// Hashed source port (echo: identifier; fragments: 0).
    pub src_port: u16,
    /// Hashed destination port.
    pub dst_port: u16,
    /// Port-filter question; `None` when the filter does not apply (echo requests).
    pub filter: Option<Ask>,
    /// How the packet may use the flow table (docs/hw-spec.md §11.4).
    pub flow_use: FlowUse,
}

/// What the port filter (§7.6) is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ask {
    /// Is (protocol, destination port) allowed?
    Port(u8, u16),
    /// A non-first fragment of a TCP/UDP/SCTP datagram: does any entry have this protocol?
    Protocol(u8),
    /// A non-first IPv6 fragment whose fragmentable part starts with an extension header: the upper-layer protocol
    /// is unknown, so any non-empty entry admits it (its first fragment was filtered by protocol and port).
    AnyEntry,
}

/// §7.5: classify by upper-layer protocol.
#[inline(always)]
pub fn classify<S: TraceSink>(ip: &Ip<'_>, lb: &LbHit, t: &mut S) -> Result<Class, DropReason> {
    let p = ip.protocol;
    // Fragments are hashed without ports and with the protocol every fragment of the datagram carries (§6.2).
    let unported = |filter| Class {
        src: ip.src,
        dst: ip.dst,
        protocol: ip.frag_protocol,
        src_port: 0,
        dst_port: 0,
        filter: Some(filter),
        flow_use: FlowUse::Learn,
    };
    if proto::has_ports(p) {
        if ip.fragment == Fragment::NonFirst {
            t.step("l4", || {
                format!("{} non-first fragment: no ports", proto::name(p))
            });
            return Ok(unported(Ask::Protocol(p)));
        }
        let Some((sp, dp)) = parse::ports(ip.datagram, ip.l4) else {
            return fail(t, "l4", DropReason::L4Truncated, || {
                format!("{} ports not inside the datagram", proto::name(p))
            });
        };
        let frag = ip.fragment.is_fragment();
        t.set(|t| {
            t.src_port = Some(sp);
            t.dst_port = Some(dp);
        });
        t.step("l4", || {
            let f = if frag {
                " (first fragment: hashed without ports)"
            } else {
                ""
            };
            format!("{} {sp} -> {dp}{f}", proto::name(p))
        });
        let flow_use = tcp_flow_use(p, ip.datagram, ip.l4);
        if frag {
            return Ok(Class {
                flow_use,
                ..unported(Ask::Port(p, dp))
            });
        }
        return Ok(Class {
            src: ip.src,
            dst: ip.dst,
            protocol: p,
            src_port: sp,
            dst_port: dp,
            filter: Some(Ask::Port(p, dp)),
            flow_use,
        });
    }
    let icmp = if ip.v6 { proto::ICMPV6 } else { proto::ICMP };
    if p == icmp {
        return classify_icmp(ip, lb, t);
    }
    if ip.v6 && ip.fragment == Fragment::NonFirst && parse::is_ext_header(p) {
        t.step("l4", || {
            format!(
                "non-first fragment, fragmentable part starts with {} ({p}): upper-layer protocol unknown",
                proto::name(p)
            )
        });
        return Ok(unported(Ask::AnyEntry));
    }
    fail(t, "l4", DropReason::ProtocolNotAllowed, || {
        format!("protocol {p} ({}) is not load-balanced", proto::name(p))
    })
}

/// §11.4: a TCP segment with FIN or RST (flags in L4 byte 13, when it is inside the datagram) never learns and marks
/// its flow CLOSING; every other packet with ports may learn.
#[inline(always)]
fn tcp_flow_use(protocol: u8, datagram: &[u8], l4: usize) -> FlowUse {
    const FIN: u8 = 0x01;
    const RST: u8 = 0x04;
    match datagram.get(l4 + 13) {
        Some(flags) if protocol == proto::TCP && flags & (FIN | RST) != 0 => FlowUse::Closing,
        _ => FlowUse::Learn,
    }
}

/// §7.7: ICMP / ICMPv6.
#[inline(always)]
fn classify_icmp<S: TraceSink>(ip: &Ip<'_>, lb: &LbHit, t: &mut S) -> Result<Class, DropReason> {
    let (d, l4, v6) = (ip.datagram, ip.l4, ip.v6);
    let Some((ty, code)) = parse::icmp_type_code(d, l4) else {
        return fail(t, "icmp", DropReason::L4Truncated, || {
            "ICMP header (4 bytes) not inside the datagram".into()
        });
    };
    if ip.fragment.is_fragment() {
        return fail(t, "icmp", DropReason::IcmpUnsupported, || {
            format!("fragmented ICMP datagram (type {ty})")
        });
    }
    match parse::icmp_kind(v6, ty) {
        IcmpKind::EchoRequest => {
            if !lb.allow_echo {
                return fail(t, "icmp", DropReason::IcmpEcho, || {
                    "echo request and ICMP_ALLOW_ECHO is clear".into()
                });
            }
            let Some(id) = parse::echo_identifier(d, l4) else {
                return fail(t, "icmp", DropReason::L4Truncated, || {
                    "echo header (8 bytes) not inside the datagram".into()
                });
            };
            t.set(|t| t.icmp = Some(format!("echo_request id={id}")));
            t.step("icmp", || format!("echo request id={id} allowed"));
            Ok(Class {
                src: ip.src,
                dst: ip.dst,
                protocol: ip.protocol,
                src_port: id,
                dst_port: 0,
                filter: None,
                flow_use: FlowUse::Learn,
            })
        }
        IcmpKind::Error => {
            if !lb.deliver_errors {
                return fail(t, "icmp", DropReason::IcmpUnsupported, || {
                    format!("error type {ty} code {code} and ICMP_DELIVER_ERRORS is clear")
                });
            }
            let e = parse::embedded(v6, d, l4 + 8).or_else(|b| fail_bad(t, "icmp", b))?;
            if e.src != ip.dst {
                return fail(t, "icmp", DropReason::IcmpErrorInvalid, || {
                    format!("embedded source {} is not the VIP", ip_of(v6, &e.src))
                });
            }
            let summary = || {
                format!(
                    "error type={ty} code={code} embedded {} {}:{} -> {}:{}",
                    proto::name(e.protocol),
                    ip_of(v6, &e.src),
                    e.src_port,
                    ip_of(v6, &e.dst),
                    e.dst_port
                )
            };
            t.set(|t| t.icmp = Some(summary()));
            t.step("icmp", || format!("{}, hashed reversed", summary()));
            Ok(Class {
                src: e.dst,
                dst: e.src,
                protocol: e.protocol,
                src_port: e.dst_port,
                dst_port: e.src_port,
                filter: Some(Ask::Port(e.protocol, e.src_port)),
                flow_use: FlowUse::LookupOnly,
            })
        }
        IcmpKind::Other => fail(t, "icmp", DropReason::IcmpUnsupported, || {
            format!("type {ty} code {code} is neither an echo request nor a delivered error")
        }),
    }
}
