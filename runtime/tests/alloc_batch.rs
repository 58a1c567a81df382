//! Allocator batches: one write per batch, rollback when it fails, visibility inside the batch, and (proptest)
//! batched and unbatched runs of random operations agree with each other and with a reference implementation of
//! the original scanning allocator.

use ironlb_runtime::alloc::{AllocError, AllocState, Allocator, LbAlloc, Pools, PrefixCursor};
use ironlb_runtime::api::IpFamily;
use ironlb_runtime::status::Reason;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::fs;
use std::net::IpAddr;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};

#[path = "common/alloc.rs"]
mod common;
use common::*;

/// Makes writes into `dir` fail: the directory is moved away and a file takes its place (permission bits would
/// not stop root).
fn break_dir(dir: &Path) {
    fs::rename(dir, away(dir)).unwrap();
    fs::write(dir, "not a directory").unwrap();
}

/// Undoes [`break_dir`]: the directory comes back with the file it held.
fn restore_dir(dir: &Path) {
    fs::remove_file(dir).unwrap();
    fs::rename(away(dir), dir).unwrap();
}

fn away(dir: &Path) -> PathBuf {
    dir.with_extension("away")
}

/// Ids, public IPs and per-Prefix IPs are each held at most once; at most one public IP per family.
fn assert_unique(s: &AllocState) {
    let mut ids = BTreeSet::new();
    let mut public = BTreeSet::new();
    let mut prefixed = BTreeSet::new();
    for (k, a) in &s.lbs {
        assert!(
            a.lb_id.is_some() || !a.public_ips.is_empty() || !a.prefix_ips.is_empty(),
            "{k:?} kept empty"
        );
        if let Some(id) = a.lb_id {
            assert!(ids.insert(id), "lb_id {id} held twice");
        }
        let mut families = BTreeSet::new();
        for ip in &a.public_ips {
            assert!(public.insert(*ip), "public IP {ip} held twice");
            assert!(families.insert(ip.is_ipv4()), "{k:?} holds two of a family");
        }
        for (p, ip) in &a.prefix_ips {
            assert!(prefixed.insert((p.clone(), *ip)), "IP {ip} of {p:?} held twice");
        }
    }
}

/// One dual-stack load balancer with an internal Prefix IP as well.
fn alloc_lb(a: &mut Allocator, k: &Key) -> Result<(u32, Vec<IpAddr>, IpAddr), AllocError> {
    let id = a.lb_id(k)?;
    let ips = a.public_ips(k, &[V4, V6])?;
    let pip = a.prefix_ip(k, &key("pfx"), cidr("10.0.0.0/16"))?;
    Ok((id, ips, pip))
}

#[test]
fn batch_persists_once_and_only_when_changed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alloc.json");
    let p = pools(&["203.0.113.0/24", "2001:db8::/64"]);
    let mut a = Allocator::open(&path, p, 1024).unwrap();
    assert_eq!(a.persist_count(), 1, "a new file is written once on open");

    let got = a
        .batch(|a| {
            (0..200)
                .map(|i| alloc_lb(a, &key(&format!("lb{i}"))).unwrap())
                .collect::<Vec<_>>()
        })
        .unwrap();
    assert_eq!(a.persist_count(), 2, "one write for the whole batch");
    assert_durable(&a);
    assert_eq!(
        got[0],
        (0, vec![ip("203.0.113.1"), ip("2001:db8::")], ip("10.0.0.0"))
    );
    assert_eq!(got[199].0, 199);

    // Asking again for what is held changes nothing, so nothing is written (batch or not).
    let again = a
        .batch(|a| {
            (0..200)
                .map(|i| alloc_lb(a, &key(&format!("lb{i}"))).unwrap())
                .collect::<Vec<_>>()
        })
        .unwrap();
    assert_eq!(again, got);
    a.batch(|_| ()).unwrap();
    assert_eq!(a.lb_id(&key("lb7")).unwrap(), 7);
    a.release(&key("absent")).unwrap();
    a.retain(&(0..200).map(|i| key(&format!("lb{i}"))).collect())
        .unwrap();
    assert_eq!(a.persist_count(), 2);

    // A batch that changes something and changes it back writes nothing either.
    a.batch(|a| {
        a.public_ips(&key("lb3"), &[V4]).unwrap();
        a.public_ips(&key("lb3"), &[V4, V6]).unwrap();
    })
    .unwrap();
    assert_eq!(a.persist_count(), 2);

    // Outside a batch, every change is one write.
    alloc_lb(&mut a, &key("new")).unwrap();
    assert_eq!(a.persist_count(), 5);
    a.release(&key("new")).unwrap();
    assert_eq!(a.persist_count(), 6);
    assert_durable(&a);

    // Reopening an existing file writes nothing.
    drop(a);
    let a = Allocator::open(&path, Pools::default(), 1024).unwrap();
    assert_eq!(a.persist_count(), 0);
}

