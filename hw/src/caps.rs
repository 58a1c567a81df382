//! Identification and capabilities (docs/hw-spec.md §3.1): what a device reports about itself in `ID`, `VERSION`
//! and the `CAP_*` registers, as one type for both sides of the contract. The model builds its register file from
//! a [`Caps`] ([`Caps::registers`]); the driver reads one back ([`Caps::decode`]) and refuses a device whose values
//! break the contract ([`Caps::check`]).

use crate::drop::DropReason;
use crate::hash::MAX_LB_BUCKETS;
use crate::regs::*;

/// What a device reports about itself. Sizes are in entries of the table they describe.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Caps {
    /// Contract major (`VERSION[31:16]`).
    pub major: u16,
    /// Contract minor (`VERSION[15:0]`): 0 for a v1.0 part, which has no `CAP_FEATURES` register.
    pub minor: u16,
    /// LB-table buckets (`CAP_LB_BUCKETS`, a power of two in 2..=65536); entries = buckets × ways.
    pub lb_buckets: u32,
    /// Ways per bucket (`CAP_LB_WAYS`, 4 in contract v1).
    pub lb_ways: u32,
    /// Range-table entries (`CAP_RANGES`).
    pub ranges: u32,
    /// Range entries compared per LB (`CAP_MAX_RANGES_PER_LB`).
    pub max_ranges_per_lb: u32,
    /// Target-table entries (`CAP_TARGETS`).
    pub targets: u32,
    /// Targets per LB (`CAP_MAX_TARGETS_PER_LB`).
    pub max_targets_per_lb: u32,
    /// Bucket-memory slots (`CAP_BUCKET_SLOTS`).
    pub bucket_slots: u32,
    /// Smallest supported log2(M) (`CAP_BUCKET_LOG2[7:0]`).
    pub bucket_log2_min: u8,
    /// Largest supported log2(M) (`CAP_BUCKET_LOG2[15:8]`).
    pub bucket_log2_max: u8,
    /// Per-LB counter rows (`CAP_LB_IDS`).
    pub lb_ids: u32,
    /// Drop counters (`CAP_DROP_REASONS`).
    pub drop_reasons: u32,
    /// Ports (`CAP_PORTS`).
    pub ports: u32,
    /// Largest log2 of the command ring (`CAP_RING_MAX_LOG2`); 0: no DMA command ring (docs/hw-spec.md §4.2).
    pub ring_max_log2: u8,
    /// Optional features (`CAP_FEATURES`, contract v1.1: `FEATURE_*`); 0 on a v1.0 part.
    pub features: u32,
    /// Flow-table entries (`CAP_FLOW_ENTRIES`, v1.2, a power of two >= `flow_ways`); 0 without the
    /// `FLOW_TABLE` feature.
    pub flow_entries: u32,
    /// Entries per flow-table set (`CAP_FLOW_WAYS`, v1.2); 0 without the `FLOW_TABLE` feature.
    pub flow_ways: u32,
}

/// A device whose identification or capability registers break the contract.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapsError {
    /// `ID` does not hold the ironlb magic: not an ironlb device, or the wrong BAR.
    #[error("not an ironlb device: ID register reads {found:#010x}, expected {expected:#010x} (wrong PCI address or BAR index?)")]
    BadMagic {
        /// Value read.
        found: u32,
        /// ID_MAGIC.
        expected: u32,
    },
    /// The device implements another major version of the contract.
    #[error("device implements contract {major}.{minor}; this driver supports major {supported} only (upgrade the driver)")]
    UnsupportedVersion {
        /// Device major.
        major: u16,
        /// Device minor.
        minor: u16,
        /// Supported major.
        supported: u16,
    },
    /// A capability register holds a value the contract does not allow.
    #[error("device capability {cap} = {value} is unusable: {why}")]
    BadCapability {
        /// Register name.
        cap: &'static str,
        /// Value read.
        value: u32,
        /// Why.
        why: &'static str,
    },
}

