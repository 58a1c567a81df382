//! Agents against a real etcd (issue 17 tests 1 and 6): several hosts, each with its own model device, program
//! byte-identical tables from one store, with allocations given by a writer standing in for the controller; a host
//! joining later programs the same without writing anything. Skipped without etcd, except under CI=true.

#[path = "common/cluster.rs"]
mod cluster;

use cluster::{
    agent, converge, converge_at, extra_lb, kill_and_wait_for_takeover, leader, ready, reasons, Controller,
};
use ironlb_cluster::testing::{examples, EtcdServer};
use ironlb_runtime::cluster::agent::Agent;
use ironlb_runtime::status::Reason;
use std::time::Duration;

#[test]
fn three_agents_program_byte_identical_tables_and_a_late_joiner_writes_nothing() {
    let Some(etcd) = EtcdServer::start_or_skip("three_agents_program_byte_identical_tables") else {
        return;
    };
    let writer = etcd.client("/ironlb/");
    writer.apply(examples()).unwrap();
    let mut agents: Vec<Agent> = (0..3).map(|_| agent(&etcd.settings("/ironlb/"))).collect();
    // No allocation yet: nothing is programmed, and the status says why.
    for a in &mut agents {
        converge(a, "NotAllocated", |a| reasons(a).contains(&Reason::NotAllocated));
        assert_eq!(ready(a), 0);
        let d: serde_json::Value = serde_json::from_str(&a.dump_json().unwrap()).unwrap();
        assert_eq!(d["lbs"].as_object().map(|m| m.len()), Some(0), "{d}");
    }
    cluster::allocate_examples(&writer);
    let rev = writer.list().unwrap().revision;
    for a in &mut agents {
        converge_at(a, rev, "both LoadBalancers ready", |a| ready(a) == 2);
    }
    let dumps: Vec<String> = agents.iter_mut().map(|a| a.dump_json().unwrap()).collect();
    let first: serde_json::Value = serde_json::from_str(&dumps[0]).unwrap();
    let text = first.to_string();
    assert!(
        text.contains("203.0.113.10") && text.contains("2607:f0d0:1002:51::4"),
        "{text}"
    );
    for d in &dumps[1..] {
        assert_eq!(d, &dumps[0], "every host holds byte-identical tables");
    }
    // The given lb_ids, not ones chosen locally.
    let ids: Vec<&String> = first["lbs"].as_object().expect("lbs by lb_id").keys().collect();
    assert_eq!(ids, ["7", "9"], "{text}");

    // A change through the store reaches every host the same way.
    let mut lb = examples()
        .into_iter()
        .find(|i| {
            i.object.object_ref().key.name == "my-load-balancer"
                && i.object.kind() == ironlb_api::Kind::LoadBalancer
        })
        .unwrap();
    let ironlb_api::Object::LoadBalancer(o) = &mut lb.object else {
        unreachable!()
    };
    o.spec.ports.push(ironlb_api::types::LoadBalancerPort {
        protocol: Some(ironlb_api::types::Protocol::Tcp),
        port: 443,
        port_end: None,
        end_port: None,
    });
    writer.apply(vec![lb]).unwrap();
    let rev = writer.list().unwrap().revision;
    let before_change = dumps[0].clone();
    for a in &mut agents {
        converge_at(a, rev, "port 443 added", |a| {
            a.dump_json().unwrap() != before_change
        });
    }
    let dumps: Vec<String> = agents.iter_mut().map(|a| a.dump_json().unwrap()).collect();
    for d in &dumps[1..] {
        assert_eq!(d, &dumps[0]);
    }

    // Issue test 6: a host joining the running fleet programs the same tables and writes nothing.
    let revision = writer.list().unwrap().revision;
    let mut late = agent(&etcd.settings("/ironlb/"));
    converge(&mut late, "late joiner ready", |a| ready(a) == 2);
    // The same configuration: lb_ids, VIPs, ports, targets and hashing. (Its raw table bytes differ from the others'
    // in memory placement and shadow-set generation, which record the order changes arrived in: the others went
    // through an update, it programmed the result at once; docs/cluster.md "What is identical".)
    let theirs = agents[0].programmed();
    assert_eq!(theirs.len(), 2);
    assert_eq!(late.programmed(), theirs);
    assert_eq!(
        writer.list().unwrap().revision,
        revision,
        "the agent wrote nothing"
    );
}

