//! Packet parsing for the pipeline (docs/hw-spec.md §7.2 L3, §7.3 IPv6 extension headers, §7.5 L4 ports, §7.7
//! ICMP). Everything works on borrowed bytes and never allocates; every length is checked before a field is read,
//! and fields are read at explicit offsets (the style of smoltcp's wire module).

use ironlb_hw::DropReason;

/// IP protocol numbers the pipeline distinguishes.
pub mod proto {
    /// ICMP (IPv4 only).
    pub const ICMP: u8 = 1;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// ICMPv6 (IPv6 only).
    pub const ICMPV6: u8 = 58;
    /// SCTP.
    pub const SCTP: u8 = 132;
    /// IPv6 Hop-by-Hop Options.
    pub const HOPOPT: u8 = 0;
    /// IPv6 Routing header.
    pub const ROUTING: u8 = 43;
    /// IPv6 Fragment header.
    pub const FRAGMENT: u8 = 44;
    /// IPv6 Authentication header.
    pub const AH: u8 = 51;
    /// IPv6 Destination Options.
    pub const DSTOPTS: u8 = 60;

    /// TCP, UDP or SCTP: the port-filtered protocols.
    #[inline]
    pub const fn has_ports(p: u8) -> bool {
        matches!(p, TCP | UDP | SCTP)
    }

    /// Short lower-case name for traces.
    pub fn name(p: u8) -> &'static str {
        match p {
            ICMP => "icmp",
            TCP => "tcp",
            UDP => "udp",
            ICMPV6 => "icmpv6",
            SCTP => "sctp",
            HOPOPT => "hbh",
            ROUTING => "routing",
            FRAGMENT => "fragment",
            AH => "ah",
            DSTOPTS => "dstopts",
            50 => "esp",
            59 => "no-next-header",
            _ => "other",
        }
    }
}

/// At most this many IPv6 extension headers are walked; one more is `ipv6_ext_headers` (§7.3).
pub const MAX_EXT_HEADERS: u8 = 8;

/// A parse failure: the drop reason and a short static explanation (for traces; free on the hot path).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bad {
    /// The drop reason of the contract.
    pub reason: DropReason,
    /// What was wrong.
    pub why: &'static str,
}

#[inline]
const fn bad(reason: DropReason, why: &'static str) -> Bad {
    Bad { reason, why }
}

/// Fragmentation state of a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fragment {
    /// Not fragmented.
    No,
    /// A fragment with offset 0 (carries the L4 header).
    First,
    /// A fragment with offset ≠ 0 (no L4 header).
    NonFirst,
}

impl Fragment {
    /// True for any fragment of a fragmented datagram.
    #[inline]
    pub fn is_fragment(self) -> bool {
        self != Fragment::No
    }
    /// Name used in traces: `None`, `"first"`, `"non_first"`.
    pub fn name(self) -> Option<&'static str> {
        match self {
            Fragment::No => None,
            Fragment::First => Some("first"),
            Fragment::NonFirst => Some("non_first"),
        }
    }
}

/// The parsed L3 header(s) of a packet.
#[derive(Debug, Clone, Copy)]
pub struct Ip<'a> {
    /// IPv6 (else IPv4).
    pub v6: bool,
    /// The datagram: the first `total length` (IPv4) / `40 + payload length` (IPv6) bytes of the packet.
    pub datagram: &'a [u8],
    /// Source address, 16 bytes (IPv4 mapped).
    pub src: [u8; 16],
    /// Destination address, 16 bytes (IPv4 mapped).
    pub dst: [u8; 16],
    /// IPv4 TOS / IPv6 traffic class.
    pub traffic_class: u8,
    /// Upper-layer protocol (IPv6: the Next Header after the extension chain, once walked). For an IPv6 non-first
    /// fragment the walk stops at the Fragment header (what follows is fragment data), so this is that header's
    /// Next Header: the first header of the fragmentable part, which may be an extension header (§7.3).
    pub protocol: u8,
    /// The protocol a fragment is hashed with (§6.2), the same in every fragment of a datagram: IPv4 the header's
    /// protocol; IPv6 the Next Header of the first Fragment header in the chain. Meaningless when not fragmented.
    pub frag_protocol: u8,
    /// Offset of the upper-layer header in `datagram`.
    pub l4: usize,
    /// Fragmentation state.
    pub fragment: Fragment,
    /// IPv6 extension headers walked (0 for IPv4).
    pub ext_headers: u8,
    /// IPv4 header length in bytes (IHL × 4); 40 for IPv6.
    pub header_len: usize,
}

