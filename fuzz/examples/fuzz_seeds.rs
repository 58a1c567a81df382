//! Writes the generated seeds of the fuzz corpus (fuzz/corpus/<target>/): small inputs that each reach a
//! different part of a target, so a campaign starts from the interesting paths instead of finding them. Manifest
//! seeds are the repository's example and fixture files, copied.
//!
//! `cargo run -p ironlb-fuzz --example fuzz_seeds` (from the repository root) rewrites them; the replay tests
//! (fuzz/tests/replay.rs) run every file of the corpus.

use ironlb_hw::regs::*;
use ironlb_sim::testing::packet::{self, Ipv4, Ipv6};
use ironlb_sim::testing::{PORT_NET_A, PORT_NET_B, PORT_PUBLIC, PORT_UNDERLAY};
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::{DataLink, Endianness, TsResolution};
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("literal address")
}

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new("fuzz/corpus").join(target);
    std::fs::create_dir_all(&dir).expect("corpus directory");
    std::fs::write(dir.join(name), bytes).expect("seed file");
}

/// Pipeline input: port, knobs (MTU/hop-limit choice), packet.
fn pipeline_seed(port: u32, knobs: u8, pkt: &[u8]) -> Vec<u8> {
    let mut v = vec![port as u8, knobs];
    v.extend_from_slice(pkt);
    v
}

