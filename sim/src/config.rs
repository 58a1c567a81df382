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
            v1_0: false,
        }
    }

    /// This part as a contract v1.0 device (see [`DeviceConfig::v1_0`]).
    pub fn as_v1_0(self) -> Self {
        DeviceConfig { v1_0: true, ..self }
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
