//! Issue 16, targets of objects in upstream's shape: underlay addresses from `NodeUnderlay` (ironlb's kind) for
//! interfaces whose `spec.providerID` names their node, and upstream `LoadBalancerRouting`s
//! (`destinations[] {ip, targetRef}`), which ironlb follows instead of the selector. Each case is replayed
//! through the model against its seed-shaped equivalent where one exists.

use ironlb_runtime::alloc::Pools;
use ironlb_runtime::api::ObjectKey;
use ironlb_runtime::cli::build_packet;
use ironlb_runtime::controller::desired;
use ironlb_runtime::daemon::{program_dir, Programmed, DEFAULT_PUBLIC_POOLS};
use ironlb_runtime::manifest::{load_str, LoadOptions};
use ironlb_runtime::validate::validate;
use std::collections::BTreeMap;
use std::net::Ipv6Addr;

#[path = "common/host.rs"]
mod common_host;

const API: &str = "apiVersion: networking.ironcore.dev/v1alpha1";

/// Network `n` (VNI 100, uid `nu`) and an internal load balancer `lb` (VIP 10.0.0.1, TCP 80) selecting `app: web`.
fn base() -> String {
    format!(
        "{API}\nkind: Network\nmetadata: {{name: n, uid: nu}}\nspec: {{providerID: 'ironcore-net://default/n/100/nu'}}\n---\n{API}\nkind: LoadBalancer\nmetadata: {{name: lb}}\nspec:\n  type: Internal\n  networkRef: {{name: n}}\n  ips: [{{value: 10.0.0.1}}]\n  ports: [{{port: 80}}]\n  networkInterfaceSelector: {{matchLabels: {{app: web}}}}\n"
    )
}

/// An Available interface `name` of `n` labelled `app: web` with `ips`; served by `node` (upstream's shape:
/// `spec.providerID`) or with `underlay` (the seeds' shape: `status.underlayAddress`).
fn nic(name: &str, ips: &[&str], node: Option<&str>, underlay: Option<&str>) -> String {
    let spec_ips: String = ips.iter().map(|ip| format!("{{value: '{ip}'}}, ")).collect();
    let status_ips: String = ips.iter().map(|ip| format!("'{ip}', ")).collect();
    let pid = node.map_or(String::new(), |n| {
        format!("  providerID: 'ironcore-net://default/{name}/{n}/uid-{name}'\n")
    });
    let ul = underlay.map_or(String::new(), |u| format!("  underlayAddress: '{u}'\n"));
    format!("---\n{API}\nkind: NetworkInterface\nmetadata: {{name: {name}, uid: uid-{name}, labels: {{app: web}}}}\nspec:\n  networkRef: {{name: n}}\n  ips: [{spec_ips}]\n{pid}status:\n  state: Available\n  ips: [{status_ips}]\n{ul}")
}

fn node(name: &str, addr: &str) -> String {
    format!("---\napiVersion: ironlb.dev/v1alpha1\nkind: NodeUnderlay\nmetadata: {{name: {name}}}\nspec: {{underlayAddress: '{addr}'}}\n")
}

/// An upstream routing of `lb`: one destination per `(interface, ip)`; an empty interface name: by IP only.
fn up_routing(dests: &[(&str, &str)]) -> String {
    let d: String = dests
        .iter()
        .map(|(n, ip)| match *n {
            "" => format!("- ip: '{ip}'\n"),
            n => format!("- ip: '{ip}'\n  targetRef: {{name: {n}, uid: uid-{n}, providerID: 'ironcore-net://default/{n}/node-{n}/uid-{n}'}}\n"),
        })
        .collect();
    format!("---\n{API}\nkind: LoadBalancerRouting\nmetadata: {{name: lb}}\nnetworkRef: {{name: n, uid: nu}}\ndestinations:\n{d}")
}

fn seed_routing(names: &[&str]) -> String {
    let d: String = names
        .iter()
        .map(|n| format!("- {{name: {n}, uid: uid-{n}}}\n"))
        .collect();
    format!("---\n{API}\nkind: LoadBalancerRouting\nmetadata: {{name: lb}}\nnetworkRef: {{name: n}}\ndestinations:\n{d}")
}

