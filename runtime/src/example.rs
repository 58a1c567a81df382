//! The example configuration: the load balancers of the IronCore seeds (IEP-3 public dual-stack, IEP-8 internal),
//! with their allocated addresses and targets written out, programmed through the real driver path. docs/sim.md
//! documents it; the scapy oracle (tests/oracle) checks the model against it independently.

use etherparse::PacketBuilder;
use ironlb_driver::{Device, DriverError, InprocBackend, LbSpec};
use ironlb_hw::entry::{IcmpPolicy, PortCfg, PortKind, Protocol, RangeEntry};
use ironlb_hw::{LbKey, Vip, DOMAIN_PUBLIC};
use ironlb_sim::DeviceConfig;
use std::net::{IpAddr, Ipv6Addr};

/// Port of the public uplink.
pub const PORT_PUBLIC: u32 = 0;
/// Port of Network "my-network" (VNI 100).
pub const PORT_VNI_100: u32 = 1;
/// Port of another Network (VNI 200).
pub const PORT_VNI_200: u32 = 2;
/// Underlay port.
pub const PORT_UNDERLAY: u32 = 3;
/// Device underlay address.
pub const UNDERLAY_SRC: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xffff, 0, 0, 0, 0, 0, 1);

fn key(domain: u32, ip: &str) -> LbKey {
    LbKey {
        domain,
        vip: Vip::from(ip.parse::<IpAddr>().expect("example address")),
    }
}

fn ul(s: &str) -> Ipv6Addr {
    s.parse().expect("example underlay address")
}

/// The two example load balancers.
pub fn specs() -> Vec<(&'static str, LbSpec)> {
    vec![
        (
            "default/my-load-balancer (IEP-3, Public, IPv4+IPv6, tcp/80, udp/1024-2048)",
            LbSpec {
                lb_id: 1,
                vips: [
                    key(DOMAIN_PUBLIC, "203.0.113.10"),
                    key(DOMAIN_PUBLIC, "2001:db8:ff::10"),
                ]
                .into(),
                icmp: IcmpPolicy::default(),
                ranges: vec![
                    RangeEntry {
                        protocol: Protocol::Tcp,
                        low: 80,
                        high: 80,
                    },
                    RangeEntry {
                        protocol: Protocol::Udp,
                        low: 1024,
                        high: 2048,
                    },
                ],
                targets: [ul("fd00:1::1"), ul("fd00:1::2"), ul("fd00:1::3")].into(),
                draining: Default::default(),
            },
        ),
        (
            "default/my-loadbalancer (IEP-8, Internal in VNI 100, tcp/8080)",
            LbSpec {
                lb_id: 2,
                vips: [key(100, "10.0.0.1"), key(100, "2607:f0d0:1002:51::4")].into(),
                icmp: IcmpPolicy::default(),
                ranges: vec![RangeEntry {
                    protocol: Protocol::Tcp,
                    low: 8080,
                    high: 8080,
                }],
                targets: [ul("fd00:2::1"), ul("fd00:2::2")].into(),
                draining: Default::default(),
            },
        ),
    ]
}

/// A device (in-process model) with the example's ports, underlay and load balancers programmed by the driver.
pub fn device() -> Result<(Device, ironlb_driver::SharedModel), DriverError> {
    let backend = InprocBackend::new(DeviceConfig::default())?;
    let model = backend.model();
    let mut dev = Device::open(Box::new(backend))?;
    dev.set_port(
        PORT_PUBLIC,
        PortCfg {
            enabled: true,
            kind: PortKind::Public,
        },
    )?;
    dev.set_port(
        PORT_VNI_100,
        PortCfg {
            enabled: true,
            kind: PortKind::Network { vni: 100 },
        },
    )?;
    dev.set_port(
        PORT_VNI_200,
        PortCfg {
            enabled: true,
            kind: PortKind::Network { vni: 200 },
        },
    )?;
    dev.set_port(
        PORT_UNDERLAY,
        PortCfg {
            enabled: true,
            kind: PortKind::Underlay,
        },
    )?;
    dev.set_underlay(UNDERLAY_SRC, 9000, 64);
    for (_, s) in specs() {
        dev.apply(&s)?;
    }
    dev.set_enabled(true);
    Ok((dev, model))
}