#[test]
fn allocations_are_visible_within_the_batch() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alloc.json");
    let mut a = Allocator::open(&path, pools(&["198.51.100.0/24", "2001:db8::/120"]), 64).unwrap();
    alloc_lb(&mut a, &key("before")).unwrap();
    let on_disk_before = Allocator::load_state(&path).unwrap();

    a.batch(|a| {
        let mut ids = BTreeSet::new();
        let mut ips = BTreeSet::new();
        for i in 0..50 {
            let k = key(&format!("lb{i}"));
            let (id, public, pip) = alloc_lb(a, &k).unwrap();
            assert!(ids.insert(id), "lb_id {id} handed out twice");
            for ip in public.into_iter().chain([pip]) {
                assert!(ips.insert(ip), "{ip} handed out twice");
            }
            // Stable within the batch.
            assert_eq!(alloc_lb(a, &k).unwrap().0, id);
        }
        assert!(!ids.contains(&0), "held before the batch");
        assert_eq!(a.state().lbs.len(), 51, "state() shows the batch");
        assert_unique(a.state());
        // Nothing is on disk yet.
        assert_eq!(Allocator::load_state(a.path()).unwrap(), on_disk_before);

        // What is released in the batch is free for the rest of it: the lowest free id, the lowest free IP.
        let freed = a.state().lbs[&key("lb9")].clone();
        a.release(&key("lb9")).unwrap();
        a.release(&key("lb20")).unwrap();
        let (id, public, _) = alloc_lb(a, &key("late")).unwrap();
        assert_eq!(Some(id), freed.lb_id);
        assert_eq!(public, freed.public_ips);
        assert_eq!(a.lb_id(&key("later")).unwrap(), 21);
    })
    .unwrap();
    assert_durable(&a);
    assert_unique(a.state());
}

#[test]
fn reopen_after_batch_sees_exactly_its_allocations() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alloc.json");
    let p = pools(&["203.0.113.0/24", "2001:db8::/64"]);
    let mut a = Allocator::open(&path, p.clone(), 4096).unwrap();
    let expect = a
        .batch(|a| {
            let mut m = BTreeMap::new();
            for i in 0..100 {
                let k = key(&format!("lb{i}"));
                m.insert(k.clone(), alloc_lb(a, &k).unwrap());
            }
            for i in (0..100).step_by(7) {
                a.release(&key(&format!("lb{i}"))).unwrap();
                m.remove(&key(&format!("lb{i}")));
            }
            m
        })
        .unwrap();
    let snap = a.snapshot();
    let state = a.state().clone();
    drop(a);

    let mut a = Allocator::open(&path, p, 4096).unwrap();
    assert_eq!(a.state(), &state);
    assert_eq!(a.snapshot(), snap);
    assert_eq!(a.state().lbs.len(), expect.len());
    for (k, held) in &expect {
        assert_eq!(&alloc_lb(&mut a, k).unwrap(), held);
    }
    // The released ids are the lowest free ones after reopening too.
    assert_eq!(a.lb_id(&key("new")).unwrap(), 0);
    assert_eq!(a.lb_id(&key("newer")).unwrap(), 7);
}

#[test]
fn failed_write_rolls_the_batch_back() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("state");
    fs::create_dir(&dir).unwrap();
    let path = dir.join("alloc.json");
    let p = pools(&["203.0.113.0/24", "2001:db8::/64"]);
    let mut a = Allocator::open(&path, p.clone(), 4096).unwrap();
    for i in 0..10 {
        alloc_lb(&mut a, &key(&format!("old{i}"))).unwrap();
    }
    let before = a.state().clone();
    let count = a.persist_count();

    let mut inside = Vec::new();
    let err = a
        .batch(|a| {
            a.release(&key("old3")).unwrap();
            for i in 0..20 {
                inside.push(alloc_lb(a, &key(&format!("new{i}"))).unwrap());
            }
            break_dir(&dir);
        })
        .unwrap_err();
    assert!(matches!(err, AllocError::Io { .. }), "{err}");
    assert_eq!(Reason::of_alloc(&err), Reason::AllocatorIoError);
    assert_eq!(a.state(), &before, "memory rolled back");
    assert_eq!(a.persist_count(), count);
    restore_dir(&dir);
    assert_durable(&a);

    // The indexes were rolled back too: the same batch again hands out the same values, none twice.
    let again = a
        .batch(|a| {
            a.release(&key("old3")).unwrap();
            (0..20)
                .map(|i| alloc_lb(a, &key(&format!("new{i}"))).unwrap())
                .collect::<Vec<_>>()
        })
        .unwrap();
    assert_eq!(again, inside);
    assert_unique(a.state());
    assert_durable(&a);
    drop(a);
    let a = Allocator::open(&path, p, 4096).unwrap();
    assert_eq!(a.state().lbs.len(), 29);
}

