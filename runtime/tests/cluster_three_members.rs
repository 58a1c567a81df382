//! Agents and `ironlb controller` processes on a three-member etcd cluster (issue 17 test 2), every one of them
//! given all three endpoints. Skipped without etcd, except under CI=true.
//!
//! - One member down is not noticed: a follower, then the leader, is killed; `apply` still succeeds, the controller
//!   allocates the new LoadBalancer without losing its lease (it never campaigns again), and the agent programs it
//!   without an outage or a relist — its watch, when it was on the member that died, goes on from another.
//! - A controller killed (SIGKILL) in the middle of allocating a batch is replaced within its lease time, and the
//!   batch ends with every LoadBalancer allocated once: no lb_id or IP twice.
//! - A controller stopped with SIGTERM gives up its lease, and the standby leads at once, not after the lease time.
//!
//! (Two controllers racing on three members while members die: cluster/tests/three_members.rs.)

#[path = "common/cluster.rs"]
mod cluster;

use cluster::{
    agent, converge, converge_at, extra_lb, kill_and_wait_for_takeover, leader, leader_and_standby, ready,
    Controller,
};
use ironlb_cluster::testing::{allocation_count, assert_allocated_once, examples, fleet, EtcdCluster};
use ironlb_cluster::Client;
use std::time::{Duration, Instant};

/// The member that serves the one stream of `method` in the test (the agent's `Watch`, the controller's
/// `LeaseKeepAlive`), polling until one does (a stream may be opening again).
fn serving(etcd: &EtcdCluster, method: &str) -> usize {
    let mut member = None;
    cluster::until(
        &format!("a member serves the {method} stream"),
        Duration::from_secs(20),
        || {
            member = (0..EtcdCluster::SIZE).find(|&i| etcd.open_streams(i, method).unwrap_or(0) > 0);
            member.is_some()
        },
    );
    member.expect("found")
}

#[test]
fn one_member_down_is_not_noticed_by_apply_controller_or_agent() {
    let Some(mut etcd) =
        EtcdCluster::start_or_skip("one_member_down_is_not_noticed_by_apply_controller_or_agent")
    else {
        return;
    };
    let settings = etcd.settings("/ironlb/");
    let writer = Client::connect(&settings.resolve().unwrap()).unwrap();
    let controller = Controller::start(&etcd.endpoints(), "c1", 5);
    writer.apply(examples()).unwrap();
    let mut agent = agent(&settings);
    converge(&mut agent, "both ready with the controller's allocations", |a| {
        ready(a) == 2
    });
    let lead = leader(&writer).expect("c1 leads");
    assert_eq!(lead.0, "c1");

    // Kill a follower (one serving the agent's watch or the controller's keep-alives, if one does), then, with it
    // back, the leader; then, if one of the two streams was not on a killed member yet, the member serving it. Each
    // time a LoadBalancer is applied, allocated and programmed, and neither the agent nor the controller noticed.
    let (mut watch_lost, mut keep_alive_lost) = (false, false);
    for step in 1..=3 {
        if step == 3 && watch_lost && keep_alive_lost {
            break;
        }
        let etcd_leader = etcd.leader(Duration::from_secs(20)).unwrap();
        let watch = serving(&etcd, "Watch");
        let keep_alive = serving(&etcd, "LeaseKeepAlive");
        let victim = match step {
            1 => [watch, keep_alive]
                .into_iter()
                .find(|&m| m != etcd_leader)
                .unwrap_or((etcd_leader + 1) % EtcdCluster::SIZE),
            2 => etcd_leader,
            _ if !watch_lost => watch,
            _ => keep_alive,
        };
        watch_lost |= victim == watch;
        keep_alive_lost |= victim == keep_alive;
        let what = format!(
            "member {victim} ({}{}{})",
            if victim == etcd_leader {
                "the leader"
            } else {
                "a follower"
            },
            if victim == watch {
                ", serving the agent's watch"
            } else {
                ""
            },
            if victim == keep_alive {
                ", serving the controller's keep-alives"
            } else {
                ""
            },
        );
        etcd.kill(victim);
        let killed = Instant::now();
        let name = format!("extra-{step}");
        writer
            .apply(extra_lb(&name, 8080 + step as u16))
            .unwrap_or_else(|e| panic!("{what} down: apply failed: {e}"));
        let rev = writer.list().unwrap().revision;
        converge_at(
            &mut agent,
            rev,
            &format!("{what} down: {name} allocated and programmed"),
            |a| ready(a) == 2 + step,
        );
        eprintln!(
            "{what} down: {name} applied, allocated and programmed after {:?}",
            killed.elapsed()
        );
        let h = agent.health();
        assert!(
            h.connected && h.outages == 0 && h.relists == 0 && h.failures == 0,
            "{what} down: the agent noticed: {h:?}"
        );
        let log = controller.log();
        assert!(
            !log.contains("lost the controller lease") && !log.contains("controller: etcd failed"),
            "{what} down: the controller gave up its lead; its log:\n{log}"
        );
        assert_eq!(
            leader(&writer),
            Some(lead.clone()),
            "{what} down: the controller campaigned again; its log:\n{log}"
        );
        etcd.restart(victim)
            .unwrap_or_else(|e| panic!("member {victim} did not come back: {e}"));
    }
    assert!(
        watch_lost && keep_alive_lost,
        "both streams were on a killed member once"
    );
    let failed_rounds = controller.log().matches("allocation round failed").count();
    eprintln!("the controller's failed (and retried) allocation rounds: {failed_rounds}");
}

