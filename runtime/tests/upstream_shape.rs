//! Issue 16: objects in upstream IronCore's shape (as a cluster exports them) load, and mean the same as their
//! seed-shaped equivalents; no unknown field is ignored silently.

use ironlb_runtime::alloc::Pools;
use ironlb_runtime::cli::build_packet;
use ironlb_runtime::daemon::{program_dir, DEFAULT_PUBLIC_POOLS};
use ironlb_runtime::manifest::{load_str, load_str_with, LoadOptions};
use ironlb_runtime::reconcile::HostConfig;
use ironlb_runtime::validate::validate;
use ironlb_runtime::{api, example};
use std::path::Path;

fn pools() -> Pools {
    Pools::parse(
        &DEFAULT_PUBLIC_POOLS
            .split(',')
            .map(str::to_string)
            .collect::<Vec<_>>(),
    )
    .unwrap()
}

#[path = "common/host.rs"]
mod common_host;

fn host() -> HostConfig {
    common_host::host_with_networks(&[(1, 100), (2, 200)])
}

/// The same packets through the seed-shaped examples and their upstream-shaped export give the same verdicts,
/// byte for byte.
#[test]
fn seed_and_upstream_examples_forward_alike() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let seed = program_dir(&root, pools(), &host(), LoadOptions::default()).unwrap();
    let up = program_dir(&root.join("upstream"), pools(), &host(), LoadOptions::default()).unwrap();
    for p in [&seed, &up] {
        assert!(p.load_errors.is_empty(), "{:?}", p.load_errors);
        assert!(p.report.errors.is_empty(), "{:?}", p.report);
        assert!(p.rec.validation_errors().is_empty());
    }
    let mut packets: Vec<(u32, Vec<u8>)> = example::packets()
        .into_iter()
        .map(|p| (p.port, p.bytes))
        .collect();
    for i in 0..600u32 {
        let src = format!("198.51.{}.{}", i / 250, i % 250 + 1);
        let spec = match i % 4 {
            0 => format!("tcp {src}:{} -> 203.0.113.10:80", 1024 + i),
            1 => format!("udp {src}:{} -> 203.0.113.10:{}", 1024 + i, 1000 + i % 1100),
            2 => format!("tcp {src}:{} -> 203.0.113.10:{}", 1024 + i, 1020 + i % 40),
            _ => format!("tcp [2001:db8::{i:x}]:{} -> [2001:db8:ff::10]:80", 1024 + i),
        };
        packets.push((0, build_packet(&spec).unwrap()));
        let spec = format!(
            "tcp 10.0.0.{}:{} -> 10.0.0.1:{}",
            100 + i % 100,
            2000 + i,
            8079 + i % 3
        );
        packets.push((1, build_packet(&spec).unwrap()));
    }
    let mut forwarded = 0;
    for (port, bytes) in &packets {
        let (want, _) = seed.model.lock().unwrap().dry_run(*port, bytes);
        let (got, _) = up.model.lock().unwrap().dry_run(*port, bytes);
        assert_eq!(got, want, "port {port}, packet {bytes:02x?}");
        forwarded += matches!(want, ironlb_sim::Verdict::Forward { .. }) as usize;
    }
    assert!(forwarded > 400, "only {forwarded} of {} forwarded", packets.len());
}

const NET: &str = "apiVersion: networking.ironcore.dev/v1alpha1\nkind: Network\nmetadata: {name: n, uid: u1}\nspec: {providerID: 'ironcore-net://default/n/4711/u1'}\n";

fn lb(spec: &str) -> String {
    format!("{NET}---\napiVersion: networking.ironcore.dev/v1alpha1\nkind: LoadBalancer\nmetadata: {{name: lb}}\nspec:\n  networkRef: {{name: n}}\n{spec}")
}

fn loaded(text: &str) -> (Vec<String>, Vec<(std::path::PathBuf, api::Object)>) {
    let (objects, errors) = load_str("t.yaml", text);
    let (valid, invalid) = validate(&objects);
    let mut all: Vec<String> = errors.iter().map(ToString::to_string).collect();
    all.extend(invalid.iter().map(ToString::to_string));
    (all, valid)
}

