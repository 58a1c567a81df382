//! Packet captures with tshark inside a namespace, read back as raw IP packets.

use super::{run_bounded, Proc};
use pcap_file::pcap::PcapReader;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A running `tshark -i IF -w FILE` in a namespace (bounded by `-a duration`).
pub struct Capture {
    proc: Proc,
    file: PathBuf,
}

impl Capture {
    /// Start capturing on `ifname` in `ns`; returns once tshark reports that its capture child (dumpcap) has the
    /// interface open and writes the file ("Capture started."). tshark prints "Capturing on …" before that: packets
    /// sent between the two messages were missing from captures under load (a whole TCP flow, 6 packets, in one CI
    /// run).
    pub fn start(ns: &str, ifname: &str, dir: &Path, tag: &str) -> Capture {
        let file = dir.join(format!("{tag}.pcap"));
        let f = file.to_string_lossy().into_owned();
        let mut proc = Proc::spawn(
            &format!("tshark-{tag}"),
            Some(ns),
            &[
                "tshark",
                "-q",
                "-n",
                "-i",
                ifname,
                "-F",
                "pcap",
                "-w",
                &f,
                "-a",
                "duration:60",
            ],
            dir,
            false,
        );
        let t0 = Instant::now();
        while !proc.log_text().contains("Capture started") {
            proc.assert_running();
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "tshark on {ifname} in {ns} did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Capture { proc, file }
    }

    /// The packets written so far (dumpcap writes its file as it captures, in order; a record cut mid-write ends
    /// the list, and a file without its header yet is empty). For waiting on a condition before [`Capture::stop`].
    pub fn packets(&self) -> Vec<Vec<u8>> {
        match std::fs::File::open(&self.file).map(PcapReader::new) {
            Ok(Ok(r)) => read_records(r, &self.file),
            _ => Vec::new(),
        }
    }

    /// Stop (SIGINT, so tshark flushes the file) and return the captured packets (IP packets, no link header).
    /// Packets still in flight are not waited for: wait with [`Capture::packets`] for what the test expects first.
    pub fn stop(mut self) -> Vec<Vec<u8>> {
        let _ = run_bounded(
            None,
            &["kill", "-INT", &self.proc.pid().to_string()],
            Duration::from_secs(5),
        );
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(10) && !self.proc.exited() {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.proc.kill();
        read_pcap(&self.file)
    }
}

/// The packets of a pcap file of a TUN capture (link type RAW, or IPv4/IPv6).
pub fn read_pcap(path: &Path) -> Vec<Vec<u8>> {
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("capture {}: {e}", path.display()));
    let r = PcapReader::new(f).unwrap_or_else(|e| panic!("capture {}: {e}", path.display()));
    read_records(r, path)
}

/// The records of an open pcap file, up to its end or a record cut short; panics on a link type other than raw IP.
fn read_records(mut r: PcapReader<std::fs::File>, path: &Path) -> Vec<Vec<u8>> {
    let link = r.header().datalink;
    let mut out = Vec::new();
    while let Some(p) = r.next_packet() {
        match p {
            Ok(p) => out.push(p.data.into_owned()),
            // A capture stopped mid-record ends there.
            Err(_) => break,
        }
    }
    let raw = matches!(u32::from(link), 101 | 228 | 229 | 12 | 14);
    assert!(
        raw,
        "capture {}: link type {link:?}, expected raw IP",
        path.display()
    );
    out
}

/// Source and destination address of an IP packet.
pub fn addrs(pkt: &[u8]) -> Option<(IpAddr, IpAddr)> {
    match pkt.first()? >> 4 {
        4 if pkt.len() >= 20 => Some((
            IpAddr::from([pkt[12], pkt[13], pkt[14], pkt[15]]),
            IpAddr::from([pkt[16], pkt[17], pkt[18], pkt[19]]),
        )),
        6 if pkt.len() >= 40 => {
            let a = |r: std::ops::Range<usize>| {
                let mut b = [0u8; 16];
                b.copy_from_slice(&pkt[r]);
                IpAddr::from(b)
            };
            Some((a(8..24), a(24..40)))
        }
        _ => None,
    }
}

/// (protocol, L4 bytes) of an IP packet without IPv6 extension headers.
pub fn l4(pkt: &[u8]) -> Option<(u8, &[u8])> {
    match pkt.first()? >> 4 {
        4 if pkt.len() >= 20 => Some((pkt[9], pkt.get(usize::from(pkt[0] & 0xf) * 4..)?)),
        6 if pkt.len() >= 40 => Some((pkt[6], &pkt[40..])),
        _ => None,
    }
}

/// Destination port of a TCP/UDP/SCTP packet.
pub fn dst_port(pkt: &[u8]) -> Option<u16> {
    let (proto, l4) = l4(pkt)?;
    matches!(proto, 6 | 17 | 132).then_some(())?;
    Some(u16::from_be_bytes([*l4.get(2)?, *l4.get(3)?]))
}
