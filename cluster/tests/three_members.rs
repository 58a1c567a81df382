//! Racing controllers on a three-member etcd cluster (issue 17 test 2): two controllers, each reaching the cluster
//! through all three members, allocate concurrently, many times, while a follower and then the leader are killed in
//! the middle of a race; no lb_id or IP is ever handed out twice. A round that fails (a write in flight when the
//! leader died is not answered before the request timeout) is planned again, as `ironlb controller` does. (The agent
//! and `ironlb controller` processes on three members: runtime/tests/cluster_three_members.rs.) Skipped without
//! etcd, except under CI=true.

mod common;

use common::race;
use ironlb_cluster::testing::EtcdCluster;
use ironlb_cluster::{Client, EtcdConfig, EtcdSettings};
use std::time::{Duration, Instant};

/// Waits until the racers of this round have written their first allocation record (so that a member killed now
/// dies in the middle of the race).
fn first_allocation(cfg: &EtcdConfig) {
    let c = Client::connect(cfg).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while c.list().unwrap().allocations.is_empty() {
        assert!(Instant::now() < deadline, "no allocation within 20 s");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn racing_controllers_on_three_members_never_hand_out_a_value_twice_while_members_die() {
    let test = "racing_controllers_on_three_members_never_hand_out_a_value_twice_while_members_die";
    let Some(mut etcd) = EtcdCluster::start_or_skip(test) else {
        return;
    };
    const ROUNDS: usize = 20;
    const LBS: usize = 24;
    let started = Instant::now();
    // All three endpoints; the prefix set per round (the closure below holds the cluster to kill members).
    let all = etcd.settings("/");
    let settings = |prefix: &str| EtcdSettings {
        prefix: Some(prefix.to_string()),
        ..all.clone()
    };
    // Which member is down from which round: a follower for rounds 5 to 9, the leader from round 12 to 16.
    let mut down = None;
    let mut kills = Vec::new();
    let t = race(settings, ROUNDS, LBS, |round, cfg| match round {
        5 | 12 => {
            let leader = etcd.leader(Duration::from_secs(20)).unwrap();
            let victim = if round == 5 {
                (leader + 1) % EtcdCluster::SIZE
            } else {
                leader
            };
            first_allocation(cfg);
            etcd.kill(victim);
            kills.push((round, victim, victim == leader));
            down = Some(victim);
        }
        10 | 17 => {
            let m = down.take().expect("a member is down");
            etcd.restart(m)
                .unwrap_or_else(|e| panic!("member {m} did not come back: {e}"));
        }
        _ => {}
    });
    eprintln!(
        "{ROUNDS} rounds of 2 controllers x {LBS} LBs on three members, killed (round, member, leader) {kills:?}: \
         {} lost races, {} failed rounds planned again, no duplicate; {:?}",
        t.conflicts,
        t.failed_rounds,
        started.elapsed()
    );
    assert_eq!(kills.len(), 2);
}
