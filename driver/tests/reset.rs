//! Reset detection and restore (docs/hw-spec.md §3.4): a reset the driver did not cause — a function level reset
//! of the model, or `CONTROL.RESET` written by someone else — is detected (through GENERATION on a v1.1 part, by its
//! effects on a v1.0 part, with and without a command ring) and everything the driver had configured comes back;
//! all-ones reads are a removed device, not a reset.

mod common;

use common::*;
use etherparse::PacketBuilder;
use ironlb_driver::{Device, DriverError, InprocBackend, SharedModel};
use ironlb_hw::entry::Protocol::{Tcp, Udp};
use ironlb_hw::regs::{CONTROL, CONTROL_RESET, GENERATION, ID};
use ironlb_hw::DOMAIN_PUBLIC;
use ironlb_sim::{DeviceConfig, Verdict};

fn programmed(cfg: DeviceConfig) -> (Device, SharedModel) {
    let backend = InprocBackend::new(cfg).unwrap();
    let model = backend.model();
    let mut dev = Device::open(Box::new(backend)).unwrap();
    public_and_underlay(&mut dev);
    for i in 0..20u32 {
        let vip = format!("203.0.113.{}", 10 + i);
        dev.apply(&spec(
            i + 1,
            &[v4(&vip, DOMAIN_PUBLIC)],
            &[(Tcp, 80, 80), (Udp, 1000, 1100)],
            10 * i..10 * i + 3,
        ))
        .unwrap();
    }
    dev.set_enabled(true);
    (dev, model)
}

fn syn_to(i: u8) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ipv4([198, 51, 100, 7], [203, 0, 113, 10 + i], 64)
        .tcp(40000, 80, 1, 1000)
        .write(&mut v, &[])
        .unwrap();
    v
}

fn forwards_all(model: &SharedModel) -> bool {
    let mut m = model.lock().unwrap();
    (0..20).all(|i| matches!(m.process(0, &syn_to(i)), Verdict::Forward { .. }))
}

fn reset_is_detected_and_restored(cfg: DeviceConfig, how: fn(&SharedModel)) {
    let (mut dev, model) = programmed(cfg);
    let before = dev.read_state().unwrap().specs();
    assert_eq!(before.len(), 20);
    assert!(forwards_all(&model));
    assert_eq!(dev.check_reset().unwrap(), None, "no reset yet");
    // Nothing the driver does itself looks like a reset.
    dev.apply(&spec(
        1,
        &[v4("203.0.113.10", DOMAIN_PUBLIC)],
        &[(Tcp, 80, 80)],
        0..5,
    ))
    .unwrap();
    assert_eq!(dev.check_reset().unwrap(), None);
    let before = dev.read_state().unwrap().specs();

    how(&model);
    assert!(!forwards_all(&model), "the reset emptied the device");
    let seen = dev.check_reset().unwrap().expect("reset detected");
    let (_, report) = dev.check_and_restore().unwrap().expect("still reset");
    assert_eq!(report.load_balancers, 20, "{seen}");
    assert_eq!(dev.read_state().unwrap().specs(), before);
    assert!(forwards_all(&model), "every LB forwards again");
    assert_eq!(dev.check_reset().unwrap(), None, "restored in the new generation");
}

fn flr(model: &SharedModel) {
    model.lock().unwrap().reset();
}

fn control_reset(model: &SharedModel) {
    let mut m = model.lock().unwrap();
    m.bar().write32(CONTROL as usize, CONTROL_RESET);
    m.poll();
}

#[test]
fn v1_1_function_level_reset() {
    let cfg = DeviceConfig::small();
    reset_is_detected_and_restored(cfg.clone(), flr);
    reset_is_detected_and_restored(cfg.without_ring(), control_reset);
}

#[test]
fn v1_0_reset_detected_by_its_effects() {
    let cfg = DeviceConfig::small().as_v1_0();
    reset_is_detected_and_restored(cfg.clone(), flr);
    reset_is_detected_and_restored(cfg.clone(), control_reset);
    // Without a ring, the mailbox sequence (and the cleared ENABLE) give it away.
    reset_is_detected_and_restored(cfg.without_ring(), flr);
}

#[test]
fn generation_changes_on_every_reset() {
    let (_dev, model) = programmed(DeviceConfig::small());
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..50 {
        let g = model.lock().unwrap().bar().read32(GENERATION as usize).unwrap();
        assert!(g != 0 && g != u32::MAX);
        assert!(seen.insert(g), "generation {g:#x} repeated");
        flr(&model);
    }
}

#[test]
fn all_ones_is_a_removed_device() {
    let (mut dev, model) = programmed(DeviceConfig::small());
    model.lock().unwrap().bar().write32(ID as usize, u32::MAX);
    assert!(matches!(
        dev.check_reset(),
        Err(DriverError::DeviceGone { register: "ID" })
    ));
}
