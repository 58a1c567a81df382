//! Durable allocator: stability across reopen, uniqueness, exhaustion, corruption and crash-safety.

use ironlb_runtime::alloc::{AllocError, Allocator, Pools};
use ironlb_runtime::api::IpFamily;
use ironlb_runtime::status::Reason;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

#[path = "common/alloc.rs"]
mod common;
use common::*;

#[test]
fn pools_parse() {
    let p = pools(&["203.0.113.0/24", "2001:db8::/64,198.51.100.0/30"]);
    assert_eq!(p.public_v4, vec![cidr("203.0.113.0/24"), cidr("198.51.100.0/30")]);
    assert_eq!(p.public_v6, vec![cidr("2001:db8::/64")]);
    // Issue 12 item 4: pools that would hand out 0.0.0.0, ::, loopback or multicast addresses are refused too.
    for bad in [
        "203.0.113.0",
        "203.0.113.0/33",
        "nope/24",
        "203.0.113.1/24",
        "",
        "0.0.0.0/0",
        "::/0",
        "0.0.0.0/24",
        "::/120",
        "127.0.0.0/8",
        "ff00::/8",
    ] {
        let err = Pools::parse(&[bad.to_string()]).unwrap_err();
        assert!(matches!(err, AllocError::BadPool { .. }), "{bad}: {err}");
        if !bad.is_empty() {
            assert!(err.to_string().contains(bad), "{err}");
        }
    }
}

#[test]
fn stable_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alloc.json");
    let p = pools(&["203.0.113.0/24", "2001:db8::/120"]);
    let prefix = key("pfx");
    let mut a = Allocator::open(&path, p.clone(), 16).unwrap();
    assert_durable(&a);
    let mut got = BTreeMap::new();
    for n in ["a", "b", "c"] {
        let k = key(n);
        let id = a.lb_id(&k).unwrap();
        let ips = a.public_ips(&k, &[V4, V6]).unwrap();
        let pip = a.prefix_ip(&k, &prefix, cidr("10.0.0.0/24")).unwrap();
        assert_durable(&a);
        got.insert(k, (id, ips, pip));
    }
    assert_eq!(got[&key("a")].0, 0);
    assert_eq!(got[&key("b")].0, 1);
    assert_eq!(got[&key("a")].1, vec![ip("203.0.113.1"), ip("2001:db8::")]);
    assert_eq!(got[&key("a")].2, ip("10.0.0.0"));
    let snap = a.snapshot();
    drop(a);

    let mut a = Allocator::open(&path, p, 16).unwrap();
    assert_eq!(a.snapshot(), snap);
    for n in ["c", "b", "a"] {
        let k = key(n);
        let (id, ips, pip) = &got[&k];
        assert_eq!(a.lb_id(&k).unwrap(), *id);
        assert_eq!(&a.public_ips(&k, &[V4, V6]).unwrap(), ips);
        assert_eq!(a.prefix_ip(&k, &prefix, cidr("10.0.0.0/24")).unwrap(), *pip);
    }
    assert_eq!(a.snapshot(), snap);
    let (ids, allocated) = snap;
    assert_eq!(ids[&key("b")], 1);
    assert_eq!(
        allocated[&key("b")],
        vec![ip("203.0.113.2"), ip("2001:db8::1"), ip("10.0.0.1")]
    );
}

#[test]
fn release_frees_for_reuse() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alloc.json");
    let mut a = Allocator::open(&path, pools(&["198.51.100.0/30"]), 2).unwrap();
    let (x, y) = (key("x"), key("y"));
    assert_eq!(a.lb_id(&x).unwrap(), 0);
    assert_eq!(a.lb_id(&y).unwrap(), 1);
    assert!(matches!(
        a.lb_id(&key("z")),
        Err(AllocError::Exhausted { what: "lb_id" })
    ));
    assert_eq!(a.public_ips(&x, &[V4]).unwrap(), vec![ip("198.51.100.1")]);
    a.release(&x).unwrap();
    assert_durable(&a);
    assert_eq!(a.lb_id(&key("z")).unwrap(), 0);
    assert_eq!(a.public_ips(&key("z"), &[V4]).unwrap(), vec![ip("198.51.100.1")]);

    // retain: garbage-collects everything not live.
    a.retain(&BTreeSet::from([key("z")])).unwrap();
    assert_durable(&a);
    let (ids, _) = a.snapshot();
    assert_eq!(ids, BTreeMap::from([(key("z"), 0)]));
    assert_eq!(a.lb_id(&key("w")).unwrap(), 1);
}

