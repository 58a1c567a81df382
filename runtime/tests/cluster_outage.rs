//! An agent through etcd outages (issue 17 tests 3 and 4): while etcd is unreachable the device keeps its last good
//! state — packets replayed through it to the load balancers it holds are all forwarded, across several of the
//! agent's retries, and the agent writes nothing to it — and the outage is reported; etcd compacts its history past
//! the agent's watch meanwhile; on return the agent relists and ends in the store's state, and a change made after
//! the return is applied, all without a drop for the load balancer that never changed. The agent reaches etcd
//! through a TCP proxy the test can cut, so the outage is exactly when the test says. Skipped without etcd, except
//! under CI=true.

#[path = "common/cluster.rs"]
mod cluster;

use cluster::{agent_config, converge_at, extra_lb, ready, until};
use ironlb_api::{Kind, ObjectKey, ObjectRef};
use ironlb_cluster::alloc::Allocation;
use ironlb_cluster::store::Expect;
use ironlb_cluster::testing::EtcdServer;
use ironlb_cluster::write::Incoming;
use ironlb_cluster::EtcdSettings;
use ironlb_driver::SharedModel;
use ironlb_hw::DropReason;
use ironlb_runtime::cluster::agent::Agent;
use ironlb_sim::Verdict;
use std::io::Read;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A TCP proxy to etcd that the test can cut (every connection closed, new ones refused) and restore.
struct Proxy {
    port: u16,
    open: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    fn start(target: SocketAddr) -> Proxy {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let open = Arc::new(AtomicBool::new(true));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (o, c) = (open.clone(), conns.clone());
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(client) = s else { continue };
                if !o.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(target) else {
                    continue;
                };
                {
                    let mut g = c.lock().unwrap();
                    g.push(client.try_clone().unwrap());
                    g.push(server.try_clone().unwrap());
                }
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16384];
                        loop {
                            match from.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => {
                                    if std::io::Write::write_all(&mut to, &buf[..n]).is_err() {
                                        break;
                                    }
                                }
                            }
                        }
                        let _ = to.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        Proxy { port, open, conns }
    }

    fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }

    fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

/// Traffic replayed through a model device from a thread of its own: TCP SYNs and UDP datagrams to VIPs, on
/// 64 source ports each, over and over, until stopped. Every verdict is counted; a drop is kept with its packet.
struct Replay {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Replayed>,
}

/// What a replay sent and what became of it.
#[derive(Debug, Default)]
struct Replayed {
    sent: u64,
    forwarded: u64,
    /// The first drops: (packet, reason).
    drops: Vec<(String, DropReason)>,
    dropped: u64,
}

impl Replay {
    /// Starts replaying `flows` (ingress port, `build_packet` description with `{sport}` for the source port)
    /// through `model`; every packet must leave on the underlay port 3.
    fn start(model: SharedModel, flows: &[(u32, &str)]) -> Replay {
        let packets: Vec<(u32, String, Vec<u8>)> = flows
            .iter()
            .flat_map(|(port, f)| {
                (0..64u16).map(move |i| {
                    let text = f.replace("{sport}", &(40000 + i).to_string());
                    let pkt = ironlb_runtime::cli::build_packet(&text).unwrap();
                    (*port, text, pkt)
                })
            })
            .collect();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut r = Replayed::default();
                // Whole passes only, and at least one: every flow is sent as often as every other.
                while r.sent == 0 || !stop.load(Ordering::Relaxed) {
                    for (port, text, pkt) in &packets {
                        let v = model.lock().unwrap().process(*port, pkt);
                        r.sent += 1;
                        match v {
                            Verdict::Forward { egress_port: 3, .. } => r.forwarded += 1,
                            Verdict::Forward { egress_port, .. } => {
                                panic!("{text}: forwarded on port {egress_port}, not the underlay port 3")
                            }
                            Verdict::Drop(reason) => {
                                r.dropped += 1;
                                if r.drops.len() < 10 {
                                    r.drops.push((text.clone(), reason));
                                }
                            }
                        }
                    }
                }
                r
            })
        };
        Replay { stop, thread }
    }

    /// Stops after the pass under way; what was sent.
    fn finish(self) -> Replayed {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the replay thread")
    }
}