fn packets() -> Vec<(&'static str, u32, u8, Vec<u8>)> {
    let client4 = ip("198.51.100.7");
    let client6 = ip("2001:db8:ff::7");
    let pub4 = ip("203.0.113.10");
    let vni4 = ip("10.0.0.10");
    let vni6 = ip("fd10::10");
    let mut bad_sum = packet::tcp(client4, pub4, 40000, 80, b"x");
    bad_sum[10] ^= 0xFF;
    let mut first_frag = Ipv4::new([198, 51, 100, 7], [203, 0, 113, 10], 17);
    first_frag.flags_frag = 0x2000; // MF
    let mut later_frag = first_frag.clone();
    later_frag.flags_frag = 0x0010; // offset 128 bytes, last
    let mut v6_tc = Ipv6::new(ip6("2001:db8:ff::7"), ip6("fd10::10"), 6);
    v6_tc.traffic_class = 0xB8;
    v6_tc.flow_label = 0x12345;
    // Hop-by-hop (8 bytes, PadN) then TCP to 443.
    let mut hbh = vec![6, 0, 1, 4, 0, 0, 0, 0];
    hbh.extend_from_slice(&packet::tcp_segment(40000, 443, b"ext"));
    // Fragment header (first fragment, more follow) then UDP.
    let mut frag6 = vec![17, 0, 0, 1, 0, 0, 0, 42];
    frag6.extend_from_slice(&packet::udp_datagram(5000, 53, b"frag"));
    // Nine destination-options headers: one more than the chain bound.
    let mut dstopts: Vec<u8> = (0..9)
        .flat_map(|i| [if i < 8 { 60 } else { 6 }, 0, 1, 4, 0, 0, 0, 0])
        .collect();
    dstopts.extend_from_slice(&packet::tcp_segment(1, 443, b""));
    // Quoted packets of ICMP errors: from the VIP to the client, as the target sent them.
    let quoted4 = packet::tcp(pub4, client4, 80, 40000, b"");
    let quoted6 = packet::udp(vni6, client6, 53, 5000, b"");
    let mut trailing = packet::udp(client4, pub4, 5000, 53, b"q");
    trailing.extend_from_slice(&[0xEE; 6]);
    vec![
        (
            "v4-tcp-public",
            PORT_PUBLIC,
            0,
            packet::tcp(client4, pub4, 40000, 80, b"GET /"),
        ),
        (
            "v4-udp-public",
            PORT_PUBLIC,
            0,
            packet::udp(client4, pub4, 5000, 53, b"dns"),
        ),
        (
            "v4-sctp-public",
            PORT_PUBLIC,
            4,
            packet::sctp(client4, pub4, 7000, 9050, b"s"),
        ),
        (
            "v4-echo-public",
            PORT_PUBLIC,
            0,
            packet::icmp_echo(client4, pub4, 7, 1),
        ),
        (
            "v4-icmp-frag-needed",
            PORT_PUBLIC,
            0,
            packet::icmp_error(ip("192.0.2.1"), pub4, 3, 4, 1400, &quoted4),
        ),
        (
            "v4-tcp-vni-a",
            PORT_NET_A,
            0,
            packet::tcp(ip("10.0.0.5"), vni4, 1234, 22, b""),
        ),
        (
            "v4-udp-vni-b",
            PORT_NET_B,
            0,
            packet::udp(ip("10.0.0.5"), vni4, 1234, 1500, b"u"),
        ),
        (
            "v4-echo-not-allowed",
            PORT_NET_A,
            0,
            packet::icmp_echo(ip("10.0.0.5"), vni4, 1, 1),
        ),
        (
            "v4-first-fragment",
            PORT_PUBLIC,
            0,
            first_frag.build(&packet::udp_datagram(5000, 53, b"a")),
        ),
        (
            "v4-later-fragment",
            PORT_PUBLIC,
            0,
            later_frag.build(b"rest of it"),
        ),
        ("v4-bad-checksum", PORT_PUBLIC, 0, bad_sum),
        ("v4-trailing-bytes", PORT_PUBLIC, 0, trailing),
        (
            "v4-mtu-68",
            PORT_PUBLIC,
            2,
            packet::tcp(client4, pub4, 40000, 80, &[0x55; 100]),
        ),
        (
            "v4-port-not-allowed",
            PORT_PUBLIC,
            0,
            packet::tcp(client4, pub4, 40000, 81, b""),
        ),
        (
            "v4-no-vip",
            PORT_PUBLIC,
            0,
            packet::udp(client4, ip("203.0.113.11"), 1, 2, b""),
        ),
        (
            "v4-from-underlay",
            PORT_UNDERLAY,
            0,
            packet::tcp(client4, pub4, 40000, 80, b""),
        ),
        (
            "v4-disabled-port",
            6,
            0,
            packet::tcp(client4, pub4, 40000, 80, b""),
        ),
        (
            "v6-tcp-vni-a",
            PORT_NET_A,
            0,
            v6_tc.build(&packet::tcp_segment(40000, 443, b"tls")),
        ),
        (
            "v6-udp-vni-a",
            PORT_NET_A,
            1,
            packet::udp(client6, vni6, 5000, 53, b"q"),
        ),
        (
            "v6-echo-vni-a",
            PORT_NET_A,
            0,
            packet::icmp_echo(client6, vni6, 9, 9),
        ),
        (
            "v6-hop-by-hop",
            PORT_NET_A,
            0,
            Ipv6::new(ip6("2001:db8:ff::7"), ip6("fd10::10"), 0).build(&hbh),
        ),
        (
            "v6-fragment",
            PORT_NET_A,
            0,
            Ipv6::new(ip6("2001:db8:ff::7"), ip6("fd10::10"), 44).build(&frag6),
        ),
        (
            "v6-packet-too-big",
            PORT_NET_A,
            0,
            packet::icmp_error(ip("2001:db8::1"), vni6, 2, 0, 1280, &quoted6),
        ),
        (
            "v6-no-bucket-array",
            PORT_NET_B,
            0,
            packet::udp(client6, ip("2001:db8::20"), 1, 4789, b""),
        ),
        (
            "v6-no-target",
            PORT_PUBLIC,
            0,
            packet::tcp(client6, ip("2001:db8::10"), 1, 22, b""),
        ),
        (
            "v6-mapped-dst",
            PORT_PUBLIC,
            0,
            packet::tcp(client6, ip("::ffff:203.0.113.10"), 1, 80, b""),
        ),
        (
            "v4-l4-truncated",
            PORT_PUBLIC,
            0,
            packet::ip(client4, pub4, 6, &[0x9c]),
        ),
        ("v4-gre", PORT_PUBLIC, 0, packet::ip(client4, pub4, 47, &[0; 8])),
        (
            "v4-icmp-error-not-from-vip",
            PORT_PUBLIC,
            0,
            packet::icmp_error(
                ip("192.0.2.1"),
                pub4,
                3,
                1,
                0,
                &packet::tcp(client4, client4, 1, 2, b""),
            ),
        ),
        (
            "v6-ext-chain-too-long",
            PORT_NET_A,
            0,
            Ipv6::new(ip6("2001:db8:ff::7"), ip6("fd10::10"), 60).build(&dstopts),
        ),
        ("truncated", PORT_PUBLIC, 0, vec![0x45, 0, 0, 40, 0]),
        ("empty", PORT_PUBLIC, 0, Vec::new()),
    ]
}

