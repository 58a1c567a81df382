//! The flow table through the driver (contract v1.2, docs/hw-spec.md §11): configuration, counters, read-back,
//! the flushes that belong to target removal and LB delete, epochs, restore after a reset, a v1.1 device — and the
//! multi-phase property: across any sequence of target additions and removals, an established flow keeps its
//! target unless its own target is removed, while new flows follow the bucket array.

mod common;

use common::*;
use ironlb_driver::FlowConfig;
use ironlb_driver::{Device, DriverError};
use ironlb_driver::{InprocBackend, SharedModel};
use ironlb_hw::entry::Protocol::Tcp;
use ironlb_hw::regs::{FlowClass, FlushSelector};
use ironlb_hw::DOMAIN_PUBLIC;
use ironlb_sim::testing::packet;
use ironlb_sim::{DeviceConfig, Verdict};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv6Addr};

const VIP: &str = "203.0.113.10";

fn device(cfg: DeviceConfig) -> (Device, SharedModel) {
    let backend = InprocBackend::new(cfg).unwrap();
    let model = backend.model();
    let mut dev = Device::open(Box::new(backend)).unwrap();
    public_and_underlay(&mut dev);
    dev.set_enabled(true);
    (dev, model)
}

fn lb(targets: impl IntoIterator<Item = u32>) -> ironlb_driver::LbSpec {
    spec(1, &[v4(VIP, DOMAIN_PUBLIC)], &[(Tcp, 80, 80)], targets)
}

fn client(i: u32) -> IpAddr {
    IpAddr::from([198, 51, (i >> 8) as u8, i as u8])
}

/// Send flow `i` (client i, port 1000 + i) through the model; the underlay address it went to.
fn send(model: &SharedModel, i: u32) -> Ipv6Addr {
    let p = packet::tcp(client(i), VIP.parse().unwrap(), 1000 + i as u16, 80, b"");
    match model.lock().unwrap().process(0, &p) {
        Verdict::Forward { packet, .. } => Ipv6Addr::from(<[u8; 16]>::try_from(&packet[24..40]).unwrap()),
        v => panic!("flow {i}: {v:?}"),
    }
}

#[test]
fn configure_count_read_back_and_flush() {
    let (mut dev, model) = device(DeviceConfig::small());
    assert!(dev.has_flow_table());
    let cfg = FlowConfig {
        enabled: true,
        timeouts_ms: [1000, 100, 2000, 3000, 500],
    };
    dev.set_flow_table(&cfg).unwrap();
    assert_eq!(dev.flow_table(), Some(cfg));
    dev.apply(&lb([1, 2, 3, 4])).unwrap();
    for i in 0..30 {
        send(&model, i);
    }
    for i in 0..10 {
        send(&model, i);
    }
    let c = dev.flow_counters().unwrap();
    assert_eq!((c.learned, c.hits, c.active()), (30, 10, 30));
    let flows = dev.read_flows().unwrap();
    assert_eq!(flows.len(), 30);
    assert!(flows.iter().all(|(_, e)| e.key.lb_id == 1 && e.key.lb_epoch != 0));
    assert_eq!(flows[0].1.class(), FlowClass::Tcp);
    // Removing a target flushes its pinned flows in the same batch as its invalidation.
    let gone = dev.lb_state(1).unwrap().target_index[&ul(2)];
    let pinned_to_gone = flows.iter().filter(|(_, e)| e.target == gone).count() as u64;
    assert!(pinned_to_gone > 0);
    dev.apply(&lb([1, 3, 4])).unwrap();
    let c = dev.flow_counters().unwrap();
    assert_eq!(c.flushed, pinned_to_gone);
    assert!(dev.read_flows().unwrap().iter().all(|(_, e)| e.target != gone));
    // Deleting the LB flushes the rest.
    dev.remove(1).unwrap();
    assert!(dev.read_flows().unwrap().is_empty());
    assert_eq!(dev.flow_counters().unwrap().flushed, 30);
    dev.apply(&lb([1])).unwrap();
    send(&model, 0);
    dev.flush_flows(FlushSelector::All).unwrap();
    assert_eq!(dev.flow_counters().unwrap().active(), 0);
}

#[test]
fn a_re_created_lb_gets_a_new_epoch_and_adoption_keeps_it() {
    let (mut dev, model) = device(DeviceConfig::small());
    dev.set_flow_table(&FlowConfig::default()).unwrap();
    dev.apply(&lb([1, 2])).unwrap();
    let first = dev.lb_state(1).unwrap().flow_epoch;
    dev.remove(1).unwrap();
    dev.apply(&lb([1, 2])).unwrap();
    let second = dev.lb_state(1).unwrap().flow_epoch;
    assert_ne!(first, second);
    send(&model, 1);
    // A new driver on the same device (a daemon restart) adopts the LB with its epoch and the flows as they are.
    let before = dev.read_flows().unwrap();
    drop(dev);
    let mut again = Device::open(Box::new(InprocBackend::attach(model.clone()))).unwrap();
    assert_eq!(again.lb_state(1).unwrap().flow_epoch, second);
    assert_eq!(again.read_flows().unwrap(), before);
    assert_eq!(again.flow_table(), Some(FlowConfig::default()));
    again.apply(&lb([1, 2, 3])).unwrap();
    assert_eq!(
        again.lb_state(1).unwrap().flow_epoch,
        second,
        "updates keep the epoch"
    );
    again
        .apply(&spec(
            2,
            &[v4("203.0.113.11", DOMAIN_PUBLIC)],
            &[(Tcp, 80, 80)],
            [5],
        ))
        .unwrap();
    assert_ne!(
        again.lb_state(2).unwrap().flow_epoch,
        second,
        "new LBs continue after the adopted epochs"
    );
}

