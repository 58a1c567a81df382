//! `metrics`: the exposition (names, label sets, values) and the HTTP endpoint (paths, methods, content
//! type, a panicking stats closure, bind errors). Loopback only; every network read is bounded.

use std::io::{Read, Write};
use std::net::{Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ironlb_runtime::metrics::{
    DeviceStats, LbStats, Metrics, ScrapeError, TableUse, TargetStats, OPENMETRICS_CONTENT_TYPE,
};

const IO_TIMEOUT: Duration = Duration::from_secs(5);

fn fixed_stats() -> DeviceStats {
    DeviceStats {
        lbs: vec![
            LbStats {
                namespace: "default".into(),
                name: "web".into(),
                lb_id: 1,
                packets: 10,
                bytes: 1500,
            },
            LbStats {
                namespace: "prod".into(),
                name: "db".into(),
                lb_id: 7,
                packets: 0,
                bytes: 0,
            },
        ],
        targets: vec![
            TargetStats {
                namespace: "default".into(),
                name: "web".into(),
                target: "fd00::1".parse().unwrap(),
                packets: 6,
                bytes: 900,
            },
            TargetStats {
                namespace: "default".into(),
                name: "web".into(),
                target: Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2),
                packets: 4,
                bytes: 600,
            },
        ],
        drops: vec![("no_lb_match", 3), ("port_not_allowed", 2)],
        tables: vec![
            TableUse {
                table: "vip",
                used: 2,
                capacity: 4096,
            },
            TableUse {
                table: "target",
                used: 2,
                capacity: 65536,
            },
        ],
        flows: vec![("learned", 12), ("hits", 340), ("overflow", 1)],
    }
}

/// Assert that `text` has the exact line `line`.
#[track_caller]
fn assert_line(text: &str, line: &str) {
    assert!(
        text.lines().any(|l| l == line),
        "missing line {line:?} in:\n{text}"
    );
}

#[test]
fn encode_has_every_device_metric_with_labels_and_values() {
    let metrics = Metrics::new(fixed_stats);
    let text = metrics.encode();

    for line in [
        "# TYPE ironlb_lb_packets counter",
        r#"ironlb_lb_packets_total{namespace="default",name="web",lb_id="1"} 10"#,
        r#"ironlb_lb_packets_total{namespace="prod",name="db",lb_id="7"} 0"#,
        "# TYPE ironlb_lb_bytes counter",
        "# UNIT ironlb_lb_bytes bytes",
        r#"ironlb_lb_bytes_total{namespace="default",name="web",lb_id="1"} 1500"#,
        r#"ironlb_lb_bytes_total{namespace="prod",name="db",lb_id="7"} 0"#,
        "# TYPE ironlb_target_packets counter",
        r#"ironlb_target_packets_total{namespace="default",name="web",target="fd00::1"} 6"#,
        r#"ironlb_target_packets_total{namespace="default",name="web",target="fd00::2"} 4"#,
        "# TYPE ironlb_target_bytes counter",
        r#"ironlb_target_bytes_total{namespace="default",name="web",target="fd00::1"} 900"#,
        r#"ironlb_target_bytes_total{namespace="default",name="web",target="fd00::2"} 600"#,
        "# TYPE ironlb_drops counter",
        r#"ironlb_drops_total{reason="no_lb_match"} 3"#,
        r#"ironlb_drops_total{reason="port_not_allowed"} 2"#,
        "# TYPE ironlb_flow_events counter",
        r#"ironlb_flow_events_total{event="learned"} 12"#,
        r#"ironlb_flow_events_total{event="hits"} 340"#,
        r#"ironlb_flow_events_total{event="overflow"} 1"#,
        "# TYPE ironlb_table_entries gauge",
        r#"ironlb_table_entries{table="vip"} 2"#,
        r#"ironlb_table_entries{table="target"} 2"#,
        "# TYPE ironlb_table_capacity gauge",
        r#"ironlb_table_capacity{table="vip"} 4096"#,
        r#"ironlb_table_capacity{table="target"} 65536"#,
        // Controller metrics that exist before anything happened.
        "# TYPE ironlb_reconcile_duration_seconds histogram",
        "ironlb_reconcile_duration_seconds_count 0",
        "ironlb_reconciles_total 0",
        r#"ironlb_load_balancers{state="ready"} 0"#,
        r#"ironlb_load_balancers{state="failed"} 0"#,
    ] {
        assert_line(&text, line);
    }
    assert!(
        text.ends_with("# EOF\n"),
        "exposition must end with # EOF:\n{text}"
    );
    // No error series before the first error.
    assert!(!text.contains("ironlb_reconcile_errors_total"), "{text}");
}

