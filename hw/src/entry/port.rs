//! Port configuration register (docs/hw-spec.md §3.3): one u32 per port at `PORT_CFG + 4*port`.
//!
//! ```text
//! [31]    ENABLED
//! [29:28] KIND   0 public uplink (domain = DOMAIN_PUBLIC), 1 network (domain = VNI), 2 underlay (transmit only)
//! [23:0]  VNI    for KIND = network
//! ```

use crate::addr::{DOMAIN_PUBLIC, VNI_MAX};
use crate::error::DecodeError;

/// What a port is attached to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PortKind {
    /// The public uplink: ingress packets belong to the public domain.
    Public,
    /// A Network's VMs: ingress packets belong to the domain `vni`.
    Network {
        /// The Network's VNI (24 bits).
        vni: u32,
    },
    /// The underlay: encapsulated packets leave here; ingress is dropped `port_disabled`.
    Underlay,
}

/// A port's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortCfg {
    /// Port in use.
    pub enabled: bool,
    /// Attachment.
    pub kind: PortKind,
}

const ENABLED: u32 = 1 << 31;
const KIND_SHIFT: u32 = 28;

impl PortCfg {
    /// Register value.
    pub fn to_raw(&self) -> u32 {
        let (k, vni) = match self.kind {
            PortKind::Public => (0, 0),
            PortKind::Network { vni } => (1, vni & VNI_MAX),
            PortKind::Underlay => (2, 0),
        };
        (if self.enabled { ENABLED } else { 0 }) | (k << KIND_SHIFT) | vni
    }
    /// Decode a register value.
    pub fn from_raw(v: u32) -> Result<PortCfg, DecodeError> {
        let kind = match (v >> KIND_SHIFT) & 0b11 {
            0 => PortKind::Public,
            1 => PortKind::Network { vni: v & VNI_MAX },
            2 => PortKind::Underlay,
            _ => {
                return Err(DecodeError::Field {
                    entry: "port_cfg",
                    field: "kind",
                })
            }
        };
        if v & 0x4F00_0000 != 0 {
            return Err(DecodeError::Reserved { entry: "port_cfg" });
        }
        Ok(PortCfg {
            enabled: v & ENABLED != 0,
            kind,
        })
    }
    /// The ingress domain of an enabled ingress port.
    pub fn ingress_domain(&self) -> Option<u32> {
        match (self.enabled, self.kind) {
            (true, PortKind::Public) => Some(DOMAIN_PUBLIC),
            (true, PortKind::Network { vni }) => Some(vni),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_values() {
        let p = PortCfg {
            enabled: true,
            kind: PortKind::Network { vni: 0x00AB_CDEF },
        };
        assert_eq!(p.to_raw(), 0x90AB_CDEF);
        assert_eq!(PortCfg::from_raw(0x90AB_CDEF).unwrap(), p);
        assert_eq!(
            PortCfg::from_raw(0x8000_0000).unwrap().ingress_domain(),
            Some(DOMAIN_PUBLIC)
        );
        assert_eq!(PortCfg::from_raw(0xA000_0000).unwrap().ingress_domain(), None);
        assert_eq!(PortCfg::from_raw(0).unwrap().ingress_domain(), None);
        assert!(PortCfg::from_raw(0xB000_0000).is_err());
        assert!(PortCfg::from_raw(0x8100_0000).is_err());
    }
}
