//! The store against a real etcd (issue 17 test 5 and the writers' round trip). Skipped with a message when etcd
//! is not installed, except under CI=true (cluster/src/testing.rs).

use ironlb_api::load::load_str;
use ironlb_api::{Kind, Object, ObjectRef};
use ironlb_cluster::client::WriteError;
use ironlb_cluster::store::{Expect, StoreError, Write};
use ironlb_cluster::testing::{examples, EtcdServer};
use ironlb_cluster::write::{Incoming, Outcome, Refusal};

#[test]
fn apply_get_delete_round_trip() {
    let Some(etcd) = EtcdServer::start_or_skip("apply_get_delete_round_trip") else {
        return;
    };
    let c = etcd.client("/t1/");
    let ex = examples();
    let plan = c.apply(ex.clone()).unwrap();
    assert!(plan.outcomes.iter().all(|(_, o)| *o == Outcome::Created));
    let listing = c.list().unwrap();
    assert_eq!(listing.objects.len(), ex.len());
    for i in &ex {
        let got = c.get(&i.object.object_ref()).unwrap().expect("stored");
        assert_eq!(got.object, i.object);
        assert!(got.revision > 0 && got.revision <= listing.revision);
    }
    // Applying again writes nothing: revisions stay.
    let again = c.apply(ex.clone()).unwrap();
    assert!(again.writes.is_empty());
    assert_eq!(c.list().unwrap().objects, listing.objects);
    // Another prefix is another fleet: empty.
    assert!(etcd.client("/t2/").list().unwrap().objects.is_empty());
    // Deleting everything empties the store.
    let refs: Vec<ObjectRef> = listing.objects.keys().cloned().collect();
    let plan = c.delete(refs.clone(), false).unwrap();
    assert_eq!(plan.outcomes.len(), refs.len());
    assert!(c.list().unwrap().objects.is_empty());
    assert!(matches!(
        c.delete(refs[..1].to_vec(), false),
        Err(WriteError::Refused(Refusal::NotFound(_)))
    ));
    assert!(c.delete(refs[..1].to_vec(), true).is_ok());
}

#[test]
fn bad_objects_are_refused_and_nothing_changes() {
    let Some(etcd) = EtcdServer::start_or_skip("bad_objects_are_refused_and_nothing_changes") else {
        return;
    };
    let c = etcd.client("/ironlb/");
    c.apply(examples()).unwrap();
    let before = c.list().unwrap();
    // One good new Network and one LoadBalancer whose port range is backwards: neither is written.
    let (objects, errors) = load_str(
        "bad.yaml",
        "apiVersion: networking.ironcore.dev/v1alpha1\nkind: Network\nmetadata: {name: fresh}\nspec: {vni: 4242}\n---\napiVersion: networking.ironcore.dev/v1alpha1\nkind: LoadBalancer\nmetadata: {name: backwards}\nspec:\n  type: Internal\n  ipFamilies: [IPv4]\n  ips: [{value: 10.0.0.77}]\n  ports: [{port: 90, portEnd: 80}]\n  networkRef: {name: fresh}\n",
    );
    assert!(errors.is_empty(), "{errors:?}");
    let inc: Vec<Incoming> = objects
        .into_iter()
        .map(|(file, object)| Incoming {
            file,
            object,
            resource_version: None,
        })
        .collect();
    let Err(WriteError::Refused(Refusal::Invalid(problems))) = c.apply(inc) else {
        panic!("refused")
    };
    assert!(
        problems.iter().any(|p| p.file == std::path::Path::new("bad.yaml")
            && p.object == ObjectRef::new(Kind::LoadBalancer, "default", "backwards")
            && p.field.starts_with("spec.ports[0]")),
        "{problems:?}"
    );
    let after = c.list().unwrap();
    assert_eq!(after.objects, before.objects);
    assert_eq!(after.revision, before.revision, "not a single write");
}