fn the_lb(objects: &[(std::path::PathBuf, api::Object)]) -> api::LoadBalancer {
    objects
        .iter()
        .find_map(|(_, o)| match o {
            api::Object::LoadBalancer(l) => Some(l.clone()),
            _ => None,
        })
        .expect("a valid LoadBalancer")
}

#[test]
fn ports_without_protocol_are_tcp_and_end_port_is_a_range() {
    let (errors, objects) = loaded(&lb("  type: Public\n  ipFamilies: [IPv4]\n  ports:\n  - {port: 80}\n  - {protocol: UDP, port: 1000, endPort: 2000}\n"));
    assert_eq!(errors, Vec::<String>::new());
    let l = the_lb(&objects);
    assert_eq!(l.spec.ports[0].protocol, Some(api::Protocol::Tcp));
    assert_eq!(l.spec.ports[1].end(), 2000);
    let (errors, _) = loaded(&lb("  type: Public\n  ipFamilies: [IPv4]\n  ports:\n  - {port: 1000, endPort: 20, portEnd: 20}\n  - {port: 3000, endPort: 3001, portEnd: 3002}\n"));
    assert_eq!(
        errors,
        vec![
            "t.yaml: LoadBalancer default/lb: spec.ports[0].portEnd: 20 is less than port 1000",
            "t.yaml: LoadBalancer default/lb: spec.ports[1].endPort: 3001 differs from portEnd 3002",
        ]
    );
}

#[test]
fn network_vni_comes_from_the_provider_id() {
    let (errors, objects) = loaded(NET);
    assert_eq!(errors, Vec::<String>::new());
    let api::Object::Network(n) = &objects[0].1 else {
        panic!()
    };
    assert_eq!(n.spec.vni, Some(4711));
    let (errors, _) = loaded("apiVersion: networking.ironcore.dev/v1alpha1\nkind: Network\nmetadata: {name: a}\nspec: {providerID: 'ironcore-net://default/a/x/u'}\n---\napiVersion: networking.ironcore.dev/v1alpha1\nkind: Network\nmetadata: {name: b}\nspec: {vni: 5, providerID: 'ironcore-net://default/b/6/u'}\n");
    assert_eq!(
        errors,
        vec![
            "t.yaml: Network default/a: spec.providerID: \"ironcore-net://default/a/x/u\" is not ironcore-net://<namespace>/<name>/<id>/<uid> with a decimal <id>",
            "t.yaml: Network default/b: spec.vni: 5 differs from the VNI 6 in spec.providerID",
        ]
    );
}

const V6: &str = "---\napiVersion: ipam.ironcore.dev/v1alpha1\nkind: Prefix\nmetadata: {name: p6}\nspec: {ipFamily: IPv6, prefix: 'fd10::/64'}\nstatus: {phase: Allocated}\n";

#[test]
fn ip_families_default_from_ips_and_pair_by_position() {
    let (errors, objects) = loaded(&format!("{}{V6}", lb("  type: Internal\n  ips:\n  - value: 10.0.0.1\n  - ephemeral: {prefixTemplate: {spec: {ipFamily: IPv6, parentRef: {name: p6}}}}\n")));
    assert_eq!(errors, Vec::<String>::new());
    assert_eq!(
        the_lb(&objects).spec.ip_families,
        vec![api::IpFamily::IPv4, api::IpFamily::IPv6]
    );
    // Two IPv4 VIPs on an [IPv4] LoadBalancer: the cluster refuses it, so does ironlb.
    let (errors, _) = loaded(&lb(
        "  type: Internal\n  ipFamilies: [IPv4]\n  ips: [{value: 10.0.0.1}, {value: 10.0.0.2}]\n",
    ));
    assert_eq!(
        errors,
        vec!["t.yaml: LoadBalancer default/lb: spec.ips[1]: 2 IPs for 1 ipFamilies: one IP per family, ips[i] of family ipFamilies[i]"]
    );
    // The template's family and length are checked against the parent.
    let (errors, _) = loaded(&format!("{}{V6}", lb("  type: Internal\n  ips:\n  - ephemeral: {prefixTemplate: {spec: {ipFamily: IPv4, prefixLength: 64, parentRef: {name: p6}}}}\n")));
    assert_eq!(
        errors,
        vec![
            "t.yaml: LoadBalancer default/lb: spec.ips[0].ephemeral.prefixTemplate.spec.ipFamily: IPv4 does not match the parent Prefix (IPv6)",
            "t.yaml: LoadBalancer default/lb: spec.ips[0].ephemeral.prefixTemplate.spec.prefixLength: 64: only single addresses (/128 for IPv6) are supported",
            "t.yaml: LoadBalancer default/lb: spec.ips[0]: is IPv6, but ipFamilies[0] is IPv4 (ips[i] must be of family ipFamilies[i])",
        ]
    );
}