fn ip6(s: &str) -> [u8; 16] {
    match ip(s) {
        IpAddr::V6(a) => a.octets(),
        IpAddr::V4(_) => unreachable!("IPv6 literal"),
    }
}

/// A descriptor operand of the device target: (flags, opcode, table, index, count, arg, iova operand, value).
type Desc = (u8, u8, u8, u16, u8, u32, u16, u32);

/// Device input encoder: one operation after another (fuzz/src/device.rs).
#[derive(Default)]
struct Ops(Vec<u8>);

impl Ops {
    fn mailbox(mut self, op: u8, table: u8, index: u16, count: u8, arg: u32, data: &[u32]) -> Self {
        self.0.push(0);
        self.0.extend_from_slice(&[op, table]);
        self.0.extend_from_slice(&index.to_le_bytes());
        self.0.push(count);
        self.0.extend_from_slice(&arg.to_le_bytes());
        self.0.push(data.len() as u8);
        for w in data {
            self.0.extend_from_slice(&w.to_le_bytes());
        }
        self
    }
    /// Ring configuration choices: log2, base choice (0 valid), completion choice (0 valid).
    fn ring_config(mut self, log2: u8, base: u8, cpl: u8) -> Self {
        self.0.extend_from_slice(&[1, log2, base, cpl]);
        self
    }
    /// A batch of descriptors.
    fn ring_batch(mut self, descs: &[Desc]) -> Self {
        self.0.push(2);
        self.0.push(descs.len() as u8 - 1);
        for &(flags, op, table, index, count, arg, iova, value) in descs {
            self.0.extend_from_slice(&[flags, op, table]);
            self.0.extend_from_slice(&index.to_le_bytes());
            self.0.push(count);
            self.0.extend_from_slice(&arg.to_le_bytes());
            match flags & 3 {
                1 => self.0.push(iova as u8), // bytes before the end of host memory
                3 => self.0.extend_from_slice(&[0, 0, 0, 0, iova as u8]), // IOVA 0x..: unmapped
                _ => self.0.extend_from_slice(&iova.to_le_bytes()), // offset in the payload (0) or ring (2) area
            }
            self.0.extend_from_slice(&value.to_le_bytes());
            if flags & 4 != 0 {
                self.0.push(1); // reserved byte 2
            }
            if flags & 8 != 0 {
                self.0.push(1); // reserved byte 28
            }
        }
        self
    }
    fn host_write(mut self, offset: u16, bytes: &[u8]) -> Self {
        self.0.push(3);
        self.0.extend_from_slice(&offset.to_le_bytes());
        self.0.push(bytes.len() as u8);
        self.0.extend_from_slice(bytes);
        self
    }
    fn register(mut self, offset: u32, value: u32) -> Self {
        self.0.push(4);
        self.0.extend_from_slice(&(offset as u16).to_le_bytes());
        self.0.extend_from_slice(&value.to_le_bytes());
        self
    }
    fn packet(mut self, port: u8, pkt: &[u8]) -> Self {
        self.0.extend_from_slice(&[5, port, pkt.len() as u8]);
        self.0.extend_from_slice(pkt);
        self
    }
}