#[test]
fn pool_exhausted_on_slash30() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = Allocator::open(&dir.path().join("s.json"), pools(&["198.51.100.0/30"]), 100).unwrap();
    // .0 (network) and .3 (broadcast) are skipped.
    assert_eq!(a.public_ips(&key("a"), &[V4]).unwrap(), vec![ip("198.51.100.1")]);
    assert_eq!(a.public_ips(&key("b"), &[V4]).unwrap(), vec![ip("198.51.100.2")]);
    let before = a.state().clone();
    let err = a.public_ips(&key("c"), &[V4]).unwrap_err();
    assert!(
        matches!(&err, AllocError::PoolExhausted { family } if *family == V4),
        "{err}"
    );
    assert_eq!(Reason::of_alloc(&err), Reason::PoolExhausted);
    // No pool of a family: exhausted too; a failed request changes nothing (not even partially).
    let err = a.public_ips(&key("d"), &[V6]).unwrap_err();
    assert!(
        matches!(&err, AllocError::PoolExhausted { family } if *family == V6),
        "{err}"
    );
    assert_eq!(a.state(), &before);
    assert_durable(&a);
}

#[test]
fn prefix_exhausted_and_sequential() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = Allocator::open(&dir.path().join("s.json"), Pools::default(), 100).unwrap();
    let p = key("tiny");
    let c = cidr("10.1.0.0/31");
    assert_eq!(a.prefix_ip(&key("a"), &p, c).unwrap(), ip("10.1.0.0"));
    assert_eq!(a.prefix_ip(&key("b"), &p, c).unwrap(), ip("10.1.0.1"));
    let err = a.prefix_ip(&key("c"), &p, c).unwrap_err();
    assert!(
        matches!(&err, AllocError::PrefixExhausted { prefix } if *prefix == p),
        "{err}"
    );
    // Another Prefix is independent.
    assert_eq!(a.prefix_ip(&key("c"), &key("other"), c).unwrap(), ip("10.1.0.0"));
    // Freed addresses are reused after wrapping around.
    a.release(&key("a")).unwrap();
    assert_eq!(a.prefix_ip(&key("c"), &p, c).unwrap(), ip("10.1.0.0"));
    assert_durable(&a);

    // A huge v6 prefix: sequential from its start, no scanning.
    let big = cidr("2001:db8:1::/48");
    let k = key("v6");
    for i in 0..5u32 {
        let lb = key(&format!("v6-{i}"));
        assert_eq!(
            a.prefix_ip(&lb, &k, big).unwrap(),
            ip(&format!("2001:db8:1::{i:x}"))
        );
    }
    let all = cidr("::/0");
    assert_eq!(a.prefix_ip(&key("zero"), &key("all"), all).unwrap(), ip("::"));
}

#[test]
fn corrupt_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    for content in ["{not json", "", r#"{"version":99}"#] {
        std::fs::write(&path, content).unwrap();
        let err = Allocator::open(&path, Pools::default(), 4).unwrap_err();
        assert!(matches!(err, AllocError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains(&path.display().to_string()), "{err}");
        // Never reset silently.
        assert_eq!(std::fs::read_to_string(&path).unwrap(), content);
    }
    // Duplicate ids in the file are corruption too.
    std::fs::write(
        &path,
        r#"{"version":1,"lbs":[{"namespace":"a","name":"x","lb_id":1},{"namespace":"a","name":"y","lb_id":1}]}"#,
    )
    .unwrap();
    let err = Allocator::open(&path, Pools::default(), 4).unwrap_err();
    assert!(err.to_string().contains("lb_id 1 held twice"), "{err}");
}

