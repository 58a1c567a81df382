//! The host layout the reconciler tests share: port 0 public, the given network ports, port 3 underlay, underlay
//! source fd00:ffff::1, MTU 9000, hop limit 64.

use ironlb_hw::entry::PortKind;
use ironlb_runtime::reconcile::HostConfig;

/// Port 0 public, each `(port, vni)` a network port, port 3 underlay.
pub fn host_with_networks(networks: &[(u32, u32)]) -> HostConfig {
    let mut ports = vec![(0, PortKind::Public)];
    ports.extend(
        networks
            .iter()
            .map(|&(port, vni)| (port, PortKind::Network { vni })),
    );
    ports.push((3, PortKind::Underlay));
    HostConfig {
        ports,
        underlay_src: "fd00:ffff::1".parse().unwrap(),
        mtu: 9000,
        hop_limit: 64,
    }
}
