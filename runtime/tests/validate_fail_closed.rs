//! Validation fails closed (issue 12 items 4 and 5): addresses a device must never answer for or send to, Prefixes
//! that would hand them out, internal VIPs that would take an interface's traffic, and names and labels outside
//! Kubernetes' rules are refused with an error naming file, object and field; printed errors are escaped.

use ironlb_runtime::manifest::load_str;
use ironlb_runtime::validate::validate;

const PRELUDE: &str = "\
apiVersion: networking.ironcore.dev/v1alpha1
kind: Network
metadata: {name: net}
spec: {vni: 100}
---
apiVersion: networking.ironcore.dev/v1alpha1
kind: Network
metadata: {name: other}
spec: {vni: 200}
";

fn internal(name: &str, ip: &str, families: &str) -> String {
    format!(
        "apiVersion: networking.ironcore.dev/v1alpha1\nkind: LoadBalancer\nmetadata: {{name: {name}}}\nspec:\n  \
         type: Internal\n  ipFamilies: [{families}]\n  networkRef: {{name: net}}\n  ips: [{{ip: \"{ip}\"}}]\n  \
         ports: [{{protocol: TCP, port: 80}}]\n"
    )
}

fn nic(name: &str, net: &str, ip: &str, underlay: &str) -> String {
    format!(
        "apiVersion: networking.ironcore.dev/v1alpha1\nkind: NetworkInterface\nmetadata: {{name: {name}}}\nspec:\n  \
         networkRef: {{name: {net}}}\n  ips: [{{ip: \"{ip}\"}}]\nstatus:\n  state: Available\n  \
         underlayAddress: \"{underlay}\"\n"
    )
}

fn prefix(cidr: &str) -> String {
    format!("apiVersion: ipam.ironcore.dev/v1alpha1\nkind: Prefix\nmetadata: {{name: p}}\nspec: {{prefix: \"{cidr}\"}}\n")
}

/// Load and validation errors of PRELUDE + `case`, printed as the CLI prints them.
fn errors(case: &str) -> Vec<String> {
    let (objects, load_errors) = load_str("case.yaml", &format!("{PRELUDE}---\n{case}"));
    let (_, errors) = validate(&objects);
    let mut all: Vec<String> = load_errors.iter().map(ToString::to_string).collect();
    all.extend(errors.iter().map(ToString::to_string));
    all
}

#[test]
fn vips_a_device_must_not_answer_for_are_refused() {
    for (ip, fam, what) in [
        ("0.0.0.0", "IPv4", "\"this network\" (0.0.0.0/8, unspecified)"),
        ("255.255.255.255", "IPv4", "broadcast"),
        ("127.0.0.1", "IPv4", "loopback"),
        ("224.0.0.5", "IPv4", "multicast"),
        ("169.254.0.1", "IPv4", "link-local"),
        ("::", "IPv6", "unspecified"),
        ("::1", "IPv6", "loopback"),
        ("ff02::1", "IPv6", "multicast"),
        ("fe80::1", "IPv6", "link-local"),
        (
            "::ffff:10.0.0.5",
            "IPv6",
            "IPv4-mapped (write the IPv4 address itself)",
        ),
    ] {
        assert_eq!(
            errors(&internal("lb", ip, fam)),
            [format!(
                "case.yaml: LoadBalancer default/lb: spec.ips[0].ip: {ip} is {what}: not usable as a VIP"
            )],
            "{ip}"
        );
    }
    assert_eq!(errors(&internal("lb", "10.0.0.5", "IPv4")), Vec::<String>::new());
}

/// `::ffff:10.0.0.5` would be programmed as IPv4 10.0.0.5 and so escape the duplicate check against 10.0.0.5.
#[test]
fn ipv4_mapped_vip_cannot_escape_the_duplicate_check() {
    let case = format!(
        "{}---\n{}",
        internal("a", "10.0.0.5", "IPv4"),
        internal("b", "::ffff:10.0.0.5", "IPv6")
    );
    assert_eq!(
        errors(&case),
        ["case.yaml: LoadBalancer default/b: spec.ips[0].ip: ::ffff:10.0.0.5 is IPv4-mapped (write the IPv4 \
          address itself): not usable as a VIP"]
    );
}

#[test]
fn internal_vip_equal_to_an_interface_address_in_its_network_is_refused() {
    let case = format!(
        "{}---\n{}---\n{}",
        nic("web-1", "net", "10.0.0.7", "fd00:1::2"),
        nic("elsewhere", "other", "10.0.0.8", "fd00:1::3"),
        internal("lb", "10.0.0.7", "IPv4"),
    );
    assert_eq!(
        errors(&case),
        [
            "case.yaml: LoadBalancer default/lb: spec.ips[0].ip: VIP 10.0.0.7 in VNI 100 is the address of \
          NetworkInterface default/web-1"
        ]
    );
    // The same address as an interface in another Network is fine.
    let case = format!(
        "{}---\n{}",
        nic("elsewhere", "other", "10.0.0.7", "fd00:1::3"),
        internal("lb", "10.0.0.7", "IPv4"),
    );
    assert_eq!(errors(&case), Vec::<String>::new());
}