#[test]
fn stale_tmp_file_is_ignored_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let mut a = Allocator::open(&path, Pools::default(), 4).unwrap();
    assert_eq!(a.lb_id(&key("a")).unwrap(), 0);
    drop(a);
    // A crash mid-write leaves a partial tmp file; the real file stays authoritative.
    std::fs::write(tmp_of(&path), "{partial").unwrap();
    let mut a = Allocator::open(&path, Pools::default(), 4).unwrap();
    assert!(!tmp_of(&path).exists());
    assert_eq!(a.lb_id(&key("a")).unwrap(), 0);
    assert_eq!(a.lb_id(&key("b")).unwrap(), 1);
    assert_durable(&a);
}

#[test]
fn families_change_and_prefix_refs_drop() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = Allocator::open(
        &dir.path().join("s.json"),
        pools(&["203.0.113.0/29", "2001:db8::/126"]),
        4,
    )
    .unwrap();
    let k = key("a");
    let both = a.public_ips(&k, &[V4, V6, V4]).unwrap();
    assert_eq!(both, vec![ip("203.0.113.1"), ip("2001:db8::")]);
    assert_eq!(a.public_ips(&k, &[V6]).unwrap(), vec![ip("2001:db8::")]);
    assert_eq!(a.public_ips(&key("b"), &[V4]).unwrap(), vec![ip("203.0.113.1")]);
    let err = a.public_ips(&k, &[IpFamily::Unknown("IPv5".into())]).unwrap_err();
    assert!(matches!(err, AllocError::UnsupportedFamily { .. }));

    let p = key("p");
    a.prefix_ip(&k, &p, cidr("10.0.0.0/24")).unwrap();
    a.retain_prefix_ips(&k, &BTreeSet::new()).unwrap();
    assert_eq!(a.snapshot().1[&k], vec![ip("2001:db8::")]);
    assert_durable(&a);
}

#[derive(Debug, Clone)]
enum Op {
    Alloc(u8),
    Release(u8),
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..24).prop_map(Op::Alloc),
        2 => (0u8..24).prop_map(Op::Release),
        1 => Just(Op::Reopen),
    ]
}

type Held = (u32, Vec<IpAddr>, IpAddr);

fn alloc_all(a: &mut Allocator, k: &Key) -> Result<Held, AllocError> {
    let id = a.lb_id(k)?;
    let ips = a.public_ips(k, &[V4, V6])?;
    let pip = a.prefix_ip(k, &key("pfx"), cidr("10.9.0.0/27"))?;
    Ok((id, ips, pip))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Random allocate/release/reopen sequences: live allocations are always distinct, each stable while live,
    /// and the file always equals the in-memory state.
    #[test]
    fn no_duplicates_and_stable(ops in proptest::collection::vec(op(), 1..60)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alloc.json");
        // 20 ids, 14 usable v4, 16 v6, 32 prefix addresses for 24 possible LBs: exhaustion happens too.
        let p = pools(&["192.0.2.0/28", "2001:db8::/124"]);
        let mut a = Allocator::open(&path, p.clone(), 20).unwrap();
        let mut live: BTreeMap<Key, Held> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Alloc(n) => {
                    let k = key(&format!("lb{n}"));
                    match alloc_all(&mut a, &k) {
                        Ok(held) => {
                            if let Some(prev) = live.get(&k) {
                                prop_assert_eq!(prev, &held);
                            }
                            live.insert(k, held);
                        }
                        Err(e) => {
                            prop_assert!(!live.contains_key(&k), "held LB failed: {}", e);
                            prop_assert!(matches!(
                                e,
                                AllocError::Exhausted { .. } | AllocError::PoolExhausted { .. }
                            ), "{}", e);
                            // Don't keep partial allocations around.
                            a.release(&k).unwrap();
                        }
                    }
                }
                Op::Release(n) => {
                    let k = key(&format!("lb{n}"));
                    a.release(&k).unwrap();
                    live.remove(&k);
                }
                Op::Reopen => {
                    drop(a);
                    a = Allocator::open(&path, p.clone(), 20).unwrap();
                }
            }
            assert_durable(&a);
            let (ids, allocated) = a.snapshot();
            prop_assert_eq!(ids.len(), live.len());
            let mut seen_ids = BTreeSet::new();
            let mut seen_ips = BTreeSet::new();
            for (k, (id, ips, pip)) in &live {
                prop_assert_eq!(ids[k], *id);
                prop_assert!(seen_ids.insert(*id));
                let mut expect = ips.clone();
                expect.push(*pip);
                prop_assert_eq!(&allocated[k], &expect);
                for ip in expect {
                    prop_assert!(seen_ips.insert(ip), "duplicate {}", ip);
                }
            }
        }
    }
}