/// Register writes the driver made to the device so far: every table change makes some (and so does every
/// command that reads tables, such as a dump).
fn device_writes(a: &mut Agent) -> u64 {
    a.with_reconciler(|r| r.device().access_counts().writes)
        .expect("running")
}

#[test]
fn outage_keeps_the_device_forwarding_and_a_compaction_meanwhile_ends_in_a_relist() {
    let Some(etcd) = EtcdServer::start_or_skip(
        "outage_keeps_the_device_forwarding_and_a_compaction_meanwhile_ends_in_a_relist",
    ) else {
        return;
    };
    let target: SocketAddr = etcd.endpoint().trim_start_matches("http://").parse().unwrap();
    let proxy = Proxy::start(target);
    let writer = etcd.client("/ironlb/");
    writer.apply(ironlb_cluster::testing::examples()).unwrap();
    cluster::allocate_examples(&writer);
    let state = tempfile::tempdir().unwrap();
    let mut cfg = EtcdSettings {
        endpoints: Some(vec![format!("http://127.0.0.1:{}", proxy.port)]),
        ..EtcdSettings::default()
    }
    .resolve()
    .unwrap();
    // Each attempt of the agent gives up after 1 s (not the default 5 s), so that several retries fit in the outage.
    cfg.timeout = Duration::from_secs(1);
    let mut agent = Agent::start(agent_config(cfg, Some(state.path().to_path_buf()))).unwrap();
    let rev = writer.list().unwrap().revision;
    assert!(agent.wait_revision(rev, Duration::from_secs(20)));
    until("both ready", Duration::from_secs(30), || {
        agent.sync().unwrap();
        ready(&mut agent) == 2
    });
    let model = agent.model().expect("an inproc device has a model");
    let before = agent.dump_json().unwrap();
    // A sync with nothing to do writes nothing to the device (what the outage checks below rely on). From here
    // until the end of the outage the test itself sends the device no command either (no dump).
    let writes = device_writes(&mut agent);
    agent.sync().unwrap();
    assert_eq!(
        device_writes(&mut agent),
        writes,
        "an idle sync writes to the device"
    );

    // Traffic to both load balancers' VIPs (the public one on the public port 0, the internal one on port 1 of its
    // Network): from before the outage until after its end for the public LB, which never changes on the device;
    // through the outage for the internal one, which is deleted in etcd meanwhile and stays on the device until
    // etcd is back.
    let public_flows = [
        (0, "tcp 198.51.100.7:{sport} -> 203.0.113.10:80"),
        (0, "udp [2001:db8::7]:{sport} -> [2001:db8:ff::10]:1500"),
    ];
    let internal_flows = [
        (1, "tcp 10.0.0.99:{sport} -> 10.0.0.1:8080"),
        (
            1,
            "tcp [2607:f0d0:1002:51::99]:{sport} -> [2607:f0d0:1002:51::4]:8080",
        ),
    ];
    let drops_before = model.lock().unwrap().drop_counters();
    let public_replay = Replay::start(model.clone(), &public_flows);
    let internal_replay = Replay::start(model.clone(), &internal_flows);

    // etcd becomes unreachable: the device keeps every load balancer; the outage is in health and status.json.
    proxy.cut();
    let cut = std::time::Instant::now();
    until("outage seen", Duration::from_secs(30), || {
        !agent.health().connected
    });
    agent.sync().unwrap();
    assert_eq!(ready(&mut agent), 2);
    let status = std::fs::read_to_string(state.path().join("status.json")).unwrap();
    assert!(status.contains("unreachable since"), "{status}");

    // Meanwhile the internal load balancer is deleted and etcd compacts its history past the agent's revision.
    // (Two writes: compacting at the second's revision removes the first, which the agent's watch needs next.)
    writer
        .delete(
            vec![ObjectRef::new(Kind::LoadBalancer, "default", "my-loadbalancer")],
            false,
        )
        .expect_err("the routing still names it");
    writer
        .delete(
            vec![
                ObjectRef::new(Kind::LoadBalancer, "default", "my-loadbalancer"),
                ObjectRef::new(Kind::LoadBalancerRouting, "default", "my-loadbalancer"),
            ],
            false,
        )
        .unwrap();
    let mut lb = writer
        .get(&ObjectRef::new(Kind::LoadBalancer, "default", "my-load-balancer"))
        .unwrap()
        .unwrap();
    if let ironlb_api::Object::LoadBalancer(o) = &mut lb.object {
        o.metadata.labels.insert("edited".into(), "during-outage".into());
    }
    writer
        .apply(vec![Incoming {
            file: "edit.yaml".into(),
            object: lb.object,
            resource_version: None,
        }])
        .unwrap();
    let now = writer.list().unwrap().revision;
    let mut c = writer.store().client().clone();
    writer.block_on(c.compact(now, None)).unwrap();
    let relists = agent.health().relists;

    // The agent keeps trying (each attempt fails, and waits its backoff), syncing as its loop would, while the
    // packets flow: several retries, and the device is neither cleared nor written.
    const RETRIES: u32 = 4;
    until("the agent's retries", Duration::from_secs(60), || {
        agent.sync().unwrap();
        agent.health().failures >= RETRIES
    });
    let internal_sent = internal_replay.finish();
    assert_eq!(
        device_writes(&mut agent),
        writes,
        "the agent wrote to the device during the outage"
    );
    assert_eq!(
        agent.dump_json().unwrap(),
        before,
        "nothing changes on the device during the outage"
    );
    assert_eq!(
        model.lock().unwrap().drop_counters(),
        drops_before,
        "the device dropped packets during the outage"
    );
    assert!(
        internal_sent.dropped == 0 && internal_sent.forwarded == internal_sent.sent,
        "the internal LB, unchanged on the device until etcd is back, dropped: {internal_sent:?}"
    );
    assert!(agent.health().outages >= 1 && !agent.health().connected);

    // etcd is back: the agent lists again (its watch revision is compacted away) and removes the deleted LB.
    let outage = cut.elapsed();
    proxy.restore();
    let restored = std::time::Instant::now();
    let mut last = String::new();
    until("relisted and resynced", Duration::from_secs(30), || {
        agent.sync().unwrap();
        let h = agent.health();
        let r = ready(&mut agent);
        last = format!("{h:?} ready={r}");
        h.connected && h.relists > relists && h.revision >= now && r == 1
    });
    eprintln!("{last}; resynced {:?} after etcd returned", restored.elapsed());
    assert_eq!(agent.health().failures, 0, "reconnected: no failure counted");
    let after: serde_json::Value = serde_json::from_str(&agent.dump_json().unwrap()).unwrap();
    let ids: Vec<&String> = after["lbs"].as_object().unwrap().keys().collect();
    assert_eq!(ids, ["7"], "only the public load balancer is left: {after}");
    let status = std::fs::read_to_string(state.path().join("status.json")).unwrap();
    assert!(!status.contains("unreachable since"), "{status}");

    // A change after the return is applied: a new load balancer, given lb_id 11 and a public IP.
    writer.apply(extra_lb("after-outage", 443)).unwrap();
    let extra = Allocation {
        lb_id: 11,
        public_ips: vec!["203.0.113.11".parse().unwrap()],
        prefix_ips: Default::default(),
    };
    assert!(writer
        .block_on(writer.store().put_allocation(
            &ObjectKey::new("default", "after-outage"),
            &extra,
            Expect::Absent
        ))
        .unwrap());
    let rev = writer.list().unwrap().revision;
    converge_at(&mut agent, rev, "the LB applied after the outage", |a| {
        ready(a) == 2
    });
    let ids: Vec<u32> = agent.programmed().iter().map(|s| s.lb_id).collect();
    assert_eq!(ids, [7, 11]);
    let new = Replay::start(
        model.clone(),
        &[(0, "tcp 198.51.100.7:{sport} -> 203.0.113.11:443")],
    )
    .finish();
    assert_eq!(new.forwarded, new.sent, "the new LB forwards: {new:?}");

    // The public load balancer, unchanged on the device all along, forwarded every packet: before, through and
    // after the outage, the relist's resync and the new LB.
    let public_sent = public_replay.finish();
    assert!(
        public_sent.dropped == 0 && public_sent.forwarded == public_sent.sent,
        "the unchanged LB dropped: {public_sent:?}"
    );
    eprintln!(
        "replayed through an outage of {outage:?} ({RETRIES} failed retries of the agent): internal LB {} \
         packets, public LB {} packets (through the return too); all forwarded",
        internal_sent.sent, public_sent.sent
    );
}