/// Issue tests 1 and 2 with the real controller: `ironlb controller` allocates, two agents program identical
/// tables; the leading controller is killed and the other takes over within the lease time, allocating a new LB.
#[test]
fn agents_follow_the_controller_and_a_killed_leader_is_replaced() {
    let Some(etcd) =
        EtcdServer::start_or_skip("agents_follow_the_controller_and_a_killed_leader_is_replaced")
    else {
        return;
    };
    let writer = etcd.client("/ironlb/");
    let first = Controller::start(&[etcd.endpoint()], "c1", 2);
    writer.apply(examples()).unwrap();
    let mut agents: Vec<Agent> = (0..2).map(|_| agent(&etcd.settings("/ironlb/"))).collect();
    for a in &mut agents {
        converge(a, "both ready with the controller's allocations", |a| {
            ready(a) == 2
        });
    }
    assert_eq!(leader(&writer).map(|l| l.0).as_deref(), Some("c1"));
    let second = Controller::start(&[etcd.endpoint()], "c2", 2);
    let took = kill_and_wait_for_takeover(&writer, first, "c2", Duration::from_secs(2));
    eprintln!("failover after {took:?} (lease time 2 s)");
    writer.apply(extra_lb("extra", 443)).unwrap();
    for a in &mut agents {
        converge(a, "the new LB, allocated by c2", |a| ready(a) == 3);
    }
    let d0 = agents[0].dump_json().unwrap();
    assert_eq!(agents[1].dump_json().unwrap(), d0);
    drop(second);
}

#[test]
fn a_device_reset_under_a_waiting_agent_is_found_and_repaired() {
    let Some(etcd) = EtcdServer::start_or_skip("a_device_reset_under_a_waiting_agent_is_found_and_repaired")
    else {
        return;
    };
    let writer = etcd.client("/ironlb/");
    writer.apply(examples()).unwrap();
    cluster::allocate_examples(&writer);
    let state = tempfile::tempdir().unwrap();
    let cfg = cluster::agent_config(
        etcd.settings("/ironlb/").resolve().unwrap(),
        Some(state.path().to_path_buf()),
    );
    let mut a = Agent::start(cfg).unwrap();
    assert!(a.wait_listed(Duration::from_secs(20)));
    converge(&mut a, "both ready", |a| ready(a) == 2);
    let before = a.programmed();
    assert!(!a.check_device(), "no reset yet");
    // The device is reset under the agent (as a function level reset would): its tables are empty.
    a.model().expect("inproc").lock().unwrap().reset();
    // The agent, waiting for a change of the store (none comes), finds the reset within its health interval and
    // re-programs the device; a watchdog ends the wait after 20 s if it does not.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let timed_out = std::thread::scope(|s| {
        let stop = &stop;
        let watchdog = s.spawn(move || {
            let fired = finished.recv_timeout(Duration::from_secs(20)).is_err();
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            fired
        });
        a.wait_due(stop).unwrap();
        done.send(()).unwrap();
        watchdog.join().unwrap()
    });
    assert!(!timed_out, "the reset was not found while the agent waited");
    assert_eq!(a.programmed(), before, "every load balancer re-programmed");
    // The next sync writes the condition to status.json.
    a.sync().unwrap();
    let status: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state.path().join("status.json")).unwrap()).unwrap();
    let text = status.to_string();
    assert!(
        text.contains("DeviceRestored") && text.contains("reset #1"),
        "{status:#}"
    );
}
