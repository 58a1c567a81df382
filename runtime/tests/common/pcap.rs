//! Captures for replay and trace tests: IP packets as a LINKTYPE_RAW pcap.

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use std::time::Duration;

/// `packets` (each an IP packet, with its capture time) as the bytes of a LINKTYPE_RAW pcap file.
pub fn raw_pcap<'a>(packets: impl IntoIterator<Item = (Duration, &'a [u8])>) -> Vec<u8> {
    let header = PcapHeader {
        datalink: pcap_file::DataLink::RAW,
        ..PcapHeader::default()
    };
    let mut w = PcapWriter::with_header(Vec::new(), header).unwrap();
    for (at, p) in packets {
        w.write_packet(&PcapPacket::new(at, p.len() as u32, p)).unwrap();
    }
    w.into_writer()
}

/// `ironlb replay --example --ingress public --in INPUT`'s verdict lines (written under `dir`), parsed.
pub fn replay_example_verdicts(input: &std::path::Path, dir: &std::path::Path) -> Vec<serde_json::Value> {
    let verdicts = dir.join("verdicts.jsonl");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ironlb"))
        .args(["replay", "--example", "--ingress", "public", "--in"])
        .arg(input)
        .arg("--out")
        .arg(dir.join("replayed.pcap"))
        .arg("--verdicts")
        .arg(&verdicts)
        .output()
        .expect("run ironlb replay");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::read_to_string(&verdicts)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}
