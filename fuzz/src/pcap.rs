//! Target `pcap`: arbitrary bytes as a pcap file replayed through the device model (sim/src/pcap.rs, what
//! `ironlb-sim replay` runs), on the programmed device of the [`pipeline`](crate::pipeline) target.
//!
//! What every input must satisfy:
//! * no panic: the replay ends with a summary or a [`ReplayError`];
//! * on success the summary adds up (every packet forwarded, dropped for a reason or skipped), one JSON verdict
//!   line is written per packet, and the output is a pcap that reads back with exactly the forwarded packets, each
//!   at least an outer IPv6 header long.

use ironlb_sim::pcap::{replay, ReplayError};
use ironlb_sim::testing;
use pcap_file::pcap::PcapReader;

/// The harness (see the module documentation).
pub fn run(data: &[u8]) {
    crate::pipeline::with_device(|dev| {
        let mut out = Vec::new();
        let mut verdicts = Vec::new();
        let result = replay(dev, testing::PORT_PUBLIC, data, &mut out, Some(&mut verdicts));
        let summary = match result {
            Ok(s) => s,
            Err(e) => {
                assert!(!e.to_string().is_empty(), "replay error without a message");
                if let ReplayError::Output { .. } | ReplayError::Verdicts { .. } = e {
                    panic!("writing to memory failed: {e}");
                }
                return;
            }
        };
        let dropped: u64 = summary.dropped.values().sum();
        assert_eq!(
            summary.packets,
            summary.forwarded + dropped + summary.skipped,
            "summary does not add up: {summary:?}"
        );
        let lines = verdicts.iter().filter(|&&b| b == b'\n').count() as u64;
        assert_eq!(lines, summary.packets, "one verdict line per packet");
        let mut reader = PcapReader::new(out.as_slice()).expect("output pcap header");
        let mut n = 0;
        while let Some(p) = reader.next_raw_packet() {
            let p = p.expect("output pcap record");
            assert!(p.data.len() >= 40, "forwarded packet without an outer header");
            n += 1;
        }
        assert_eq!(n, summary.forwarded, "output pcap holds the forwarded packets");
    });
}
