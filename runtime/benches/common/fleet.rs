//! The fleet both runtime benches program (sync.rs from a manifest directory, cluster.rs through etcd): one
//! Network (VNI 100), `GROUPS` groups of NetworkInterfaces plus the group `SOLO`, and public dual-stack
//! LoadBalancers (TCP 80, UDP 1024–2048), LoadBalancer i selecting group i mod `GROUPS`, except LoadBalancer 0,
//! which alone selects `SOLO`; the host's ports; percentiles.
#![allow(dead_code)]

use ironlb_hw::entry::PortKind;
use ironlb_runtime::reconcile::HostConfig;
use std::net::Ipv6Addr;
use std::time::Duration;

/// Groups of NetworkInterfaces that LoadBalancers share.
pub const GROUPS: usize = 64;
/// The group of NetworkInterfaces only load balancer 0 selects.
pub const SOLO: usize = GROUPS;

/// The Network.
pub const NETWORK: &str =
    "apiVersion: networking.ironcore.dev/v1alpha1\nkind: Network\nmetadata: {name: net}\nspec: {vni: 100}\n";

/// The underlay address of NetworkInterface `n` of group `g`.
pub fn underlay(g: usize, n: usize) -> Ipv6Addr {
    format!("fd00:{g:x}::{n:x}").parse().unwrap()
}

/// NetworkInterface `n` of group `g`, as a YAML document.
pub fn nic(g: usize, n: usize, available: bool) -> String {
    let state = if available { "Available" } else { "Pending" };
    format!(
        "---
apiVersion: networking.ironcore.dev/v1alpha1
kind: NetworkInterface
metadata: {{name: nic-{g}-{n}, uid: u-{g}-{n}, labels: {{group: g{g}}}}}
spec: {{networkRef: {{name: net}}}}
status: {{state: {state}, underlayAddress: \"{}\"}}
",
        underlay(g, n)
    )
}

/// Group `g`'s `targets` NetworkInterfaces; `down` names one that is not Available.
pub fn nic_group(g: usize, targets: usize, down: Option<usize>) -> String {
    (0..targets).map(|n| nic(g, n, Some(n) != down)).collect()
}

/// LoadBalancer `i`, as a YAML document.
pub fn lb(i: usize) -> String {
    format!(
        "---
apiVersion: networking.ironcore.dev/v1alpha1
kind: LoadBalancer
metadata: {{name: lb-{i}}}
spec:
  type: Public
  ipFamilies: [IPv4, IPv6]
  networkRef: {{name: net}}
  networkInterfaceSelector: {{matchLabels: {{group: g{}}}}}
  ports: [{{protocol: TCP, port: 80}}, {{protocol: UDP, port: 1024, portEnd: 2048}}]
",
        if i == 0 { SOLO } else { i % GROUPS }
    )
}

/// Port 0 public, port 1 the Network's, port 3 the underlay.
pub fn host() -> HostConfig {
    HostConfig {
        ports: vec![
            (0, PortKind::Public),
            (1, PortKind::Network { vni: 100 }),
            (3, PortKind::Underlay),
        ],
        underlay_src: "fd00:ffff::1".parse().unwrap(),
        mtu: 9000,
        hop_limit: 64,
    }
}

/// The `p` quantile (0..=1) of `v` (sorted here).
pub fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// The bench's numeric flags: the value of each `--NAME N` on the command line whose name is in `names` (other
/// words, such as cargo's `--bench`, are passed over); panics naming a flag not followed by a number.
pub fn number_flags(names: &[&str]) -> std::collections::BTreeMap<String, u64> {
    let v: Vec<String> = std::env::args().collect();
    let mut flags = std::collections::BTreeMap::new();
    let mut i = 1;
    while i < v.len() {
        if !names.contains(&v[i].as_str()) {
            i += 1;
            continue;
        }
        let n = v.get(i + 1).and_then(|s| s.parse().ok());
        flags.insert(
            v[i].clone(),
            n.unwrap_or_else(|| panic!("{} takes a number", v[i])),
        );
        i += 2;
    }
    flags
}