/// A client packet of the built-in example capture.
pub struct ExamplePacket {
    /// What it is.
    pub what: &'static str,
    /// Ingress port.
    pub port: u32,
    /// IP packet bytes.
    pub bytes: Vec<u8>,
}

fn tcp4(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ipv4(src, dst, 64)
        .tcp(sport, dport, 1, 64240)
        .syn()
        .write(&mut v, &[])
        .expect("build");
    v
}

/// Client packets covering the example's behaviour: allowed and filtered ports, ICMP echo, internal isolation.
pub fn packets() -> Vec<ExamplePacket> {
    let client = [198, 51, 100, 7];
    let vip = [203, 0, 113, 10];
    let vm = [10, 0, 0, 5];
    let internal = [10, 0, 0, 1];
    let udp = |dport: u16| {
        let mut v = Vec::new();
        PacketBuilder::ipv4(client, vip, 64)
            .udp(5000, dport)
            .write(&mut v, b"hello")
            .expect("build");
        v
    };
    let (udp1500, udp2049) = (udp(1500), udp(2049));
    let mut echo = Vec::new();
    PacketBuilder::ipv4(client, vip, 64)
        .icmpv4_echo_request(1, 1)
        .write(&mut echo, b"ping")
        .expect("build");
    let mut v6 = Vec::new();
    let c6: Ipv6Addr = "2001:db8:c::7".parse().expect("addr");
    let vip6: Ipv6Addr = "2001:db8:ff::10".parse().expect("addr");
    PacketBuilder::ipv6(c6.octets(), vip6.octets(), 64)
        .tcp(41000, 80, 1, 64240)
        .syn()
        .write(&mut v6, &[])
        .expect("build");
    let p = |what, port, bytes| ExamplePacket { what, port, bytes };
    vec![
        p(
            "public  tcp 198.51.100.7:40000 -> 203.0.113.10:80",
            PORT_PUBLIC,
            tcp4(client, vip, 40000, 80),
        ),
        p(
            "public  tcp 198.51.100.7:40001 -> 203.0.113.10:80",
            PORT_PUBLIC,
            tcp4(client, vip, 40001, 80),
        ),
        p(
            "public  tcp 198.51.100.7:40002 -> 203.0.113.10:80",
            PORT_PUBLIC,
            tcp4(client, vip, 40002, 80),
        ),
        p(
            "public  tcp 198.51.100.7:40000 -> 203.0.113.10:22",
            PORT_PUBLIC,
            tcp4(client, vip, 40000, 22),
        ),
        p(
            "public  udp 198.51.100.7:5000 -> 203.0.113.10:1500",
            PORT_PUBLIC,
            udp1500,
        ),
        p(
            "public  udp 198.51.100.7:5000 -> 203.0.113.10:2049",
            PORT_PUBLIC,
            udp2049,
        ),
        p(
            "public  icmp echo 198.51.100.7 -> 203.0.113.10",
            PORT_PUBLIC,
            echo,
        ),
        p(
            "public  tcp [2001:db8:c::7]:41000 -> [2001:db8:ff::10]:80",
            PORT_PUBLIC,
            v6,
        ),
        p(
            "public  tcp 198.51.100.7:40000 -> 10.0.0.1:8080 (internal VIP)",
            PORT_PUBLIC,
            tcp4(client, internal, 40000, 8080),
        ),
        p(
            "vni:100 tcp 10.0.0.5:33000 -> 10.0.0.1:8080",
            PORT_VNI_100,
            tcp4(vm, internal, 33000, 8080),
        ),
        p(
            "vni:100 tcp 10.0.0.5:33000 -> 10.0.0.1:80",
            PORT_VNI_100,
            tcp4(vm, internal, 33000, 80),
        ),
        p(
            "vni:200 tcp 10.0.0.5:33000 -> 10.0.0.1:8080 (other network)",
            PORT_VNI_200,
            tcp4(vm, internal, 33000, 8080),
        ),
    ]
}
