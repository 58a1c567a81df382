//! Identification and capabilities, read once at open (docs/hw-spec.md §3.1).

use crate::access::DeviceAccess;
use crate::error::DriverError;
use ironlb_hw::regs::*;

/// What the device reports about itself.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Caps {
    /// Contract major.
    pub major: u16,
    /// Contract minor.
    pub minor: u16,
    /// LB-table buckets.
    pub lb_buckets: u32,
    /// Ways per bucket.
    pub lb_ways: u32,
    /// Range-table entries.
    pub ranges: u32,
    /// Range entries per LB.
    pub max_ranges_per_lb: u32,
    /// Target-table entries.
    pub targets: u32,
    /// Targets per LB.
    pub max_targets_per_lb: u32,
    /// Bucket-memory slots.
    pub bucket_slots: u32,
    /// Smallest log2(M).
    pub bucket_log2_min: u8,
    /// Largest log2(M).
    pub bucket_log2_max: u8,
    /// Per-LB counter rows.
    pub lb_ids: u32,
    /// Drop counters.
    pub drop_reasons: u32,
    /// Ports.
    pub ports: u32,
    /// Largest ring log2.
    pub ring_max_log2: u8,
    /// Optional features (`CAP_FEATURES`, contract v1.1: `FEATURE_*`); 0 on a v1.0 device.
    pub features: u32,
}

impl Caps {
    /// Whether the device has feature `f` (a `FEATURE_*` bit of `CAP_FEATURES`).
    pub fn has(&self, f: u32) -> bool {
        self.features & f == f
    }

    /// Read ID, VERSION and the capability registers; refuse a foreign device or another major version.
    pub fn read(acc: &mut dyn DeviceAccess) -> Result<Caps, DriverError> {
        let id = acc.read32(ID);
        if id != ID_MAGIC {
            return Err(DriverError::BadMagic {
                found: id,
                expected: ID_MAGIC,
            });
        }
        let v = acc.read32(VERSION);
        let (major, minor) = ((v >> 16) as u16, v as u16);
        if major != VERSION_MAJOR {
            return Err(DriverError::UnsupportedVersion {
                major,
                minor,
                supported: VERSION_MAJOR,
            });
        }
        let log2 = acc.read32(CAP_BUCKET_LOG2);
        let caps = Caps {
            major,
            minor,
            lb_buckets: acc.read32(CAP_LB_BUCKETS),
            lb_ways: acc.read32(CAP_LB_WAYS),
            ranges: acc.read32(CAP_RANGES),
            max_ranges_per_lb: acc.read32(CAP_MAX_RANGES_PER_LB),
            targets: acc.read32(CAP_TARGETS),
            max_targets_per_lb: acc.read32(CAP_MAX_TARGETS_PER_LB),
            bucket_slots: acc.read32(CAP_BUCKET_SLOTS),
            bucket_log2_min: log2 as u8,
            bucket_log2_max: (log2 >> 8) as u8,
            lb_ids: acc.read32(CAP_LB_IDS),
            drop_reasons: acc.read32(CAP_DROP_REASONS),
            ports: acc.read32(CAP_PORTS),
            ring_max_log2: acc.read32(CAP_RING_MAX_LOG2) as u8,
            features: if minor >= 1 { acc.read32(CAP_FEATURES) } else { 0 },
        };
        let bad = |cap, value, why| Err(DriverError::BadCapability { cap, value, why });
        if caps.lb_buckets < 2
            || !caps.lb_buckets.is_power_of_two()
            || caps.lb_buckets > ironlb_hw::hash::MAX_LB_BUCKETS
        {
            return bad(
                "CAP_LB_BUCKETS",
                caps.lb_buckets,
                "must be a power of two in 2..=65536",
            );
        }
        if caps.lb_ways != 4 {
            return bad("CAP_LB_WAYS", caps.lb_ways, "contract v1 buckets have 4 ways");
        }
        if caps.bucket_log2_min == 0
            || caps.bucket_log2_min > caps.bucket_log2_max
            || caps.bucket_log2_max > 31
        {
            return bad("CAP_BUCKET_LOG2", log2, "needs 1 <= min <= max <= 31");
        }
        if caps.bucket_log2_min > crate::tables::buckets::MAX_M_LOG2 {
            return bad(
                "CAP_BUCKET_LOG2",
                log2,
                "the driver builds bucket arrays of at most 2^16 slots",
            );
        }
        Ok(caps)
    }
}
