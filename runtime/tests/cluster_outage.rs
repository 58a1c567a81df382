//! An agent through etcd outages (issue 17 tests 3 and 4, as far as they go without packet replay): while etcd is
//! unreachable the device keeps its last good state and the outage is reported; etcd compacts its history past the
//! agent's watch meanwhile; on return the agent relists and ends in the store's state. The agent reaches etcd
//! through a TCP proxy the test can cut, so the outage is exactly when the test says. Skipped without etcd, except
//! under CI=true.

#[path = "common/host.rs"]
mod host;

use ironlb_api::{Kind, ObjectKey, ObjectRef};
use ironlb_cluster::alloc::Allocation;
use ironlb_cluster::store::Expect;
use ironlb_cluster::testing::EtcdServer;
use ironlb_cluster::write::Incoming;
use ironlb_cluster::{Client, EtcdSettings};
use ironlb_runtime::backend::BackendSpec;
use ironlb_runtime::cluster::agent::{Agent, AgentConfig};
use ironlb_sim::DeviceConfig;
use std::io::Read;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "{what}: not reached in 30 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn ready(a: &mut Agent) -> usize {
    a.reconciler()
        .map_or(0, |r| r.status().values().filter(|s| s.ready()).count())
}

#[test]
fn outage_keeps_the_device_and_a_compaction_meanwhile_ends_in_a_relist() {
    let Some(etcd) =
        EtcdServer::start_or_skip("outage_keeps_the_device_and_a_compaction_meanwhile_ends_in_a_relist")
    else {
        return;
    };
    let target: SocketAddr = etcd.endpoint().trim_start_matches("http://").parse().unwrap();
    let proxy = Proxy::start(target);
    let writer = Client::connect(&etcd.settings("/ironlb/").resolve().unwrap()).unwrap();
    writer.apply(ironlb_cluster::testing::examples()).unwrap();
    let public = ObjectKey::new("default", "my-load-balancer");
    let internal = ObjectKey::new("default", "my-loadbalancer");
    for (lb, a) in [
        (
            &public,
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
            &internal,
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
    ] {
        assert!(writer
            .block_on(writer.store().put_allocation(lb, &a, Expect::Absent))
            .unwrap());
    }
    let state = tempfile::tempdir().unwrap();
    let mut agent = Agent::start(AgentConfig {
        etcd: EtcdSettings {
            endpoints: Some(vec![format!("http://127.0.0.1:{}", proxy.port)]),
            ..EtcdSettings::default()
        }
        .resolve()
        .unwrap(),
        backend: BackendSpec::Inproc,
        device_config: DeviceConfig::default(),
        host: host::host_with_networks(&[(1, 100), (2, 200)]),
        state_dir: Some(state.path().to_path_buf()),
    })
    .unwrap();
    let rev = writer.list().unwrap().revision;
    assert!(agent.wait_revision(rev, Duration::from_secs(20)));
    until("both ready", || {
        agent.sync().unwrap();
        ready(&mut agent) == 2
    });
    let before = agent.dump_json().unwrap();

    // etcd becomes unreachable: the device keeps every load balancer; the outage is in health and status.json.
    proxy.cut();
    until("outage seen", || !agent.health().connected);
    agent.sync().unwrap();
    assert_eq!(
        agent.dump_json().unwrap(),
        before,
        "nothing changes on the device during the outage"
    );
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

    // etcd is back: the agent lists again (its watch revision is compacted away) and removes the deleted LB.
    proxy.restore();
    let mut last = String::new();
    until("relisted and resynced", || {
        agent.sync().unwrap();
        let h = agent.health();
        let r = ready(&mut agent);
        last = format!("{h:?} ready={r}");
        eprintln!("{last}");
        h.connected && h.relists > relists && h.revision >= now && r == 1
    });
    let after: serde_json::Value = serde_json::from_str(&agent.dump_json().unwrap()).unwrap();
    let ids: Vec<&String> = after["lbs"].as_object().unwrap().keys().collect();
    assert_eq!(ids, ["7"], "only the public load balancer is left: {after}");
    let status = std::fs::read_to_string(state.path().join("status.json")).unwrap();
    assert!(!status.contains("unreachable since"), "{status}");
}