#[test]
fn failed_write_outside_a_batch_changes_nothing() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("state");
    fs::create_dir(&dir).unwrap();
    let path = dir.join("alloc.json");
    let mut a = Allocator::open(&path, pools(&["203.0.113.0/24"]), 16).unwrap();
    assert_eq!(a.lb_id(&key("a")).unwrap(), 0);
    a.prefix_ip(&key("a"), &key("p"), cidr("10.0.0.0/24")).unwrap();
    let before = a.state().clone();

    break_dir(&dir);
    assert!(matches!(a.lb_id(&key("b")), Err(AllocError::Io { .. })));
    assert!(matches!(
        a.public_ips(&key("a"), &[V4]),
        Err(AllocError::Io { .. })
    ));
    assert!(matches!(
        a.prefix_ip(&key("b"), &key("p"), cidr("10.0.0.0/24")),
        Err(AllocError::Io { .. })
    ));
    assert!(matches!(a.release(&key("a")), Err(AllocError::Io { .. })));
    assert!(matches!(a.retain(&BTreeSet::new()), Err(AllocError::Io { .. })));
    assert!(matches!(
        a.retain_prefix_ips(&key("a"), &BTreeSet::new()),
        Err(AllocError::Io { .. })
    ));
    // Reads and no-op calls need no write.
    assert_eq!(a.lb_id(&key("a")).unwrap(), 0);
    assert_eq!(a.state(), &before);
    restore_dir(&dir);

    assert_durable(&a);
    assert_eq!(a.lb_id(&key("b")).unwrap(), 1);
    assert_eq!(
        a.prefix_ip(&key("b"), &key("p"), cidr("10.0.0.0/24")).unwrap(),
        ip("10.0.0.1")
    );
    assert_durable(&a);
}

#[test]
fn nested_batch_joins_the_outer_one() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("state");
    fs::create_dir(&dir).unwrap();
    let path = dir.join("alloc.json");
    let mut a = Allocator::open(&path, Pools::default(), 16).unwrap();
    let count = a.persist_count();
    a.batch(|a| {
        let inner = a.batch(|a| a.lb_id(&key("x")).unwrap()).unwrap();
        assert_eq!(inner, 0);
        assert_eq!(a.persist_count(), count, "the inner batch does not write");
        assert_eq!(a.lb_id(&key("y")).unwrap(), 1);
    })
    .unwrap();
    assert_eq!(a.persist_count(), count + 1);
    assert_durable(&a);

    // The outer batch's failed write takes the inner batch's changes back too.
    let before = a.state().clone();
    let err = a
        .batch(|a| {
            a.batch(|a| a.lb_id(&key("z")).unwrap()).unwrap();
            break_dir(&dir);
        })
        .unwrap_err();
    assert!(matches!(err, AllocError::Io { .. }));
    assert_eq!(a.state(), &before);
    restore_dir(&dir);
    assert_eq!(a.lb_id(&key("z")).unwrap(), 2);
    assert_durable(&a);
}

#[test]
fn panic_in_batch_rolls_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = Allocator::open(&dir.path().join("s.json"), Pools::default(), 16).unwrap();
    a.lb_id(&key("a")).unwrap();
    let before = a.state().clone();
    let count = a.persist_count();
    let caught = panic::catch_unwind(AssertUnwindSafe(|| {
        a.batch(|a| {
            a.lb_id(&key("b")).unwrap();
            panic!("boom");
        })
    }));
    assert!(caught.is_err());
    assert_eq!(a.state(), &before);
    assert_eq!(a.persist_count(), count);
    // Not stuck in a batch: the next call is durable on its own.
    assert_eq!(a.lb_id(&key("c")).unwrap(), 1);
    assert_eq!(a.persist_count(), count + 1);
    assert_durable(&a);
}

