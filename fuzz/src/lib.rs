//! Coverage-guided fuzz targets (docs/testing.md "Fuzzing").
//!
//! Each module is one target: a `run(data)` harness that feeds arbitrary bytes to one input surface and checks, with
//! assertions, what must hold for every input. A panic anywhere — in the code under test or in an assertion of the
//! harness — is what AFL reports as a crash. The same functions replay the committed corpus and saved crash inputs
//! as plain tests (tests/replay.rs), so a finding becomes a regression test by saving its input.
//!
//! * [`pipeline`]: one packet through the device model's pipeline on a programmed device.
//! * [`device`]: a command stream from a buggy driver: register writes, mailbox commands, DMA ring batches, host
//!   memory scribbles, resets, packets over whatever the tables then hold.
//! * [`manifest`]: YAML manifests through loading and validation.
//! * [`pcap`]: a pcap file through the model's replay.
#![forbid(unsafe_code)]

pub mod device;
pub mod manifest;
pub mod pcap;
pub mod pipeline;

/// A target's harness.
pub type Harness = fn(&[u8]);

/// Every target, by the name its corpus directory and AFL binary (`fuzz_<name>`) use.
pub const TARGETS: [(&str, Harness); 4] = [
    ("pipeline", pipeline::run),
    ("device", device::run),
    ("manifest", manifest::run),
    ("pcap", pcap::run),
];

/// A cursor over fuzz input bytes: reads past the end yield zeros, so every input decodes to something.
#[derive(Debug, Clone)]
pub struct Bytes<'a> {
    data: &'a [u8],
}

impl<'a> Bytes<'a> {
    /// A cursor at the start of `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Bytes { data }
    }

    /// Bytes left.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The next `n` bytes (fewer at the end).
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let (a, b) = self.data.split_at(n.min(self.data.len()));
        self.data = b;
        a
    }

    /// The next byte (0 past the end).
    pub fn u8(&mut self) -> u8 {
        self.take(1).first().copied().unwrap_or(0)
    }

    /// The next little-endian u16 (zero-padded past the end).
    pub fn u16(&mut self) -> u16 {
        let mut b = [0u8; 2];
        let t = self.take(2);
        b[..t.len()].copy_from_slice(t);
        u16::from_le_bytes(b)
    }

    /// The next little-endian u32 (zero-padded past the end).
    pub fn u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        let t = self.take(4);
        b[..t.len()].copy_from_slice(t);
        u32::from_le_bytes(b)
    }

    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        self.take(usize::MAX)
    }
}
