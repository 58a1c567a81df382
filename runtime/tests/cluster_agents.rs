//! Agents against a real etcd (issue 17 tests 1 and 6): several hosts, each with its own model device, program
//! byte-identical tables from one store, with allocations given by a writer standing in for the controller; a host
//! joining later programs the same without writing anything. Skipped without etcd, except under CI=true.

#[path = "common/host.rs"]
mod host;

use host::host_with_networks;

use ironlb_api::ObjectKey;
use ironlb_cluster::alloc::Allocation;
use ironlb_cluster::store::Expect;
use ironlb_cluster::testing::{examples, EtcdServer};
use ironlb_cluster::write::Incoming;
use ironlb_cluster::Client;
use ironlb_runtime::backend::BackendSpec;
use ironlb_runtime::cluster::agent::{Agent, AgentConfig};
use ironlb_runtime::status::Reason;
use ironlb_sim::DeviceConfig;
use std::time::{Duration, Instant};

fn agent(etcd: &EtcdServer) -> Agent {
    let a = Agent::start(AgentConfig {
        etcd: etcd.settings("/ironlb/").resolve().unwrap(),
        backend: BackendSpec::Inproc,
        device_config: DeviceConfig::default(),
        host: host_with_networks(&[(1, 100), (2, 200)]),
        state_dir: None,
    })
    .unwrap();
    assert!(a.wait_listed(Duration::from_secs(20)), "no listing from etcd");
    a
}

/// Waits until the agent has seen every write up to `revision`, then syncs until `done` holds (bounded: 20 s;
/// between tries it waits for a change of the store, at most 100 ms). Every agent thus syncs the same sequence of
/// store states, whatever the timing of its watch.
fn converge_at(a: &mut Agent, revision: i64, what: &str, done: impl Fn(&mut Agent) -> bool) {
    assert!(
        a.wait_revision(revision, Duration::from_secs(20)),
        "{what}: revision {revision} not seen"
    );
    converge(a, what, done)
}

fn converge(a: &mut Agent, what: &str, done: impl Fn(&mut Agent) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        a.sync().unwrap();
        if done(a) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: not reached in 20 s");
        a.wait_change(Duration::from_millis(100)).unwrap();
    }
}

fn ready(a: &mut Agent) -> usize {
    a.reconciler()
        .map_or(0, |r| r.status().values().filter(|s| s.ready()).count())
}

fn reasons(a: &mut Agent) -> Vec<Reason> {
    a.reconciler().map_or(Vec::new(), |r| {
        r.status()
            .values()
            .flat_map(|s| s.conditions.iter().map(|c| c.reason))
            .collect()
    })
}

/// The controller's decisions for the examples, with lb_ids no allocator of ours would choose first (7, 9).
fn allocations() -> Vec<(ObjectKey, Allocation)> {
    vec![
        (
            ObjectKey::new("default", "my-load-balancer"),
            Allocation {
                lb_id: 7,
                public_ips: vec![
                    "203.0.113.10".parse().unwrap(),
                    "2001:db8:ff::10".parse().unwrap(),
                ],
                prefix_ips: Default::default(),
            },
        ),
        (
            ObjectKey::new("default", "my-loadbalancer"),
            Allocation {
                lb_id: 9,
                public_ips: Vec::new(),
                prefix_ips: [(
                    ObjectKey::new("default", "my-lb-prefix-v6"),
                    "2607:f0d0:1002:51::4".parse().unwrap(),
                )]
                .into(),
            },
        ),
    ]
}

#[test]
fn three_agents_program_byte_identical_tables_and_a_late_joiner_writes_nothing() {
    let Some(etcd) = EtcdServer::start_or_skip("three_agents_program_byte_identical_tables") else {
        return;
    };
    let writer = Client::connect(&etcd.settings("/ironlb/").resolve().unwrap()).unwrap();
    writer.apply(examples()).unwrap();
    let mut agents: Vec<Agent> = (0..3).map(|_| agent(&etcd)).collect();
    // No allocation yet: nothing is programmed, and the status says why.
    for a in &mut agents {
        converge(a, "NotAllocated", |a| reasons(a).contains(&Reason::NotAllocated));
        assert_eq!(ready(a), 0);
        let d: serde_json::Value = serde_json::from_str(&a.dump_json().unwrap()).unwrap();
        assert_eq!(d["lbs"].as_object().map(|m| m.len()), Some(0), "{d}");
    }
    for (lb, alloc) in allocations() {
        assert!(writer
            .block_on(writer.store().put_allocation(&lb, &alloc, Expect::Absent))
            .unwrap());
    }
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
    let mut late = agent(&etcd);
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

/// A child process killed (SIGKILL) when dropped.
struct Proc(std::process::Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn controller(etcd: &EtcdServer, id: &str) -> Proc {
    Proc(
        std::process::Command::new(env!("CARGO_BIN_EXE_ironlb"))
            .args([
                "controller",
                "--etcd-endpoints",
                &etcd.endpoint(),
                "--id",
                id,
                "--lease-ttl",
                "2",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    )
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
    let writer = Client::connect(&etcd.settings("/ironlb/").resolve().unwrap()).unwrap();
    let first = controller(&etcd, "c1");
    writer.apply(examples()).unwrap();
    let mut agents: Vec<Agent> = (0..2).map(|_| agent(&etcd)).collect();
    for a in &mut agents {
        converge(a, "both ready with the controller's allocations", |a| {
            ready(a) == 2
        });
    }
    let leader = |w: &Client| {
        let mut kv = w.store().client().kv_client();
        let key = format!("{}leader", w.store().layout().record_prefix("controller"));
        w.block_on(kv.get(key, None))
            .unwrap()
            .kvs()
            .first()
            .map(|kv| String::from_utf8_lossy(kv.value()).into_owned())
    };
    assert_eq!(leader(&writer).as_deref(), Some("c1"));
    let second = controller(&etcd, "c2");
    drop(first); // SIGKILL: no resign; the lease lapses after 2 s
    let killed = Instant::now();
    let deadline = killed + Duration::from_secs(20);
    while leader(&writer).as_deref() != Some("c2") {
        assert!(Instant::now() < deadline, "c2 did not take over");
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("failover after {:?} (lease time 2 s)", killed.elapsed());
    let (extra, errors) = ironlb_api::load::load_str(
        "extra.yaml",
        "apiVersion: networking.ironcore.dev/v1alpha1\nkind: LoadBalancer\nmetadata: {name: extra}\nspec:\n  type: Public\n  ipFamilies: [IPv4]\n  ports: [{protocol: TCP, port: 443}]\n  networkRef: {name: my-network}\n  networkInterfaceSelector: {matchLabels: {app: web}}\n",
    );
    assert!(errors.is_empty());
    writer.apply(Incoming::unpinned(extra)).unwrap();
    for a in &mut agents {
        converge(a, "the new LB, allocated by c2", |a| ready(a) == 3);
    }
    let d0 = agents[0].dump_json().unwrap();
    assert_eq!(agents[1].dump_json().unwrap(), d0);
    drop(second);
}
