//! An agent's metrics (issue 17: "agents report the outage in logs, metrics and `ironlb status`"): while etcd is
//! up `ironlb_etcd_up` is 1 and the device's per-LoadBalancer series are there; when etcd goes away it is 0 and
//! an outage is counted while the load balancers stay ready; when etcd is back it is 1 again after a relist.
//! Skipped without etcd, except under CI=true.

#[path = "common/host.rs"]
mod host;
#[path = "common/scrape.rs"]
mod scrape;

use ironlb_cluster::store::Expect;
use ironlb_cluster::testing::{example_allocations, examples, EtcdServer};
use ironlb_cluster::Client;
use ironlb_runtime::backend::BackendSpec;
use ironlb_runtime::cluster::agent::{Agent, AgentConfig};
use ironlb_sim::DeviceConfig;
use scrape::scrape;
use std::time::{Duration, Instant};

/// Syncs `agent` until `f` holds, for at most 30 s, then syncs once more: the metrics record the state as of the
/// last sync, so that one has seen what `f` saw.
fn sync_until(agent: &mut Agent, what: &str, mut f: impl FnMut(&mut Agent) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        agent.sync().unwrap();
        if f(agent) {
            agent.sync().unwrap();
            return;
        }
        assert!(Instant::now() < deadline, "{what}: not reached in 30 s");
        agent.wait_change(Duration::from_millis(50)).unwrap();
    }
}

fn ready(a: &mut Agent) -> usize {
    a.reconciler()
        .map_or(0, |r| r.status().values().filter(|s| s.ready()).count())
}

/// The value of the series that starts with `series` (name and labels), as the text exposition has it.
fn value(metrics: &str, series: &str) -> Option<String> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ').map(str::to_string))
}

#[test]
fn agent_metrics_show_the_etcd_outage_beside_the_device() {
    let Some(mut etcd) = EtcdServer::start_or_skip("agent_metrics_show_the_etcd_outage_beside_the_device")
    else {
        return;
    };
    let writer = Client::connect(&etcd.settings("/ironlb/").resolve().unwrap()).unwrap();
    writer.apply(examples()).unwrap();
    for (lb, a) in example_allocations() {
        assert!(writer
            .block_on(writer.store().put_allocation(&lb, &a, Expect::Absent))
            .unwrap());
    }
    let mut agent = Agent::start(AgentConfig {
        etcd: etcd.settings("/ironlb/").resolve().unwrap(),
        backend: BackendSpec::Inproc,
        device_config: DeviceConfig::default(),
        host: host::host_with_networks(&[(1, 100), (2, 200)]),
        state_dir: None,
    })
    .unwrap();
    let addr = agent.serve_metrics("127.0.0.1:0".parse().unwrap()).unwrap();
    assert_eq!(agent.metrics_addr(), Some(addr));
    sync_until(&mut agent, "both ready", |a| ready(a) == 2);
    let m = scrape(addr);
    assert_eq!(value(&m, "ironlb_etcd_up").as_deref(), Some("1"), "{m}");
    assert_eq!(
        value(&m, "ironlb_etcd_outages_total").as_deref(),
        Some("0"),
        "{m}"
    );
    assert_eq!(
        value(&m, "ironlb_load_balancers{state=\"ready\"}").as_deref(),
        Some("2"),
        "{m}"
    );
    assert!(
        m.contains("ironlb_lb_packets_total{namespace=\"default\",name=\"my-load-balancer\",lb_id=\"7\"}"),
        "the device's series, labelled with the objects: {m}"
    );

    // etcd goes away: 0 and one outage; the load balancers stay ready on the device.
    etcd.kill();
    sync_until(&mut agent, "outage seen", |a| !a.health().connected);
    let m = scrape(addr);
    assert_eq!(value(&m, "ironlb_etcd_up").as_deref(), Some("0"), "{m}");
    assert_eq!(
        value(&m, "ironlb_etcd_outages_total").as_deref(),
        Some("1"),
        "{m}"
    );
    assert_eq!(
        value(&m, "ironlb_load_balancers{state=\"ready\"}").as_deref(),
        Some("2"),
        "{m}"
    );

    // Back: 1 again, after a relist.
    let relists = agent.health().relists;
    etcd.restart().unwrap();
    sync_until(&mut agent, "reconnected and relisted", |a| {
        let h = a.health();
        h.connected && h.relists > relists
    });
    let m = scrape(addr);
    assert_eq!(value(&m, "ironlb_etcd_up").as_deref(), Some("1"), "{m}");
    let relisted: u64 = value(&m, "ironlb_etcd_relists_total").unwrap().parse().unwrap();
    assert!(relisted > relists, "{m}");
}
