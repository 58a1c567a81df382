//! One test per planning rule, each on the exact op list.

use super::*;
use ironlb_hw::entry::IcmpPolicy;
use ironlb_hw::{Vip, DOMAIN_PUBLIC};

fn key(n: &str) -> ObjectKey {
    ObjectKey::new("default", n)
}

/// Public VIP `203.0.113.N`.
fn vip(n: u8) -> LbKey {
    LbKey {
        domain: DOMAIN_PUBLIC,
        vip: Vip::from_ipv4([203, 0, 113, n]),
    }
}

fn spec(lb_id: u32, vips: &[u8]) -> LbSpec {
    LbSpec {
        lb_id,
        vips: vips.iter().map(|&n| vip(n)).collect(),
        icmp: IcmpPolicy::default(),
        ranges: Vec::new(),
        targets: BTreeSet::new(),
        draining: BTreeSet::new(),
    }
}

/// A device holding `lbs` (name, spec).
struct Device {
    specs: BTreeMap<ObjectKey, LbSpec>,
    owner: BTreeMap<LbKey, ObjectKey>,
}

fn device(lbs: &[(&str, LbSpec)]) -> Device {
    let specs: BTreeMap<ObjectKey, LbSpec> = lbs.iter().map(|(n, s)| (key(n), s.clone())).collect();
    let owner = specs
        .iter()
        .flat_map(|(k, s)| s.vips.iter().map(move |v| (*v, k.clone())))
        .collect();
    Device { specs, owner }
}

fn plan_of(dev: &Device, changes: &[(&str, LbSpec)]) -> Vec<Op> {
    plan_skipping(dev, changes, &[])
}

fn plan_skipping(dev: &Device, changes: &[(&str, LbSpec)], no_drop: &[&str]) -> Vec<Op> {
    let changes: Vec<(ObjectKey, LbSpec)> = changes.iter().map(|(n, s)| (key(n), s.clone())).collect();
    let no_drop = no_drop.iter().map(|n| key(n)).collect();
    plan(
        &changes,
        Observed {
            specs: &dev.specs,
            vip_owner: &dev.owner,
        },
        &no_drop,
    )
}

fn apply(n: &str, s: LbSpec) -> Op {
    Op::Apply { key: key(n), spec: s }
}

fn drop_vips(n: &str, s: LbSpec) -> Op {
    Op::DropVips { key: key(n), spec: s }
}

fn remove(n: &str, lb_id: u32, reason: RemoveReason) -> Op {
    Op::Remove {
        key: key(n),
        lb_id,
        reason,
    }
}

#[test]
fn nothing_changed_plans_nothing() {
    let dev = device(&[("a", spec(1, &[1]))]);
    assert_eq!(plan_of(&dev, &[]), vec![]);
}

#[test]
fn creations_and_independent_updates_run_in_the_given_order() {
    let dev = device(&[("b", spec(2, &[2]))]);
    let ops = plan_of(
        &dev,
        &[
            ("a", spec(1, &[1])),
            ("b", spec(2, &[2, 3])),
            ("c", spec(3, &[4])),
        ],
    );
    assert_eq!(
        ops,
        vec![
            apply("a", spec(1, &[1])),
            apply("b", spec(2, &[2, 3])),
            apply("c", spec(3, &[4]))
        ]
    );
}

#[test]
fn a_changed_lb_id_removes_the_old_incarnation_first_and_drops_nothing() {
    let dev = device(&[("a", spec(7, &[1, 2]))]);
    let ops = plan_of(&dev, &[("a", spec(9, &[1]))]);
    assert_eq!(
        ops,
        vec![
            remove("a", 7, RemoveReason::LbIdChanged),
            apply("a", spec(9, &[1]))
        ]
    );
}

#[test]
fn vips_no_longer_wanted_are_dropped_before_any_apply() {
    // a keeps .1 and gives up .2, which c (created) wants: a drops .2 first, and c then runs in the first round.
    let dev = device(&[("a", spec(1, &[1, 2]))]);
    let ops = plan_of(&dev, &[("c", spec(3, &[2])), ("a", spec(1, &[1, 5]))]);
    assert_eq!(
        ops,
        vec![
            drop_vips("a", spec(1, &[1])),
            apply("c", spec(3, &[2])),
            apply("a", spec(1, &[1, 5]))
        ]
    );
}

#[test]
fn a_load_balancer_keeping_none_of_its_vips_drops_nothing() {
    // Dropping every VIP would leave a load balancer without any: it releases them with its own update.
    let dev = device(&[("a", spec(1, &[1]))]);
    assert_eq!(
        plan_of(&dev, &[("a", spec(1, &[2]))]),
        vec![apply("a", spec(1, &[2]))]
    );
}