#[test]
fn underlay_addresses_that_route_nowhere_are_refused() {
    for (ip, what) in [
        ("::", "unspecified"),
        ("::1", "loopback"),
        ("ff02::1", "multicast"),
        ("::ffff:10.0.0.1", "IPv4-mapped"),
    ] {
        assert_eq!(
            errors(&nic("n", "net", "10.0.0.9", ip)),
            [format!(
                "case.yaml: NetworkInterface default/n: status.underlayAddress: {ip} is {what}: not usable as an \
                 underlay address"
            )],
            "{ip}"
        );
    }
}

#[test]
fn prefixes_that_would_hand_out_reserved_addresses_are_refused() {
    for (cidr, why) in [
        ("0.0.0.0/0", "0.0.0.0/0 is the whole address space"),
        ("::/0", "::/0 is the whole address space"),
        ("10.1.0.7/24", "host bits set in 10.1.0.7/24; did you mean 10.1.0.0/24?"),
        ("2001:db8::1/64", "host bits set in 2001:db8::1/64; did you mean 2001:db8::/64?"),
        (
            "0.0.0.0/16",
            "0.0.0.0/16 overlaps 0.0.0.0/8 (\"this network\" (0.0.0.0/8, unspecified)), which VIPs may not come from",
        ),
        ("::/64", "::/64 overlaps ::/128 (unspecified), which VIPs may not come from"),
    ] {
        assert_eq!(
            errors(&prefix(cidr)),
            [format!("case.yaml: Prefix default/p: spec.prefix: {why}")],
            "{cidr}"
        );
    }
    assert_eq!(errors(&prefix("10.1.0.0/24")), Vec::<String>::new());
}

#[test]
fn names_and_labels_follow_kubernetes_rules() {
    let net = |meta: &str| {
        format!("apiVersion: networking.ironcore.dev/v1alpha1\nkind: Network\nmetadata: {meta}\nspec: {{vni: 7}}\n")
    };
    let cases = [
        (
            net("{name: My_Net}"),
            "case.yaml: Network default/My_Net: metadata.name: \"My_Net\" is not a DNS-1123 subdomain (lowercase \
             letters, digits, '-' and '.', starting and ending with a letter or digit)",
        ),
        (
            net(&format!("{{name: {}}}", "a".repeat(254))),
            "LONG",
        ),
        (
            net("{name: n, namespace: a.b}"),
            "case.yaml: Network a.b/n: metadata.namespace: \"a.b\" is not a DNS-1123 label (lowercase letters, \
             digits and '-', starting and ending with a letter or digit)",
        ),
        (
            net("{name: n, labels: {\"-bad\": x}}"),
            "case.yaml: Network default/n: metadata.labels: label key \"-bad\": name must be at most 63 characters \
             of letters, digits, '-', '_' and '.', starting and ending with a letter or digit",
        ),
        (
            net("{name: n, labels: {app: \"a b\"}}"),
            "case.yaml: Network default/n: metadata.labels.app: label value \"a b\" must be empty or at most 63 \
             characters of letters, digits, '-', '_' and '.', starting and ending with a letter or digit",
        ),
    ];
    for (yaml, want) in cases {
        let got = errors(&yaml);
        assert_eq!(got.len(), 1, "{got:?}");
        if want == "LONG" {
            assert!(got[0].ends_with("is longer than 253 characters"), "{got:?}");
        } else {
            assert_eq!(got[0], want);
        }
    }
    assert_eq!(
        errors(&net("{name: n.v1, labels: {app.kubernetes.io/name: web}}")),
        Vec::<String>::new()
    );
}

/// A name with ESC, newline or RLO is refused, and neither the error nor `ironlb status` prints it raw.
#[test]
fn control_and_bidi_characters_never_reach_the_output() {
    // YAML double-quoted escapes: ESC, newline, RLO.
    for evil in [
        r#""lb\e[2J""#,
        r#""lb\nfake/lb  lb_id 1  Ready""#,
        r#""lb\u202Ex""#,
    ] {
        let yaml = internal(evil, "10.0.0.5", "IPv4");
        let got = errors(&yaml);
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].contains("metadata.name"), "{got:?}");
        for c in ['\u{1b}', '\n', '\u{202e}'] {
            assert!(!got[0].contains(c), "{got:?}");
        }
    }
    // The status rendering escapes what it prints.
    let status = ironlb_runtime::status::LbStatus {
        namespace: "default".into(),
        name: "lb\nfake/lb  lb_id 1  Ready\u{202e}".into(),
        ips: vec![],
        lb_id: None,
        destinations: vec![],
        programmed_targets: vec![],
        serving_last_good: false,
        conditions: vec![ironlb_runtime::status::Condition {
            kind: ironlb_runtime::status::ConditionType::Ready,
            status: ironlb_runtime::status::ConditionStatus::False,
            reason: ironlb_runtime::status::Reason::InvalidSpec,
            message: "bad\r\nfake  Ready".into(),
            last_transition_time: String::new(),
        }],
        draining_targets: vec![],
    };
    let mut all = std::collections::BTreeMap::new();
    all.insert(
        ironlb_runtime::api::ObjectKey::new("default", status.name.clone()),
        status,
    );
    let out = ironlb_runtime::ops::status(&all, ironlb_runtime::ops::Format::Table);
    assert_eq!(out.lines().count(), 4, "{out}");
    assert!(out.starts_with("default/lb\\u{a}fake/lb  lb_id 1  Ready\\u{202e}  lb_id -  NOT READY (InvalidSpec: bad\\u{d}\\u{a}fake  Ready)\n"), "{out}");
}
