//! Defaulting applied to every loaded object, as IronCore's API server applies it on admission (issue 16), so an
//! object written in upstream's shape means the same as its seed-shaped equivalent:
//!
//! - `LoadBalancer.spec.ports[].protocol` unset: `TCP`;
//! - `LoadBalancer.spec.ipFamilies` empty: the families of `spec.ips` in order (a literal's family, an ephemeral
//!   source's `prefixTemplate.spec.ipFamily`); left empty (and rejected by validation) when one of them has none;
//! - `prefixTemplate.spec.ipFamily` unset, with as many `ipFamilies` as `ips`: `ipFamilies[i]`;
//! - `Network.spec.vni` unset: the `<id>` of `spec.providerID` (`ironcore-net://<namespace>/<name>/<id>/<uid>`).
//!
//! Values that cannot be defaulted are left as they are; validation reports them.

use crate::types::{IpFamily, LoadBalancer, Network, Object, Protocol};
use std::net::IpAddr;

/// Applies the defaults to `o`.
pub fn apply(o: &mut Object) {
    match o {
        Object::LoadBalancer(lb) => load_balancer(lb),
        Object::Network(n) => network(n),
        _ => {}
    }
}

fn load_balancer(lb: &mut LoadBalancer) {
    let s = &mut lb.spec;
    for p in &mut s.ports {
        p.protocol.get_or_insert(Protocol::Tcp);
    }
    if s.ip_families.is_empty() && !s.ips.is_empty() {
        let families: Option<Vec<IpFamily>> = s
            .ips
            .iter()
            .map(|src| match (&src.ip, src.template()) {
                (Some(ip), _) => ip.parse::<IpAddr>().ok().map(|ip| IpFamily::of(&ip)),
                (None, Some(t)) => t.ip_family.clone(),
                (None, None) => None,
            })
            .collect();
        if let Some(f) = families {
            s.ip_families = f;
        }
    }
    if s.ip_families.len() == s.ips.len() {
        for (src, fam) in s.ips.iter_mut().zip(&s.ip_families) {
            if let Some(e) = &mut src.ephemeral {
                e.prefix_template.spec.ip_family.get_or_insert(fam.clone());
            }
        }
    }
}

fn network(n: &mut Network) {
    if n.spec.vni.is_none() {
        if let Some(Ok(v)) = n.spec.provider_vni() {
            n.spec.vni = Some(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lb(text: &str) -> LoadBalancer {
        let mut o = Object::LoadBalancer(serde_norway::from_str(text).unwrap());
        apply(&mut o);
        match o {
            Object::LoadBalancer(lb) => lb,
            _ => unreachable!(),
        }
    }

    #[test]
    fn load_balancer_defaults() {
        let l = lb("spec:\n  ports: [{port: 80}, {protocol: UDP, port: 53}]\n  ips:\n  - value: 10.0.0.1\n  - ephemeral: {prefixTemplate: {spec: {ipFamily: IPv6, parentRef: {name: p}}}}\n");
        assert_eq!(l.spec.ports[0].protocol, Some(Protocol::Tcp));
        assert_eq!(l.spec.ports[1].protocol, Some(Protocol::Udp));
        assert_eq!(l.spec.ip_families, vec![IpFamily::IPv4, IpFamily::IPv6]);
        // An ephemeral source without a family: nothing to default from.
        let l = lb("spec:\n  ips:\n  - ephemeral: {prefixTemplate: {spec: {parentRef: {name: p}}}}\n");
        assert!(l.spec.ip_families.is_empty());
        // Written families are kept, and name the template's family.
        let l = lb("spec:\n  ipFamilies: [IPv6]\n  ips:\n  - ephemeral: {prefixTemplate: {spec: {parentRef: {name: p}}}}\n");
        assert_eq!(l.spec.ips[0].template().unwrap().ip_family, Some(IpFamily::IPv6));
    }

    #[test]
    fn network_vni_from_provider_id() {
        let mut o = Object::Network(
            serde_norway::from_str("spec: {providerID: 'ironcore-net://default/n/4711/0c1a'}").unwrap(),
        );
        apply(&mut o);
        let Object::Network(n) = o else { unreachable!() };
        assert_eq!(n.spec.vni, Some(4711));
        let n: Network =
            serde_norway::from_str("spec: {providerID: 'ironcore-net://default/n/x1/0c1a'}").unwrap();
        assert!(matches!(n.spec.provider_vni(), Some(Err(_))));
    }
}
