//! A fake `/sys` + `/dev` tree for the host checks' tests.

use ironlb_driver::VfioRoots;
use std::os::unix::fs::symlink;
use std::path::PathBuf;

pub(crate) const ADDR: &str = "0000:03:00.0";

/// A fake `/sys` + `/dev`: one function (vendor 1af4, device 1110) in IOMMU group 7, bound to `driver`.
pub(crate) struct Fake {
    _dir: tempfile::TempDir,
    pub(crate) roots: VfioRoots,
}

impl Fake {
    pub(crate) fn new(driver: Option<&str>) -> Fake {
        let dir = tempfile::tempdir().unwrap();
        let roots = VfioRoots {
            sysfs: dir.path().join("sys"),
            devfs: dir.path().join("dev"),
        };
        let dev = roots.sysfs.join("bus/pci/devices").join(ADDR);
        std::fs::create_dir_all(&dev).unwrap();
        std::fs::write(dev.join("vendor"), "0x1af4\n").unwrap();
        std::fs::write(dev.join("device"), "0x1110\n").unwrap();
        std::fs::write(dev.join("driver_override"), "(null)\n").unwrap();
        std::fs::write(roots.sysfs.join("bus/pci/drivers_probe"), "").unwrap();
        for d in ["vfio-pci", "ixgbe"] {
            let p = roots.sysfs.join("bus/pci/drivers").join(d);
            std::fs::create_dir_all(&p).unwrap();
            std::fs::write(p.join("unbind"), "").unwrap();
        }
        let group = roots.sysfs.join("kernel/iommu_groups/7/devices");
        std::fs::create_dir_all(&group).unwrap();
        symlink(&dev, group.join(ADDR)).unwrap();
        symlink(roots.sysfs.join("kernel/iommu_groups/7"), dev.join("iommu_group")).unwrap();
        let fake = Fake { _dir: dir, roots };
        fake.set_driver(driver);
        std::fs::create_dir_all(fake.roots.devfs.join("vfio")).unwrap();
        std::fs::write(fake.roots.devfs.join("vfio/vfio"), "").unwrap();
        std::fs::write(fake.roots.devfs.join("vfio/7"), "").unwrap();
        fake
    }

    pub(crate) fn dev(&self) -> PathBuf {
        self.roots.sysfs.join("bus/pci/devices").join(ADDR)
    }

    pub(crate) fn set_driver(&self, driver: Option<&str>) {
        let link = self.dev().join("driver");
        let _ = std::fs::remove_file(&link);
        if let Some(d) = driver {
            symlink(self.roots.sysfs.join("bus/pci/drivers").join(d), link).unwrap();
        }
    }

    pub(crate) fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.roots.sysfs.join(rel)).unwrap()
    }
}