impl Caps {
    /// Whether the device has feature `f` (a `FEATURE_*` bit of `CAP_FEATURES`).
    pub fn has(&self, f: u32) -> bool {
        self.features & f == f
    }

    /// LB-table entries (buckets × ways).
    pub fn lb_entries(&self) -> u32 {
        self.lb_buckets * self.lb_ways
    }

    /// `CAP_BUCKET_LOG2` as the register holds it: max in bits 15:8, min in bits 7:0.
    pub fn bucket_log2_register(&self) -> u32 {
        u32::from(self.bucket_log2_max) << 8 | u32::from(self.bucket_log2_min)
    }

    /// These capabilities as a contract v1.0 part: minor version 0, no `CAP_FEATURES` (docs/hw-spec.md §9).
    pub fn as_v1_0(self) -> Caps {
        Caps {
            minor: 0,
            features: 0,
            flow_entries: 0,
            flow_ways: 0,
            ..self
        }
    }

    /// These capabilities as a contract v1.1 part: minor version 1, the v1.1 features, no flow table.
    pub fn as_v1_1(self) -> Caps {
        Caps {
            minor: 1,
            features: FEATURES_V1_1,
            flow_entries: 0,
            flow_ways: 0,
            ..self
        }
    }

    /// The part has a flow table (`FLOW_TABLE` and a non-zero size).
    pub fn has_flow_table(&self) -> bool {
        self.has(FEATURE_FLOW_TABLE) && self.flow_entries > 0 && self.flow_ways > 0
    }

    /// The `(offset, value)` of every identification and capability register that reports these capabilities:
    /// what a device loads at reset.
    pub fn registers(&self) -> [(u32, u32); 17] {
        [
            (ID, ID_MAGIC),
            (VERSION, u32::from(self.major) << 16 | u32::from(self.minor)),
            (CAP_LB_BUCKETS, self.lb_buckets),
            (CAP_LB_WAYS, self.lb_ways),
            (CAP_RANGES, self.ranges),
            (CAP_MAX_RANGES_PER_LB, self.max_ranges_per_lb),
            (CAP_TARGETS, self.targets),
            (CAP_MAX_TARGETS_PER_LB, self.max_targets_per_lb),
            (CAP_BUCKET_SLOTS, self.bucket_slots),
            (CAP_BUCKET_LOG2, self.bucket_log2_register()),
            (CAP_LB_IDS, self.lb_ids),
            (CAP_DROP_REASONS, self.drop_reasons),
            (CAP_PORTS, self.ports),
            (CAP_RING_MAX_LOG2, u32::from(self.ring_max_log2)),
            // Unlisted on a v1.0 part: reads 0 there (docs/hw-spec.md §9).
            (CAP_FEATURES, if self.minor >= 1 { self.features } else { 0 }),
            // v1.2: read 0 on a part without the flow table.
            (
                CAP_FLOW_ENTRIES,
                if self.has_flow_table() {
                    self.flow_entries
                } else {
                    0
                },
            ),
            (
                CAP_FLOW_WAYS,
                if self.has_flow_table() { self.flow_ways } else { 0 },
            ),
        ]
    }

