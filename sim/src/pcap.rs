//! Replay a pcap through the device: every input packet enters the pipeline on one ingress port; forwarded outer
//! packets are written to an output pcap (LINKTYPE_RAW, timestamps copied), and one JSON line per input packet
//! records the verdict. Format and schema: docs/sim.md.

use crate::pipeline::{Trace, Verdict};
use crate::Device;
use ironlb_hw::DropReason;
use pcap_file::pcap::{PcapHeader, PcapReader, PcapWriter, RawPcapPacket};
use pcap_file::{DataLink, Endianness, PcapError, TsResolution};
use serde::Serialize;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::Ipv6Addr;

/// Snap length of the output pcap: the largest outer packet (40 + 65535 bytes) fits.
pub const OUT_SNAPLEN: u32 = 65535 + 40;

/// Totals of one replay.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplaySummary {
    /// Input packets (records) read.
    pub packets: u64,
    /// Packets the device forwarded.
    pub forwarded: u64,
    /// Packets the device dropped, by reason.
    pub dropped: BTreeMap<DropReason, u64>,
    /// Packets not given to the device (not IP at the link layer).
    pub skipped: u64,
}

/// Why a replay stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The input does not start with a readable pcap header (pcapng is not supported).
    #[error("input is not a readable pcap file (pcapng is not supported): {0}")]
    Header(#[source] PcapError),
    /// The input's link type is not one of RAW, IPV4, IPV6, ETHERNET.
    #[error("unsupported pcap link type {0} (supported: 1 ETHERNET, 101 RAW, 228 IPV4, 229 IPV6)")]
    LinkType(u32),
    /// A packet record could not be read.
    #[error("unreadable pcap record at packet index {index}: {source}")]
    Record {
        /// 0-based index of the record.
        index: u64,
        /// The reader's error.
        #[source]
        source: PcapError,
    },
    /// Writing the output pcap failed.
    #[error("writing the output pcap at packet index {index}: {source}")]
    Output {
        /// 0-based index of the input packet being written.
        index: u64,
        /// The writer's error.
        #[source]
        source: PcapError,
    },
    /// Writing a JSON verdict line failed.
    #[error("writing the verdict of packet index {index}: {source}")]
    Verdicts {
        /// 0-based index of the input packet.
        index: u64,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// [`packet_at`]: the capture has no packet at the index.
    #[error("no packet index {index}: the capture holds {packets} packets (indexes count from 0)")]
    NoSuchPacket {
        /// The index asked for.
        index: u64,
        /// How many packets the capture holds.
        packets: u64,
    },
    /// [`packet_at`]: the packet at the index is not IP at the link layer.
    #[error("packet index {index} is not an IP packet ({reason})")]
    NotIp {
        /// The index asked for.
        index: u64,
        /// `not_ip` or `short_frame`, as a replay's verdict line says.
        reason: &'static str,
    },
}

/// One JSON verdict line (docs/sim.md). Field order and names are stable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerdictLine {
    /// 0-based index of the input packet.
    pub index: u64,
    /// `"forward"`, `"drop"` or `"skipped"`.
    pub verdict: &'static str,
    /// Drop reason name, or the skip reason (`"not_ip"`, `"short_frame"`); `null` when forwarded.
    pub reason: Option<&'static str>,
    /// LB_ID of the matched LB (also on drops after the lookup).
    pub lb_id: Option<u32>,
    /// Target index from the bucket slot.
    pub target: Option<u32>,
    /// Target underlay address.
    pub underlay: Option<Ipv6Addr>,
    /// Flow hash.
    pub flow_hash: Option<u32>,
    /// Egress port (forwarded only).
    pub egress_port: Option<u32>,
    /// Bytes handed to the device (after link-layer stripping); for skipped packets, the captured length.
    pub len: usize,
    /// Length of the outer packet written to the output (forwarded only).
    pub out_len: Option<usize>,
}