#[inline]
fn be16(b: &[u8], off: usize) -> u16 {
    u16::from_be_bytes([b[off], b[off + 1]])
}

/// `::ffff:a.b.c.d` from the 4 bytes at the start of `o`. Built as one 128-bit value (one store, so later
/// partial loads of the address are forwarded from it).
#[inline]
fn mapped(o: &[u8]) -> [u8; 16] {
    let v4 = u32::from_be_bytes([o[0], o[1], o[2], o[3]]);
    ((0xFFFF_u128 << 32) | u128::from(v4)).to_be_bytes()
}

#[inline]
fn addr16(b: &[u8], off: usize) -> [u8; 16] {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[off..off + 16]);
    a
}

/// One's-complement sum over `b` (even length), folded to 16 bits.
#[inline]
pub fn ones_complement_sum(b: &[u8]) -> u16 {
    // Sum 32-bit big-endian words (an IPv4 header is a multiple of 4 bytes), then fold: the same one's-complement
    // sum as over 16-bit words, in fewer steps.
    let mut sum: u64 = 0;
    let mut words = b.chunks_exact(4);
    for c in &mut words {
        sum += u64::from(u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
    }
    for c in words.remainder().chunks(2) {
        sum += u64::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while sum > 0xFFFF {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    sum as u16
}

/// §7.2: parse the fixed L3 header. For IPv6 the extension chain is not walked yet (see [`walk_ipv6_ext`]):
/// `protocol` is the header's Next Header and `l4` is 40.
#[inline]
pub fn parse_l3(pkt: &[u8]) -> Result<Ip<'_>, Bad> {
    let Some(&b0) = pkt.first() else {
        return Err(bad(DropReason::L3Malformed, "empty packet"));
    };
    match b0 >> 4 {
        4 => parse_ipv4(pkt),
        6 => parse_ipv6(pkt),
        _ => Err(bad(DropReason::L3Malformed, "IP version is neither 4 nor 6")),
    }
}

#[inline]
fn parse_ipv4(pkt: &[u8]) -> Result<Ip<'_>, Bad> {
    const M: DropReason = DropReason::L3Malformed;
    if pkt.len() < 20 {
        return Err(bad(M, "shorter than the 20-byte IPv4 header"));
    }
    let ihl = usize::from(pkt[0] & 0x0F) * 4;
    if ihl < 20 {
        return Err(bad(M, "IHL < 5"));
    }
    if ihl > pkt.len() {
        return Err(bad(M, "IHL × 4 exceeds the packet"));
    }
    let total = usize::from(be16(pkt, 2));
    if total < ihl {
        return Err(bad(M, "total length < IHL × 4"));
    }
    if total > pkt.len() {
        return Err(bad(M, "total length exceeds the packet"));
    }
    if ones_complement_sum(&pkt[..ihl]) != 0xFFFF {
        return Err(bad(DropReason::Ipv4Checksum, "header checksum does not verify"));
    }
    let flags_off = be16(pkt, 6);
    let more = flags_off & 0x2000 != 0;
    let offset = flags_off & 0x1FFF;
    let fragment = match (more, offset) {
        (false, 0) => Fragment::No,
        (true, 0) => Fragment::First,
        _ => Fragment::NonFirst,
    };
    Ok(Ip {
        v6: false,
        datagram: &pkt[..total],
        src: mapped(&pkt[12..16]),
        dst: mapped(&pkt[16..20]),
        traffic_class: pkt[1],
        protocol: pkt[9],
        frag_protocol: pkt[9],
        l4: ihl,
        fragment,
        ext_headers: 0,
        header_len: ihl,
    })
}

#[inline]
fn parse_ipv6(pkt: &[u8]) -> Result<Ip<'_>, Bad> {
    const M: DropReason = DropReason::L3Malformed;
    if pkt.len() < 40 {
        return Err(bad(M, "shorter than the 40-byte IPv6 header"));
    }
    let total = 40 + usize::from(be16(pkt, 4));
    if total > pkt.len() {
        return Err(bad(M, "40 + payload length exceeds the packet"));
    }
    Ok(Ip {
        v6: true,
        datagram: &pkt[..total],
        src: addr16(pkt, 8),
        dst: addr16(pkt, 24),
        traffic_class: (pkt[0] << 4) | (pkt[1] >> 4),
        protocol: pkt[6],
        frag_protocol: pkt[6],
        l4: 40,
        fragment: Fragment::No,
        ext_headers: 0,
        header_len: 40,
    })
}