    /// Read `ID`, `VERSION` and the capability registers through `reg` (a 32-bit register read at a BAR0 offset),
    /// refuse a foreign device or another major version, and [`check`](Self::check) the values.
    pub fn decode(mut reg: impl FnMut(u32) -> u32) -> Result<Caps, CapsError> {
        let id = reg(ID);
        if id != ID_MAGIC {
            return Err(CapsError::BadMagic {
                found: id,
                expected: ID_MAGIC,
            });
        }
        let v = reg(VERSION);
        let (major, minor) = ((v >> 16) as u16, v as u16);
        if major != VERSION_MAJOR {
            return Err(CapsError::UnsupportedVersion {
                major,
                minor,
                supported: VERSION_MAJOR,
            });
        }
        let log2 = reg(CAP_BUCKET_LOG2);
        let caps = Caps {
            major,
            minor,
            lb_buckets: reg(CAP_LB_BUCKETS),
            lb_ways: reg(CAP_LB_WAYS),
            ranges: reg(CAP_RANGES),
            max_ranges_per_lb: reg(CAP_MAX_RANGES_PER_LB),
            targets: reg(CAP_TARGETS),
            max_targets_per_lb: reg(CAP_MAX_TARGETS_PER_LB),
            bucket_slots: reg(CAP_BUCKET_SLOTS),
            bucket_log2_min: log2 as u8,
            bucket_log2_max: (log2 >> 8) as u8,
            lb_ids: reg(CAP_LB_IDS),
            drop_reasons: reg(CAP_DROP_REASONS),
            ports: reg(CAP_PORTS),
            ring_max_log2: reg(CAP_RING_MAX_LOG2) as u8,
            features: if minor >= 1 { reg(CAP_FEATURES) } else { 0 },
            flow_entries: 0,
            flow_ways: 0,
        };
        let caps = if caps.has(FEATURE_FLOW_TABLE) {
            Caps {
                flow_entries: reg(CAP_FLOW_ENTRIES),
                flow_ways: reg(CAP_FLOW_WAYS),
                ..caps
            }
        } else {
            caps
        };
        caps.check()?;
        Ok(caps)
    }

    /// The contract's rules for capability values: LB buckets a power of two in 2..=65536, four ways, and
    /// `1 <= CAP_BUCKET_LOG2 min <= max <= 31`.
    pub fn check(&self) -> Result<(), CapsError> {
        let bad = |cap, value, why| Err(CapsError::BadCapability { cap, value, why });
        if self.lb_buckets < 2 || !self.lb_buckets.is_power_of_two() || self.lb_buckets > MAX_LB_BUCKETS {
            return bad(
                "CAP_LB_BUCKETS",
                self.lb_buckets,
                "must be a power of two in 2..=65536",
            );
        }
        if self.has(FEATURE_FLOW_TABLE)
            && (self.flow_ways == 0
                || !self.flow_ways.is_power_of_two()
                || !self.flow_entries.is_power_of_two()
                || self.flow_entries < self.flow_ways)
        {
            return bad(
                "CAP_FLOW_ENTRIES",
                self.flow_entries,
                "needs CAP_FLOW_WAYS and CAP_FLOW_ENTRIES powers of two with entries >= ways",
            );
        }
        if self.lb_ways != 4 {
            return bad("CAP_LB_WAYS", self.lb_ways, "contract v1 buckets have 4 ways");
        }
        if self.bucket_log2_min == 0
            || self.bucket_log2_min > self.bucket_log2_max
            || self.bucket_log2_max > 31
        {
            return bad(
                "CAP_BUCKET_LOG2",
                self.bucket_log2_register(),
                "needs 1 <= min <= max <= 31",
            );
        }
        Ok(())
    }
}

