//! docs/api.md lists every upstream field ironlb accepts without reading it; this keeps that list equal to the
//! schema (`api/src/schema.rs`, `Use::Unused`), in both directions.

use ironlb_api::schema::unused_fields;
use ironlb_api::Kind;
use std::collections::{BTreeMap, BTreeSet};

/// The backticked paths of each bullet of the list: `every object` and one per kind.
fn documented() -> BTreeMap<String, BTreeSet<String>> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/api.md")).unwrap();
    let start = doc
        .find("Upstream fields ironlb accepts and does not read")
        .expect("the list's heading in docs/api.md");
    let end = start + doc[start..].find("\n\n- ").expect("the list") + 2;
    let list_end = end + doc[end..].find("\n\n").expect("the list's end");
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut current = String::new();
    for line in doc[end..list_end].lines() {
        let text = if let Some(bullet) = line.strip_prefix("- ") {
            let (who, rest) = bullet.split_once(':').expect("`- who: fields`");
            current = who.trim_matches('`').to_string();
            rest
        } else {
            line
        };
        let paths = text.split('`').skip(1).step_by(2).map(str::to_string);
        out.entry(current.clone()).or_default().extend(paths);
    }
    out
}

#[test]
fn docs_list_exactly_the_unused_fields() {
    let doc = documented();
    let common = doc.get("every object").expect("an `every object` bullet");
    for kind in Kind::ALL {
        let schema: BTreeSet<String> = unused_fields(kind).into_iter().collect();
        let mut listed = common.clone();
        listed.extend(doc.get(&kind.to_string()).cloned().unwrap_or_default());
        assert_eq!(
            listed.difference(&schema).collect::<Vec<_>>(),
            Vec::<&String>::new(),
            "{kind}: listed in docs/api.md but not Use::Unused in the schema"
        );
        assert_eq!(
            schema.difference(&listed).collect::<Vec<_>>(),
            Vec::<&String>::new(),
            "{kind}: Use::Unused in the schema but not listed in docs/api.md"
        );
    }
}
