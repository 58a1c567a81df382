//! `ironlb get` output: a table (kubectl's default and `-o wide` columns), JSON or YAML.

use ironlb_api::printable::printable;
use ironlb_api::{Kind, Object};
use ironlb_cluster::codec::with_resource_version;
use ironlb_cluster::store::Stored;
use serde_json::Value;

/// How `get` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Name and the kind's main fields.
    Table,
    /// The table with resourceVersion and labels.
    Wide,
    /// JSON: the object, or a `List` of them.
    Json,
    /// YAML: the object, or a `List` of them (`ironlb apply -f` reads it back).
    Yaml,
}

/// One object or a `List` (`single`: a get of one name prints the object itself, as kubectl does).
fn document(objects: &[&Stored], single: bool) -> Value {
    let mut items: Vec<Value> = objects
        .iter()
        .map(|s| with_resource_version(&s.object, s.revision))
        .collect();
    if single && items.len() == 1 {
        return items.remove(0);
    }
    serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items})
}

/// The text `get` prints.
pub fn render(kind: Kind, objects: &[&Stored], output: Output, all_namespaces: bool, single: bool) -> String {
    match output {
        Output::Json => {
            let mut s = serde_json::to_string_pretty(&document(objects, single)).expect("JSON serializes");
            s.push('\n');
            s
        }
        Output::Yaml => serde_norway::to_string(&document(objects, single)).expect("YAML serializes"),
        Output::Table | Output::Wide => table(kind, objects, output == Output::Wide, all_namespaces),
    }
}

fn columns(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::LoadBalancer => &["TYPE", "IPS", "PORTS"],
        Kind::LoadBalancerRouting => &["NETWORK", "DESTINATIONS"],
        Kind::Network => &["VNI"],
        Kind::NetworkInterface => &["NETWORK", "STATE", "IPS"],
        Kind::Prefix => &["PREFIX"],
        Kind::NodeUnderlay => &["UNDERLAY"],
    }
}

fn or_none(v: Vec<String>) -> String {
    if v.is_empty() {
        "<none>".into()
    } else {
        v.join(",")
    }
}

fn fields(o: &Object) -> Vec<String> {
    let opt = |s: Option<String>| s.unwrap_or_else(|| "<none>".into());
    match o {
        Object::LoadBalancer(lb) => vec![
            opt(lb.spec.lb_type.as_ref().map(ToString::to_string)),
            or_none(lb.status.ips.iter().map(|i| i.ip.clone()).collect()),
            or_none(
                lb.spec
                    .ports
                    .iter()
                    .map(|p| {
                        let proto = p.protocol.as_ref().map(ToString::to_string).unwrap_or_default();
                        match p.port_end.or(p.end_port) {
                            Some(e) => format!("{}-{e}/{proto}", p.port),
                            None => format!("{}/{proto}", p.port),
                        }
                    })
                    .collect(),
            ),
        ],
        Object::LoadBalancerRouting(r) => vec![
            opt(r.network_ref.as_ref().map(|n| n.name.clone())),
            r.destinations.len().to_string(),
        ],
        Object::Network(n) => vec![opt(n.spec.vni.map(|v| v.to_string()))],
        Object::NetworkInterface(n) => vec![
            opt(n.spec.network_ref.as_ref().map(|r| r.name.clone())),
            opt(n.status.state.as_ref().map(ToString::to_string)),
            or_none(n.status.ips.iter().map(|i| i.ip.clone()).collect()),
        ],
        Object::Prefix(p) => vec![opt(p.spec.prefix.clone())],
        Object::NodeUnderlay(u) => vec![opt(u.spec.underlay_address.clone())],
    }
}

fn table(kind: Kind, objects: &[&Stored], wide: bool, all_namespaces: bool) -> String {
    let mut rows: Vec<Vec<String>> = Vec::with_capacity(objects.len() + 1);
    let mut head: Vec<String> = Vec::new();
    if all_namespaces {
        head.push("NAMESPACE".into());
    }
    head.push("NAME".into());
    head.extend(columns(kind).iter().map(|c| c.to_string()));
    if wide {
        head.extend(["RESOURCEVERSION".to_string(), "LABELS".to_string()]);
    }
    rows.push(head);
    for s in objects {
        let meta = s.object.metadata();
        let mut row = Vec::new();
        if all_namespaces {
            row.push(meta.namespace().to_string());
        }
        row.push(meta.name.clone());
        row.extend(fields(&s.object));
        if wide {
            row.push(s.revision.to_string());
            row.push(or_none(
                meta.labels.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            ));
        }
        // Names and values come from the store: escaped so they cannot forge lines.
        rows.push(row.iter().map(|c| printable(c).into_owned()).collect());
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out.push_str(line.join("   ").trim_end());
        out.push('\n');
    }
    out
}