#[test]
fn batch_commits_what_the_closure_did_even_if_it_fails() {
    // A call that fails inside a batch changes nothing; the calls before it stand and are written.
    let dir = tempfile::tempdir().unwrap();
    let mut a = Allocator::open(&dir.path().join("s.json"), pools(&["198.51.100.0/30"]), 16).unwrap();
    let r: Result<Result<(), AllocError>, AllocError> = a.batch(|a| {
        for n in ["a", "b", "c"] {
            a.lb_id(&key(n))?;
            a.public_ips(&key(n), &[V4])?;
        }
        Ok(())
    });
    let inner = r.unwrap().unwrap_err();
    assert!(matches!(inner, AllocError::PoolExhausted { .. }), "{inner}");
    let (ids, allocated) = a.snapshot();
    assert_eq!(ids.len(), 3, "c's lb_id came before its failed public IP");
    assert_eq!(allocated.len(), 2);
    assert_durable(&a);
}

#[test]
fn lowest_free_after_holes() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = Allocator::open(
        &dir.path().join("s.json"),
        pools(&["10.0.0.0/29", "192.0.2.0/30", "2001:db8::/126"]),
        300,
    )
    .unwrap();
    a.batch(|a| {
        for i in 0..256 {
            assert_eq!(a.lb_id(&key(&format!("lb{i}"))).unwrap(), i);
        }
        for i in [200, 3, 50, 7, 8, 9] {
            a.release(&key(&format!("lb{i}"))).unwrap();
        }
        for expect in [3, 7, 8, 9, 50, 200, 256, 257] {
            assert_eq!(a.lb_id(&key(&format!("re{expect}"))).unwrap(), expect);
        }
    })
    .unwrap();

    // Public IPs: the first pool (.1 to .6) before the second (.1, .2), lowest free first.
    let got: Vec<IpAddr> = (0..8)
        .map(|i| a.public_ips(&key(&format!("lb{i}")), &[V4]).unwrap()[0])
        .collect();
    let want: Vec<IpAddr> = (1..=6)
        .map(|i| ip(&format!("10.0.0.{i}")))
        .chain([ip("192.0.2.1"), ip("192.0.2.2")])
        .collect();
    assert_eq!(got, want);
    assert!(matches!(
        a.public_ips(&key("lb8"), &[V4]),
        Err(AllocError::PoolExhausted { .. })
    ));
    a.public_ips(&key("lb2"), &[V6]).unwrap();
    a.public_ips(&key("lb6"), &[]).unwrap();
    assert_eq!(a.public_ips(&key("x"), &[V4]).unwrap(), vec![ip("10.0.0.3")]);
    assert_eq!(a.public_ips(&key("y"), &[V4]).unwrap(), vec![ip("192.0.2.1")]);

    // Prefix IPs continue from the cursor and wrap around to the first free one.
    let p = key("p");
    let c = cidr("10.1.0.0/29");
    for i in 0..8 {
        assert_eq!(
            a.prefix_ip(&key(&format!("lb{i}")), &p, c).unwrap(),
            ip(&format!("10.1.0.{i}"))
        );
    }
    a.retain_prefix_ips(&key("lb5"), &BTreeSet::new()).unwrap();
    a.retain_prefix_ips(&key("lb2"), &BTreeSet::new()).unwrap();
    assert_eq!(a.prefix_ip(&key("n1"), &p, c).unwrap(), ip("10.1.0.2"));
    assert_eq!(a.prefix_ip(&key("n2"), &p, c).unwrap(), ip("10.1.0.5"));
    // The cursor is at .6 now; .6 and .7 are held, so the search wraps around to the freed .1.
    a.retain_prefix_ips(&key("lb1"), &BTreeSet::new()).unwrap();
    assert_eq!(a.prefix_ip(&key("n3"), &p, c).unwrap(), ip("10.1.0.1"));
    assert!(matches!(
        a.prefix_ip(&key("n4"), &p, c),
        Err(AllocError::PrefixExhausted { .. })
    ));
    // A changed CIDR restarts at its beginning; an address outside it is replaced, one inside it kept.
    let c2 = cidr("10.1.0.4/30");
    assert!(matches!(
        a.prefix_ip(&key("lb0"), &p, c2),
        Err(AllocError::PrefixExhausted { .. })
    ));
    assert_eq!(a.state().lbs[&key("lb0")].prefix_ips[&p], ip("10.1.0.0"));
    a.release(&key("lb7")).unwrap();
    assert_eq!(a.prefix_ip(&key("lb0"), &p, c2).unwrap(), ip("10.1.0.7"));
    assert_eq!(a.prefix_ip(&key("lb4"), &p, c2).unwrap(), ip("10.1.0.4"));
    assert_eq!(a.prefix_ip(&key("n4"), &p, c).unwrap(), ip("10.1.0.0"));
    assert_durable(&a);
    assert_unique(a.state());
}

