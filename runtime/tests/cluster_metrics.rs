//! An agent's metrics (issue 17: "agents report the outage in logs, metrics and `ironlb status`"): while etcd is
//! up `ironlb_etcd_up` is 1 and the device's per-LoadBalancer series are there; when etcd goes away it is 0 and
//! an outage is counted while the load balancers stay ready; when etcd is back it is 1 again after a relist. The
//! device's counters follow traffic while the agent waits, without a sync.
//! Skipped without etcd, except under CI=true.

#[path = "common/cluster.rs"]
mod cluster;
#[path = "common/scrape.rs"]
mod scrape;

use cluster::{agent_config, allocate_examples, converge, ready};
use ironlb_cluster::testing::{examples, EtcdServer};
use ironlb_runtime::cluster::agent::Agent;
use scrape::scrape;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// [`converge`], then one more sync: the metrics record the state as of the last sync, so that one has seen what
/// `done` saw.
fn settle(agent: &mut Agent, what: &str, done: impl Fn(&mut Agent) -> bool) {
    converge(agent, what, done);
    agent.sync().unwrap();
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
    let writer = etcd.client("/ironlb/");
    writer.apply(examples()).unwrap();
    allocate_examples(&writer);
    let mut agent = Agent::start(agent_config(etcd.settings("/ironlb/").resolve().unwrap(), None)).unwrap();
    let addr = agent.serve_metrics("127.0.0.1:0".parse().unwrap()).unwrap();
    assert_eq!(agent.metrics_addr(), Some(addr));
    settle(&mut agent, "both ready", |a| ready(a) == 2);
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

    // Traffic while the agent waits for a change of the store: the packet counter a scrape shows follows within
    // about a second, without a sync.
    let series = "ironlb_lb_packets_total{namespace=\"default\",name=\"my-load-balancer\",lb_id=\"7\"}";
    let before: u64 = value(&m, series).unwrap().parse().unwrap();
    let model = agent.model().expect("an inproc device has a model");
    let pkt = ironlb_runtime::cli::build_packet("tcp 198.51.100.7:1234 -> 203.0.113.10:80").unwrap();
    for _ in 0..10 {
        model.lock().unwrap().process(0, &pkt);
    }
    let stop = AtomicBool::new(false);
    let seen = std::thread::scope(|s| {
        let scraper = s.spawn(|| {
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut seen = None;
            while seen.is_none() && Instant::now() < deadline {
                let n: u64 = value(&scrape(addr), series).unwrap().parse().unwrap();
                if n >= before + 10 {
                    seen = Some(n);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            stop.store(true, Ordering::Relaxed);
            seen
        });
        agent.wait_due(&stop).unwrap();
        scraper.join().unwrap()
    });
    assert!(
        seen.is_some(),
        "the scrape never showed the 10 packets while the agent waited (from {before})"
    );

    // etcd goes away: 0 and one outage; the load balancers stay ready on the device.
    etcd.kill();
    settle(&mut agent, "outage seen", |a| !a.health().connected);
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
    settle(&mut agent, "reconnected and relisted", |a| {
        let h = a.health();
        h.connected && h.relists > relists
    });
    let m = scrape(addr);
    assert_eq!(value(&m, "ironlb_etcd_up").as_deref(), Some("1"), "{m}");
    let relisted: u64 = value(&m, "ironlb_etcd_relists_total").unwrap().parse().unwrap();
    assert!(relisted > relists, "{m}");
}
