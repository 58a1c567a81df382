//! Hand-built IPv4/IPv6 packets for tests and fixtures, with correct IPv4 header, TCP, UDP and ICMP/ICMPv6
//! checksums (SCTP's CRC32c is left 0: the device never verifies L4 checksums).
//!
//! [`Ipv4`] and [`Ipv6`] build a header around an upper-layer payload; [`tcp`], [`udp`], [`sctp`],
//! [`icmp_echo`] and [`icmp_error`] build whole packets for the common cases.

use std::net::IpAddr;

/// IPv4 header fields. `build` computes total length and checksum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv4 {
    /// Source.
    pub src: [u8; 4],
    /// Destination.
    pub dst: [u8; 4],
    /// Protocol.
    pub protocol: u8,
    /// TOS (DSCP and ECN).
    pub tos: u8,
    /// TTL.
    pub ttl: u8,
    /// Identification.
    pub ident: u16,
    /// Flags (bit 14 DF, bit 13 MF) and fragment offset (in 8-byte units) as on the wire.
    pub flags_frag: u16,
    /// Options (padded with zeros to a multiple of 4 bytes, at most 40).
    pub options: Vec<u8>,
}

impl Ipv4 {
    /// Defaults: TOS 0, TTL 64, ident 1, DF clear, no options.
    pub fn new(src: [u8; 4], dst: [u8; 4], protocol: u8) -> Ipv4 {
        Ipv4 {
            src,
            dst,
            protocol,
            tos: 0,
            ttl: 64,
            ident: 1,
            flags_frag: 0,
            options: Vec::new(),
        }
    }

    /// Header + `payload`. The L4 checksum of an unfragmented TCP/UDP/ICMP payload is filled in.
    pub fn build(&self, payload: &[u8]) -> Vec<u8> {
        let mut opts = self.options.clone();
        opts.resize(opts.len().div_ceil(4) * 4, 0);
        assert!(opts.len() <= 40, "IPv4 options longer than 40 bytes");
        let ihl = 20 + opts.len();
        let total = ihl + payload.len();
        let mut p = Vec::with_capacity(total);
        p.push(0x40 | (ihl / 4) as u8);
        p.push(self.tos);
        p.extend_from_slice(&(total as u16).to_be_bytes());
        p.extend_from_slice(&self.ident.to_be_bytes());
        p.extend_from_slice(&self.flags_frag.to_be_bytes());
        p.extend_from_slice(&[self.ttl, self.protocol, 0, 0]);
        p.extend_from_slice(&self.src);
        p.extend_from_slice(&self.dst);
        p.extend_from_slice(&opts);
        let c = !checksum_fold(sum(0, &p));
        p[10..12].copy_from_slice(&c.to_be_bytes());
        p.extend_from_slice(payload);
        if self.flags_frag & 0x3FFF == 0 {
            let pseudo = sum(sum(0, &self.src), &self.dst) + u32::from(self.protocol) + payload.len() as u32;
            fill_l4_checksum(&mut p[ihl..], self.protocol, pseudo, false);
        }
        p
    }
}

/// IPv6 header fields. `build` computes the payload length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv6 {
    /// Source.
    pub src: [u8; 16],
    /// Destination.
    pub dst: [u8; 16],
    /// Next Header.
    pub next_header: u8,
    /// Traffic class.
    pub traffic_class: u8,
    /// Flow label (20 bits).
    pub flow_label: u32,
    /// Hop limit.
    pub hop_limit: u8,
}

impl Ipv6 {
    /// Defaults: traffic class 0, flow label 0, hop limit 64.
    pub fn new(src: [u8; 16], dst: [u8; 16], next_header: u8) -> Ipv6 {
        Ipv6 {
            src,
            dst,
            next_header,
            traffic_class: 0,
            flow_label: 0,
            hop_limit: 64,
        }
    }

