//! Model sizing: the capabilities the device reports (docs/hw-spec.md §3.1, the shared [`Caps`] type) and the
//! model's own settings, which software cannot see.

use ironlb_hw::caps::{Caps, DROP_REASONS};
use ironlb_hw::regs::{FEATURES_V1_2, VERSION_MAJOR, VERSION_MINOR};

/// What the model implements. [`DeviceConfig::default`] is the reference part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceConfig {
    /// What the device reports in its identification and capability registers (loaded at every reset), and the
    /// sizes the model implements. `caps.minor == 0` models a contract v1.0 part: `CAP_FEATURES` and `GENERATION`
    /// read 0, no FENCE opcode (`bad_opcode`), no drop-counter snapshot (for the driver's v1.0 fallbacks,
    /// docs/hw-spec.md §9). `caps.ring_max_log2 == 0`: no DMA command ring (docs/hw-spec.md §4.2), so software
    /// uses the mailbox for every command and read, and enabling the ring stops it with `ring_config`.
    pub caps: Caps,
    /// Bytes of host memory the model can reach by DMA (the IOVA window).
    pub host_mem_len: usize,
    /// IOVA of the first byte of host memory.
    pub host_iova_base: u64,
    /// Ring descriptors executed per `poll` at most (the model's scheduling quantum between packets; 1 makes
    /// every table write interleave with packets, which the hitless tests use). Not visible to software.
    pub ring_budget: u32,
}

/// A current (v1.2) part with these sizes and a flow table of `flow_entries` in sets of 8.
#[allow(clippy::too_many_arguments)]
fn part(
    lb_buckets: u32,
    ranges: u32,
    targets: u32,
    max_targets_per_lb: u32,
    bucket_slots: u32,
    bucket_log2_max: u8,
    lb_ids: u32,
    ring_max_log2: u8,
    flow_entries: u32,
) -> Caps {
    Caps {
        major: VERSION_MAJOR,
        minor: VERSION_MINOR,
        lb_buckets,
        lb_ways: 4,
        ranges,
        max_ranges_per_lb: 16,
        targets,
        max_targets_per_lb,
        bucket_slots,
        bucket_log2_min: 1,
        bucket_log2_max,
        lb_ids,
        drop_reasons: DROP_REASONS,
        ports: 16,
        ring_max_log2,
        features: FEATURES_V1_2,
        flow_entries,
        flow_ways: 8,
    }
}

impl Default for DeviceConfig {
    /// The reference part: 32 Ki LB entries (2 MiB), 64 Ki ranges, 256 Ki targets, 16 Mi bucket slots (64 MiB).
    fn default() -> Self {
        DeviceConfig {
            caps: part(8192, 65536, 262_144, 4096, 1 << 24, 16, 65536, 16, 1 << 21),
            host_mem_len: 64 << 20,
            host_iova_base: 0x1_0000_0000,
            ring_budget: 4096,
        }
    }
}

impl DeviceConfig {
    /// A small part for tests (fast to create, easy to fill).
    pub fn small() -> Self {
        DeviceConfig {
            caps: part(256, 4096, 4096, 256, 1 << 18, 14, 1024, 12, 1 << 14),
            host_mem_len: 8 << 20,
            host_iova_base: 0x1_0000_0000,
            ring_budget: 4096,
        }
    }

    /// This part as a contract v1.0 device ([`Caps::as_v1_0`]).
    pub fn as_v1_0(self) -> Self {
        DeviceConfig {
            caps: self.caps.as_v1_0(),
            ..self
        }
    }

    /// This part as a contract v1.1 device: no flow table ([`Caps::as_v1_1`]).
    pub fn as_v1_1(self) -> Self {
        DeviceConfig {
            caps: self.caps.as_v1_1(),
            ..self
        }
    }

    /// This part with a flow table of `entries` entries in sets of `ways` (both powers of two).
    pub fn with_flow_table(self, entries: u32, ways: u32) -> Self {
        DeviceConfig {
            caps: Caps {
                flow_entries: entries,
                flow_ways: ways,
                ..self.caps
            },
            ..self
        }
    }

    /// True when the part has a flow table (v1.2).
    pub fn has_flow_table(&self) -> bool {
        self.caps.has_flow_table()
    }

    /// This part without a DMA command ring (`CAP_RING_MAX_LOG2 = 0`): what `ironlb-sim serve --no-dma` models.
    pub fn without_ring(self) -> Self {
        DeviceConfig {
            caps: Caps {
                ring_max_log2: 0,
                ..self.caps
            },
            ..self
        }
    }

    /// A contract v1.0 part (`VERSION` minor 0).
    pub fn is_v1_0(&self) -> bool {
        self.caps.minor == 0
    }

    /// LB-table entries.
    pub fn lb_entries(&self) -> u32 {
        self.caps.lb_entries()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parts_meet_the_contract() {
        for cfg in [DeviceConfig::default(), DeviceConfig::small()] {
            cfg.caps.check().unwrap();
            assert!(!cfg.is_v1_0());
            let v10 = cfg.clone().as_v1_0();
            assert!(v10.is_v1_0() && v10.caps.features == 0);
            assert_eq!(cfg.clone().without_ring().caps.ring_max_log2, 0);
        }
        assert_eq!(DeviceConfig::default().lb_entries(), 32768);
    }
}