#[test]
fn unknown_fields_fail_closed_with_hints_and_lenient_warns() {
    let text = lb("  type: Public\n  ipFamilies: [IPv4]\n  prots: []\n  ports:\n  - {port: 80, endport: 90}\n  - {protocol: UDP, port: 53, portend: 54}\n  networkInterfaceSelector:\n    matchLabel: {app: web}\n");
    let (objects, errors) = load_str("t.yaml", &text);
    assert_eq!(objects.len(), 1, "the Network still loads");
    let got: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        got,
        vec![
            "t.yaml: document 2, line 13: LoadBalancer default/lb: spec.prots: unknown field (did you mean ports?)",
            "t.yaml: document 2, line 15: LoadBalancer default/lb: spec.ports[0].endport: unknown field (did you mean endPort?)",
            "t.yaml: document 2, line 16: LoadBalancer default/lb: spec.ports[1].portend: unknown field (did you mean portEnd?)",
            "t.yaml: document 2, line 18: LoadBalancer default/lb: spec.networkInterfaceSelector.matchLabel: unknown field (did you mean matchLabels?)",
        ]
    );
    assert_eq!(
        errors[3].field.as_deref(),
        Some("spec.networkInterfaceSelector.matchLabel")
    );
    let r = load_str_with("t.yaml", &text, LoadOptions::LENIENT);
    assert_eq!(r.objects.len(), 2);
    assert!(r.errors.is_empty());
    assert_eq!(r.warnings.len(), 4);
}

#[test]
fn kubectl_list_exports_load_with_their_metadata() {
    let text = "apiVersion: v1\nkind: List\nmetadata: {resourceVersion: ''}\nitems:\n- apiVersion: networking.ironcore.dev/v1alpha1\n  kind: Network\n  metadata:\n    name: n\n    resourceVersion: '7'\n    creationTimestamp: '2026-01-01T00:00:00Z'\n    ownerReferences: [{apiVersion: v1, kind: X, name: x, uid: y}]\n    managedFields: [{manager: m, fieldsV1: {f:spec: {}}}]\n  spec: {providerID: 'ironcore-net://default/n/7/u'}\n  status: {state: Available}\n- apiVersion: networking.ironcore.dev/v1alpha1\n  kind: Network\n  metadata: {name: m}\n  spec: {vni: 8, vnii: 9}\n";
    let (objects, errors) = load_str("l.yaml", text);
    assert_eq!(objects.len(), 1);
    let got: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        got,
        vec!["l.yaml: document 1, items[1]: Network default/m: spec.vnii: unknown field (did you mean vni?)"]
    );
}

#[test]
fn upstream_interface_fields_are_accepted() {
    let text = format!("{NET}---\napiVersion: networking.ironcore.dev/v1alpha1\nkind: NetworkInterface\nmetadata: {{name: nic}}\nspec:\n  networkRef: {{name: n}}\n  providerID: p\n  machineRef: {{name: m, uid: u}}\n  ipFamilies: [IPv4]\n  ips: [{{value: 10.0.0.5}}]\n  attributes: {{a: b}}\nstatus:\n  state: Available\n  ips: [10.0.0.5]\n  lastStateTransitionTime: '2026-01-01T00:00:00Z'\n  underlayAddress: 'fd00:1::5'\n");
    let (errors, objects) = loaded(&text);
    assert_eq!(errors, Vec::<String>::new());
    assert_eq!(objects.len(), 2);
}