#[test]
fn empty_device_stats_still_describe_the_device_families() {
    let text = Metrics::new(DeviceStats::default).encode();
    for name in [
        "ironlb_lb_packets",
        "ironlb_lb_bytes",
        "ironlb_target_packets",
        "ironlb_target_bytes",
        "ironlb_drops",
        "ironlb_flow_events",
        "ironlb_table_entries",
        "ironlb_table_capacity",
    ] {
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "no HELP for {name}:\n{text}"
        );
    }
    assert!(!text.contains("ironlb_drops_total{"), "{text}");
}

#[test]
fn encode_calls_the_stats_closure_once_per_scrape() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&calls);
    let metrics = Metrics::new(move || {
        c.fetch_add(1, Ordering::SeqCst);
        DeviceStats::default()
    });
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "building must not read the device"
    );
    metrics.encode();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    metrics.try_encode().unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[test]
fn reconcile_errors_accumulate_per_object_and_reason() {
    let metrics = Metrics::new(DeviceStats::default);
    metrics.reconcile_error("default", "web", "TableFull");
    metrics.reconcile_error("default", "web", "TableFull");
    metrics.reconcile_error("default", "web", "PoolExhausted");
    metrics.reconcile_error("prod", "db", "InvalidSpec");
    let text = metrics.encode();
    assert_line(&text, "# TYPE ironlb_reconcile_errors counter");
    assert_line(
        &text,
        r#"ironlb_reconcile_errors_total{namespace="default",name="web",reason="TableFull"} 2"#,
    );
    assert_line(
        &text,
        r#"ironlb_reconcile_errors_total{namespace="default",name="web",reason="PoolExhausted"} 1"#,
    );
    assert_line(
        &text,
        r#"ironlb_reconcile_errors_total{namespace="prod",name="db",reason="InvalidSpec"} 1"#,
    );

    metrics.reconcile_error("prod", "db", "InvalidSpec");
    assert_line(
        &metrics.encode(),
        r#"ironlb_reconcile_errors_total{namespace="prod",name="db",reason="InvalidSpec"} 2"#,
    );
}

