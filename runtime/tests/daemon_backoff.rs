//! The daemon's retry backoff on an injected clock: a LoadBalancer that cannot be programmed is retried after
//! 200 ms, then 400 ms, 800 ms, ... (`backoff::BACKOFF`), and not before, whatever the machine's speed. Driven
//! through `Daemon::start_with_clock` and `Daemon::sync` with a `ManualClock`: nothing sleeps.

#[path = "common/daemon.rs"]
mod common;

use common::test_config;
use ironlb_runtime::alloc::Pools;
use ironlb_runtime::api::ObjectKey;
use ironlb_runtime::backoff::BACKOFF;
use ironlb_runtime::clock::{Clock, ManualClock};
use ironlb_runtime::daemon::Daemon;
use ironlb_runtime::status::Reason;
use std::time::{Duration, Instant};

const MANIFEST: &str = "apiVersion: networking.ironcore.dev/v1alpha1
kind: Network
metadata: {name: net}
spec: {vni: 100}
---
apiVersion: networking.ironcore.dev/v1alpha1
kind: LoadBalancer
metadata: {name: p1}
spec: {type: Public, networkRef: {name: net}, ipFamilies: [IPv4], ports: [{protocol: TCP, port: 443}]}
---
apiVersion: networking.ironcore.dev/v1alpha1
kind: LoadBalancer
metadata: {name: p2}
spec: {type: Public, networkRef: {name: net}, ipFamilies: [IPv4], ports: [{protocol: TCP, port: 443}]}
";

fn next_retry(d: &Daemon) -> Option<Instant> {
    d.shared().lock().unwrap().rec.next_retry()
}

#[test]
fn a_failing_load_balancer_is_retried_on_the_backoff_schedule_of_the_injected_clock() {
    let manifests = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    std::fs::write(manifests.path().join("lbs.yaml"), MANIFEST).unwrap();
    let mut cfg = test_config(manifests.path(), state.path());
    // One public IPv4 address: p1 gets it, p2 fails with PoolExhausted on every attempt.
    cfg.pools = Pools::parse(&["203.0.113.0/32".into()]).unwrap();
    cfg.metrics = None;
    let clock = ManualClock::new();
    let mut d = Daemon::start_with_clock(cfg, clock.shared()).unwrap();

    let r = d.sync().unwrap();
    assert_eq!(r.errors.len(), 1, "{r:?}");
    assert_eq!(r.errors[0].key, ObjectKey::new("default", "p2"));
    assert_eq!(r.errors[0].reason, Reason::PoolExhausted);
    let mut due = clock.now() + BACKOFF.delay(1);
    assert_eq!(
        next_retry(&d),
        Some(due),
        "first retry after {:?}",
        BACKOFF.delay(1)
    );

    for attempt in 2..=6u32 {
        // Just before the retry is due, a sync (e.g. for an unrelated change) does not count as an attempt.
        clock.advance(due - clock.now() - Duration::from_millis(1));
        let r = d.sync().unwrap();
        assert_eq!(r.errors.len(), 1, "{r:?}");
        assert_eq!(
            next_retry(&d),
            Some(due),
            "attempt {attempt}: not due yet, the schedule must not move"
        );
        // Once due, the failure counts again and the next delay doubles.
        clock.advance(Duration::from_millis(1));
        d.sync().unwrap();
        due = clock.now() + BACKOFF.delay(attempt);
        assert_eq!(
            next_retry(&d),
            Some(due),
            "attempt {attempt}: next retry after {:?}",
            BACKOFF.delay(attempt)
        );
    }
    assert_eq!(BACKOFF.delay(6), Duration::from_millis(6_400));
    let st = d.shared().lock().unwrap().rec.status()[&ObjectKey::new("default", "p2")].clone();
    assert!(!st.ready(), "{st:?}");
}
