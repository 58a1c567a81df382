use super::*;
use ironlb_hw::entry::IcmpPolicy;
use std::collections::BTreeSet;

fn ul(i: u16) -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, i)
}

fn nic(i: u16) -> ObjectKey {
    ObjectKey::new("default", format!("nic-{i}"))
}

fn spec(targets: &[u16]) -> LbSpec {
    LbSpec {
        lb_id: 1,
        vips: BTreeSet::new(),
        icmp: IcmpPolicy::default(),
        ranges: Vec::new(),
        targets: targets.iter().map(|&i| ul(i)).collect(),
        draining: BTreeSet::new(),
    }
}

fn with_draining(mut s: LbSpec, draining: &[u16]) -> LbSpec {
    s.draining = draining.iter().map(|&i| ul(i)).collect();
    s
}

struct World {
    t0: Instant,
    wall0: SystemTime,
    deleted: BTreeSet<ObjectKey>,
    timeout: Duration,
    max_targets: usize,
}

impl World {
    fn new() -> World {
        World {
            t0: Instant::now(),
            wall0: SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600),
            deleted: BTreeSet::new(),
            timeout: Duration::from_secs(60),
            max_targets: 64,
        }
    }

    /// `decide` at `t0 + at`, for `desired` targets against `programmed`; interface `nic-i` gives `ul(i)`.
    fn decide(
        &self,
        at: u64,
        desired: &[u16],
        programmed: &LbSpec,
        drains: &mut BTreeMap<Ipv6Addr, Drain>,
    ) -> (LbSpec, Vec<Event>) {
        let mut s = spec(desired);
        let ev = decide(
            &mut s,
            Some(programmed),
            drains,
            |a| Some(nic(a.segments()[7])),
            |i| !self.deleted.contains(i),
            Policy {
                now: self.t0 + Duration::from_secs(at),
                wall: self.wall0 + Duration::from_secs(at),
                timeout: self.timeout,
                max_targets: self.max_targets,
            },
        );
        (s, ev)
    }
}

#[test]
fn a_target_that_leaves_drains_until_its_deadline_then_is_cut() {
    let w = World::new();
    let mut drains = BTreeMap::new();
    let (s, ev) = w.decide(0, &[1, 2], &spec(&[1, 2, 3]), &mut drains);
    assert_eq!(s.targets, spec(&[1, 2]).targets);
    assert_eq!(s.draining, [ul(3)].into());
    let d = &drains[&ul(3)];
    assert_eq!(d.deadline, w.t0 + Duration::from_secs(60));
    assert_eq!(d.deadline_wall, w.wall0 + Duration::from_secs(60));
    assert_eq!(d.interface, Some(nic(3)));
    assert_eq!(ev, vec![Event::Started(ul(3), d.clone())]);
    assert_eq!(
        next_deadline(drains.values()),
        Some(w.t0 + Duration::from_secs(60))
    );

    // Before the deadline: still draining, same deadline, nothing new.
    let programmed = s.clone();
    let (s, ev) = w.decide(59, &[1, 2], &programmed, &mut drains);
    assert_eq!(s.draining, [ul(3)].into());
    assert!(ev.is_empty());
    assert_eq!(drains[&ul(3)].deadline, w.t0 + Duration::from_secs(60));

    // At the deadline: cut.
    let (s, ev) = w.decide(60, &[1, 2], &programmed, &mut drains);
    assert!(s.draining.is_empty());
    assert_eq!(ev, vec![Event::Cut(ul(3), Cut::Deadline)]);
    assert!(drains.is_empty());
    assert_eq!(next_deadline(drains.values()), None);
}

#[test]
fn a_zero_timeout_cuts_at_once() {
    let mut w = World::new();
    w.timeout = Duration::ZERO;
    let mut drains = BTreeMap::new();
    let (s, ev) = w.decide(0, &[1], &spec(&[1, 2]), &mut drains);
    assert!(s.draining.is_empty());
    assert_eq!(ev, vec![Event::Cut(ul(2), Cut::NoTimeout)]);
    assert!(drains.is_empty());
}

#[test]
fn a_deleted_interface_is_cut_at_once_even_while_draining() {
    let mut w = World::new();
    w.deleted.insert(nic(2));
    let mut drains = BTreeMap::new();
    let (s, ev) = w.decide(0, &[1, 3], &spec(&[1, 2, 3]), &mut drains);
    assert!(s.draining.is_empty());
    assert_eq!(ev, vec![Event::Cut(ul(2), Cut::InterfaceGone)]);

    // Draining, then deleted: cut at the next decision, before its deadline.
    let mut w = World::new();
    let mut drains = BTreeMap::new();
    let (s, _) = w.decide(0, &[1], &spec(&[1, 2]), &mut drains);
    assert_eq!(s.draining, [ul(2)].into());
    w.deleted.insert(nic(2));
    let (s, ev) = w.decide(1, &[1], &s, &mut drains);
    assert!(s.draining.is_empty());
    assert_eq!(ev, vec![Event::Cut(ul(2), Cut::InterfaceGone)]);
}