#[test]
fn preferred_addresses_are_taken_when_free_and_in_range() {
    let dir = tempfile::tempdir().unwrap();
    let pools = Pools::parse(&["203.0.113.0/24".into(), "2001:db8:ff::/64".into()]).unwrap();
    let mut a = Allocator::open(&dir.path().join("a.json"), pools, 16).unwrap();
    let k = |n: &str| ironlb_runtime::api::ObjectKey::new("default", n);
    let both = [IpFamily::IPv4, IpFamily::IPv6];
    let rec: Vec<std::net::IpAddr> = vec![
        "203.0.113.10".parse().unwrap(),
        "2001:db8:ff::10".parse().unwrap(),
    ];
    assert_eq!(a.public_ips_preferring(&k("a"), &both, &rec).unwrap(), rec);
    // Taken: another LB preferring the same gets the lowest free instead; outside the pool is ignored.
    let other = a
        .public_ips_preferring(&k("b"), &[IpFamily::IPv4], &["203.0.113.10".parse().unwrap()])
        .unwrap();
    assert_eq!(other, vec!["203.0.113.1".parse::<std::net::IpAddr>().unwrap()]);
    let out = a
        .public_ips_preferring(&k("c"), &[IpFamily::IPv4], &["198.51.100.1".parse().unwrap()])
        .unwrap();
    assert_eq!(out, vec!["203.0.113.2".parse::<std::net::IpAddr>().unwrap()]);
    // An LB that already holds an address keeps it whatever it prefers.
    let keep = a
        .public_ips_preferring(&k("a"), &[IpFamily::IPv4], &["203.0.113.99".parse().unwrap()])
        .unwrap();
    assert_eq!(keep, vec!["203.0.113.10".parse::<std::net::IpAddr>().unwrap()]);
    // Prefix: the preferred address inside the CIDR, if free.
    let p = k("prefix");
    let cidr: ipnet::IpNet = "2607:f0d0:1002:51::/64".parse().unwrap();
    let want: std::net::IpAddr = "2607:f0d0:1002:51::4".parse().unwrap();
    assert_eq!(a.prefix_ip_preferring(&k("i"), &p, cidr, &[want]).unwrap(), want);
    assert_ne!(a.prefix_ip_preferring(&k("j"), &p, cidr, &[want]).unwrap(), want);
}

/// Cluster mode: an agent's allocator holds what it was given and never chooses (docs/cluster.md "Agents").
#[test]
fn a_given_allocator_never_chooses() {
    use ironlb_runtime::alloc::{AllocError, AllocState, Allocator, LbAlloc};
    use ironlb_runtime::api::{IpFamily, ObjectKey};
    let web = ObjectKey::new("default", "web");
    let other = ObjectKey::new("default", "other");
    let mut a = Allocator::given(16);
    let given: std::net::IpAddr = "198.51.100.77".parse().unwrap();
    a.set_given(AllocState {
        lbs: [(
            web.clone(),
            LbAlloc {
                lb_id: Some(9),
                public_ips: vec![given],
                prefix_ips: Default::default(),
            },
        )]
        .into(),
        cursors: Default::default(),
    });
    assert_eq!(a.lb_id(&web).unwrap(), 9);
    // The controller's address, though this host has no pool at all.
    assert_eq!(a.public_ips(&web, &[IpFamily::IPv4]).unwrap(), vec![given]);
    assert!(matches!(
        a.public_ips(&web, &[IpFamily::IPv6]),
        Err(AllocError::NotGiven { .. })
    ));
    assert!(matches!(a.lb_id(&other), Err(AllocError::NotGiven { .. })));
    let prefix = ObjectKey::new("default", "p");
    assert!(matches!(
        a.prefix_ip(&web, &prefix, "10.0.0.0/24".parse().unwrap()),
        Err(AllocError::NotGiven { .. })
    ));
    assert_eq!(a.persist_count(), 0, "nothing is written");
    assert_eq!(a.state().lbs.len(), 1);
}