/// Load and validation errors.
fn errors(text: &str) -> Vec<String> {
    let (objects, errors) = load_str("t.yaml", text);
    let (_, invalid) = validate(&objects);
    errors
        .iter()
        .map(ToString::to_string)
        .chain(invalid.iter().map(ToString::to_string))
        .collect()
}

/// The targets of `lb` and the controller's issues.
fn targets(text: &str) -> (Vec<Ipv6Addr>, Vec<String>) {
    let (objects, errs) = load_str("t.yaml", text);
    assert!(errs.is_empty(), "{errs:?}");
    let key = ObjectKey::new("default", "lb");
    let d = desired(&objects, &BTreeMap::from([(key.clone(), 1)]), &BTreeMap::new());
    let spec = d.specs.iter().find(|(k, _)| *k == key).expect("a spec for lb");
    let issues = d.issues.iter().map(|(_, i)| i.to_string()).collect();
    (spec.1.targets.iter().copied().collect(), issues)
}

fn a(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

fn programmed(text: &str) -> Programmed {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("m.yaml"), text).unwrap();
    let pools = Pools::parse(
        &DEFAULT_PUBLIC_POOLS
            .split(',')
            .map(str::to_string)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let host = common_host::host_with_networks(&[(1, 100)]);
    let p = program_dir(dir.path(), pools, &host, LoadOptions::default()).unwrap();
    assert!(p.load_errors.is_empty(), "{:?}", p.load_errors);
    assert!(p.report.errors.is_empty(), "{:?}", p.report);
    assert!(
        p.rec.validation_errors().is_empty(),
        "{:?}",
        p.rec.validation_errors()
    );
    p
}

/// The same packets (TCP from the network's port to the VIP, many flows) through both get the same verdicts,
/// byte for byte; returns how many were forwarded.
fn replay_alike(seed: &str, upstream: &str) -> usize {
    let (seed, up) = (programmed(seed), programmed(upstream));
    let mut forwarded = 0;
    for i in 0..300u32 {
        let spec = format!(
            "tcp 10.0.1.{}:{} -> 10.0.0.1:{}",
            1 + i % 200,
            2000 + i,
            79 + i % 3
        );
        let bytes = build_packet(&spec).unwrap();
        let (want, _) = seed.model.lock().unwrap().dry_run(1, &bytes);
        let (got, _) = up.model.lock().unwrap().dry_run(1, &bytes);
        assert_eq!(got, want, "{spec}");
        forwarded += matches!(want, ironlb_sim::Verdict::Forward { .. }) as usize;
    }
    forwarded
}

/// An upstream interface has no underlay address: the NodeUnderlay of the node in its providerID gives it, and
/// the load balancer forwards exactly as with the seeds' `status.underlayAddress`.
#[test]
fn node_underlay_gives_the_address_of_the_node_in_the_provider_id() {
    let seed = format!(
        "{}{}{}",
        base(),
        nic("w1", &["10.0.0.11"], None, Some("fd00:1::1")),
        nic("w2", &["10.0.0.12"], None, Some("fd00:1::2"))
    );
    let up = format!(
        "{}{}{}{}{}",
        base(),
        nic("w1", &["10.0.0.11"], Some("node-w1"), None),
        nic("w2", &["10.0.0.12"], Some("node-w2"), None),
        node("node-w1", "fd00:1::1"),
        node("node-w2", "fd00:1::2"),
    );
    assert_eq!(errors(&up), Vec::<String>::new());
    assert_eq!(targets(&up), (vec![a("fd00:1::1"), a("fd00:1::2")], vec![]));
    // About half the packets fall in the port allow-list (79, 80, 81 -> only 80).
    assert_eq!(replay_alike(&seed, &up), 100);

    // status.underlayAddress wins over the node's address.
    let both = format!(
        "{}{}{}",
        base(),
        nic("w1", &["10.0.0.11"], Some("node-w1"), Some("fd00:9::1")),
        node("node-w1", "fd00:1::1"),
    );
    assert_eq!(targets(&both).0, vec![a("fd00:9::1")]);

    // A node without a NodeUnderlay: the interface is valid and skipped, and the issue names the node.
    let missing = format!("{}{}", base(), nic("w1", &["10.0.0.11"], Some("node-w1"), None));
    assert_eq!(errors(&missing), Vec::<String>::new());
    let (t, issues) = targets(&missing);
    assert!(t.is_empty());
    assert_eq!(
        issues,
        vec!["LoadBalancer default/lb: destination NetworkInterface default/w1: no underlay address (no status.underlayAddress, no valid NodeUnderlay node-w1 for the node in spec.providerID), skipped"]
    );
}

#[test]
fn bad_node_underlays_and_provider_ids_are_errors_naming_the_field() {
    let mut text = format!(
        "{}{}{}{}{}{}",
        base(),
        nic("w1", &["10.0.0.11"], Some("Node_1"), None),
        "---\napiVersion: ironlb.dev/v1alpha1\nkind: NodeUnderlay\nmetadata: {name: a, namespace: default}\nspec: {underlayAddress: 'fd00::a'}\n",
        node("b", "10.1.1.1"),
        node("c", "::1"),
        "---\napiVersion: ironlb.dev/v1alpha1\nkind: NodeUnderlay\nmetadata: {name: d}\nspec: {underlayAdress: 'fd00::d'}\n",
    );
    text += &nic("w2", &["10.0.0.12"], None, None).replace(
        "  networkRef: {name: n}\n",
        "  networkRef: {name: n}\n  providerID: 'ironcore-net://default/w2/uid-w2'\n",
    );
    assert_eq!(
        errors(&text),
        vec![
            "t.yaml: document 7, line 45: NodeUnderlay default/d: spec.underlayAdress: unknown field (did you mean underlayAddress?)",
            "t.yaml: NodeUnderlay default/a: metadata.namespace: not allowed: a NodeUnderlay is cluster-scoped (named after the node)",
            "t.yaml: NodeUnderlay default/b: spec.underlayAddress: 10.1.1.1 is not an IPv6 address",
            "t.yaml: NodeUnderlay default/c: spec.underlayAddress: ::1 is loopback: not usable as an underlay address",
            "t.yaml: NetworkInterface default/w1: spec.providerID: node: \"Node_1\" is not a DNS-1123 subdomain (lowercase letters, digits, '-' and '.', starting and ending with a letter or digit)",
            "t.yaml: NetworkInterface default/w2: spec.providerID: \"ironcore-net://default/w2/uid-w2\" is not ironcore-net://<namespace>/<name>/<node>/<uid>",
        ]
    );
}

/// An upstream routing names one destination per interface IP (a dual-stack interface twice), by targetRef or by
/// IP alone; it is followed, and forwards as the seeds' routing of the same interfaces does.
#[test]
fn upstream_routing_is_followed_like_the_seeds_routing() {
    let nics = format!(
        "{}{}{}{}{}{}",
        nic("w1", &["10.0.0.11", "fd10::11"], Some("node-w1"), None),
        nic("w2", &["10.0.0.12"], Some("node-w2"), None),
        nic("w3", &["10.0.0.13"], Some("node-w3"), None),
        node("node-w1", "fd00:1::1"),
        node("node-w2", "fd00:1::2"),
        node("node-w3", "fd00:1::3"),
    );
    // The routing the cluster decided names w1 (twice) and w3 (by IP only), not w2, although the selector
    // matches all three: the routing wins.
    let up = format!(
        "{}{nics}{}",
        base(),
        up_routing(&[("w1", "10.0.0.11"), ("w1", "fd10::11"), ("", "10.0.0.13")])
    );
    assert_eq!(errors(&up), Vec::<String>::new());
    assert_eq!(targets(&up), (vec![a("fd00:1::1"), a("fd00:1::3")], vec![]));
    let seed = format!("{}{nics}{}", base(), seed_routing(&["w1", "w3"]));
    assert_eq!(targets(&seed).0, vec![a("fd00:1::1"), a("fd00:1::3")]);
    assert_eq!(replay_alike(&seed, &up), 100);
    // Without the routing, the selector decides.
    let selected = format!("{}{nics}", base());
    assert_eq!(targets(&selected).0.len(), 3);
}

#[test]
fn upstream_routing_errors_name_the_destination_field() {
    let nics = format!(
        "{}{}",
        nic("w1", &["10.0.0.11"], Some("node-w1"), None),
        nic("w2", &["10.0.0.12"], Some("node-w2"), None),
    );
    let routing = up_routing(&[
        ("w1", "10.0.0.11"),
        ("w1", "10.0.0.11"),
        ("w9", "10.0.0.19"),
        ("w2", "10.0.0.11"),
        ("", "10.0.0.99"),
        ("", "not-an-ip"),
    ])
    .replace("uid: nu}", "uid: other}");
    let text = format!("{}{nics}{routing}---\n{API}\nkind: LoadBalancerRouting\nmetadata: {{name: lb2}}\nnetworkRef: {{name: n}}\ndestinations:\n- {{name: w1, targetRef: {{name: w2}}}}\n- ip: 10.0.0.12\n  targetRef: {{name: w2, uid: wrong, providerID: 'ironcore-net://default/w2/elsewhere/uid-w2'}}\n- {{}}\n", base());
    assert_eq!(
        errors(&text),
        vec![
            "t.yaml: LoadBalancerRouting default/lb: networkRef.uid: other does not match Network uid nu",
            "t.yaml: LoadBalancerRouting default/lb: destinations[1].targetRef.name: duplicate destination w1 10.0.0.11",
            "t.yaml: LoadBalancerRouting default/lb: destinations[3].ip: 10.0.0.11 is an address of NetworkInterface default/w1, not of NetworkInterface default/w2",
            "t.yaml: LoadBalancerRouting default/lb: destinations[5].ip: invalid IP address \"not-an-ip\"",
            "t.yaml: LoadBalancerRouting default/lb2: metadata.name: no LoadBalancer default/lb2",
            "t.yaml: LoadBalancerRouting default/lb2: destinations[0].targetRef.name: w2 differs from name w1",
            "t.yaml: LoadBalancerRouting default/lb2: destinations[1].targetRef.uid: wrong does not match NetworkInterface uid uid-w2",
            "t.yaml: LoadBalancerRouting default/lb2: destinations[1].targetRef.providerID: ironcore-net://default/w2/elsewhere/uid-w2 does not match NetworkInterface default/w2 spec.providerID ironcore-net://default/w2/node-w2/uid-w2",
            "t.yaml: LoadBalancerRouting default/lb2: destinations[2].name: must not be empty (the seeds' name, or upstream's targetRef.name or ip)",
        ]
    );
}

/// A routing that is given but invalid: the load balancer gets no targets, with an issue, never the selector's
/// choice instead (the cluster decided; ironlb does not guess). A destination whose interface is gone (a routing
/// lags its interfaces) is only skipped.
#[test]
fn an_invalid_routing_gives_no_targets_rather_than_the_selectors() {
    let text = format!(
        "{}{}{}{}",
        base(),
        nic("w1", &["10.0.0.11"], Some("node-w1"), None),
        node("node-w1", "fd00:1::1"),
        up_routing(&[("w1", "10.0.0.11")]),
    );
    let (t, issues) = targets(&text.replace("uid: uid-w1, providerID", "uid: stale, providerID"));
    assert!(t.is_empty());
    assert_eq!(
        issues,
        vec!["LoadBalancer default/lb: LoadBalancerRouting default/lb is invalid: no targets until it is fixed"]
    );
    let gone = text.replace(
        "destinations:\n",
        "destinations:\n- ip: 10.0.0.99\n- {ip: 10.0.0.19, targetRef: {name: w9}}\n",
    );
    assert_eq!(errors(&gone), Vec::<String>::new());
    let (t, issues) = targets(&gone);
    assert_eq!(t, vec![a("fd00:1::1")]);
    assert_eq!(
        issues,
        vec![
            "LoadBalancer default/lb: destination 10.0.0.99: no NetworkInterface of the routing's network has this address, skipped",
            "LoadBalancer default/lb: destination NetworkInterface default/w9: not found, skipped",
        ]
    );
    let p = programmed(&text);
    let st = &p.rec.status()[&ObjectKey::new("default", "lb")];
    assert_eq!(st.programmed_targets, vec![a("fd00:1::1")]);
    assert!(
        matches!(&st.destinations[..], [d] if d.interface_name() == Some("w1")),
        "{:?}",
        st.destinations
    );
}