#[test]
fn cold_batch_of_4096_dual_stack() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alloc.json");
    let p = pools(&["100.64.0.0/16", "2001:db8::/64"]);
    let mut a = Allocator::open(&path, p.clone(), 4096).unwrap();
    let keys: Vec<Key> = (0..4096).map(|i| key(&format!("lb-{i:05}"))).collect();
    a.batch(|a| {
        for k in &keys {
            a.lb_id(k).unwrap();
            a.public_ips(k, &[V4, V6]).unwrap();
        }
        assert!(matches!(
            a.lb_id(&key("one-too-many")),
            Err(AllocError::Exhausted { what: "lb_id" })
        ));
    })
    .unwrap();
    assert_eq!(a.persist_count(), 2);
    assert_eq!(a.state().lbs.len(), 4096);
    assert_unique(a.state());
    let state = a.state().clone();
    drop(a);
    let a = Allocator::open(&path, p, 4096).unwrap();
    assert_eq!(a.state(), &state);
}

/// The original allocator's algorithms (scanning the whole state on every call), as the specification the
/// indexed allocator must match value for value.
mod reference {
    use super::*;

    #[derive(Debug, Clone)]
    pub struct Model {
        pub state: AllocState,
        pub pools: Pools,
        pub cap: u32,
    }

    type R<T> = Result<T, &'static str>;

    fn to_u128(ip: IpAddr) -> u128 {
        match ip {
            IpAddr::V4(a) => u128::from(u32::from(a)),
            IpAddr::V6(a) => u128::from(a),
        }
    }

    fn from_u128(v: u128, v4: bool) -> IpAddr {
        if v4 {
            IpAddr::V4((v as u32).into())
        } else {
            IpAddr::V6(v.into())
        }
    }

    /// `(v4, first, last)` of a CIDR.
    fn bounds(net: IpAddr, len: u8) -> (bool, u128, u128) {
        let v4 = net.is_ipv4();
        let host = if v4 { 32 } else { 128 } - u32::from(len);
        let mask = if host >= 128 {
            u128::MAX
        } else {
            (1u128 << host) - 1
        };
        let first = to_u128(net) & !mask;
        (v4, first, first | mask)
    }

    fn pool_bounds(net: IpAddr, len: u8) -> (bool, u128, u128) {
        let (v4, mut first, mut last) = bounds(net, len);
        if v4 && len < 31 {
            first += 1;
            last -= 1;
        }
        (v4, first, last)
    }

    fn inside((v4, first, last): (bool, u128, u128), ip: &IpAddr) -> bool {
        ip.is_ipv4() == v4 && (first..=last).contains(&to_u128(*ip))
    }

    impl Model {
        pub fn lb_id(&mut self, key: &Key) -> R<u32> {
            if let Some(id) = self.state.lbs.get(key).and_then(|a| a.lb_id) {
                if id < self.cap {
                    return Ok(id);
                }
            }
            let used: BTreeSet<u32> = self
                .state
                .lbs
                .iter()
                .filter(|(k, _)| *k != key)
                .filter_map(|(_, a)| a.lb_id)
                .collect();
            let id = (0..self.cap).find(|id| !used.contains(id)).ok_or("Exhausted")?;
            self.state.lbs.entry(key.clone()).or_default().lb_id = Some(id);
            Ok(id)
        }