#[test]
fn a_concurrent_change_is_a_conflict() {
    let Some(etcd) = EtcdServer::start_or_skip("a_concurrent_change_is_a_conflict") else {
        return;
    };
    let c = etcd.client("/ironlb/");
    c.apply(examples()).unwrap();
    let listing = c.list().unwrap();
    let (r, stored) = listing
        .objects
        .iter()
        .find(|(r, _)| r.kind == Kind::Network)
        .map(|(r, s)| (r.clone(), s.clone()))
        .unwrap();
    let Object::Network(mut changed) = stored.object.clone() else {
        unreachable!()
    };
    changed.metadata.labels.insert("edited".into(), "yes".into());
    // A writer that read at the old revision loses against one that wrote since.
    let first = Write::Put {
        object: Box::new(Object::Network(changed.clone())),
        expect: Expect::Revision(stored.revision),
    };
    c.block_on(c.store().commit(std::slice::from_ref(&first)))
        .unwrap();
    changed.metadata.labels.insert("edited".into(), "twice".into());
    let second = Write::Put {
        object: Box::new(Object::Network(changed)),
        expect: Expect::Revision(stored.revision),
    };
    let Err(StoreError::Conflict(conflicts)) = c.block_on(c.store().commit(&[second])) else {
        panic!("conflict")
    };
    assert_eq!(conflicts.len(), 1);
    assert_eq!(conflicts[0].object, r);
    assert!(conflicts[0].found > Some(stored.revision));
    // A manifest pinned to the old resourceVersion is refused too, with both revisions in the message.
    let pinned = Incoming {
        file: "pinned.yaml".into(),
        object: stored.object.clone(),
        resource_version: Some(stored.revision),
    };
    let e = c.apply(vec![pinned]).unwrap_err();
    assert!(matches!(e, WriteError::Refused(Refusal::Conflict(_))), "{e}");
    assert!(
        e.to_string()
            .contains(&format!("resourceVersion {}", stored.revision)),
        "{e}"
    );
    // Create-only expectations fail on an existing object.
    let create = Write::Put {
        object: Box::new(stored.object),
        expect: Expect::Absent,
    };
    assert!(matches!(
        c.block_on(c.store().commit(&[create])),
        Err(StoreError::Conflict(_))
    ));
}

#[test]
fn a_watch_resumed_past_a_compaction_says_so() {
    let Some(etcd) = EtcdServer::start_or_skip("a_watch_resumed_past_a_compaction_says_so") else {
        return;
    };
    let c = etcd.client("/ironlb/");
    c.apply(examples()).unwrap();
    let old = c.list().unwrap();
    let mut edited = examples();
    for i in &mut edited {
        if let Object::Network(n) = &mut i.object {
            n.metadata.labels.insert("edited".into(), "yes".into());
        }
    }
    c.apply(edited.clone()).unwrap();
    // A second write: compacting at its revision removes the revision right after `old`, which the watch needs.
    for i in &mut edited {
        if let Object::Network(n) = &mut i.object {
            n.metadata.labels.insert("edited".into(), "twice".into());
        }
    }
    c.apply(edited).unwrap();
    let now = c.list().unwrap().revision;
    let mut raw = c.store().client().clone();
    c.block_on(raw.compact(now, None)).unwrap();
    let mut seen = 0;
    let end = c
        .block_on(async {
            tokio::time::timeout(
                std::time::Duration::from_secs(10),
                ironlb_cluster::watch::follow(c.store(), Some(old), |_| seen += 1),
            )
            .await
        })
        .expect("follow returns within 10 s")
        .unwrap();
    assert_eq!(
        end,
        ironlb_cluster::watch::FollowEnd::Compacted {
            compact_revision: now
        }
    );
    assert_eq!(seen, 1, "the resumed listing, then nothing");
}

/// A NetworkInterface of about 16 KB (many long labels): a few hundred of them pass gRPC's 4 MiB limit on one answer.
fn large_interface(i: usize) -> Object {
    let labels: String = (0..100).map(|l| format!("l{l}: {}, ", "v".repeat(150))).collect();
    let yaml = format!(
        "apiVersion: networking.ironcore.dev/v1alpha1\nkind: NetworkInterface\nmetadata: {{name: nic-{i:04}, labels: {{{labels}}}}}\nspec: {{networkRef: {{name: n}}}}\n"
    );
    let (mut objects, errors) = load_str("t.yaml", &yaml);
    assert!(errors.is_empty(), "{errors:?}");
    objects.remove(0).1
}

#[test]
fn a_listing_larger_than_one_answer_is_one_cut_of_the_store() {
    let Some(etcd) = EtcdServer::start_or_skip("a_listing_larger_than_one_answer_is_one_cut_of_the_store")
    else {
        return;
    };
    let c = etcd.client("/ironlb/");
    let put = |i: usize| Write::Put {
        object: Box::new(large_interface(i)),
        expect: Expect::Absent,
    };
    // Even names first, then odd ones: every page of the listing at the first revision has keys of the second
    // write between its own, which a page read at a later revision would show.
    const N: usize = 320;
    let evens: Vec<Write> = (0..N).step_by(2).map(put).collect();
    let odds: Vec<Write> = (1..N).step_by(2).map(put).collect();
    let first = c.block_on(c.store().commit(&evens)).unwrap();
    let second = c.block_on(c.store().commit(&odds)).unwrap();

    let now = c.list().unwrap();
    assert_eq!(now.revision, second);
    assert_eq!(now.objects.len(), N);
    assert!(now.undecodable.is_empty());
    assert_eq!(now.objects.values().next().unwrap().object, large_interface(0));

    let then = c.block_on(c.store().list(Some(first))).unwrap();
    assert_eq!(then.revision, first);
    let names: Vec<String> = then.objects.keys().map(|r| r.key.name.clone()).collect();
    let want: Vec<String> = (0..N).step_by(2).map(|i| format!("nic-{i:04}")).collect();
    assert_eq!(names, want);
    assert!(then.objects.values().all(|s| s.revision <= first));
}