#[test]
fn a_deleted_load_balancers_error_series_are_dropped() {
    let metrics = Metrics::new(DeviceStats::default);
    metrics.reconcile_error("default", "web", "TableFull");
    metrics.reconcile_error("default", "web", "PoolExhausted");
    metrics.reconcile_error("prod", "db", "InvalidSpec");
    let present = [("prod".to_string(), "db".to_string())].into_iter().collect();
    metrics.forget_deleted(&present);
    let text = metrics.encode();
    assert!(!text.contains(r#"name="web""#), "{text}");
    assert_line(
        &text,
        r#"ironlb_reconcile_errors_total{namespace="prod",name="db",reason="InvalidSpec"} 1"#,
    );
    // A load balancer that comes back starts a new series.
    metrics.reconcile_error("default", "web", "TableFull");
    assert_line(
        &metrics.encode(),
        r#"ironlb_reconcile_errors_total{namespace="default",name="web",reason="TableFull"} 1"#,
    );
}

#[test]
fn reconcile_histogram_counts_observations() {
    let metrics = Metrics::new(DeviceStats::default);
    metrics.observe_reconcile(Duration::from_micros(5)); // below the first bucket (10 µs)
    metrics.observe_reconcile(Duration::from_millis(3));
    metrics.observe_reconcile(Duration::from_secs(20)); // above the last bucket (10 s)
    let text = metrics.encode();
    assert_line(&text, "# UNIT ironlb_reconcile_duration_seconds seconds");
    assert_line(&text, "ironlb_reconcile_duration_seconds_count 3");
    assert_line(&text, "ironlb_reconciles_total 3");
    assert_line(&text, r#"ironlb_reconcile_duration_seconds_bucket{le="+Inf"} 3"#);
    assert_line(&text, r#"ironlb_reconcile_duration_seconds_bucket{le="10.0"} 2"#);
    let buckets = text
        .lines()
        .filter(|l| l.starts_with("ironlb_reconcile_duration_seconds_bucket"))
        .count();
    assert_eq!(buckets, 20, "19 bounds from 10 µs to 10 s plus +Inf:\n{text}");
    let first = text
        .lines()
        .find(|l| l.starts_with("ironlb_reconcile_duration_seconds_bucket"))
        .unwrap();
    assert!(
        first.ends_with(" 1"),
        "the 5 µs observation falls in the first bucket: {first}"
    );
    let sum: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("ironlb_reconcile_duration_seconds_sum "))
        .expect("sum line")
        .parse()
        .unwrap();
    assert!((sum - 20.003005).abs() < 1e-9, "sum {sum}");
}

#[test]
fn lb_state_gauges_are_set_not_added() {
    let metrics = Metrics::new(DeviceStats::default);
    metrics.set_lb_states(5, 2);
    metrics.set_lb_states(4, 1);
    let text = metrics.encode();
    assert_line(&text, "# TYPE ironlb_load_balancers gauge");
    assert_line(&text, r#"ironlb_load_balancers{state="ready"} 4"#);
    assert_line(&text, r#"ironlb_load_balancers{state="failed"} 1"#);
}

#[test]
fn try_encode_reports_a_panicking_stats_closure() {
    let metrics = Metrics::new(|| panic!("device went away"));
    match metrics.try_encode() {
        Err(ScrapeError::StatsPanicked(msg)) => assert_eq!(msg, "device went away"),
        Ok(text) => panic!("expected an error, got:\n{text}"),
    }
}

/// A raw HTTP/1.1 exchange; returns (status, lower-cased header block, body).
fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect");
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    )
    .expect("write request");
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .expect("read response (bounded by the read timeout)");
    let raw = String::from_utf8(raw).expect("UTF-8 response");
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {raw:?}"));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line in {head:?}"));
    (status, head.to_ascii_lowercase(), body.to_owned())
}

fn loopback0() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

#[test]
fn serves_metrics_healthz_404_and_405() {
    let metrics = Arc::new(Metrics::new(fixed_stats));
    metrics.set_lb_states(2, 0);
    let server = metrics.serve(loopback0()).expect("serve");
    let addr = server.local_addr();
    assert!(addr.ip().is_loopback() && addr.port() != 0, "{addr}");

    let (status, head, body) = http(addr, "GET", "/metrics");
    assert_eq!(status, 200, "{head}\n{body}");
    assert!(
        head.lines()
            .any(|l| l == format!("content-type: {OPENMETRICS_CONTENT_TYPE}")),
        "content type in:\n{head}"
    );
    assert_line(&body, r#"ironlb_drops_total{reason="no_lb_match"} 3"#);
    assert_line(&body, r#"ironlb_load_balancers{state="ready"} 2"#);
    assert!(body.ends_with("# EOF\n"));

    let (status, _, body) = http(addr, "GET", "/metrics?debug=1");
    assert_eq!(status, 200, "a query string does not change the path");
    assert!(body.ends_with("# EOF\n"));

    let (status, _, body) = http(addr, "GET", "/healthz");
    assert_eq!((status, body.as_str()), (200, "ok"));

    let (status, _, _) = http(addr, "GET", "/nope");
    assert_eq!(status, 404);
    let (status, _, _) = http(addr, "GET", "/");
    assert_eq!(status, 404);

    let (status, head, _) = http(addr, "POST", "/metrics");
    assert_eq!(status, 405);
    assert!(head.lines().any(|l| l == "allow: get, head"), "{head}");
    let (status, _, _) = http(addr, "DELETE", "/healthz");
    assert_eq!(status, 405);

    let (status, head, body) = http(addr, "HEAD", "/metrics");
    assert_eq!(status, 200, "{head}");
    assert!(body.is_empty(), "HEAD has no body: {body:?}");
}

#[test]
fn panicking_stats_closure_answers_500_and_the_server_survives() {
    let broken = Arc::new(AtomicBool::new(true));
    let b = Arc::clone(&broken);
    let metrics = Arc::new(Metrics::new(move || {
        if b.load(Ordering::SeqCst) {
            panic!("device went away");
        }
        fixed_stats()
    }));
    let server = metrics.serve(loopback0()).expect("serve");
    let addr = server.local_addr();

    let (status, _, body) = http(addr, "GET", "/metrics");
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("device went away"), "{body}");
    let (status, _, _) = http(addr, "GET", "/healthz");
    assert_eq!(status, 200, "the server thread survived the panic");

    broken.store(false, Ordering::SeqCst);
    let (status, _, body) = http(addr, "GET", "/metrics");
    assert_eq!(status, 200, "{body}");
    assert_line(&body, r#"ironlb_table_capacity{table="vip"} 4096"#);
}

#[test]
fn serving_on_a_bound_address_fails_naming_it() {
    let taken = TcpListener::bind(loopback0()).unwrap();
    let addr = taken.local_addr().unwrap();
    let metrics = Arc::new(Metrics::new(DeviceStats::default));
    let err = metrics.serve(addr).expect_err("address is in use");
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse, "{err}");
    assert!(
        err.to_string().contains(&addr.to_string()),
        "error must name {addr}: {err}"
    );
}

#[test]
fn dropping_the_server_releases_the_port() {
    let metrics = Arc::new(Metrics::new(DeviceStats::default));
    let server = metrics.serve(loopback0()).expect("serve");
    let addr = server.local_addr();
    assert_eq!(http(addr, "GET", "/healthz").0, 200);
    drop(server);

    // tiny_http closes its listener from its own accept thread just after the drop: poll, bounded.
    let deadline = Instant::now() + IO_TIMEOUT;
    loop {
        match TcpListener::bind(addr) {
            Ok(_) => break,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "port {addr} still bound after drop: {e}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
    assert_eq!(
        Arc::strong_count(&metrics),
        1,
        "the server thread released its Metrics"
    );
}
