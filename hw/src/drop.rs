//! Drop reasons (docs/hw-spec.md §7.10). The numeric value indexes the drop counters at
//! [`crate::regs::DROP_COUNTERS`]; names are stable and used in dumps, JSON and metrics labels.

/// Why the pipeline dropped a packet. Every drop has exactly one reason, and every reason has a counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum DropReason {
    /// Ingress port not enabled, or not an ingress port (the underlay port only transmits).
    PortDisabled = 0,
    /// Pipeline disabled (CONTROL.ENABLE clear).
    DeviceDisabled = 1,
    /// Not a well-formed IPv4/IPv6 packet: wrong version, shorter than its header, bad IHL, total/payload length
    /// inconsistent with the bytes received.
    L3Malformed = 2,
    /// IPv4 header checksum wrong.
    Ipv4Checksum = 3,
    /// IPv6 extension-header chain longer than the bound, or a header overrunning the packet.
    Ipv6ExtHeaders = 4,
    /// L4 header too short to hold the fields the pipeline needs (ports; ICMP type/code).
    L4Truncated = 5,
    /// No LB entry for (domain, VIP).
    NoVip = 6,
    /// ICMP/ICMPv6 echo request to a VIP whose LB does not allow echo (the default, IEP-3).
    IcmpEcho = 7,
    /// ICMP type that is neither echo request nor an error the device delivers.
    IcmpUnsupported = 8,
    /// ICMP error whose embedded packet is truncated, malformed, or not from this VIP.
    IcmpErrorInvalid = 9,
    /// Transport protocol not TCP/UDP/SCTP/ICMP (or ESP, no-next-header, ...).
    ProtocolNotAllowed = 10,
    /// No range of the LB's allow-list matches (protocol, destination port).
    PortNotAllowed = 11,
    /// The LB has no bucket array, or the chosen slot holds no valid target.
    NoTarget = 12,
    /// Outer packet would exceed the underlay MTU.
    MtuExceeded = 13,
}

const _: () = assert!(
    DropReason::COUNT <= 32,
    "the register map has room for 32 drop counters"
);

impl DropReason {
    /// Every reason, in counter order.
    pub const ALL: [DropReason; 14] = [
        DropReason::PortDisabled,
        DropReason::DeviceDisabled,
        DropReason::L3Malformed,
        DropReason::Ipv4Checksum,
        DropReason::Ipv6ExtHeaders,
        DropReason::L4Truncated,
        DropReason::NoVip,
        DropReason::IcmpEcho,
        DropReason::IcmpUnsupported,
        DropReason::IcmpErrorInvalid,
        DropReason::ProtocolNotAllowed,
        DropReason::PortNotAllowed,
        DropReason::NoTarget,
        DropReason::MtuExceeded,
    ];

    /// Number of reasons defined by this contract version.
    pub const COUNT: usize = Self::ALL.len();
    const _FITS: () = assert!(
        Self::COUNT <= 32,
        "the register map has room for 32 drop counters"
    );

    /// Stable snake_case name.
    pub const fn name(self) -> &'static str {
        match self {
            DropReason::PortDisabled => "port_disabled",
            DropReason::DeviceDisabled => "device_disabled",
            DropReason::L3Malformed => "l3_malformed",
            DropReason::Ipv4Checksum => "ipv4_checksum",
            DropReason::Ipv6ExtHeaders => "ipv6_ext_headers",
            DropReason::L4Truncated => "l4_truncated",
            DropReason::NoVip => "no_vip",
            DropReason::IcmpEcho => "icmp_echo",
            DropReason::IcmpUnsupported => "icmp_unsupported",
            DropReason::IcmpErrorInvalid => "icmp_error_invalid",
            DropReason::ProtocolNotAllowed => "protocol_not_allowed",
            DropReason::PortNotAllowed => "port_not_allowed",
            DropReason::NoTarget => "no_target",
            DropReason::MtuExceeded => "mtu_exceeded",
        }
    }

    /// Counter index.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// Reason for a counter index.
    pub fn from_index(i: usize) -> Option<Self> {
        Self::ALL.get(i).copied()
    }

    /// Reason for a name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.name() == name)
    }
}

impl std::fmt::Display for DropReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_are_dense_and_names_unique() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
            assert_eq!(DropReason::from_index(i), Some(*r));
            assert_eq!(DropReason::from_name(r.name()), Some(*r));
        }
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), DropReason::COUNT);
    }
}