/// An ephemeral IP whose template IPAM already filled (`prefixTemplate.spec.prefix`) gets that address, not the
/// first free one of the parent: ironlb follows the cluster's decision.
#[test]
fn an_ipam_filled_template_prefix_is_the_vip() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{}{V6}",
        lb("  type: Internal\n  ips:\n  - ephemeral: {prefixTemplate: {spec: {ipFamily: IPv6, parentRef: {name: p6}, prefix: 'fd10::99/128'}}}\n  ports: [{port: 80}]\n")
    )
    .replace("4711", "100");
    std::fs::write(dir.path().join("m.yaml"), text).unwrap();
    let p = program_dir(dir.path(), pools(), &host(), LoadOptions::default()).unwrap();
    assert!(
        p.load_errors.is_empty() && p.report.errors.is_empty(),
        "{:?}",
        p.report
    );
    let st = &p.rec.status()[&api::ObjectKey::new("default", "lb")];
    assert_eq!(st.ips, vec!["fd10::99".parse::<std::net::IpAddr>().unwrap()]);
    // Outside the parent: rejected, not allocated elsewhere.
    let (errors, _) = loaded(&format!(
        "{}{V6}",
        lb("  type: Internal\n  ips:\n  - ephemeral: {prefixTemplate: {spec: {ipFamily: IPv6, parentRef: {name: p6}, prefix: 'fd11::1/128'}}}\n")
    ));
    assert_eq!(
        errors,
        vec!["t.yaml: LoadBalancer default/lb: spec.ips[0].ephemeral.prefixTemplate.spec.prefix: fd11::1/128 is not inside the parent Prefix"]
    );
}

/// A Prefix IPAM has not allocated (no `spec.prefix`; a `prefixLength` and a parent) loads and is valid, as a
/// cluster holds it; it has no addresses, so a template drawing from it says so. Without a parent or a length it is
/// still an error.
#[test]
fn pending_prefixes_are_valid_and_have_no_addresses() {
    let pending = "---\napiVersion: ipam.ironcore.dev/v1alpha1\nkind: Prefix\nmetadata: {name: pend}\nspec: {ipFamily: IPv6, prefixLength: 64, parentRef: {name: p6}}\nstatus: {phase: Pending}\n";
    let (errors, objects) = loaded(&format!("{NET}{V6}{pending}"));
    assert_eq!(errors, Vec::<String>::new());
    assert_eq!(objects.len(), 3);
    let (errors, _) = loaded(&format!(
        "{}{V6}{pending}",
        lb("  type: Internal\n  ips:\n  - ephemeral: {prefixTemplate: {spec: {ipFamily: IPv6, parentRef: {name: pend}}}}\n")
    ));
    assert_eq!(
        errors,
        vec!["t.yaml: LoadBalancer default/lb: spec.ips[0].ephemeral.prefixTemplate.spec.parentRef.name: Prefix default/pend is pending (IPAM has not filled its spec.prefix): no addresses to allocate from"]
    );
    let bad = |spec: &str| {
        loaded(&format!(
            "{NET}---\napiVersion: ipam.ironcore.dev/v1alpha1\nkind: Prefix\nmetadata: {{name: x}}\nspec: {spec}\n"
        ))
        .0
    };
    assert_eq!(
        bad("{ipFamily: IPv6, parentRef: {name: p6}}"),
        vec!["t.yaml: Prefix default/x: spec.prefix: required (a Prefix IPAM has not allocated yet has spec.prefixLength and spec.parentRef or spec.parentSelector instead)"]
    );
    assert_eq!(
        bad("{ipFamily: IPv4, prefixLength: 33, parentRef: {name: p6}}"),
        vec!["t.yaml: Prefix default/x: spec.prefixLength: 33 out of range 0..=32"]
    );
    assert_eq!(
        bad("{prefix: 'fd10::/64', prefixLength: 48}"),
        vec!["t.yaml: Prefix default/x: spec.prefixLength: 48 differs from spec.prefix fd10::/64"]
    );
    // A parent by selector is a parent too.
    assert_eq!(
        bad("{prefixLength: 128, parentSelector: {matchLabels: {a: b}}}"),
        Vec::<String>::new()
    );
}