#[test]
fn a_vip_moving_to_another_load_balancer_is_claimed_after_it_is_released() {
    // a gives .1 (its only VIP, so it cannot drop it first) to b: b waits for a's update.
    let dev = device(&[("a", spec(1, &[1])), ("b", spec(2, &[2]))]);
    let ops = plan_of(&dev, &[("b", spec(2, &[2, 1])), ("a", spec(1, &[3]))]);
    assert_eq!(ops, vec![apply("a", spec(1, &[3])), apply("b", spec(2, &[1, 2]))]);
}

#[test]
fn a_change_waits_only_for_changes_pending_at_the_start_of_the_round() {
    // c wants .1 from a and a wants .3 from b: b runs in round 1; a was blocked at the start of round 1 so it
    // runs in round 2, and c, blocked by a at the start of round 2, in round 3.
    let dev = device(&[("a", spec(1, &[1])), ("b", spec(2, &[3]))]);
    let ops = plan_of(
        &dev,
        &[("c", spec(3, &[1])), ("a", spec(1, &[3])), ("b", spec(2, &[4]))],
    );
    assert_eq!(
        ops,
        vec![
            apply("b", spec(2, &[4])),
            apply("a", spec(1, &[3])),
            apply("c", spec(3, &[1]))
        ]
    );
}

#[test]
fn a_holder_that_does_not_change_does_not_block() {
    // b wants a VIP a holds, but a is not changing: b is attempted (the device refuses it as VipInUse).
    let dev = device(&[("a", spec(1, &[1]))]);
    assert_eq!(
        plan_of(&dev, &[("b", spec(2, &[1]))]),
        vec![apply("b", spec(2, &[1]))]
    );
}

#[test]
fn a_swap_cycle_removes_one_holder_and_re_creates_it_after_the_other() {
    // a and b swap their only VIPs: nothing can go first, so b (holder of a's wanted VIP) is removed, a is
    // updated, and b is created with a's old VIP.
    let dev = device(&[("a", spec(1, &[1])), ("b", spec(2, &[2]))]);
    let ops = plan_of(&dev, &[("a", spec(1, &[2])), ("b", spec(2, &[1]))]);
    assert_eq!(
        ops,
        vec![
            remove("b", 2, RemoveReason::SwapCycle),
            apply("a", spec(1, &[2])),
            apply("b", spec(2, &[1]))
        ]
    );
}

#[test]
fn a_three_way_rotation_breaks_one_link_and_unwinds_in_order() {
    // a→.2 (b's), b→.3 (c's), c→.1 (a's): b is removed; in the next round a (its VIP now free) runs and releases
    // .1, so c runs in the same round; b, blocked by c at the start of that round, runs last.
    let dev = device(&[("a", spec(1, &[1])), ("b", spec(2, &[2])), ("c", spec(3, &[3]))]);
    let ops = plan_of(
        &dev,
        &[("a", spec(1, &[2])), ("b", spec(2, &[3])), ("c", spec(3, &[1]))],
    );
    assert_eq!(
        ops,
        vec![
            remove("b", 2, RemoveReason::SwapCycle),
            apply("a", spec(1, &[2])),
            apply("c", spec(3, &[1])),
            apply("b", spec(2, &[3]))
        ]
    );
}

#[test]
fn partial_swaps_are_untangled_by_dropping_first_without_a_removal() {
    // a {1,3}→{2,3}, b {2,4}→{1,4}: each drops the VIP the other wants, then both update in one round.
    let dev = device(&[("a", spec(1, &[1, 3])), ("b", spec(2, &[2, 4]))]);
    let ops = plan_of(&dev, &[("a", spec(1, &[2, 3])), ("b", spec(2, &[1, 4]))]);
    assert_eq!(
        ops,
        vec![
            drop_vips("a", spec(1, &[3])),
            drop_vips("b", spec(2, &[4])),
            apply("a", spec(1, &[2, 3])),
            apply("b", spec(2, &[1, 4]))
        ]
    );
}

#[test]
fn after_a_failed_drop_the_replan_makes_the_claimer_wait_for_the_holder() {
    // Planned again after a's drop of .2 failed: a still holds .2, so c waits for a's update.
    let dev = device(&[("a", spec(1, &[1, 2]))]);
    let ops = plan_skipping(&dev, &[("c", spec(3, &[2])), ("a", spec(1, &[1, 5]))], &["a"]);
    assert_eq!(ops, vec![apply("a", spec(1, &[1, 5])), apply("c", spec(3, &[2]))]);
}
