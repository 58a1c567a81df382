//! The controller's allocation against a real etcd (issue 17 test 2, the parts without a three-member cluster):
//! two controllers allocating concurrently, many times, never hand out one lb_id or IP twice; a controller whose
//! lease is gone writes nothing; only one controller leads at a time. Skipped without etcd, except under CI=true.

use ironlb_api::load::load_str;
use ironlb_api::ObjectKey;
use ironlb_cluster::controller::{allocate_round, campaign, Pools};
use ironlb_cluster::testing::EtcdServer;
use ironlb_cluster::write::Incoming;
use ironlb_cluster::Client;
use std::collections::BTreeSet;
use std::time::Duration;

/// A Network and `n` public dual-stack LoadBalancers (no status: the controller chooses every address).
fn fleet(n: usize) -> Vec<Incoming> {
    let mut text = String::from(
        "apiVersion: networking.ironcore.dev/v1alpha1\nkind: Network\nmetadata: {name: net}\nspec: {vni: 100}\n",
    );
    for i in 0..n {
        text.push_str(&format!(
            "---\napiVersion: networking.ironcore.dev/v1alpha1\nkind: LoadBalancer\nmetadata: {{name: lb-{i}}}\nspec:\n  type: Public\n  ipFamilies: [IPv4, IPv6]\n  ports: [{{protocol: TCP, port: 80}}]\n  networkRef: {{name: net}}\n"
        ));
    }
    let (objects, errors) = load_str("fleet.yaml", &text);
    assert!(errors.is_empty(), "{errors:?}");
    Incoming::unpinned(objects)
}

fn pools() -> Pools {
    Pools {
        public: vec![
            "203.0.113.0/26".parse().unwrap(),
            "2001:db8:ff::/122".parse().unwrap(),
        ],
        lb_id_cap: 4096,
    }
}

#[test]
fn racing_controllers_never_hand_out_a_value_twice() {
    let Some(etcd) = EtcdServer::start_or_skip("racing_controllers_never_hand_out_a_value_twice") else {
        return;
    };
    const ROUNDS: usize = 20;
    const LBS: usize = 24;
    let mut total_conflicts = 0;
    for round in 0..ROUNDS {
        let prefix = format!("/race-{round}/");
        let settings = etcd.settings(&prefix).resolve().unwrap();
        Client::connect(&settings).unwrap().apply(fleet(LBS)).unwrap();
        let racers: Vec<_> = (0..2)
            .map(|_| {
                let settings = settings.clone();
                std::thread::spawn(move || {
                    let c = Client::connect(&settings).unwrap();
                    let mut conflicts = 0;
                    // Until this controller sees nothing left to do (bounded: each pass allocates or loses a race).
                    for _ in 0..(2 * LBS + 2) {
                        let r = c.block_on(allocate_round(c.store(), &pools(), None)).unwrap();
                        assert!(r.failed.is_empty(), "{:?}", r.failed);
                        conflicts += r.conflicts;
                        if r.allocated.is_empty() && r.conflicts == 0 {
                            return conflicts;
                        }
                    }
                    panic!("did not settle");
                })
            })
            .collect();
        total_conflicts += racers.into_iter().map(|t| t.join().unwrap()).sum::<usize>();
        let listing = Client::connect(&settings).unwrap().list().unwrap();
        assert_eq!(
            listing.allocations.len(),
            LBS,
            "round {round}: every LB allocated"
        );
        let mut ids = BTreeSet::new();
        let mut ips = BTreeSet::new();
        for (k, (a, _)) in &listing.allocations {
            assert!(
                ids.insert(a.lb_id),
                "round {round}: lb_id {} twice ({k})",
                a.lb_id
            );
            assert_eq!(a.public_ips.len(), 2, "{k}: one per family");
            for ip in &a.public_ips {
                assert!(ips.insert(*ip), "round {round}: {ip} twice ({k})");
            }
            // The LoadBalancer's status.ips says the same.
            let lb = &listing.objects[&k.clone().of(ironlb_api::Kind::LoadBalancer)];
            let ironlb_api::Object::LoadBalancer(o) = &lb.object else {
                unreachable!()
            };
            let status: Vec<String> = o.status.ips.iter().map(|s| s.ip.clone()).collect();
            let want: Vec<String> = a.public_ips.iter().map(ToString::to_string).collect();
            assert_eq!(status, want, "{k}");
        }
    }
    eprintln!("{ROUNDS} rounds of 2 controllers x {LBS} LBs: {total_conflicts} lost races, no duplicate");
}

#[test]
fn a_controller_that_lost_its_lease_writes_nothing_and_one_leads_at_a_time() {
    let Some(etcd) = EtcdServer::start_or_skip("a_controller_that_lost_its_lease_writes_nothing") else {
        return;
    };
    let settings = etcd.settings("/ironlb/").resolve().unwrap();
    let c = Client::connect(&settings).unwrap();
    c.apply(fleet(3)).unwrap();
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
