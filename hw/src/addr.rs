//! Addresses as the device stores them: every address is 16 bytes, IPv4 mapped as ::ffff:a.b.c.d (RFC 4291 §2.5.5.2).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The public domain: packets from the uplink port. VNIs are 24-bit, so this value never collides with one.
pub const DOMAIN_PUBLIC: u32 = 0x0100_0000;
/// Largest VNI.
pub const VNI_MAX: u32 = 0x00FF_FFFF;
const _: () = assert!(VNI_MAX < DOMAIN_PUBLIC, "the public domain must not be a VNI");

/// Address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl Family {
    /// 4 or 6, as hashed into the LB key.
    pub const fn number(self) -> u8 {
        match self {
            Family::V4 => 4,
            Family::V6 => 6,
        }
    }
    /// Code stored in the LB entry's FAMILY field: 1 = IPv4, 2 = IPv6.
    pub const fn code(self) -> u32 {
        match self {
            Family::V4 => 1,
            Family::V6 => 2,
        }
    }
    /// Family for a FAMILY field code.
    pub const fn from_code(c: u32) -> Option<Family> {
        match c {
            1 => Some(Family::V4),
            2 => Some(Family::V6),
            _ => None,
        }
    }
}

/// A 16-byte address in network byte order; IPv4 is stored mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, serde::Serialize)]
#[serde(into = "String")]
pub struct Vip(pub [u8; 16]);

impl From<Vip> for String {
    fn from(v: Vip) -> String {
        v.to_string()
    }
}

const V4_MAPPED_PREFIX: [u8; 12] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff];

impl Vip {
    /// Map an IPv4 address.
    pub fn from_ipv4(o: [u8; 4]) -> Vip {
        let mut b = [0u8; 16];
        b[..12].copy_from_slice(&V4_MAPPED_PREFIX);
        b[12..].copy_from_slice(&o);
        Vip(b)
    }
    /// Family: IPv4 when the address is IPv4-mapped.
    pub fn family(&self) -> Family {
        if self.0[..12] == V4_MAPPED_PREFIX {
            Family::V4
        } else {
            Family::V6
        }
    }
    /// As a std address (IPv4 unmapped).
    pub fn to_ip(&self) -> IpAddr {
        match self.family() {
            Family::V4 => IpAddr::V4(Ipv4Addr::new(self.0[12], self.0[13], self.0[14], self.0[15])),
            Family::V6 => IpAddr::V6(Ipv6Addr::from(self.0)),
        }
    }
}

impl From<IpAddr> for Vip {
    fn from(ip: IpAddr) -> Vip {
        match ip {
            IpAddr::V4(v4) => Vip::from_ipv4(v4.octets()),
            IpAddr::V6(v6) => Vip(v6.octets()),
        }
    }
}

impl std::fmt::Display for Vip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.to_ip().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping_round_trips() {
        let v: Vip = "192.0.2.7".parse::<IpAddr>().unwrap().into();
        assert_eq!(v.family(), Family::V4);
        assert_eq!(v.to_string(), "192.0.2.7");
        let v6: Vip = "2001:db8::1".parse::<IpAddr>().unwrap().into();
        assert_eq!(v6.family(), Family::V6);
        assert_eq!(v6.to_string(), "2001:db8::1");
    }
}