fn device_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let (wr, rd, ww, fill, nop) = (1, 2, 3, 4, 5);
    let (lb, range, target, bucket, lbc) = (1, 2, 3, 4, 5);
    let target_entry: Vec<u32> = (1..=8).collect();
    vec![
        (
            "mailbox-write-read",
            Ops::default()
                .mailbox(wr, target, 3, 1, 0, &target_entry)
                .mailbox(rd, target, 3, 1, 0, &[])
                .mailbox(ww, lb, 5, 1, 15, &[0x8000_0000])
                .mailbox(fill, bucket, 0, 64, 7, &[])
                .mailbox(rd, lbc, 0, 4, 0, &[])
                .0,
        ),
        (
            "mailbox-errors",
            Ops::default()
                .mailbox(9, target, 0, 1, 0, &[])
                .mailbox(wr, 7, 0, 1, 0, &[])
                .mailbox(wr, lbc, 0, 1, 0, &[])
                .mailbox(wr, range, 31, 2, 0, &[])
                .mailbox(wr, target, 0, 3, 0, &[])
                .mailbox(rd, bucket, 0, 0, 0, &[])
                .mailbox(ww, range, 0, 1, 2, &[])
                .mailbox(nop, 0, 0xFFFF, 0, 0, &[])
                .0,
        ),
        (
            "ring-batch",
            Ops::default()
                .host_write(1024, &[0xAB; 64])
                .ring_config(4, 0, 0)
                .ring_batch(&[
                    (0, wr, target, 2, 2, 0, 0, 0),
                    (0, fill, range, 0, 32, 0x0006_0050, 0, 0),
                    (0, ww, lb, 0, 0, 15, 0, 0x8000_0000),
                    (0, rd, bucket, 0, 64, 0, 512, 0),
                    (0, nop, 0, 0, 0, 0, 0, 0),
                ])
                .ring_batch(&[(0, wr, lbc, 0, 1, 0, 0, 0), (0, nop, 0, 0, 0, 0, 0, 0)])
                .0,
        ),
        (
            "ring-faults",
            Ops::default()
                .ring_config(2, 0, 0)
                .ring_batch(&[(1, wr, target, 0, 1, 0, 16, 0)])
                .ring_config(1, 0, 0)
                .ring_batch(&[(4, nop, 0, 0, 0, 0, 0, 0), (8, nop, 0, 0, 0, 0, 0, 0)])
                .ring_config(3, 0, 0)
                .ring_batch(&[(0, rd, lb, 14, 4, 0, 4095, 0)])
                .0,
        ),
        (
            "ring-bad-config",
            Ops::default()
                .ring_config(0, 0, 0)
                .ring_config(5, 0, 0)
                .ring_config(2, 1, 0)
                .ring_config(2, 0, 1)
                .ring_config(2, 2, 2)
                .ring_batch(&[(0, nop, 0, 0, 0, 0, 0, 0)])
                .0,
        ),
        (
            "registers",
            Ops::default()
                .register(PORT_CFG, 0x8000_0000 | 1 << 28)
                .register(PORT_CFG + 12, 0xA000_0000)
                .register(CONTROL, CONTROL_ENABLE)
                .packet(0, &packet::udp(ip("192.0.2.1"), ip("192.0.2.2"), 1, 2, b""))
                .register(DROP_CLEAR, 1)
                .register(MB_DOORBELL, 7)
                .register(RING_TAIL, 3)
                .register(CONTROL, CONTROL_RESET)
                .register(RING_STATUS, 0xFFFF_FFFF)
                .0,
        ),
    ]
}