/// §7.3: walk the IPv6 extension headers (HBH, Routing, Fragment, DestOpts, AH), at most [`MAX_EXT_HEADERS`].
/// Updates `protocol`, `frag_protocol`, `l4`, `fragment` and `ext_headers`. A Fragment header marks the datagram
/// fragmented; the first one's Next Header is the fragment's hashed protocol. A Fragment header with a non-zero
/// offset ends the walk: the bytes after it are fragment data, not headers (RFC 8200 §4.5), so `protocol` is its
/// Next Header and `l4` the start of the fragment data.
#[inline]
pub fn walk_ipv6_ext(ip: &mut Ip<'_>) -> Result<(), Bad> {
    const E: DropReason = DropReason::Ipv6ExtHeaders;
    let d = ip.datagram;
    let mut nh = ip.protocol;
    let mut off = ip.l4;
    let mut count: u8 = 0;
    while is_ext_header(nh) {
        if count == MAX_EXT_HEADERS {
            return Err(bad(E, "more than 8 extension headers"));
        }
        let len = match nh {
            proto::FRAGMENT => 8,
            _ => {
                if off + 2 > d.len() {
                    return Err(bad(E, "extension header length prefix overruns the datagram"));
                }
                let l = usize::from(d[off + 1]);
                if nh == proto::AH {
                    (l + 2) * 4
                } else {
                    (l + 1) * 8
                }
            }
        };
        if off + len > d.len() {
            return Err(bad(E, "extension header overruns the datagram"));
        }
        count += 1;
        let this = nh;
        nh = d[off];
        if this == proto::FRAGMENT {
            if !ip.fragment.is_fragment() {
                ip.frag_protocol = nh;
            }
            if be16(d, off + 2) >> 3 != 0 {
                ip.fragment = Fragment::NonFirst;
                off += len;
                break;
            }
            ip.fragment = Fragment::First;
        }
        off += len;
    }
    ip.protocol = nh;
    ip.l4 = off;
    ip.ext_headers = count;
    Ok(())
}

/// The extension headers §7.3 walks: Hop-by-Hop, Routing, Fragment, Destination Options, Authentication.
#[inline]
pub const fn is_ext_header(nh: u8) -> bool {
    matches!(
        nh,
        proto::HOPOPT | proto::ROUTING | proto::FRAGMENT | proto::DSTOPTS | proto::AH
    )
}

/// §7.5: source and destination port (the first 4 L4 bytes), `None` when they are not inside the datagram.
#[inline]
pub fn ports(datagram: &[u8], l4: usize) -> Option<(u16, u16)> {
    (l4 + 4 <= datagram.len()).then(|| (be16(datagram, l4), be16(datagram, l4 + 2)))
}

