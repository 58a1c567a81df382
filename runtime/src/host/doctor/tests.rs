use super::*;
use crate::host::fake::{Fake, ADDR};

fn outcome(checks: &[Check], name: &str) -> (Outcome, String) {
    let c = checks
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no {name} check"));
    (c.outcome, c.detail.clone())
}

fn inputs(roots: VfioRoots, settings: RunSettings) -> Inputs {
    Inputs {
        config: None,
        settings,
        roots,
    }
}

#[test]
fn nothing_running_with_the_model_fails_only_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let f = Fake::new(None);
    let settings = RunSettings {
        state_dir: Some(dir.path().into()),
        ..RunSettings::default()
    };
    let checks = run(&inputs(f.roots.clone(), settings));
    assert_eq!(
        checks.iter().map(|c| c.name).collect::<Vec<_>>(),
        ["config", "iommu", "binding", "device", "daemon", "metrics"]
    );
    assert_eq!(outcome(&checks, "binding").0, Outcome::Skip);
    assert_eq!(outcome(&checks, "device").0, Outcome::Skip);
    let (o, d) = outcome(&checks, "daemon");
    assert_eq!(o, Outcome::Fail);
    assert!(
        d.contains(&dir.path().join("ironlb.sock").display().to_string()),
        "{d}"
    );
    assert_eq!(outcome(&checks, "metrics").0, Outcome::Skip);
    assert!(render(&checks).contains("FAIL  daemon"), "{}", render(&checks));
}

#[test]
fn a_running_daemon_and_its_metrics_are_ok() {
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("m");
    std::fs::create_dir(&manifests).unwrap();
    let settings = RunSettings {
        manifests: Some(manifests),
        state_dir: Some(dir.path().join("state")),
        metrics: Some("127.0.0.1:0".parse().unwrap()),
        ..RunSettings::default()
    };
    let mut d = crate::daemon::Daemon::start(settings.daemon_config(false).unwrap()).unwrap();
    d.sync().unwrap();
    let live = RunSettings {
        metrics: d.metrics_addr(),
        ..settings
    };
    let checks = run(&inputs(Fake::new(None).roots, live));
    assert_eq!(outcome(&checks, "daemon").0, Outcome::Ok, "{}", render(&checks));
    assert_eq!(outcome(&checks, "device").0, Outcome::Skip);
    let (o, m) = outcome(&checks, "metrics");
    assert_eq!(o, Outcome::Ok, "{m}");
    assert!(m.contains("ironlb_ series"), "{m}");
}

#[test]
fn a_vfio_backend_reports_iommu_binding_and_device() {
    let dir = tempfile::tempdir().unwrap();
    let f = Fake::new(Some("ixgbe"));
    let settings = RunSettings {
        state_dir: Some(dir.path().into()),
        backend: Some(format!("vfio:{ADDR}").parse().unwrap()),
        ..RunSettings::default()
    };
    let checks = run(&inputs(f.roots.clone(), settings.clone()));
    let (o, d) = outcome(&checks, "iommu");
    assert_eq!(o, Outcome::Ok, "{d}");
    let (o, d) = outcome(&checks, "binding");
    assert_eq!(o, Outcome::Fail);
    assert!(d.contains("ixgbe"), "{d}");
    assert_eq!(outcome(&checks, "device").0, Outcome::Fail);

    // The IOMMU off: named, with the boot parameters.
    std::fs::remove_dir_all(f.roots.sysfs.join("kernel/iommu_groups")).unwrap();
    std::fs::create_dir(f.roots.sysfs.join("kernel/iommu_groups")).unwrap();
    let checks = run(&inputs(f.roots.clone(), settings));
    let (o, d) = outcome(&checks, "iommu");
    assert_eq!(o, Outcome::Fail);
    assert!(d.contains("intel_iommu=on"), "{d}");
}

#[test]
fn a_config_that_does_not_load_fails_first() {
    let f = Fake::new(None);
    let mut i = inputs(f.roots.clone(), RunSettings::default());
    i.config = Some((
        "/etc/ironlb/ironlb.toml".into(),
        Err("config file /etc/ironlb/ironlb.toml: bad".into()),
    ));
    let checks = run(&i);
    assert_eq!(checks[0].name, "config");
    assert_eq!(checks[0].outcome, Outcome::Fail);
}