/// The number of drop counters contract v1.1 defines (the value of `CAP_DROP_REASONS` of a current part).
pub const DROP_REASONS: u32 = DropReason::COUNT as u32;

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn part() -> Caps {
        Caps {
            major: VERSION_MAJOR,
            minor: VERSION_MINOR,
            lb_buckets: 256,
            lb_ways: 4,
            ranges: 4096,
            max_ranges_per_lb: 16,
            targets: 4096,
            max_targets_per_lb: 256,
            bucket_slots: 1 << 18,
            bucket_log2_min: 1,
            bucket_log2_max: 14,
            lb_ids: 1024,
            drop_reasons: DROP_REASONS,
            ports: 16,
            ring_max_log2: 12,
            features: FEATURES_V1_2,
            flow_entries: 1 << 14,
            flow_ways: 8,
        }
    }

    /// A register file holding `caps`' registers (what a device loads at reset); other offsets read 0.
    fn file(caps: &Caps) -> BTreeMap<u32, u32> {
        caps.registers().into_iter().collect()
    }

    fn decode(regs: &BTreeMap<u32, u32>) -> Result<Caps, CapsError> {
        Caps::decode(|off| regs.get(&off).copied().unwrap_or(0))
    }

    #[test]
    fn registers_decode_to_the_same_caps() {
        assert_eq!(decode(&file(&part())), Ok(part()));
        let v10 = part().as_v1_0();
        assert_eq!(decode(&file(&v10)), Ok(v10.clone()));
        assert!(!v10.has(FEATURE_FENCE));
        assert!(part().has(FEATURE_FENCE | FEATURE_GENERATION));
        let v11 = part().as_v1_1();
        assert_eq!(decode(&file(&v11)), Ok(v11.clone()));
        assert!(part().has_flow_table() && !v11.has_flow_table() && !v10.has_flow_table());
        // A v1.2 part with a broken flow-table size is refused by name.
        let mut r = file(&part());
        r.insert(CAP_FLOW_WAYS, 3);
        assert!(matches!(
            decode(&r),
            Err(CapsError::BadCapability {
                cap: "CAP_FLOW_ENTRIES",
                ..
            })
        ));
    }

    #[test]
    fn fixed_register_words() {
        let r = file(&part());
        assert_eq!(r[&ID], u32::from_le_bytes(*b"ILB1"));
        assert_eq!(r[&VERSION], 0x0001_0002);
        assert_eq!(r[&CAP_BUCKET_LOG2], 0x0e01);
        assert_eq!(r[&CAP_FEATURES], FEATURES_V1_2);
        assert_eq!((r[&CAP_FLOW_ENTRIES], r[&CAP_FLOW_WAYS]), (1 << 14, 8));
        assert_eq!(file(&part().as_v1_1())[&CAP_FLOW_ENTRIES], 0);
        assert_eq!(file(&part().as_v1_0())[&VERSION], 0x0001_0000);
        assert_eq!(part().lb_entries(), 1024);
    }

    #[test]
    fn a_v1_0_part_is_not_asked_for_features() {
        // A v1.0 part's CAP_FEATURES offset is unlisted: whatever it reads, the features are none.
        let mut r = file(&part().as_v1_0());
        r.insert(CAP_FEATURES, 0xdead_beef);
        assert_eq!(decode(&r).unwrap().features, 0);
    }

    #[test]
    fn foreign_devices_and_other_majors_are_refused() {
        let mut r = file(&part());
        r.insert(ID, 0x1234_5678);
        assert_eq!(
            decode(&r),
            Err(CapsError::BadMagic {
                found: 0x1234_5678,
                expected: ID_MAGIC
            })
        );
        let mut r = file(&part());
        r.insert(VERSION, 2 << 16 | 3);
        let e = decode(&r).unwrap_err();
        assert_eq!(
            e,
            CapsError::UnsupportedVersion {
                major: 2,
                minor: 3,
                supported: 1
            }
        );
        assert!(e.to_string().contains("2.3"), "{e}");
    }

    #[test]
    fn values_outside_the_contract_are_refused_by_name() {
        type Edit = fn(&mut Caps);
        let cases: [(Edit, &str); 6] = [
            (|c| c.lb_buckets = 1, "CAP_LB_BUCKETS"),
            (|c| c.lb_buckets = 384, "CAP_LB_BUCKETS"),
            (|c| c.lb_buckets = 1 << 17, "CAP_LB_BUCKETS"),
            (|c| c.lb_ways = 8, "CAP_LB_WAYS"),
            (|c| c.bucket_log2_min = 0, "CAP_BUCKET_LOG2"),
            (
                |c| (c.bucket_log2_min, c.bucket_log2_max) = (9, 8),
                "CAP_BUCKET_LOG2",
            ),
        ];
        for (edit, name) in cases {
            let mut c = part();
            edit(&mut c);
            match decode(&file(&c)) {
                Err(CapsError::BadCapability { cap, .. }) => assert_eq!(cap, name),
                other => panic!("{name}: {other:?}"),
            }
        }
        let mut c = part();
        c.bucket_log2_max = 32;
        assert!(matches!(
            c.check(),
            Err(CapsError::BadCapability {
                cap: "CAP_BUCKET_LOG2",
                ..
            })
        ));
    }
}