#[test]
fn a_controller_killed_while_allocating_is_replaced_within_its_lease_time() {
    let Some(etcd) =
        EtcdCluster::start_or_skip("a_controller_killed_while_allocating_is_replaced_within_its_lease_time")
    else {
        return;
    };
    /// LoadBalancers applied at once: c1 allocates them in several transactions (of at most 128 writes each).
    const WAVE: usize = 600;
    /// Waves tried before giving up on catching c1 part-way through one.
    const WAVES: usize = 6;
    const TTL: u32 = 2;
    let endpoints = etcd.endpoints();
    let writer = etcd.client("/ironlb/");
    // A public pool with room for every wave (the default IPv4 pool has 254 addresses).
    let pools = ["--public-pool", "198.18.0.0/15,2001:db8:ff::/64"];
    let (first, second) = leader_and_standby(&endpoints, &writer, TTL, &pools);
    // c1 must be caught in the middle of a batch: some LoadBalancers with records, not all. Seeing a record and
    // killing c1 are two steps, and c1 may finish the wave in between; so it is frozen (SIGSTOP) the moment a record
    // of the wave shows, and only if part of the wave is still unallocated then is it killed. Otherwise it goes on,
    // and a new wave is applied.
    let mut total = 0;
    let at_kill = loop {
        assert!(
            total < WAVE * WAVES,
            "c1 finished each of {WAVES} waves of {WAVE} LoadBalancers before it could be frozen part-way"
        );
        writer.apply(fleet(total..total + WAVE)).unwrap();
        total += WAVE;
        cluster::until("c1 allocates", Duration::from_secs(30), || {
            allocation_count(&writer) > total - WAVE
        });
        first.pause();
        let done = allocation_count(&writer);
        if done < total {
            break done;
        }
        first.resume();
    };
    let took = kill_and_wait_for_takeover(&writer, first, "c2", Duration::from_secs(TTL.into()));
    cluster::until("c2 allocates the rest", Duration::from_secs(60), || {
        allocation_count(&writer) == total
    });
    assert_allocated_once(&writer.list().unwrap(), total, "after the failover");
    eprintln!(
        "c1 frozen and killed after {at_kill} of {total} allocations; c2 led {took:?} after the kill (lease time \
         {TTL} s) and allocated the rest; no lb_id or IP twice"
    );
    drop(second);
}

#[test]
fn a_controller_stopped_hands_over_at_once() {
    let Some(etcd) = EtcdCluster::start_or_skip("a_controller_stopped_hands_over_at_once") else {
        return;
    };
    // A lease time far beyond the wait below: only a resign can make c2 lead in time.
    const TTL: u32 = 120;
    let endpoints = etcd.endpoints();
    let writer = etcd.client("/ironlb/");
    let (first, second) = leader_and_standby(&endpoints, &writer, TTL, &[]);
    let stopped = Instant::now();
    let log = first.terminate();
    assert!(log.contains("gave up the controller lead"), "{log}");
    cluster::until(
        "c2 leads well within c1's lease time",
        Duration::from_secs(20),
        || leader(&writer).is_some_and(|(id, _)| id == "c2"),
    );
    eprintln!(
        "c2 led {:?} after c1 was stopped (lease time {TTL} s)",
        stopped.elapsed()
    );
    // The new leader works: it allocates.
    writer.apply(fleet(0..3)).unwrap();
    cluster::until("c2 allocates", Duration::from_secs(30), || {
        writer.list().unwrap().allocations.len() == 3
    });
    assert_allocated_once(&writer.list().unwrap(), 3, "after the hand-over");
    drop(second);
}