/// A pcap of `packets` (with link-layer framing already applied) in `datalink`.
fn pcap(datalink: DataLink, endianness: Endianness, ts: TsResolution, packets: &[Vec<u8>]) -> Vec<u8> {
    let header = PcapHeader {
        datalink,
        endianness,
        ts_resolution: ts,
        ..PcapHeader::default()
    };
    let mut w = PcapWriter::with_header(Vec::new(), header).expect("pcap header");
    for (i, p) in packets.iter().enumerate() {
        let pkt = PcapPacket::new(Duration::from_micros(1_000 + i as u64), p.len() as u32, p);
        w.write_packet(&pkt).expect("pcap record");
    }
    w.into_writer()
}

fn ethernet(ethertype: u16, vlans: &[u16], pkt: &[u8]) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
    for &v in vlans {
        f.extend_from_slice(&0x8100u16.to_be_bytes());
        f.extend_from_slice(&v.to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(pkt);
    f
}

fn pcap_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let (c4, v4) = (ip("198.51.100.7"), ip("203.0.113.10"));
    let (c6, v6) = (ip("2001:db8:ff::7"), ip("2001:db8::10"));
    let tcp = packet::tcp(c4, v4, 40000, 80, b"hi");
    let udp = packet::udp(c4, v4, 5000, 53, b"q");
    let tcp6 = packet::tcp(c6, v6, 40000, 22, b"");
    let raw = pcap(
        DataLink::RAW,
        Endianness::Little,
        TsResolution::MicroSecond,
        &[tcp.clone(), udp.clone(), tcp6.clone(), vec![0x45]],
    );
    let mut truncated = raw.clone();
    truncated.truncate(raw.len() - 3);
    vec![
        ("raw", raw),
        ("raw-truncated-record", truncated),
        (
            "ethernet-vlan",
            pcap(
                DataLink::ETHERNET,
                Endianness::Big,
                TsResolution::NanoSecond,
                &[
                    ethernet(0x0800, &[], &tcp),
                    ethernet(0x0800, &[10, 20], &udp),
                    ethernet(0x86DD, &[30], &tcp6),
                    ethernet(0x0806, &[], &[0; 28]),
                    vec![2, 0, 0],
                ],
            ),
        ),
        (
            "ipv4-linktype",
            pcap(
                DataLink::IPV4,
                Endianness::Little,
                TsResolution::MicroSecond,
                &[tcp],
            ),
        ),
        (
            "ipv6-linktype",
            pcap(
                DataLink::IPV6,
                Endianness::Little,
                TsResolution::MicroSecond,
                &[tcp6],
            ),
        ),
        (
            "unsupported-linktype",
            pcap(
                DataLink::LINUX_SLL,
                Endianness::Little,
                TsResolution::MicroSecond,
                &[udp],
            ),
        ),
        (
            "pcapng",
            b"\x0a\x0d\x0d\x0a\x1c\x00\x00\x00\x4d\x3c\x2b\x1a".to_vec(),
        ),
    ]
}

fn main() {
    for (name, port, knobs, pkt) in packets() {
        write("pipeline", name, &pipeline_seed(port, knobs, &pkt));
    }
    for (name, bytes) in device_seeds() {
        write("device", name, &bytes);
    }
    for (name, bytes) in pcap_seeds() {
        write("pcap", name, &bytes);
    }
    let manifests = [
        "examples",
        "runtime/tests/fixtures/seeds",
        "runtime/tests/fixtures/bad",
    ];
    for dir in manifests {
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .expect(dir)
            .map(|e| e.expect(dir).path())
            .collect();
        files.sort();
        for f in files {
            let name = format!(
                "{}-{}",
                dir.replace('/', "-"),
                f.file_name().expect("file").to_string_lossy()
            );
            write("manifest", &name, &std::fs::read(&f).expect("manifest file"));
        }
    }
}
