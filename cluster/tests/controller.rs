//! The controller's allocation against a real single-member etcd (issue 17 test 2; three_members.rs runs the race on
//! a three-member cluster): two controllers allocating concurrently, many times, never hand out one lb_id or IP
//! twice; a controller whose lease is gone writes nothing; only one controller leads at a time. Skipped without
//! etcd, except under CI=true.

mod common;

use common::{pools, race};
use ironlb_api::ObjectKey;
use ironlb_cluster::controller::{allocate_round, campaign};
use ironlb_cluster::testing::{fleet, EtcdServer};
use ironlb_cluster::Client;
use std::time::Duration;

#[test]
fn racing_controllers_never_hand_out_a_value_twice() {
    let Some(etcd) = EtcdServer::start_or_skip("racing_controllers_never_hand_out_a_value_twice") else {
        return;
    };
    const ROUNDS: usize = 20;
    const LBS: usize = 24;
    let t = race(|prefix| etcd.settings(prefix), ROUNDS, LBS, |_, _| {});
    assert_eq!(t.failed_rounds, 0, "no round fails while etcd is up");
    eprintln!(
        "{ROUNDS} rounds of 2 controllers x {LBS} LBs: {} lost races, no duplicate",
        t.conflicts
    );
}

#[test]
fn a_controller_that_lost_its_lease_writes_nothing_and_one_leads_at_a_time() {
    let Some(etcd) = EtcdServer::start_or_skip("a_controller_that_lost_its_lease_writes_nothing") else {
        return;
    };
    let settings = etcd.settings("/ironlb/").resolve().unwrap();
    let c = Client::connect(&settings).unwrap();
    c.apply(fleet(0..3)).unwrap();
    let fence = c
        .block_on(campaign(c.store(), "a", 5, Duration::from_millis(50)))
        .unwrap();
    // A second controller does not get in while the first holds the lease.
    let other = Client::connect(&settings).unwrap();
    let blocked = other.block_on(async {
        tokio::time::timeout(
            Duration::from_millis(500),
            campaign(other.store(), "b", 5, Duration::from_millis(50)),
        )
        .await
    });
    assert!(blocked.is_err(), "b must wait while a leads");
    // The first loses its lease (as when it stops keeping it alive): its fenced writes are refused.
    let mut raw = c.store().client().clone();
    c.block_on(raw.lease_revoke(fence.lease)).unwrap();
    let r = c
        .block_on(allocate_round(c.store(), &pools(), Some(&fence)))
        .unwrap();
    assert!(r.allocated.is_empty(), "{r:?}");
    assert_eq!(r.conflicts, 3);
    assert!(c.list().unwrap().allocations.is_empty(), "nothing written");
    // Now another controller leads and allocates.
    let fence_b = other
        .block_on(async {
            tokio::time::timeout(
                Duration::from_secs(10),
                campaign(other.store(), "b", 5, Duration::from_millis(50)),
            )
            .await
        })
        .expect("b leads once a's lease is gone")
        .unwrap();
    let r = other
        .block_on(allocate_round(other.store(), &pools(), Some(&fence_b)))
        .unwrap();
    assert_eq!(r.allocated.len(), 3, "{r:?}");
    // Deleting a LoadBalancer releases its record and claims.
    other
        .delete(
            vec![ObjectKey::new("default", "lb-0").of(ironlb_api::Kind::LoadBalancer)],
            false,
        )
        .unwrap();
    let r = other
        .block_on(allocate_round(other.store(), &pools(), Some(&fence_b)))
        .unwrap();
    assert_eq!(r.released, vec![ObjectKey::new("default", "lb-0")]);
    assert_eq!(other.list().unwrap().allocations.len(), 2);
}

#[test]
fn a_round_allocates_many_load_balancers_per_transaction_and_a_conflict_holds_up_none_of_the_others() {
    let Some(etcd) = EtcdServer::start_or_skip("a_round_allocates_many_load_balancers_per_transaction")
    else {
        return;
    };
    use ironlb_cluster::controller::{allocate_listed, Checked};
    use ironlb_cluster::testing::assert_allocated_once;
    let c = etcd.client("/ironlb/");
    // 40 dual-stack LoadBalancers: five writes and five conditions each, so 25 fit one transaction of 128.
    c.apply(fleet(0..40)).unwrap();
    let before = c.list().unwrap();
    let r = c
        .block_on(allocate_listed(
            c.store(),
            &before,
            &Checked::new(&before),
            &pools(),
            None,
        ))
        .unwrap();
    assert_eq!((r.allocated.len(), r.conflicts), (40, 0), "{r:?}");
    let after = c.list().unwrap();
    assert_allocated_once(&after, 40, "one round");
    // Each transaction is one revision.
    assert_eq!(after.revision - before.revision, 2, "two transactions");

    // 20 more (the pool's 62 IPv4 addresses hold them), planned on a listing that one of them no longer matches
    // (lb-57 was edited since): their transaction fails, is sent again one LoadBalancer at a time, and only lb-57
    // is left for the next round.
    c.apply(fleet(40..60)).unwrap();
    let stale = c.list().unwrap();
    let mut edited = fleet(57..58);
    for i in &mut edited {
        if let ironlb_api::Object::LoadBalancer(lb) = &mut i.object {
            lb.metadata.labels.insert("edited".into(), "yes".into());
        }
    }
    c.apply(edited).unwrap();
    let r = c
        .block_on(allocate_listed(
            c.store(),
            &stale,
            &Checked::new(&stale),
            &pools(),
            None,
        ))
        .unwrap();
    assert_eq!((r.allocated.len(), r.conflicts), (19, 1), "{r:?}");
    assert!(!r.allocated.contains(&ObjectKey::new("default", "lb-57")));
    let r = c.block_on(allocate_round(c.store(), &pools(), None)).unwrap();
    assert_eq!(r.allocated, vec![ObjectKey::new("default", "lb-57")]);
    assert_allocated_once(&c.list().unwrap(), 60, "after the conflict");
}