/// The child Prefix IronCore creates for an ephemeral IP (`<lb>-<index>`, parentRef = the template's parent) holds
/// IPAM's decision once allocated: the VIP is its address, even where `status.ips` or ironlb's own allocation
/// would choose another; while it is pending ironlb allocates as standalone. A child outside its parent, or
/// disagreeing with the template's `prefix`, is an error; a Prefix of that name with another parent is not the
/// child.
#[test]
fn an_allocated_child_prefix_is_the_vip() {
    let child = |name: &str, parent: &str, prefix: &str| {
        format!("---\napiVersion: ipam.ironcore.dev/v1alpha1\nkind: Prefix\nmetadata: {{name: {name}}}\nspec: {{ipFamily: IPv6, prefixLength: 128, parentRef: {{name: {parent}}}{prefix}}}\n")
    };
    let other = "---\napiVersion: ipam.ironcore.dev/v1alpha1\nkind: Prefix\nmetadata: {name: q6}\nspec: {ipFamily: IPv6, prefix: 'fd20::/64'}\n";
    let lb_with = |extra: &str, template_prefix: &str| {
        format!(
            "{}{V6}{other}{extra}",
            lb(&format!("  type: Internal\n  ips:\n  - value: 10.0.0.1\n  - ephemeral: {{prefixTemplate: {{spec: {{ipFamily: IPv6, parentRef: {{name: p6}}{template_prefix}}}}}}}\n  ports: [{{port: 80}}]\nstatus: {{ips: ['10.0.0.1', 'fd10::5']}}\n"))
        )
        .replace("4711", "100")
    };
    let vip_of = |text: String| {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("m.yaml"), text).unwrap();
        let p = program_dir(dir.path(), pools(), &host(), LoadOptions::default()).unwrap();
        assert!(
            p.load_errors.is_empty() && p.report.errors.is_empty(),
            "{:?} {:?}",
            p.load_errors,
            p.report
        );
        assert!(
            p.rec.validation_errors().is_empty(),
            "{:?}",
            p.rec.validation_errors()
        );
        p.rec.status()[&api::ObjectKey::new("default", "lb")].ips.clone()
    };
    let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
    // Allocated child (index 1: the second of spec.ips): its address, not status.ips' fd10::5.
    assert_eq!(
        vip_of(lb_with(&child("lb-1", "p6", ", prefix: 'fd10::77/128'"), "")),
        vec![ip("10.0.0.1"), ip("fd10::77")]
    );
    // Pending child: ironlb allocates, honouring status.ips.
    assert_eq!(
        vip_of(lb_with(&child("lb-1", "p6", ""), "")),
        vec![ip("10.0.0.1"), ip("fd10::5")]
    );
    // Same name, another parent: not the child.
    assert_eq!(
        vip_of(lb_with(&child("lb-1", "q6", ", prefix: 'fd20::9/128'"), "")),
        vec![ip("10.0.0.1"), ip("fd10::5")]
    );
    // Template and child agreeing: fine.
    assert_eq!(
        vip_of(lb_with(
            &child("lb-1", "p6", ", prefix: 'fd10::77/128'"),
            ", prefix: 'fd10::77/128'"
        )),
        vec![ip("10.0.0.1"), ip("fd10::77")]
    );
    let (errors, _) = loaded(&lb_with(
        &child("lb-1", "p6", ", prefix: 'fd10::77/128'"),
        ", prefix: 'fd10::78/128'",
    ));
    assert_eq!(
        errors,
        vec!["t.yaml: LoadBalancer default/lb: spec.ips[1].ephemeral.prefixTemplate.spec.prefix: fd10::78 differs from fd10::77/128, IPAM's allocation for this IP in Prefix default/lb-1"]
    );
    // A child that is not a single address, or outside the parent (its own parentRef says p6, its prefix is not).
    let (errors, _) = loaded(&lb_with(
        &child("lb-1", "p6", ", prefix: 'fd10::/120'").replace("prefixLength: 128", "prefixLength: 120"),
        "",
    ));
    assert_eq!(
        errors,
        vec!["t.yaml: LoadBalancer default/lb: spec.ips[1].ephemeral: Prefix default/lb-1 (IPAM's allocation for this IP) is fd10::/120: only single addresses are supported"]
    );
    let (errors, _) = loaded(&lb_with(&child("lb-1", "p6", ", prefix: 'fd30::1/128'"), ""));
    assert_eq!(
        errors,
        vec!["t.yaml: LoadBalancer default/lb: spec.ips[1].ephemeral: Prefix default/lb-1 (IPAM's allocation for this IP) holds fd30::1/128, outside the parent Prefix default/p6"]
    );
}