/// §7.7: ICMP type and code, `None` when the 4-byte ICMP header is not inside the datagram.
#[inline]
pub fn icmp_type_code(datagram: &[u8], l4: usize) -> Option<(u8, u8)> {
    (l4 + 4 <= datagram.len()).then(|| (datagram[l4], datagram[l4 + 1]))
}

/// §7.7: the echo identifier (bytes 4–5 of the ICMP message), `None` when the 8-byte echo header is not inside.
#[inline]
pub fn echo_identifier(datagram: &[u8], l4: usize) -> Option<u16> {
    (l4 + 8 <= datagram.len()).then(|| be16(datagram, l4 + 4))
}

/// Kind of an ICMP/ICMPv6 message as far as the device cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IcmpKind {
    /// ICMP 8 / ICMPv6 128.
    EchoRequest,
    /// ICMP 3, 11, 12 / ICMPv6 1, 2, 3, 4.
    Error,
    /// Anything else.
    Other,
}

/// Classify an ICMP (IPv4) or ICMPv6 type.
#[inline]
pub fn icmp_kind(v6: bool, ty: u8) -> IcmpKind {
    match (v6, ty) {
        (false, 8) | (true, 128) => IcmpKind::EchoRequest,
        (false, 3 | 11 | 12) | (true, 1..=4) => IcmpKind::Error,
        _ => IcmpKind::Other,
    }
}

/// The packet quoted in an ICMP error (the one the target sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Embedded {
    /// Its protocol (TCP/UDP/SCTP).
    pub protocol: u8,
    /// Its source (must be the VIP), 16 bytes.
    pub src: [u8; 16],
    /// Its destination (the client), 16 bytes.
    pub dst: [u8; 16],
    /// Its source port (the VIP's port).
    pub src_port: u16,
    /// Its destination port (the client's port).
    pub dst_port: u16,
}

/// §7.7: parse the packet embedded in an ICMP error, starting at `off` (= ICMP offset + 8) in `datagram`. It must be
/// of family `v6`, with its first 8 L4 bytes inside the datagram, unfragmented-or-first (IPv4 offset 0) and
/// TCP/UDP/SCTP (IPv6: directly after the fixed header). Checksums and lengths of the quote are not checked. The
/// "source = VIP" check is the caller's. Every failure is `icmp_error_invalid`.
pub fn embedded(v6: bool, datagram: &[u8], off: usize) -> Result<Embedded, Bad> {
    const I: DropReason = DropReason::IcmpErrorInvalid;
    let q = datagram.get(off..).unwrap_or(&[]);
    let Some(&b0) = q.first() else {
        return Err(bad(I, "no embedded packet"));
    };
    let (protocol, src, dst, l4) = if v6 {
        if b0 >> 4 != 6 {
            return Err(bad(I, "embedded packet is not IPv6"));
        }
        if q.len() < 48 {
            return Err(bad(I, "embedded IPv6 header + 8 L4 bytes not present"));
        }
        (q[6], addr16(q, 8), addr16(q, 24), 40)
    } else {
        if b0 >> 4 != 4 {
            return Err(bad(I, "embedded packet is not IPv4"));
        }
        let ihl = usize::from(b0 & 0x0F) * 4;
        if ihl < 20 {
            return Err(bad(I, "embedded IHL < 5"));
        }
        if q.len() < ihl + 8 {
            return Err(bad(I, "embedded IPv4 header + 8 L4 bytes not present"));
        }
        if be16(q, 6) & 0x1FFF != 0 {
            return Err(bad(I, "embedded packet is a non-first fragment"));
        }
        (q[9], mapped(&q[12..16]), mapped(&q[16..20]), ihl)
    };
    if !proto::has_ports(protocol) {
        return Err(bad(I, "embedded protocol is not TCP/UDP/SCTP"));
    }
    Ok(Embedded {
        protocol,
        src,
        dst,
        src_port: be16(q, l4),
        dst_port: be16(q, l4 + 2),
    })
}

#[cfg(test)]
#[path = "parse_tests.rs"]
mod tests;