impl VerdictLine {
    fn skipped(index: u64, reason: &'static str, len: usize) -> VerdictLine {
        VerdictLine {
            index,
            verdict: "skipped",
            reason: Some(reason),
            lb_id: None,
            target: None,
            underlay: None,
            flow_hash: None,
            egress_port: None,
            len,
            out_len: None,
        }
    }

    fn from_trace(index: u64, v: &Verdict, t: &Trace, len: usize) -> VerdictLine {
        let (verdict, reason, out_len) = match v {
            Verdict::Forward { packet, .. } => ("forward", None, Some(packet.len())),
            Verdict::Drop(r) => ("drop", Some(r.name()), None),
        };
        VerdictLine {
            index,
            verdict,
            reason,
            lb_id: t.lb_id,
            target: t.target,
            underlay: t.underlay,
            flow_hash: t.flow_hash,
            egress_port: t.egress_port,
            len,
            out_len,
        }
    }
}

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86DD;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88A8;

/// The IP packet inside an Ethernet frame: skips the 14-byte header and up to two 802.1Q/802.1ad tags. `Err` is the
/// skip reason.
fn strip_ethernet(frame: &[u8]) -> Result<&[u8], &'static str> {
    let mut off = 12;
    loop {
        let Some(et) = frame.get(off..off + 2) else {
            return Err("short_frame");
        };
        match u16::from_be_bytes([et[0], et[1]]) {
            ETHERTYPE_VLAN | ETHERTYPE_QINQ if off < 20 => off += 4,
            ETHERTYPE_IPV4 | ETHERTYPE_IPV6 => return Ok(&frame[off + 2..]),
            _ => return Err("not_ip"),
        }
    }
}

/// A record's timestamp in milliseconds, modulo 2^32 (the flow clock's unit and range).
fn timestamp_ms(sec: u32, frac: u32, res: TsResolution) -> u32 {
    let sub_ms = match res {
        TsResolution::MicroSecond => frac / 1_000,
        TsResolution::NanoSecond => frac / 1_000_000,
    };
    sec.wrapping_mul(1000).wrapping_add(sub_ms)
}

/// Whether records of a link type are Ethernet frames (else IP packets as they are); other link types are errors.
fn is_ethernet(datalink: DataLink) -> Result<bool, ReplayError> {
    match datalink {
        DataLink::RAW | DataLink::IPV4 | DataLink::IPV6 => Ok(false),
        DataLink::ETHERNET => Ok(true),
        other => Err(ReplayError::LinkType(u32::from(other))),
    }
}

/// The IP packet at 0-based `index` of the pcap `input` (the index a replay's verdict lines give), with its
/// link-layer header removed as [`replay`] removes it: what `ironlb trace --in FILE --index N` traces.
pub fn packet_at(input: impl Read, index: u64) -> Result<Vec<u8>, ReplayError> {
    let mut reader = PcapReader::new(input).map_err(ReplayError::Header)?;
    let ethernet = is_ethernet(reader.header().datalink)?;
    let mut i = 0u64;
    while let Some(rec) = reader.next_raw_packet() {
        let rec = rec.map_err(|source| ReplayError::Record { index: i, source })?;
        if i == index {
            let data: &[u8] = &rec.data;
            let ip = if ethernet { strip_ethernet(data) } else { Ok(data) };
            return ip
                .map(<[u8]>::to_vec)
                .map_err(|reason| ReplayError::NotIp { index, reason });
        }
        i += 1;
    }
    Err(ReplayError::NoSuchPacket { index, packets: i })
}

