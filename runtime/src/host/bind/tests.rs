use super::*;
use crate::host::fake::{Fake, ADDR};
use std::os::unix::fs::symlink;

fn addr() -> PciAddress {
    PciAddress::parse(ADDR).unwrap()
}

#[test]
fn a_function_of_another_driver_gets_override_unbind_and_probe() {
    let f = Fake::new(Some("ixgbe"));
    // The fake kernel does not rebind: the pre-check after the steps names the driver still bound.
    let e = bind(&f.roots, &addr(), None).unwrap_err();
    assert!(
        matches!(e, BindError::Check(VfioError::BoundToOtherDriver { ref driver, .. }) if driver == "ixgbe"),
        "{e}"
    );
    assert_eq!(
        f.read(&format!("bus/pci/devices/{ADDR}/driver_override")),
        "vfio-pci"
    );
    assert_eq!(f.read("bus/pci/drivers/ixgbe/unbind"), ADDR);
    assert_eq!(f.read("bus/pci/drivers_probe"), ADDR);
}

#[test]
fn an_unbound_function_is_probed_without_an_unbind() {
    let f = Fake::new(None);
    let e = bind(&f.roots, &addr(), None).unwrap_err();
    assert!(matches!(e, BindError::Check(VfioError::NotBound { .. })), "{e}");
    assert_eq!(
        f.read(&format!("bus/pci/devices/{ADDR}/driver_override")),
        "vfio-pci"
    );
    assert_eq!(f.read("bus/pci/drivers_probe"), ADDR);
}

#[test]
fn a_function_on_vfio_pci_is_left_alone_and_its_group_node_given_to_the_group() {
    use std::os::unix::fs::MetadataExt as _;
    let f = Fake::new(Some("vfio-pci"));
    let gid = nix::unistd::getegid().as_raw();
    let b = bind(&f.roots, &addr(), Some(gid)).unwrap();
    assert_eq!(b.previous.as_deref(), Some("vfio-pci"));
    assert_eq!(b.checked.group, 7);
    assert_eq!(
        f.read(&format!("bus/pci/devices/{ADDR}/driver_override")),
        "(null)\n"
    );
    assert_eq!(f.read("bus/pci/drivers_probe"), "");
    let m = std::fs::metadata(f.roots.devfs.join("vfio/7")).unwrap();
    assert_eq!((m.gid(), m.mode() & 0o777), (gid, 0o660));
}

#[test]
fn no_iommu_group_is_reported_and_nothing_written() {
    let f = Fake::new(Some("ixgbe"));
    std::fs::remove_file(f.dev().join("iommu_group")).unwrap();
    let e = bind(&f.roots, &addr(), None).unwrap_err();
    assert!(
        matches!(e, BindError::Check(VfioError::NoIommuGroup { .. })),
        "{e}"
    );
    assert!(e.to_string().contains("iommu"), "{e}");
    assert_eq!(
        f.read(&format!("bus/pci/devices/{ADDR}/driver_override")),
        "(null)\n"
    );
}

#[test]
fn a_group_member_on_another_driver_is_named() {
    let f = Fake::new(Some("vfio-pci"));
    let other = f.roots.sysfs.join("bus/pci/devices/0000:03:00.1");
    std::fs::create_dir_all(&other).unwrap();
    symlink(f.roots.sysfs.join("bus/pci/drivers/ixgbe"), other.join("driver")).unwrap();
    symlink(
        &other,
        f.roots.sysfs.join("kernel/iommu_groups/7/devices/0000:03:00.1"),
    )
    .unwrap();
    let e = bind(&f.roots, &addr(), None).unwrap_err();
    assert!(
        matches!(e, BindError::Check(VfioError::GroupNotViable { .. })),
        "{e}"
    );
    assert!(e.to_string().contains("0000:03:00.1"), "{e}");
}

#[test]
fn a_missing_function_is_reported_with_lspci() {
    let f = Fake::new(None);
    let e = bind(&f.roots, &PciAddress::parse("0000:04:00.0").unwrap(), None).unwrap_err();
    assert!(
        matches!(e, BindError::Check(VfioError::DeviceNotFound { .. })),
        "{e}"
    );
}

#[test]
fn selectors_are_addresses_or_vendor_device_ids() {
    let f = Fake::new(None);
    let by_addr: Selector = "03:00.0".parse().unwrap();
    assert_eq!(resolve(&f.roots, &by_addr).unwrap(), vec![addr()]);
    let by_id: Selector = "1af4:1110".parse().unwrap();
    assert_eq!(
        by_id,
        Selector::Id {
            vendor: 0x1af4,
            device: 0x1110
        }
    );
    assert_eq!(resolve(&f.roots, &by_id).unwrap(), vec![addr()]);
    let none: Selector = "8086:1572".parse().unwrap();
    assert!(matches!(
        resolve(&f.roots, &none),
        Err(BindError::NoSuchId { .. })
    ));
    for bad in ["1af4", "1af4:11100", "zz:00", "eth0"] {
        assert!(bad.parse::<Selector>().is_err(), "{bad}");
    }
}