    /// Header + `payload` (extension headers, if any, are part of `payload`). The L4 checksum of a TCP/UDP/ICMPv6
    /// payload directly after the header is filled in.
    pub fn build(&self, payload: &[u8]) -> Vec<u8> {
        let mut p = Vec::with_capacity(40 + payload.len());
        let fl = self.flow_label & 0xF_FFFF;
        p.push(0x60 | (self.traffic_class >> 4));
        p.push((self.traffic_class << 4) | (fl >> 16) as u8);
        p.extend_from_slice(&[(fl >> 8) as u8, fl as u8]);
        p.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        p.extend_from_slice(&[self.next_header, self.hop_limit]);
        p.extend_from_slice(&self.src);
        p.extend_from_slice(&self.dst);
        p.extend_from_slice(payload);
        let pseudo = sum(sum(0, &self.src), &self.dst) + u32::from(self.next_header) + payload.len() as u32;
        fill_l4_checksum(&mut p[40..], self.next_header, pseudo, true);
        p
    }
}

fn sum(mut acc: u32, b: &[u8]) -> u32 {
    for c in b.chunks(2) {
        acc += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    acc
}

fn checksum_fold(mut s: u32) -> u16 {
    while s > 0xFFFF {
        s = (s & 0xFFFF) + (s >> 16);
    }
    s as u16
}

fn fill_l4_checksum(l4: &mut [u8], protocol: u8, pseudo: u32, v6: bool) {
    let (off, with_pseudo) = match protocol {
        6 => (16, true),
        17 => (6, true),
        1 if !v6 => (2, false),
        58 if v6 => (2, true),
        _ => return,
    };
    if l4.len() < off + 2 {
        return;
    }
    l4[off..off + 2].copy_from_slice(&[0, 0]);
    let c = !checksum_fold(sum(if with_pseudo { pseudo } else { 0 }, l4));
    let c = if protocol == 17 && c == 0 { 0xFFFF } else { c };
    l4[off..off + 2].copy_from_slice(&c.to_be_bytes());
}

/// A minimal 20-byte TCP header (SYN, window 65535) followed by `payload`.
pub fn tcp_segment(src_port: u16, dst_port: u16, payload: &[u8]) -> Vec<u8> {
    let mut s = Vec::with_capacity(20 + payload.len());
    s.extend_from_slice(&src_port.to_be_bytes());
    s.extend_from_slice(&dst_port.to_be_bytes());
    s.extend_from_slice(&1u32.to_be_bytes()); // sequence
    s.extend_from_slice(&0u32.to_be_bytes()); // acknowledgement
    s.extend_from_slice(&[0x50, 0x02, 0xFF, 0xFF, 0, 0, 0, 0]);
    s.extend_from_slice(payload);
    s
}

/// An 8-byte UDP header followed by `payload`.
pub fn udp_datagram(src_port: u16, dst_port: u16, payload: &[u8]) -> Vec<u8> {
    let mut s = Vec::with_capacity(8 + payload.len());
    s.extend_from_slice(&src_port.to_be_bytes());
    s.extend_from_slice(&dst_port.to_be_bytes());
    s.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    s.extend_from_slice(&[0, 0]);
    s.extend_from_slice(payload);
    s
}

/// A 12-byte SCTP common header (verification tag 1, checksum 0) followed by `payload`.
pub fn sctp_packet(src_port: u16, dst_port: u16, payload: &[u8]) -> Vec<u8> {
    let mut s = Vec::with_capacity(12 + payload.len());
    s.extend_from_slice(&src_port.to_be_bytes());
    s.extend_from_slice(&dst_port.to_be_bytes());
    s.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0]);
    s.extend_from_slice(payload);
    s
}

/// An IP packet of the addresses' family (both must be the same family) around `payload`.
pub fn ip(src: IpAddr, dst: IpAddr, protocol: u8, payload: &[u8]) -> Vec<u8> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => Ipv4::new(s.octets(), d.octets(), protocol).build(payload),
        (IpAddr::V6(s), IpAddr::V6(d)) => Ipv6::new(s.octets(), d.octets(), protocol).build(payload),
        _ => panic!("packet::ip: {src} and {dst} are of different families"),
    }
}