/// Replay the pcap `input` through `dev`, every packet arriving on `ingress_port`. The flow clock (v1.2) follows
/// the records' timestamps.
///
/// Input link types: RAW (101), IPV4 (228), IPV6 (229) carry IP packets as they are; ETHERNET (1) frames are
/// stripped of their 14-byte header and 802.1Q/802.1ad tags, and non-IP frames are skipped (reported in the JSON,
/// not counted by the device). Forwarded outer packets go to `out` as a LINKTYPE_RAW pcap with the input's
/// timestamps (and timestamp resolution). With `verdicts`, one JSON line per input packet is written (docs/sim.md).
pub fn replay(
    dev: &mut Device,
    ingress_port: u32,
    input: impl Read,
    out: impl Write,
    mut verdicts: Option<impl Write>,
) -> Result<ReplaySummary, ReplayError> {
    let mut reader = PcapReader::new(input).map_err(ReplayError::Header)?;
    let in_header = reader.header();
    let ethernet = is_ethernet(in_header.datalink)?;
    let out_header = PcapHeader {
        datalink: DataLink::RAW,
        snaplen: OUT_SNAPLEN,
        ts_resolution: in_header.ts_resolution,
        endianness: Endianness::Little,
        ..PcapHeader::default()
    };
    let mut writer = PcapWriter::with_header(out, out_header)
        .map_err(|source| ReplayError::Output { index: 0, source })?;
    let mut summary = ReplaySummary::default();
    let mut index = 0u64;
    // Raw records: the timestamp is copied as stored, and captures whose orig_len exceeds the snap length (which
    // pcap-file's checked reader rejects) are accepted.
    while let Some(rec) = reader.next_raw_packet() {
        let rec = rec.map_err(|source| ReplayError::Record { index, source })?;
        summary.packets += 1;
        let data: &[u8] = &rec.data;
        let ip = if ethernet { strip_ethernet(data) } else { Ok(data) };
        let line = match ip {
            Err(why) => {
                summary.skipped += 1;
                VerdictLine::skipped(index, why, data.len())
            }
            Ok(pkt) => {
                // The flow table's clock is the capture's (docs/hw-spec.md §11): a replay is deterministic.
                dev.set_flow_clock(timestamp_ms(rec.ts_sec, rec.ts_frac, in_header.ts_resolution));
                let (v, t) = dev.process_traced(ingress_port, pkt);
                let line = VerdictLine::from_trace(index, &v, &t, pkt.len());
                match v {
                    Verdict::Forward { packet, .. } => {
                        summary.forwarded += 1;
                        let raw = RawPcapPacket {
                            ts_sec: rec.ts_sec,
                            ts_frac: rec.ts_frac,
                            incl_len: packet.len() as u32,
                            orig_len: packet.len() as u32,
                            data: Cow::Owned(packet),
                        };
                        writer
                            .write_raw_packet(&raw)
                            .map_err(|source| ReplayError::Output { index, source })?;
                    }
                    Verdict::Drop(r) => *summary.dropped.entry(r).or_default() += 1,
                }
                line
            }
        };
        if let Some(w) = verdicts.as_mut() {
            serde_json::to_writer(&mut *w, &line)
                .map_err(std::io::Error::from)
                .and_then(|()| w.write_all(b"\n"))
                .map_err(|source| ReplayError::Verdicts { index, source })?;
        }
        index += 1;
    }
    if let Some(w) = verdicts.as_mut() {
        w.flush()
            .map_err(|source| ReplayError::Verdicts { index, source })?;
    }
    writer.into_writer().flush().map_err(|e| ReplayError::Output {
        index,
        source: PcapError::IoError(e),
    })?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{self, packet, LbSpec, SimpleAlloc};
    use crate::DeviceConfig;
    use ironlb_hw::entry::Protocol;
    use pcap_file::TsResolution;
    use std::net::IpAddr;
    use std::time::Duration;

    fn a(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn device() -> Device {
        let mut d = Device::new(DeviceConfig::small()).unwrap();
        testing::setup_ports(&mut d);
        let spec = LbSpec::new(testing::VNI_A, a("10.0.0.10"), 3)
            .range(Protocol::Tcp, 80, 80)
            .range(Protocol::Udp, 5000, 5999)
            .targets(["fd00:1::1".parse().unwrap(), "fd00:1::2".parse().unwrap()])
            .m_log2(4);
        testing::install(&mut d, &spec, &mut SimpleAlloc::default());
        d
    }

    fn pcap(
        datalink: DataLink,
        endianness: Endianness,
        ts: TsResolution,
        frames: &[(Duration, Vec<u8>)],
    ) -> Vec<u8> {
        let header = PcapHeader {
            datalink,
            endianness,
            ts_resolution: ts,
            ..PcapHeader::default()
        };
        let mut w = PcapWriter::with_header(Vec::new(), header).unwrap();
        for (t, f) in frames {
            w.write_packet(&pcap_file::pcap::PcapPacket::new(*t, f.len() as u32, f))
                .unwrap();
        }
        w.into_writer()
    }

    fn lines(v: &[u8]) -> Vec<serde_json::Value> {
        std::str::from_utf8(v)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn raw_replay_writes_forwarded_packets_and_verdicts() {
        let pkts = [
            packet::tcp(a("10.0.0.1"), a("10.0.0.10"), 40000, 80, b"GET /"),
            packet::tcp(a("10.0.0.1"), a("10.0.0.10"), 40000, 81, b""),
            vec![0x00],
            packet::udp(a("10.0.0.2"), a("10.0.0.10"), 7, 5000, b"x"),
        ];
        let frames: Vec<_> = pkts
            .iter()
            .enumerate()
            .map(|(i, p)| (Duration::new(1_700_000_000 + i as u64, 123_456_789), p.clone()))
            .collect();
        let input = pcap(DataLink::RAW, Endianness::Big, TsResolution::NanoSecond, &frames);
        let mut dev = device();
        let (mut out, mut json) = (Vec::new(), Vec::new());
        let s = replay(
            &mut dev,
            testing::PORT_NET_A,
            &input[..],
            &mut out,
            Some(&mut json),
        )
        .unwrap();
        assert_eq!((s.packets, s.forwarded, s.skipped), (4, 2, 0));
        let want: BTreeMap<_, _> = [(DropReason::PortNotAllowed, 1), (DropReason::L3Malformed, 1)].into();
        assert_eq!(s.dropped, want);
        // The output pcap: LINKTYPE_RAW, the outer packets, the input timestamps.
        let mut r = PcapReader::new(&out[..]).unwrap();
        assert_eq!(r.header().datalink, DataLink::RAW);
        assert_eq!(r.header().ts_resolution, TsResolution::NanoSecond);
        let mut got = Vec::new();
        while let Some(p) = r.next_packet() {
            let p = p.unwrap();
            got.push((p.timestamp, p.data.into_owned()));
        }
        let mut fresh = device();
        let mut expect = |i: usize| match fresh.process(testing::PORT_NET_A, &pkts[i]) {
            Verdict::Forward { packet, .. } => packet,
            v => panic!("{v:?}"),
        };
        assert_eq!(got, vec![(frames[0].0, expect(0)), (frames[3].0, expect(3))]);
        assert_eq!(&got[0].1[40..], &pkts[0][..]);
        // The JSON lines.
        let j = lines(&json);
        assert_eq!(j.len(), 4);
        assert_eq!(j[0]["index"], 0);
        assert_eq!(j[0]["verdict"], "forward");
        assert_eq!(j[0]["reason"], serde_json::Value::Null);
        assert_eq!(j[0]["lb_id"], 3);
        assert_eq!(j[0]["egress_port"], 3);
        assert_eq!(j[0]["len"], pkts[0].len());
        assert_eq!(j[0]["out_len"], pkts[0].len() + 40);
        let u = j[0]["underlay"].as_str().unwrap();
        assert!(u == "fd00:1::1" || u == "fd00:1::2");
        assert!(j[0]["target"].is_u64() && j[0]["flow_hash"].is_u64());
        assert_eq!(j[1]["verdict"], "drop");
        assert_eq!(j[1]["reason"], "port_not_allowed");
        assert_eq!(j[1]["lb_id"], 3);
        assert_eq!(j[1]["target"], serde_json::Value::Null);
        assert_eq!(j[2]["reason"], "l3_malformed");
        assert_eq!(j[2]["lb_id"], serde_json::Value::Null);
        assert_eq!(j[3]["verdict"], "forward");
        let keys: Vec<_> = j[0].as_object().unwrap().keys().cloned().collect();
        let mut want = vec![
            "index",
            "verdict",
            "reason",
            "lb_id",
            "target",
            "underlay",
            "flow_hash",
            "egress_port",
            "len",
            "out_len",
        ];
        want.sort();
        assert_eq!(keys, want);
        // Device counters saw the same.
        assert_eq!(dev.drop_counters()[DropReason::PortNotAllowed.index()], 1);
        assert_eq!(testing::lb_counter(&dev, 3).packets, 2);
    }

    #[test]
    fn ethernet_frames_are_stripped_or_skipped() {
        let ip = packet::tcp(a("10.0.0.1"), a("10.0.0.10"), 40000, 80, b"");
        let eth = |ethertype: &[u8], payload: &[u8]| {
            let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
            f.extend_from_slice(ethertype);
            f.extend_from_slice(payload);
            f
        };
        let mut padded = ip.clone();
        padded.extend_from_slice(&[0; 6]);
        let frames = [
            eth(&[0x08, 0x00], &padded),                     // IPv4 with Ethernet padding
            eth(&[0x81, 0x00, 0x00, 0x64, 0x08, 0x00], &ip), // 802.1Q VLAN 100
            eth(&[0x88, 0xA8, 0, 1, 0x81, 0x00, 0, 2, 0x08, 0x00], &ip), // QinQ
            eth(&[0x08, 0x06], &[0; 28]),                    // ARP
            vec![1, 2, 3],                                   // runt
            eth(&[0x86, 0xDD], &[0x60]),                     // truncated IPv6: the device drops it
        ];
        let frames: Vec<_> = frames
            .into_iter()
            .map(|f| (Duration::from_micros(5), f))
            .collect();
        let input = pcap(
            DataLink::ETHERNET,
            Endianness::Little,
            TsResolution::MicroSecond,
            &frames,
        );
        let mut dev = device();
        let (mut out, mut json) = (Vec::new(), Vec::new());
        let s = replay(
            &mut dev,
            testing::PORT_NET_A,
            &input[..],
            &mut out,
            Some(&mut json),
        )
        .unwrap();
        assert_eq!((s.packets, s.forwarded, s.skipped), (6, 3, 2));
        assert_eq!(s.dropped, [(DropReason::L3Malformed, 1)].into());
        let j = lines(&json);
        assert_eq!(j[0]["len"], padded.len());
        assert_eq!(j[0]["out_len"], ip.len() + 40);
        assert_eq!(j[1]["verdict"], "forward");
        assert_eq!(j[3]["verdict"], "skipped");
        assert_eq!(j[3]["reason"], "not_ip");
        assert_eq!(j[4]["reason"], "short_frame");
        assert_eq!(j[5]["reason"], "l3_malformed");
        // Skipped frames are not device drops.
        assert_eq!(dev.drop_counters().iter().sum::<u64>(), 1);
        let mut r = PcapReader::new(&out[..]).unwrap();
        let p = r.next_packet().unwrap().unwrap();
        assert_eq!(p.timestamp, Duration::from_micros(5));
        assert_eq!(&p.data[40..], &ip[..]);
    }

    #[test]
    fn ipv4_and_ipv6_link_types_and_no_verdicts() {
        let ip = packet::udp(a("10.0.0.1"), a("10.0.0.10"), 1, 5001, b"");
        for dl in [DataLink::IPV4, DataLink::IPV6] {
            let input = pcap(
                dl,
                Endianness::Little,
                TsResolution::MicroSecond,
                &[(Duration::ZERO, ip.clone())],
            );
            let s = replay(&mut device(), 1, &input[..], Vec::new(), None::<Vec<u8>>).unwrap();
            assert_eq!(s.forwarded, 1);
        }
    }

    #[test]
    fn errors_name_the_problem() {
        let mut out = Vec::new();
        let e = replay(
            &mut device(),
            1,
            &b"not a pcap file at all"[..],
            &mut out,
            None::<Vec<u8>>,
        )
        .unwrap_err();
        assert!(matches!(e, ReplayError::Header(_)), "{e}");
        let input = pcap(
            DataLink::LINUX_SLL,
            Endianness::Little,
            TsResolution::MicroSecond,
            &[],
        );
        let e = replay(&mut device(), 1, &input[..], &mut out, None::<Vec<u8>>).unwrap_err();
        assert!(matches!(e, ReplayError::LinkType(113)), "{e}");
        // A record cut short: the error names packet index 1.
        let ip = packet::udp(a("10.0.0.1"), a("10.0.0.10"), 1, 5001, b"");
        let frames = [(Duration::ZERO, ip.clone()), (Duration::ZERO, ip)];
        let input = pcap(
            DataLink::RAW,
            Endianness::Little,
            TsResolution::MicroSecond,
            &frames,
        );
        let e = replay(
            &mut device(),
            1,
            &input[..input.len() - 3],
            &mut out,
            None::<Vec<u8>>,
        )
        .unwrap_err();
        assert!(matches!(e, ReplayError::Record { index: 1, .. }), "{e}");
        assert!(e.to_string().contains("packet index 1"), "{e}");
    }

    #[test]
    fn packet_at_returns_the_ip_packet_replay_would_process() {
        let first = packet::udp(a("10.0.0.1"), a("10.0.0.10"), 1, 5001, b"one");
        let second = packet::udp(a("10.0.0.2"), a("10.0.0.10"), 2, 5002, b"two");
        let raw = pcap(
            DataLink::RAW,
            Endianness::Little,
            TsResolution::MicroSecond,
            &[(Duration::ZERO, first.clone()), (Duration::ZERO, second.clone())],
        );
        assert_eq!(packet_at(&raw[..], 0).unwrap(), first);
        assert_eq!(packet_at(&raw[..], 1).unwrap(), second);
        let e = packet_at(&raw[..], 2).unwrap_err();
        assert!(
            matches!(e, ReplayError::NoSuchPacket { index: 2, packets: 2 }),
            "{e}"
        );
        assert!(e.to_string().contains("holds 2 packets"), "{e}");
        // Ethernet: the frame's header (and a VLAN tag) is removed; a non-IP frame is an error naming the index.
        let mut tagged = vec![0u8; 12];
        tagged.extend_from_slice(&[0x81, 0x00, 0x00, 0x64, 0x08, 0x00]);
        tagged.extend_from_slice(&second);
        let mut arp = vec![0u8; 12];
        arp.extend_from_slice(&[0x08, 0x06, 0, 0]);
        let eth = pcap(
            DataLink::ETHERNET,
            Endianness::Big,
            TsResolution::NanoSecond,
            &[(Duration::ZERO, arp), (Duration::ZERO, tagged)],
        );
        assert_eq!(packet_at(&eth[..], 1).unwrap(), second);
        let e = packet_at(&eth[..], 0).unwrap_err();
        assert!(
            matches!(
                e,
                ReplayError::NotIp {
                    index: 0,
                    reason: "not_ip"
                }
            ),
            "{e}"
        );
        let sll = pcap(
            DataLink::LINUX_SLL,
            Endianness::Little,
            TsResolution::MicroSecond,
            &[],
        );
        assert!(matches!(packet_at(&sll[..], 0), Err(ReplayError::LinkType(113))));
    }
}