        pub fn public_ips(&mut self, key: &Key, families: &[IpFamily]) -> R<Vec<IpAddr>> {
            let mut wanted: Vec<&IpFamily> = Vec::new();
            for f in families {
                if !wanted.contains(&f) {
                    wanted.push(f);
                }
            }
            let current = self
                .state
                .lbs
                .get(key)
                .map(|a| a.public_ips.clone())
                .unwrap_or_default();
            let used: BTreeSet<IpAddr> = self
                .state
                .lbs
                .iter()
                .filter(|(k, _)| *k != key)
                .flat_map(|(_, a)| a.public_ips.iter().copied())
                .collect();
            let mut out = Vec::new();
            for family in wanted {
                let pools = match family {
                    IpFamily::IPv4 => &self.pools.public_v4,
                    IpFamily::IPv6 => &self.pools.public_v6,
                    IpFamily::Unknown(_) => return Err("UnsupportedFamily"),
                };
                let keep = current.iter().copied().find(|ip| {
                    IpFamily::of(ip) == *family
                        && pools
                            .iter()
                            .any(|&n| inside(pool_bounds(n.addr(), n.prefix_len()), ip))
                });
                let ip = match keep {
                    Some(ip) => ip,
                    None => pools
                        .iter()
                        .find_map(|&n| {
                            let (v4, first, last) = pool_bounds(n.addr(), n.prefix_len());
                            (first..=last)
                                .map(|v| from_u128(v, v4))
                                .find(|ip| !used.contains(ip))
                        })
                        .ok_or("PoolExhausted")?,
                };
                out.push(ip);
            }
            if out != current {
                let entry = self.state.lbs.entry(key.clone()).or_default();
                entry.public_ips = out.clone();
                self.drop_if_empty(key);
            }
            Ok(out)
        }

        pub fn prefix_ip(&mut self, key: &Key, prefix: &Key, cidr: ipnet::IpNet) -> R<IpAddr> {
            let range = bounds(cidr.addr(), cidr.prefix_len());
            let (v4, first, last) = range;
            let cidr = ipnet::IpNet::new(from_u128(first, v4), cidr.prefix_len()).unwrap();
            if let Some(&ip) = self.state.lbs.get(key).and_then(|a| a.prefix_ips.get(prefix)) {
                if inside(range, &ip) {
                    return Ok(ip);
                }
            }
            let used: BTreeSet<IpAddr> = self
                .state
                .lbs
                .iter()
                .filter(|(k, _)| *k != key)
                .filter_map(|(_, a)| a.prefix_ips.get(prefix).copied())
                .filter(|ip| inside(range, ip))
                .collect();
            if used.len() as u128 > last - first {
                return Err("PrefixExhausted");
            }
            let next = |v: u128| if v >= last { first } else { v + 1 };
            let mut cand = match self.state.cursors.get(prefix) {
                Some(c) if c.cidr == cidr && inside(range, &c.next) => to_u128(c.next),
                _ => first,
            };
            for _ in 0..=used.len() {
                if !used.contains(&from_u128(cand, v4)) {
                    let ip = from_u128(cand, v4);
                    self.state
                        .lbs
                        .entry(key.clone())
                        .or_default()
                        .prefix_ips
                        .insert(prefix.clone(), ip);
                    self.state.cursors.insert(
                        prefix.clone(),
                        PrefixCursor {
                            cidr,
                            next: from_u128(next(cand), v4),
                        },
                    );
                    return Ok(ip);
                }
                cand = next(cand);
            }
            Err("PrefixExhausted")
        }

        pub fn retain_prefix_ips(&mut self, key: &Key, live: &BTreeSet<Key>) {
            if let Some(a) = self.state.lbs.get_mut(key) {
                a.prefix_ips.retain(|p, _| live.contains(p));
                self.drop_if_empty(key);
            }
        }

        pub fn release(&mut self, key: &Key) {
            self.state.lbs.remove(key);
        }

        pub fn retain(&mut self, live: &BTreeSet<Key>) {
            self.state.lbs.retain(|k, _| live.contains(k));
        }

        fn drop_if_empty(&mut self, key: &Key) {
            if self.state.lbs.get(key) == Some(&LbAlloc::default()) {
                self.state.lbs.remove(key);
            }
        }
    }
}

const LBS: u8 = 24;
/// Prefix i mostly uses `CIDRS[i]` (so its cursor runs and wraps around), sometimes another one.
const CIDRS: [&str; 4] = ["10.9.0.0/29", "fd00::/125", "10.9.0.0/27", "10.9.0.4/30"];
const POOLS: [&[&str]; 2] = [
    &["192.0.2.0/28", "2001:db8::/124"],
    &["192.0.2.8/29", "198.51.100.0/30", "2001:db8::8/125"],
];
const CAP: u32 = 20;

#[derive(Debug, Clone)]
enum Op {
    LbId(u8),
    /// Families: 0 IPv4, 1 IPv6, 2 unknown.
    PublicIps(u8, Vec<u8>),
    /// Load balancer, Prefix (0 or 1), CIDR (index into `CIDRS`).
    PrefixIp(u8, u8, u8),
    /// Bit i keeps Prefix i.
    RetainPrefixIps(u8, u8),
    Release(u8),
    /// Bit i keeps load balancer i.
    Retain(u32),
}