/// A TCP SYN packet with `payload`.
pub fn tcp(src: IpAddr, dst: IpAddr, src_port: u16, dst_port: u16, payload: &[u8]) -> Vec<u8> {
    ip(src, dst, 6, &tcp_segment(src_port, dst_port, payload))
}

/// A UDP packet.
pub fn udp(src: IpAddr, dst: IpAddr, src_port: u16, dst_port: u16, payload: &[u8]) -> Vec<u8> {
    ip(src, dst, 17, &udp_datagram(src_port, dst_port, payload))
}

/// An SCTP packet.
pub fn sctp(src: IpAddr, dst: IpAddr, src_port: u16, dst_port: u16, payload: &[u8]) -> Vec<u8> {
    ip(src, dst, 132, &sctp_packet(src_port, dst_port, payload))
}

fn icmp_proto(v6: bool) -> u8 {
    if v6 {
        58
    } else {
        1
    }
}

/// An ICMP (type 8) / ICMPv6 (type 128) echo request.
pub fn icmp_echo(src: IpAddr, dst: IpAddr, id: u16, seq: u16) -> Vec<u8> {
    let v6 = src.is_ipv6();
    let mut m = vec![if v6 { 128 } else { 8 }, 0, 0, 0];
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(b"ping");
    ip(src, dst, icmp_proto(v6), &m)
}

/// An ICMP/ICMPv6 message of `ty`/`code` with 4 bytes of `rest` (e.g. the MTU of frag-needed / Packet Too Big)
/// quoting `quoted` (the start of the offending packet), sent from `src` (a router) to `dst`.
pub fn icmp_error(src: IpAddr, dst: IpAddr, ty: u8, code: u8, rest: u32, quoted: &[u8]) -> Vec<u8> {
    let v6 = src.is_ipv6();
    let mut m = vec![ty, code, 0, 0];
    m.extend_from_slice(&rest.to_be_bytes());
    m.extend_from_slice(quoted);
    ip(src, dst, icmp_proto(v6), &m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};

    #[test]
    fn packets_parse_with_etherparse_and_checksums_verify() {
        let v4 = |s: &str| s.parse::<IpAddr>().unwrap();
        let p = tcp(v4("192.0.2.1"), v4("10.0.0.1"), 1234, 80, b"abc");
        let s = SlicedPacket::from_ip(&p).unwrap();
        let Some(NetSlice::Ipv4(ip4)) = &s.net else {
            panic!()
        };
        assert_eq!(
            ip4.header().header_checksum(),
            ip4.header().to_header().calc_header_checksum()
        );
        let Some(TransportSlice::Tcp(t)) = &s.transport else {
            panic!()
        };
        assert_eq!((t.source_port(), t.destination_port()), (1234, 80));
        let h = t.to_header();
        assert_eq!(
            h.checksum,
            h.calc_checksum_ipv4(&ip4.header().to_header(), b"abc").unwrap()
        );

        let v6 = |s: &str| s.parse::<IpAddr>().unwrap();
        let p = udp(v6("2001:db8::1"), v6("2001:db8::80"), 5, 53, b"q");
        let s = SlicedPacket::from_ip(&p).unwrap();
        let Some(NetSlice::Ipv6(ip6)) = &s.net else {
            panic!()
        };
        let Some(TransportSlice::Udp(u)) = &s.transport else {
            panic!()
        };
        let h = u.to_header();
        assert_eq!(
            h.checksum,
            h.calc_checksum_ipv6(&ip6.header().to_header(), b"q").unwrap()
        );

        let p = icmp_echo(v6("2001:db8::1"), v6("2001:db8::80"), 7, 1);
        let s = SlicedPacket::from_ip(&p).unwrap();
        let Some(TransportSlice::Icmpv6(i)) = &s.transport else {
            panic!()
        };
        let Some(NetSlice::Ipv6(ip6)) = &s.net else {
            panic!()
        };
        let h = i.header();
        let ck = h
            .icmp_type
            .calc_checksum(ip6.header().source(), ip6.header().destination(), i.payload());
        assert_eq!(h.checksum, ck.unwrap());
    }
}