#[test]
fn a_reset_restores_the_flow_configuration() {
    let (mut dev, model) = device(DeviceConfig::small());
    let cfg = FlowConfig {
        enabled: true,
        timeouts_ms: [7000, 70, 700, 7, 77],
    };
    dev.set_flow_table(&cfg).unwrap();
    dev.apply(&lb([1, 2])).unwrap();
    model.lock().unwrap().reset();
    assert!(dev.check_and_restore().unwrap().is_some());
    assert_eq!(dev.flow_table(), Some(cfg));
}

#[test]
fn a_v1_1_device_has_no_flow_table_and_programs_as_before() {
    let (mut dev, model) = device(DeviceConfig::small().as_v1_1());
    assert!(!dev.has_flow_table());
    assert!(matches!(
        dev.set_flow_table(&FlowConfig::default()),
        Err(DriverError::NoFeature { minor: 1, .. })
    ));
    assert_eq!(dev.flow_counters(), None);
    assert_eq!(dev.flow_table(), None);
    assert!(dev.read_flows().unwrap().is_empty());
    dev.apply(&lb([1, 2, 3])).unwrap();
    assert_eq!(dev.lb_state(1).unwrap().flow_epoch, 0);
    send(&model, 1);
    dev.apply(&lb([1, 3])).unwrap(); // no FLOW_FLUSH is sent (it would be bad_opcode)
    dev.remove(1).unwrap();
}

/// One phase of target changes: the new target set (a subset of 0..12, never empty).
fn phases() -> impl Strategy<Value = Vec<BTreeSet<u32>>> {
    proptest::collection::vec(proptest::collection::btree_set(0u32..12, 1..8), 1..6)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Established flows moved by a target change = 0, other than flows of a removed target (which re-learn onto
    /// their slot's target); new flows follow the bucket array.
    #[test]
    fn established_flows_never_move_unless_their_target_goes(first in proptest::collection::btree_set(0u32..12, 1..8), later in phases()) {
        let (mut dev, model) = device(DeviceConfig::small());
        dev.set_flow_table(&FlowConfig::default()).unwrap();
        dev.apply(&lb(first.iter().copied())).unwrap();
        let mut pinned: BTreeMap<u32, Ipv6Addr> = (0..200).map(|i| (i, send(&model, i))).collect();
        let mut next_flow = 200;
        for targets in later {
            dev.apply(&lb(targets.iter().copied())).unwrap();
            let live: BTreeSet<Ipv6Addr> = targets.iter().map(|&t| ul(t)).collect();
            for (&i, to) in pinned.iter_mut() {
                let now = send(&model, i);
                if live.contains(to) {
                    prop_assert_eq!(now, *to, "flow {} moved although its target stayed", i);
                } else {
                    prop_assert!(live.contains(&now));
                    *to = now;
                }
            }
            // New flows land where the array sends them (a copy of the same spec on a stateless v1.1 model).
            let (mut reference, ref_model) = device(DeviceConfig::small().as_v1_1());
            reference.apply(&lb(targets.iter().copied())).unwrap();
            for i in next_flow..next_flow + 50 {
                prop_assert_eq!(send(&model, i), send(&ref_model, i));
                pinned.insert(i, send(&model, i));
            }
            next_flow += 50;
        }
        let c = dev.flow_counters().unwrap();
        prop_assert_eq!(c.overflow, 0);
    }
}

#[test]
fn a_draining_target_keeps_its_flows_gets_no_new_ones_and_survives_adoption() {
    let (mut dev, model) = device(DeviceConfig::small());
    dev.set_flow_table(&FlowConfig::default()).unwrap();
    dev.apply(&lb([1, 2, 3])).unwrap();
    let before: BTreeMap<u32, Ipv6Addr> = (0..150).map(|i| (i, send(&model, i))).collect();
    let on_3: Vec<u32> = before
        .iter()
        .filter(|(_, t)| **t == ul(3))
        .map(|(i, _)| *i)
        .collect();
    assert!(!on_3.is_empty());
    let mut draining = lb([1, 2]);
    draining.draining = [ul(3)].into();
    dev.apply(&draining).unwrap();
    let index_3 = dev.lb_state(1).unwrap().target_index[&ul(3)];
    assert!(
        !dev.lb_state(1).unwrap().slots.contains(&index_3),
        "a draining target has no slot"
    );
    for (&i, &t) in &before {
        assert_eq!(
            send(&model, i),
            t,
            "flow {i} kept its target while {} drains",
            ul(3)
        );
    }
    for i in 1000..1300 {
        assert_ne!(send(&model, i), ul(3), "new flow {i} went to the draining target");
    }
    // A daemon restart adopts the draining target as draining (an entry of the LB that no slot references).
    drop(dev);
    let mut again = Device::open(Box::new(InprocBackend::attach(model.clone()))).unwrap();
    assert_eq!(again.lb_state(1).unwrap().spec.draining, [ul(3)].into());
    assert_eq!(again.lb_state(1).unwrap().target_index[&ul(3)], index_3);
    // Draining done: the target goes and its flows are flushed, then re-learned onto the serving targets.
    again.apply(&lb([1, 2])).unwrap();
    assert!(again
        .read_flows()
        .unwrap()
        .iter()
        .all(|(_, e)| e.target != index_3));
    for &i in &on_3 {
        assert_ne!(send(&model, i), ul(3));
    }
    let mut bad = lb([1, 2]);
    bad.draining = [ul(2)].into();
    assert!(matches!(again.apply(&bad), Err(DriverError::Invalid(_))));
}