fn op() -> impl Strategy<Value = Op> {
    let lb = 0..LBS;
    prop_oneof![
        4 => lb.clone().prop_map(Op::LbId),
        4 => (lb.clone(), proptest::collection::vec(0u8..3, 0..3)).prop_map(|(n, f)| Op::PublicIps(n, f)),
        4 => (lb.clone(), 0u8..2).prop_map(|(n, p)| Op::PrefixIp(n, p, p)),
        1 => (lb.clone(), 0u8..2, 0..CIDRS.len() as u8).prop_map(|(n, p, c)| Op::PrefixIp(n, p, c)),
        1 => (lb.clone(), 0u8..4).prop_map(|(n, m)| Op::RetainPrefixIps(n, m)),
        2 => lb.prop_map(Op::Release),
        1 => any::<u32>().prop_map(|m| Op::Retain(m | m >> 3)),
    ]
}

/// Operations run as one batch, then: whether its write is made to fail, and whether to reopen afterwards
/// (0 no, 1 with the same pools, 2 switching pools).
#[derive(Debug, Clone)]
struct Chunk {
    ops: Vec<Op>,
    fail: bool,
    reopen: u8,
}

/// Operations on few load balancers and mostly one Prefix, so its cursor wraps around over held addresses.
fn prefix_op() -> impl Strategy<Value = Op> {
    let lb = 0u8..7;
    prop_oneof![
        8 => lb.clone().prop_map(|n| Op::PrefixIp(n, 0, 3)),
        1 => (lb.clone(), 0..CIDRS.len() as u8).prop_map(|(n, c)| Op::PrefixIp(n, 0, c)),
        1 => lb.clone().prop_map(|n| Op::PrefixIp(n, 1, 1)),
        3 => (lb.clone(), 0u8..4).prop_map(|(n, m)| Op::RetainPrefixIps(n, m)),
        2 => lb.prop_map(Op::Release),
    ]
}

fn chunk(op: impl Strategy<Value = Op>) -> impl Strategy<Value = Chunk> {
    (
        proptest::collection::vec(op, 0..12),
        prop::bool::weighted(0.2),
        prop_oneof![6 => Just(0u8), 1 => Just(1u8), 1 => Just(2u8)],
    )
        .prop_map(|(ops, fail, reopen)| Chunk { ops, fail, reopen })
}

fn lb(n: u8) -> Key {
    key(&format!("lb{n}"))
}

fn prefix(p: u8) -> Key {
    key(&format!("prefix{p}"))
}

fn families(f: &[u8]) -> Vec<IpFamily> {
    f.iter()
        .map(|f| match f {
            0 => V4,
            1 => V6,
            _ => IpFamily::Unknown("IPv5".to_string()),
        })
        .collect()
}

fn live_prefixes(mask: u8) -> BTreeSet<Key> {
    (0..2).filter(|i| mask & (1 << i) != 0).map(prefix).collect()
}

fn live_lbs(mask: u32) -> BTreeSet<Key> {
    (0..LBS).filter(|i| mask & (1 << i) != 0).map(lb).collect()
}

/// An outcome, comparable across the implementations: the value, or the error's reason.
type Outcome = Result<String, String>;

fn outcome<T: Debug>(r: Result<T, AllocError>) -> Outcome {
    r.map(|v| format!("{v:?}"))
        .map_err(|e| Reason::of_alloc(&e).as_str().to_string())
}

fn run(a: &mut Allocator, op: &Op) -> Outcome {
    match op {
        Op::LbId(n) => outcome(a.lb_id(&lb(*n))),
        Op::PublicIps(n, f) => outcome(a.public_ips(&lb(*n), &families(f))),
        Op::PrefixIp(n, p, c) => outcome(a.prefix_ip(&lb(*n), &prefix(*p), cidr(CIDRS[*c as usize]))),
        Op::RetainPrefixIps(n, m) => outcome(a.retain_prefix_ips(&lb(*n), &live_prefixes(*m))),
        Op::Release(n) => outcome(a.release(&lb(*n))),
        Op::Retain(m) => outcome(a.retain(&live_lbs(*m))),
    }
}

