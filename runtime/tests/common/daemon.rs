//! The in-process daemon configuration the daemon tests share: the small in-process model, the default public pool
//! and ports, metrics on a loopback port the system picks, a 2 ms debounce.

use ironlb_runtime::daemon::{DaemonConfig, DEFAULT_PORTS, DEFAULT_PUBLIC_POOLS};
use ironlb_runtime::reconcile::HostConfig;
use std::path::Path;
use std::time::Duration;

/// A daemon reading `manifests`, keeping its state in `state`, on a small in-process model.
pub fn test_config(manifests: &Path, state: &Path) -> DaemonConfig {
    DaemonConfig {
        manifests: manifests.to_path_buf(),
        state_dir: state.to_path_buf(),
        backend: ironlb_runtime::backend::BackendSpec::Inproc,
        device_config: ironlb_sim::DeviceConfig::small(),
        pools: ironlb_runtime::alloc::Pools::parse(&[DEFAULT_PUBLIC_POOLS.to_string()]).unwrap(),
        host: HostConfig {
            ports: DEFAULT_PORTS
                .split(',')
                .map(|p| HostConfig::parse_port(p).unwrap())
                .collect(),
            underlay_src: "fd00:ffff::1".parse().unwrap(),
            mtu: 9000,
            hop_limit: 64,
        },
        socket: None,
        socket_group: None,
        metrics: Some("127.0.0.1:0".parse().unwrap()),
        debounce: Duration::from_millis(2),
        release_grace: ironlb_runtime::reconcile::RELEASE_GRACE,
        drain_timeout: ironlb_runtime::control::drain::DRAIN_TIMEOUT,
        remove_unclaimed: false,
        load: Default::default(),
    }
}
