use super::*;
use crate::store::Stored;
use ironlb_api::load::{load_dir, load_str};
use ironlb_api::Kind;

fn examples() -> Vec<(PathBuf, Object)> {
    let (objects, errors) = load_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples"));
    assert!(errors.is_empty(), "{errors:?}");
    objects
}

fn incoming(objects: &[(PathBuf, Object)]) -> Vec<Incoming> {
    Incoming::unpinned(objects.iter().cloned())
}

fn stored(objects: &[(PathBuf, Object)]) -> Listing {
    let mut l = Listing::default();
    for (i, (_, o)) in objects.iter().enumerate() {
        let revision = i as i64 + 2;
        l.objects.insert(
            o.object_ref(),
            Stored {
                object: o.clone(),
                revision,
            },
        );
        l.revision = revision;
    }
    l
}

#[test]
fn applying_to_an_empty_store_creates_everything() {
    let ex = examples();
    let plan = plan_apply(&Listing::default(), incoming(&ex)).unwrap();
    assert_eq!(plan.writes.len(), ex.len());
    assert!(plan.outcomes.iter().all(|(_, o)| *o == Outcome::Created));
    assert!(plan.writes.iter().all(|w| matches!(
        w,
        Write::Put {
            expect: Expect::Absent,
            ..
        }
    )));
}

#[test]
fn applying_again_writes_nothing() {
    let ex = examples();
    let plan = plan_apply(&stored(&ex), incoming(&ex)).unwrap();
    assert!(plan.writes.is_empty(), "{:?}", plan.writes);
    assert!(plan.outcomes.iter().all(|(_, o)| *o == Outcome::Unchanged));
}

#[test]
fn an_applied_object_without_status_keeps_the_stored_status() {
    let ex = examples();
    let mut inc = incoming(&ex);
    let lb = inc
        .iter_mut()
        .find_map(|i| match &mut i.object {
            Object::LoadBalancer(lb) if !lb.status.ips.is_empty() => Some(lb),
            _ => None,
        })
        .expect("an example LB with status.ips");
    lb.status = Default::default();
    let plan = plan_apply(&stored(&ex), inc.clone()).unwrap();
    assert!(plan.writes.is_empty(), "status kept: unchanged");
    // A changed spec is written with the stored status and the stored revision as the expectation.
    for i in &mut inc {
        if let Object::LoadBalancer(lb) = &mut i.object {
            if lb.status.ips.is_empty() {
                lb.metadata.labels.insert("edited".into(), "yes".into());
            }
        }
    }
    let l = stored(&ex);
    let plan = plan_apply(&l, inc).unwrap();
    assert_eq!(plan.writes.len(), 1);
    let Write::Put { object, expect } = &plan.writes[0] else {
        panic!("{:?}", plan.writes)
    };
    let Object::LoadBalancer(lb) = &**object else {
        panic!("{object:?}")
    };
    assert!(!lb.status.ips.is_empty());
    let stored_rev = l.objects[&Object::LoadBalancer(lb.clone()).object_ref()].revision;
    assert_eq!(*expect, Expect::Revision(stored_rev));
}

#[test]
fn an_invalid_object_is_refused_naming_file_object_and_field() {
    let ex = examples();
    let (bad, errors) = load_str(
        "bad.yaml",
        "apiVersion: networking.ironcore.dev/v1alpha1\nkind: LoadBalancer\nmetadata: {name: lonely}\nspec:\n  type: Internal\n  ipFamilies: [IPv4]\n  ips: [{value: 10.0.0.9}]\n  ports: [{port: 80}]\n  networkRef: {name: no-such-network}\n",
    );
    assert!(errors.is_empty(), "{errors:?}");
    let mut inc = incoming(&ex);
    inc.extend(incoming(&bad));
    let Err(Refusal::Invalid(problems)) = plan_apply(&stored(&ex), inc) else {
        panic!("refused")
    };
    let text = Refusal::Invalid(problems.clone()).to_string();
    assert!(
        problems.iter().any(|p| p.file == std::path::Path::new("bad.yaml")
            && p.object == ObjectRef::new(Kind::LoadBalancer, "default", "lonely")
            && p.field.starts_with("spec.networkRef")),
        "{text}"
    );
    assert!(text.contains("nothing written"), "{text}");
}

#[test]
fn a_change_that_breaks_a_stored_object_is_refused() {
    let ex = examples();
    let l = stored(&ex);
    let net = ex
        .iter()
        .find(|(_, o)| o.kind() == Kind::Network)
        .map(|(_, o)| o.object_ref())
        .unwrap();
    let Err(Refusal::WouldBreak(problems)) = plan_delete(&l, vec![net.clone()], false) else {
        panic!("deleting a referenced Network is refused")
    };
    assert!(problems.iter().all(|p| p.object != net), "{problems:?}");
    assert!(problems
        .iter()
        .all(|p| p.file == std::path::Path::new(STORED_ORIGIN)));
    // Deleting everything at once is fine.
    let all: Vec<ObjectRef> = l.objects.keys().cloned().collect();
    let plan = plan_delete(&l, all.clone(), false).unwrap();
    assert_eq!(plan.writes.len(), all.len());
}

#[test]
fn delete_of_a_missing_object() {
    let r = ObjectRef::new(Kind::Network, "default", "nope");
    assert_eq!(
        plan_delete(&Listing::default(), vec![r.clone()], false),
        Err(Refusal::NotFound(vec![r.clone()]))
    );
    assert_eq!(
        plan_delete(&Listing::default(), vec![r], true),
        Ok(Plan::default())
    );
}

#[test]
fn a_stale_resource_version_is_a_conflict() {
    let ex = examples();
    let l = stored(&ex);
    let mut inc = incoming(&ex);
    let r = inc[0].object.object_ref();
    let now = l.objects[&r].revision;
    inc[0].resource_version = Some(now);
    assert!(plan_apply(&l, inc.clone()).is_ok());
    inc[0].resource_version = Some(now - 1);
    let Err(Refusal::Conflict(c)) = plan_apply(&l, inc) else {
        panic!("conflict")
    };
    assert_eq!(
        c,
        vec![Conflict {
            object: r,
            expected: Expect::Revision(now - 1),
            found: Some(now)
        }]
    );
}

#[test]
fn an_object_given_twice_is_refused() {
    let ex = examples();
    let mut inc = incoming(&ex);
    inc.push(inc[0].clone());
    assert!(matches!(
        plan_apply(&Listing::default(), inc),
        Err(Refusal::Duplicate { .. })
    ));
}
