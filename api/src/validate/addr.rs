//! Which addresses may be VIPs, underlay addresses and Prefixes (issue 12 item 4): validation fails closed on
//! addresses a device must never answer for or send to.

use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Blocks no VIP may come from, with the reason given in errors.
const RESERVED_V4: &[(Ipv4Addr, u8, &str)] = &[
    (
        Ipv4Addr::new(0, 0, 0, 0),
        8,
        "\"this network\" (0.0.0.0/8, unspecified)",
    ),
    (Ipv4Addr::new(127, 0, 0, 0), 8, "loopback"),
    (Ipv4Addr::new(169, 254, 0, 0), 16, "link-local"),
    (Ipv4Addr::new(224, 0, 0, 0), 4, "multicast"),
    (Ipv4Addr::new(255, 255, 255, 255), 32, "broadcast"),
];
const RESERVED_V6: &[(Ipv6Addr, u8, &str)] = &[
    (Ipv6Addr::UNSPECIFIED, 128, "unspecified"),
    (Ipv6Addr::LOCALHOST, 128, "loopback"),
    (
        Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0),
        96,
        "IPv4-mapped (write the IPv4 address itself)",
    ),
    (Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10, "link-local"),
    (Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8, "multicast"),
];

fn reserved() -> impl Iterator<Item = (IpNet, &'static str)> {
    let net = |a: IpAddr, l: u8| IpNet::new(a, l).expect("the reserved blocks are well-formed");
    RESERVED_V4
        .iter()
        .map(move |&(a, l, w)| (net(IpAddr::V4(a), l), w))
        .chain(
            RESERVED_V6
                .iter()
                .map(move |&(a, l, w)| (net(IpAddr::V6(a), l), w)),
        )
}

/// Why `ip` cannot be a VIP (unspecified, broadcast, loopback, multicast, link-local, IPv4-mapped), if it cannot.
pub fn vip_problem(ip: IpAddr) -> Option<String> {
    reserved()
        .find(|(net, _)| net.contains(&ip))
        .map(|(_, what)| format!("{ip} is {what}: not usable as a VIP"))
}

/// Why `ip` cannot be an underlay (outer IPv6) address (unspecified, loopback, multicast, IPv4-mapped), if it
/// cannot.
pub fn underlay_problem(ip: Ipv6Addr) -> Option<String> {
    let what = if ip.is_unspecified() {
        "unspecified"
    } else if ip.is_loopback() {
        "loopback"
    } else if ip.is_multicast() {
        "multicast"
    } else if ip.to_ipv4_mapped().is_some() {
        "IPv4-mapped"
    } else {
        return None;
    };
    Some(format!("{ip} is {what}: not usable as an underlay address"))
}

/// Why `net` cannot be a Prefix VIPs are drawn from (the whole address space, host bits set, overlapping a block
/// no VIP may come from), if it cannot.
pub fn prefix_problem(net: IpNet) -> Option<String> {
    if net.prefix_len() == 0 {
        return Some(format!("{net} is the whole address space"));
    }
    if net.trunc() != net {
        return Some(format!("host bits set in {net}; did you mean {}?", net.trunc()));
    }
    reserved()
        .find(|(r, _)| r.contains(&net) || net.contains(r))
        .map(|(r, what)| format!("{net} overlaps {r} ({what}), which VIPs may not come from"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn cidr(s: &str, len: u8) -> IpNet {
        IpNet::new(ip(s), len).unwrap()
    }

    #[test]
    fn vips() {
        for bad in [
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "127.0.0.1",
            "224.0.0.1",
            "239.1.1.1",
            "169.254.1.1",
            "::",
            "::1",
            "ff02::1",
            "fe80::1",
            "::ffff:10.0.0.5",
        ] {
            assert!(vip_problem(ip(bad)).is_some(), "{bad}");
        }
        for good in [
            "10.0.0.5",
            "203.0.113.1",
            "2001:db8::1",
            "fd00::1",
            "255.255.255.254",
            "1.0.0.0",
        ] {
            assert_eq!(vip_problem(ip(good)), None, "{good}");
        }
    }

    #[test]
    fn underlay() {
        for bad in ["::", "::1", "ff02::1", "::ffff:10.0.0.1"] {
            assert!(underlay_problem(bad.parse().unwrap()).is_some(), "{bad}");
        }
        assert_eq!(underlay_problem("fd00:1::2".parse().unwrap()), None);
    }

    #[test]
    fn prefixes() {
        for (net, len) in [
            ("0.0.0.0", 0),
            ("::", 0),
            ("10.0.0.1", 24),
            ("2001:db8::1", 64),
            ("0.0.0.0", 8),
            ("96.0.0.0", 3),
            ("127.0.0.0", 16),
            ("::", 64),
            ("::ffff:10.0.0.0", 120),
            ("fe80::", 64),
            ("8000::", 1),
        ] {
            assert!(prefix_problem(cidr(net, len)).is_some(), "{net}/{len}");
        }
        for (net, len) in [
            ("10.1.0.0", 24),
            ("2607:f0d0:1002:51::", 64),
            ("10.0.0.5", 32),
            ("2001:db8::1", 128),
        ] {
            assert_eq!(prefix_problem(cidr(net, len)), None, "{net}/{len}");
        }
    }
}