#[test]
fn an_unknown_interface_is_cut_at_once() {
    let w = World::new();
    let mut drains = BTreeMap::new();
    let mut s = spec(&[1]);
    let ev = decide(
        &mut s,
        Some(&spec(&[1, 2])),
        &mut drains,
        |_| None,
        |_| true,
        Policy {
            now: w.t0,
            wall: w.wall0,
            timeout: w.timeout,
            max_targets: 64,
        },
    );
    assert!(s.draining.is_empty());
    assert_eq!(ev, vec![Event::Cut(ul(2), Cut::InterfaceGone)]);
}

#[test]
fn no_serving_target_left_cuts_every_drain() {
    let w = World::new();
    let mut drains = BTreeMap::new();
    let (s, _) = w.decide(0, &[1], &spec(&[1, 2]), &mut drains);
    assert_eq!(s.draining, [ul(2)].into());
    let (s, ev) = w.decide(1, &[], &s, &mut drains);
    assert!(s.targets.is_empty() && s.draining.is_empty());
    assert_eq!(
        ev,
        vec![
            Event::Cut(ul(1), Cut::NoServingTarget),
            Event::Cut(ul(2), Cut::NoServingTarget)
        ]
    );
    assert!(drains.is_empty());
}

#[test]
fn a_draining_target_desired_again_serves_again() {
    let w = World::new();
    let mut drains = BTreeMap::new();
    let (s, _) = w.decide(0, &[1], &spec(&[1, 2]), &mut drains);
    let (s, ev) = w.decide(10, &[1, 2], &s, &mut drains);
    assert_eq!(s.targets, spec(&[1, 2]).targets);
    assert!(s.draining.is_empty());
    assert_eq!(ev, vec![Event::Resumed(ul(2))]);
    assert!(drains.is_empty());
    // Leaving again later starts a new drain with a new deadline.
    let (s, _) = w.decide(20, &[1], &s, &mut drains);
    assert_eq!(s.draining, [ul(2)].into());
    assert_eq!(drains[&ul(2)].deadline, w.t0 + Duration::from_secs(80));
}

#[test]
fn an_adopted_draining_target_drains_again_from_now() {
    // After a restart the device holds a draining target the reconciler has no record of.
    let w = World::new();
    let mut drains = BTreeMap::new();
    let (s, ev) = w.decide(5, &[1], &with_draining(spec(&[1]), &[2]), &mut drains);
    assert_eq!(s.draining, [ul(2)].into());
    assert_eq!(drains[&ul(2)].deadline, w.t0 + Duration::from_secs(65));
    assert!(matches!(ev.as_slice(), [Event::Started(a, _)] if *a == ul(2)));
}

#[test]
fn the_target_limit_cuts_the_drains_that_end_soonest() {
    let mut w = World::new();
    w.max_targets = 3;
    let mut drains = BTreeMap::new();
    let (s, _) = w.decide(0, &[1, 2], &spec(&[1, 2, 3]), &mut drains);
    assert_eq!(s.draining, [ul(3)].into());
    // 4 leaves later: 2 serving + 2 draining > 3, so 3 (ending sooner) is cut.
    let (s, ev) = w.decide(10, &[1, 5], &with_draining(spec(&[1, 2, 4]), &[3]), &mut drains);
    assert_eq!(s.targets, spec(&[1, 5]).targets);
    assert_eq!(s.draining, [ul(4)].into());
    assert!(ev.contains(&Event::Cut(ul(3), Cut::TargetLimit)));
    assert!(!drains.contains_key(&ul(3)));
}

#[test]
fn a_drain_the_device_does_not_hold_yet_is_kept() {
    // The update that started a drain failed: the device still holds the target as serving; the next decision
    // keeps the same deadline.
    let w = World::new();
    let mut drains = BTreeMap::new();
    let (_, _) = w.decide(0, &[1], &spec(&[1, 2]), &mut drains);
    let (s, ev) = w.decide(30, &[1], &spec(&[1, 2]), &mut drains);
    assert_eq!(s.draining, [ul(2)].into());
    assert!(ev.is_empty());
    assert_eq!(drains[&ul(2)].deadline, w.t0 + Duration::from_secs(60));
}
