//! The underlay fabric of the end-to-end tests, as pure logic (the I/O is in `src/bin/ironlb-fabric.rs`).
//!
//! It plays the hypervisors' role: an encapsulated packet leaving the device's underlay port (outer IPv6, next
//! header 4 or 41, hw-spec §7.9) is checked, mapped by its outer destination (a target's underlay address) to that
//! target, and its inner datagram is delivered unchanged; a target's reply (direct server return: source = VIP) is
//! routed by its destination address straight to the client it answers, never through the load balancer.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What the fabric expects of every outer header (the runtime's `--underlay-src`, `--hop-limit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OuterRules {
    /// Outer source address.
    pub src: Ipv6Addr,
    /// Outer hop limit.
    pub hop_limit: u8,
}

/// Why an outer packet is not delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OuterError {
    /// Not an IPv6 packet of at least 40 bytes.
    #[error("not an IPv6 packet ({0} bytes)")]
    NotIpv6(usize),
    /// Outer source differs from the underlay source.
    #[error("outer source {0}, expected {1}")]
    Source(Ipv6Addr, Ipv6Addr),
    /// Hop limit differs.
    #[error("outer hop limit {0}, expected {1}")]
    HopLimit(u8, u8),
    /// Payload length is not the inner datagram's length.
    #[error("outer payload length {0}, but {1} bytes follow the header")]
    PayloadLength(usize, usize),
    /// Next header not 4/41, or not matching the inner version.
    #[error("outer next header {next}, inner version {version}")]
    NextHeader {
        /// Outer next header.
        next: u8,
        /// Inner IP version.
        version: u8,
    },
}

/// Check an outer packet; on success return (outer destination, inner datagram).
pub fn decap<'a>(rules: &OuterRules, pkt: &'a [u8]) -> Result<(Ipv6Addr, &'a [u8]), OuterError> {
    if pkt.len() < 40 || pkt[0] >> 4 != 6 {
        return Err(OuterError::NotIpv6(pkt.len()));
    }
    let src = addr6(&pkt[8..24]);
    if src != rules.src {
        return Err(OuterError::Source(src, rules.src));
    }
    if pkt[7] != rules.hop_limit {
        return Err(OuterError::HopLimit(pkt[7], rules.hop_limit));
    }
    let payload = usize::from(u16::from_be_bytes([pkt[4], pkt[5]]));
    let inner = &pkt[40..];
    if payload != inner.len() {
        return Err(OuterError::PayloadLength(payload, inner.len()));
    }
    let version = inner.first().map_or(0, |b| b >> 4);
    match (pkt[6], version) {
        (4, 4) | (41, 6) => Ok((addr6(&pkt[24..40]), inner)),
        (next, version) => Err(OuterError::NextHeader { next, version }),
    }
}

fn addr6(b: &[u8]) -> Ipv6Addr {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[..16]);
    Ipv6Addr::from(a)
}

/// Destination address of an IPv4/IPv6 packet, if it has one.
pub fn destination(pkt: &[u8]) -> Option<IpAddr> {
    match pkt.first()? >> 4 {
        4 if pkt.len() >= 20 => Some(IpAddr::V4(Ipv4Addr::new(pkt[16], pkt[17], pkt[18], pkt[19]))),
        6 if pkt.len() >= 40 => Some(IpAddr::V6(addr6(&pkt[24..40]))),
        _ => None,
    }
}

/// Per-target and per-client counters of a fabric run, printed as JSON when the fabric stops.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FabricStats {
    /// Inner packets delivered, by target name.
    pub delivered: BTreeMap<String, u64>,
    /// Replies routed to clients, by client interface.
    pub returned: BTreeMap<String, u64>,
    /// Outer packets failing [`decap`] (each a device bug or a wrong configuration).
    pub bad_outer: u64,
    /// The first few [`decap`] failures, as text.
    pub bad_outer_examples: Vec<String>,
    /// Outer packets to an underlay address no target has.
    pub unknown_underlay: u64,
    /// Packets from targets whose destination is no client (e.g. multicast listener reports).
    pub unroutable: u64,
    /// Failed writes.
    pub write_errors: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outer(next: u8, hop: u8, src: Ipv6Addr, inner: &[u8]) -> Vec<u8> {
        let mut p = vec![0x60, 0, 0, 0];
        p.extend((inner.len() as u16).to_be_bytes());
        p.extend([next, hop]);
        p.extend(src.octets());
        p.extend("fd00:1::2".parse::<Ipv6Addr>().unwrap().octets());
        p.extend(inner);
        p
    }

    #[test]
    fn decap_checks_every_outer_field() {
        let rules = OuterRules {
            src: "fd00:ffff::1".parse().unwrap(),
            hop_limit: 64,
        };
        let inner4 = [
            0x45u8, 0, 0, 20, 0, 0, 0, 0, 64, 6, 0, 0, 198, 51, 100, 7, 203, 0, 113, 10,
        ];
        let ok = outer(4, 64, rules.src, &inner4);
        assert_eq!(
            decap(&rules, &ok),
            Ok(("fd00:1::2".parse().unwrap(), &inner4[..]))
        );
        assert_eq!(destination(&inner4), Some("203.0.113.10".parse().unwrap()));
        assert!(matches!(
            decap(&rules, &outer(41, 64, rules.src, &inner4)),
            Err(OuterError::NextHeader { .. })
        ));
        assert!(matches!(
            decap(&rules, &outer(4, 63, rules.src, &inner4)),
            Err(OuterError::HopLimit(63, 64))
        ));
        let other = "fd00:ffff::2".parse().unwrap();
        assert!(matches!(
            decap(&rules, &outer(4, 64, other, &inner4)),
            Err(OuterError::Source(..))
        ));
        let mut long = ok.clone();
        long.push(0);
        assert!(matches!(
            decap(&rules, &long),
            Err(OuterError::PayloadLength(20, 21))
        ));
        assert!(matches!(decap(&rules, &inner4), Err(OuterError::NotIpv6(20))));
    }
}