fn run_model(m: &mut reference::Model, op: &Op) -> Outcome {
    fn o<T: Debug>(r: Result<T, &'static str>) -> Outcome {
        r.map(|v| format!("{v:?}")).map_err(str::to_string)
    }
    match op {
        Op::LbId(n) => o(m.lb_id(&lb(*n))),
        Op::PublicIps(n, f) => o(m.public_ips(&lb(*n), &families(f))),
        Op::PrefixIp(n, p, c) => o(m.prefix_ip(&lb(*n), &prefix(*p), cidr(CIDRS[*c as usize]))),
        Op::RetainPrefixIps(n, mask) => {
            m.retain_prefix_ips(&lb(*n), &live_prefixes(*mask));
            o(Ok(()))
        }
        Op::Release(n) => {
            m.release(&lb(*n));
            o(Ok(()))
        }
        Op::Retain(mask) => {
            m.retain(&live_lbs(*mask));
            o(Ok(()))
        }
    }
}

/// Runs `chunks` one call at a time on one allocator, as batches on another (some of whose writes fail, and are
/// then dropped from the expectation) and on the reference; compares results and states after every chunk.
fn check_batched_equals_unbatched(chunks: &[Chunk]) -> Result<(), TestCaseError> {
    let root = tempfile::tempdir().unwrap();
    let dir_a = root.path().join("a");
    let dir_b = root.path().join("b");
    fs::create_dir(&dir_a).unwrap();
    fs::create_dir(&dir_b).unwrap();
    let (path_a, path_b) = (dir_a.join("alloc.json"), dir_b.join("alloc.json"));
    let mut which_pools = 0;
    let mut a = Allocator::open(&path_a, pools(POOLS[0]), CAP).unwrap();
    let mut b = Allocator::open(&path_b, pools(POOLS[0]), CAP).unwrap();
    let mut model = reference::Model {
        state: AllocState::default(),
        pools: pools(POOLS[0]),
        cap: CAP,
    };

    for chunk in chunks {
        let count = b.persist_count();
        let before = b.state().clone();
        if chunk.fail {
            let mut scratch = model.clone();
            let expect: Vec<Outcome> = chunk.ops.iter().map(|op| run_model(&mut scratch, op)).collect();
            let changes = scratch.state != model.state;
            let mut got = Vec::new();
            let r = b.batch(|b| {
                got = chunk.ops.iter().map(|op| run(b, op)).collect();
                break_dir(&dir_b);
            });
            restore_dir(&dir_b);
            prop_assert_eq!(&got, &expect);
            if changes {
                prop_assert!(matches!(r, Err(AllocError::Io { .. })), "{:?}", r);
            } else {
                prop_assert!(r.is_ok(), "an unchanged state needs no write: {:?}", r);
            }
            prop_assert_eq!(b.state(), &before);
            prop_assert_eq!(b.persist_count(), count);
        } else {
            let expect: Vec<Outcome> = chunk.ops.iter().map(|op| run_model(&mut model, op)).collect();
            let one_by_one: Vec<Outcome> = chunk.ops.iter().map(|op| run(&mut a, op)).collect();
            let batched = b
                .batch(|b| chunk.ops.iter().map(|op| run(b, op)).collect::<Vec<_>>())
                .unwrap();
            prop_assert_eq!(&one_by_one, &expect);
            prop_assert_eq!(&batched, &expect);
            let wrote = u64::from(b.state() != &before);
            prop_assert_eq!(b.persist_count(), count + wrote);
        }
        if chunk.reopen != 0 {
            if chunk.reopen == 2 {
                which_pools = 1 - which_pools;
            }
            let p = pools(POOLS[which_pools]);
            model.pools = p.clone();
            drop((a, b));
            a = Allocator::open(&path_a, p.clone(), CAP).unwrap();
            b = Allocator::open(&path_b, p, CAP).unwrap();
        }
        prop_assert_eq!(a.state(), &model.state);
        prop_assert_eq!(b.state(), &model.state);
        assert_durable(&a);
        assert_durable(&b);
        assert_unique(b.state());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// The same random operations run one call at a time (each durable on its own) and in batches give the same
    /// results and states, equal to the original scanning algorithm's; nothing is ever held twice and the file
    /// always equals memory.
    #[test]
    fn batched_equals_unbatched(chunks in proptest::collection::vec(chunk(op()), 1..12)) {
        check_batched_equals_unbatched(&chunks)?;
    }

    /// The same for Prefix IPs alone, dense enough that cursors wrap around over held addresses.
    #[test]
    fn batched_equals_unbatched_prefix_cursors(chunks in proptest::collection::vec(chunk(prefix_op()), 1..12)) {
        check_batched_equals_unbatched(&chunks)?;
    }
}
