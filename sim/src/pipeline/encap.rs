//! IP-in-IPv6 encapsulation (docs/hw-spec.md §7.9): a 40-byte outer IPv6 header followed by the unchanged inner
//! datagram.

/// Length of the outer header.
pub const OUTER_LEN: usize = 40;
/// Next Header of the outer packet for an inner IPv4 datagram (IPv4-in-IPv6).
pub const NH_IPV4: u8 = 4;
/// Next Header of the outer packet for an inner IPv6 datagram (IPv6-in-IPv6).
pub const NH_IPV6: u8 = 41;

/// Fields of the outer IPv6 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outer {
    /// Traffic class, copied from the inner TOS / traffic class.
    pub traffic_class: u8,
    /// Flow label: flow hash & 0xFFFFF (higher bits are ignored).
    pub flow_label: u32,
    /// [`NH_IPV4`] or [`NH_IPV6`].
    pub next_header: u8,
    /// UNDERLAY_HOP_LIMIT.
    pub hop_limit: u8,
    /// UNDERLAY_SRC.
    pub src: [u8; 16],
    /// The target's UNDERLAY address.
    pub dst: [u8; 16],
}

impl Outer {
    /// The 40 header bytes for an inner datagram of `payload_len` bytes (≤ 65535, the caller checks).
    #[inline]
    pub fn header(&self, payload_len: u16) -> [u8; OUTER_LEN] {
        let mut h = [0u8; OUTER_LEN];
        let fl = self.flow_label & 0xF_FFFF;
        h[0] = 0x60 | (self.traffic_class >> 4);
        h[1] = (self.traffic_class << 4) | (fl >> 16) as u8;
        h[2] = (fl >> 8) as u8;
        h[3] = fl as u8;
        h[4..6].copy_from_slice(&payload_len.to_be_bytes());
        h[6] = self.next_header;
        h[7] = self.hop_limit;
        h[8..24].copy_from_slice(&self.src);
        h[24..40].copy_from_slice(&self.dst);
        h
    }

    /// Append the outer header and the datagram to `out` (the caller clears it). Allocation-free once `out` has
    /// the capacity.
    #[inline]
    pub fn write(&self, datagram: &[u8], out: &mut Vec<u8>) {
        debug_assert!(datagram.len() <= usize::from(u16::MAX));
        out.reserve(OUTER_LEN + datagram.len());
        out.extend_from_slice(&self.header(datagram.len() as u16));
        out.extend_from_slice(datagram);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;

    #[test]
    fn header_fields() {
        let src: Ipv6Addr = "fd00:ffff::1".parse().unwrap();
        let dst: Ipv6Addr = "fd00:1::17".parse().unwrap();
        let o = Outer {
            traffic_class: 0xB9, // DSCP 46 (EF), ECN 01
            flow_label: 0xDEAD_BEEF,
            next_header: NH_IPV4,
            hop_limit: 63,
            src: src.octets(),
            dst: dst.octets(),
        };
        let inner = [0x45u8, 1, 2, 3, 4, 5];
        let mut out = vec![9, 9, 9];
        out.clear();
        o.write(&inner, &mut out);
        assert_eq!(out.len(), 46);
        assert_eq!(&out[..8], &[0x6B, 0x9D, 0xBE, 0xEF, 0, 6, 4, 63]);
        assert_eq!(&out[40..], &inner);
        // Cross-check with an independent parser.
        let (h, rest) = etherparse::Ipv6Header::from_slice(&out).unwrap();
        assert_eq!(h.traffic_class, 0xB9);
        assert_eq!(h.flow_label.value(), 0xDBEEF);
        assert_eq!(h.payload_length, 6);
        assert_eq!(h.next_header, etherparse::IpNumber(4));
        assert_eq!(h.hop_limit, 63);
        assert_eq!(Ipv6Addr::from(h.source), src);
        assert_eq!(Ipv6Addr::from(h.destination), dst);
        assert_eq!(rest, &inner);
    }

    #[test]
    fn ipv6_inner() {
        let o = Outer {
            traffic_class: 0,
            flow_label: 0x12345,
            next_header: NH_IPV6,
            hop_limit: 64,
            src: [1; 16],
            dst: [2; 16],
        };
        let h = o.header(0x1234);
        assert_eq!(&h[..8], &[0x60, 0x01, 0x23, 0x45, 0x12, 0x34, 41, 64]);
        assert_eq!(&h[8..24], &[1; 16]);
        assert_eq!(&h[24..40], &[2; 16]);
    }
}
