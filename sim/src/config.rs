//! Model sizing: the values the device reports in its capability registers (docs/hw-spec.md §3.1).

/// Sizes of every table and limit the model implements. [`DeviceConfig::default`] is the reference part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceConfig {
    /// LB-table buckets (power of two >= 2); entries = buckets x 4.
    pub lb_buckets: u32,
    /// Range-table entries.
    pub ranges: u32,
    /// Ranges compared per LB (CAP_MAX_RANGES_PER_LB).
    pub max_ranges_per_lb: u32,
    /// Target-table entries.
    pub targets: u32,
    /// Targets per LB.
    pub max_targets_per_lb: u32,
    /// Slots of bucket memory.
    pub bucket_slots: u32,
    /// Smallest supported log2(M).
    pub bucket_log2_min: u8,
    /// Largest supported log2(M).
    pub bucket_log2_max: u8,
    /// LB ids (per-LB counter rows).
    pub lb_ids: u32,
    /// Ports.
    pub ports: u32,
    /// Largest log2 of the command ring; 0: the device has no DMA command ring (docs/hw-spec.md §4.2), so
    /// software uses the mailbox for every command and read, and enabling the ring stops it with `ring_config`.
    pub ring_max_log2: u8,
    /// Bytes of host memory the model can reach by DMA (the IOVA window).
    pub host_mem_len: usize,
    /// IOVA of the first byte of host memory.
    pub host_iova_base: u64,
    /// Ring descriptors executed per `poll` at most (the model's scheduling quantum between packets; 1 makes
    /// every table write interleave with packets, which the hitless tests use). Not visible to software.
    pub ring_budget: u32,
    /// Flow-table entries (contract v1.2, docs/hw-spec.md §11): a power of two >= `flow_ways`, or 0 for a part
    /// without a flow table (a v1.1 part: VERSION minor 1, no `FLOW_TABLE` feature bit, table 7 and opcode 7
    /// refused).
    pub flow_entries: u32,
    /// Entries per flow-table set (CAP_FLOW_WAYS).
    pub flow_ways: u32,
    /// Model a contract v1.0 part: VERSION minor 0, `CAP_FEATURES` and `GENERATION` read 0, no FENCE opcode
    /// (`bad_opcode`), no drop-counter snapshot. For the driver's v1.0 fallbacks (docs/hw-spec.md §9).
    pub v1_0: bool,
}

impl Default for DeviceConfig {
    /// The reference part: 32 Ki LB entries (2 MiB), 64 Ki ranges, 256 Ki targets, 16 Mi bucket slots (64 MiB).
    fn default() -> Self {
        DeviceConfig {
            lb_buckets: 8192,
            ranges: 65536,
            max_ranges_per_lb: 16,
            targets: 262_144,
            max_targets_per_lb: 4096,
            bucket_slots: 1 << 24,
            bucket_log2_min: 1,
            bucket_log2_max: 16,
            lb_ids: 65536,
            ports: 16,
            ring_max_log2: 16,
            host_mem_len: 64 << 20,
            host_iova_base: 0x1_0000_0000,
            ring_budget: 4096,
            flow_entries: 1 << 21,
            flow_ways: 8,
            v1_0: false,
        }
    }
}

impl DeviceConfig {
    /// A small part for tests (fast to create, easy to fill).
    pub fn small() -> Self {
        DeviceConfig {
            lb_buckets: 256,
            ranges: 4096,
            max_ranges_per_lb: 16,
            targets: 4096,
            max_targets_per_lb: 256,
            bucket_slots: 1 << 18,
            bucket_log2_min: 1,
            bucket_log2_max: 14,
            lb_ids: 1024,
            ports: 16,
            ring_max_log2: 12,
            host_mem_len: 8 << 20,
            host_iova_base: 0x1_0000_0000,
            ring_budget: 4096,
            flow_entries: 1 << 14,
            flow_ways: 8,
            v1_0: false,
        }
    }

    /// This part as a contract v1.0 device (see [`DeviceConfig::v1_0`]); it has no flow table either.
    pub fn as_v1_0(self) -> Self {
        DeviceConfig {
            v1_0: true,
            flow_entries: 0,
            ..self
        }
    }

    /// This part as a contract v1.1 device: no flow table (see [`DeviceConfig::flow_entries`]).
    pub fn as_v1_1(self) -> Self {
        DeviceConfig {
            flow_entries: 0,
            ..self
        }
    }

    /// This part with a flow table of `entries` entries in sets of `ways` (both powers of two).
    pub fn with_flow_table(self, entries: u32, ways: u32) -> Self {
        DeviceConfig {
            flow_entries: entries,
            flow_ways: ways,
            ..self
        }
    }

    /// The contract minor version this part reports (docs/hw-spec.md §9).
    pub fn minor(&self) -> u16 {
        match (self.v1_0, self.flow_entries) {
            (true, _) => 0,
            (false, 0) => 1,
            _ => ironlb_hw::regs::VERSION_MINOR,
        }
    }

    /// CAP_FEATURES of this part.
    pub fn features(&self) -> u32 {
        use ironlb_hw::regs::{FEATURES_V1_1, FEATURES_V1_2};
        match self.minor() {
            0 => 0,
            1 => FEATURES_V1_1,
            _ => FEATURES_V1_2,
        }
    }

    /// True when the part has a flow table (v1.2).
    pub fn has_flow_table(&self) -> bool {
        !self.v1_0 && self.flow_entries > 0
    }

    /// This part without a DMA command ring (`CAP_RING_MAX_LOG2 = 0`): what `ironlb-sim serve --no-dma` models.
    pub fn without_ring(self) -> Self {
        DeviceConfig {
            ring_max_log2: 0,
            ..self
        }
    }

    /// LB-table entries.
    pub fn lb_entries(&self) -> u32 {
        self.lb_buckets * 4
    }
}
