//! `validate_parsed`: the typed values validation hands to the controller, for valid objects only.

use ironlb_api::load::load_str;
use ironlb_api::types::IpFamily;
use ironlb_api::validate::{validate_parsed, L4Protocol, LbParsed, PortRange, VipDomain};
use ironlb_api::ObjectKey;
use std::net::{IpAddr, Ipv6Addr};

const OBJECTS: &str = "\
apiVersion: networking.ironcore.dev/v1alpha1
kind: Network
metadata: {name: net-a}
spec: {vni: 100}
---
apiVersion: ipam.ironcore.dev/v1alpha1
kind: Prefix
metadata: {name: pool}
spec: {prefix: \"fd10::/64\"}
---
apiVersion: networking.ironcore.dev/v1alpha1
kind: NetworkInterface
metadata: {name: nic}
spec: {networkRef: {name: net-a}}
status: {state: Available, underlayAddress: \"fd00::1\"}
---
apiVersion: networking.ironcore.dev/v1alpha1
kind: NetworkInterface
metadata: {name: bare}
spec: {networkRef: {name: net-a}}
status: {state: Available}
---
apiVersion: networking.ironcore.dev/v1alpha1
kind: LoadBalancer
metadata: {name: lb}
spec:
  type: Internal
  networkRef: {name: net-a}
  ipFamilies: [IPv4, IPv6]
  ips: [{ip: 10.0.0.1}, {ephemeral: {prefixTemplate: {spec: {prefixRef: {name: pool}}}}}]
  ports: [{protocol: udp, port: 53, portEnd: 54}, {protocol: TCP, port: 443}, {protocol: TCP, port: 80}]
status:
  ips: [10.0.0.1, \"fd10::7\"]
---
apiVersion: networking.ironcore.dev/v1alpha1
kind: LoadBalancer
metadata: {name: pub}
spec:
  type: Public
  networkRef: {name: net-a}
  ipFamilies: [IPv6]
  ports: [{protocol: SCTP, port: 9}]
---
apiVersion: networking.ironcore.dev/v1alpha1
kind: LoadBalancer
metadata: {name: bad}
spec:
  type: Public
  networkRef: {name: net-a}
  ipFamilies: [IPv4]
  ports: [{protocol: TCP, port: 0}]
";

fn key(name: &str) -> ObjectKey {
    ObjectKey::new("default", name)
}

#[test]
fn valid_objects_come_back_parsed() {
    let (objects, errors) = load_str("t.yaml", OBJECTS);
    assert!(errors.is_empty(), "{errors:?}");
    let refs: Vec<_> = objects.iter().collect();
    let v = validate_parsed(&refs);
    assert_eq!(v.valid, [true, true, true, true, true, true, false]);
    assert_eq!(v.errors.len(), 1, "{:?}", v.errors);
    let p = &v.parsed;

    assert_eq!(p.networks, [(key("net-a"), 100)].into());
    assert_eq!(p.prefixes, [(key("pool"), "fd10::/64".parse().unwrap())].into());
    let underlay: Ipv6Addr = "fd00::1".parse().unwrap();
    assert_eq!(
        p.underlays,
        [(key("nic"), underlay)].into(),
        "an interface without one has no entry"
    );

    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let range = |protocol, first, last| PortRange {
        protocol,
        first,
        last,
    };
    assert_eq!(
        p.load_balancers[&key("lb")],
        LbParsed {
            domain: VipDomain::Vni(100),
            // ips[i] of family ipFamilies[i], as upstream pairs them.
            families: vec![IpFamily::IPv4, IpFamily::IPv6],
            literal_ips: vec![ip("10.0.0.1")],
            prefixes: vec![key("pool")],
            status_ips: vec![ip("10.0.0.1"), ip("fd10::7")],
            filled_ips: vec![],
            // Sorted by protocol, then port.
            ports: vec![
                range(L4Protocol::Tcp, 80, 80),
                range(L4Protocol::Tcp, 443, 443),
                range(L4Protocol::Udp, 53, 54),
            ],
        }
    );
    let public = &p.load_balancers[&key("pub")];
    assert_eq!(public.domain, VipDomain::Public);
    assert_eq!(public.ports, [range(L4Protocol::Sctp, 9, 9)]);
    assert!(
        !p.load_balancers.contains_key(&key("bad")),
        "an invalid object has no parsed entry"
    );
}

#[test]
fn a_second_definition_does_not_replace_the_first() {
    let twice = format!(
        "{OBJECTS}---
apiVersion: networking.ironcore.dev/v1alpha1
kind: Network
metadata: {{name: net-a}}
spec: {{vni: 200}}
"
    );
    let (objects, _) = load_str("t.yaml", &twice);
    let refs: Vec<_> = objects.iter().collect();
    let v = validate_parsed(&refs);
    assert!(!v.valid.last().unwrap());
    assert_eq!(v.parsed.networks[&key("net-a")], 100);
}
