use super::*;

/// Every key set to a value other than its default.
fn every_key() -> RunSettings {
    RunSettings {
        manifests: Some("/etc/ironlb/manifests".into()),
        backend: Some("vfio:0000:3b:00.0@2".parse().unwrap()),
        state_dir: Some("/var/lib/ironlb-test".into()),
        public_pool: Some(vec!["198.51.100.0/24".into(), "2001:db8:100::/64".into()]),
        port: Some(vec!["0=public".into(), "1=vni:7".into(), "2=underlay".into()]),
        underlay_src: Some("fd00:1::2".parse().unwrap()),
        mtu: Some(1500),
        hop_limit: Some(32),
        socket: Some("/run/ironlb/ironlb.sock".into()),
        socket_group: Some("0".into()),
        metrics: Some("127.0.0.1:9477".parse().unwrap()),
        log_format: Some(LogFormat::Json),
        color: Some(crate::cli::ColorChoice::Never),
        debounce_ms: Some(50),
        release_grace: Some(Duration::from_secs(3600)),
        drain_timeout: Some(Duration::from_secs(30)),
        lenient: Some(true),
        // The [etcd] table has its own test (`the_etcd_table`): this file stays one line per key.
        etcd: EtcdSettings::default(),
    }
}

#[test]
fn the_etcd_table() {
    let text = "mtu = 1500\n[etcd]\nendpoints = [\"https://10.0.0.1:2379\"]\nprefix = \"/fleet/\"\nca = \"/etc/ironlb/ca.pem\"\ncert = \"/etc/ironlb/client.pem\"\nkey = \"/etc/ironlb/client-key.pem\"\n";
    let s = RunSettings::parse(text).unwrap();
    assert_eq!(s.etcd.prefix.as_deref(), Some("/fleet/"));
    assert_eq!(RunSettings::parse(&s.to_toml()).unwrap(), s);
    s.check("--").unwrap();
    // Flags override the file's keys one by one.
    let flags = RunSettings {
        etcd: EtcdSettings {
            prefix: Some("/other/".into()),
            ..EtcdSettings::default()
        },
        ..RunSettings::default()
    };
    let eff = s.clone().overlay(flags).with_defaults();
    assert_eq!(eff.etcd.prefix.as_deref(), Some("/other/"));
    assert_eq!(eff.etcd.ca, s.etcd.ca);
    // A bad value names the key.
    let bad = RunSettings::parse("[etcd]\nprefix = \"x\"\n").unwrap();
    let e = bad.check("config file f: ").unwrap_err().to_string();
    assert!(e.contains("etcd") && e.contains("prefix"), "{e}");
    assert!(RunSettings::parse("[etcd]\npassword = \"x\"\n").is_err());
}

#[test]
fn every_key_round_trips_through_toml() {
    let s = every_key();
    let text = s.to_toml();
    assert_eq!(RunSettings::parse(&text).unwrap(), s, "{text}");
    // A complete file is its own effective configuration.
    assert_eq!(s.clone().with_defaults(), s);
    s.check("--").unwrap();
}

#[test]
fn each_key_alone_is_read_from_a_file_and_overrides_its_default() {
    let full = RunSettings::parse(&every_key().to_toml()).unwrap();
    let defaults = RunSettings::default().with_defaults();
    let dir = tempfile::tempdir().unwrap();
    // One file per key: the key's line of the full file, alone.
    let text = every_key().to_toml();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 17, "one line per key: {text}");
    for line in lines {
        let path = dir.path().join("one.toml");
        std::fs::write(&path, format!("{line}\n")).unwrap();
        let one = RunSettings::load(&path).unwrap();
        let eff = one.clone().with_defaults();
        let differs = |a: &RunSettings, b: &RunSettings| a.to_toml() != b.to_toml();
        assert!(differs(&eff, &defaults), "{line} changed nothing");
        // The key's effective value is the full file's.
        let key = line.split('=').next().unwrap().trim();
        let eff_line = eff
            .to_toml()
            .lines()
            .find(|l| l.starts_with(&format!("{key} =")))
            .map(str::to_string);
        let full_line = full
            .to_toml()
            .lines()
            .find(|l| l.starts_with(&format!("{key} =")))
            .map(str::to_string);
        assert_eq!(eff_line, full_line, "{key}");
    }
}

#[test]
fn flags_override_the_file_key_by_key() {
    let file = every_key();
    let flags = RunSettings {
        mtu: Some(9100),
        port: Some(vec!["5=public".into()]),
        ..RunSettings::default()
    };
    let eff = file.clone().overlay(flags);
    assert_eq!(eff.mtu, Some(9100));
    assert_eq!(eff.port, Some(vec!["5=public".to_string()]));
    assert_eq!(eff.hop_limit, file.hop_limit);
    assert_eq!(eff.backend, file.backend);
}

#[test]
fn unknown_keys_and_wrong_types_name_the_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ironlb.toml");
    let cases: &[(&str, &[&str])] = &[
        ("mtu = 1500\nmtuu = 9000\n", &["line 2", "unknown field `mtuu`"]),
        ("mtu = \"big\"\n", &["line 1", "mtu"]),
        ("hop-limit = 300\n", &["line 1", "hop-limit"]),
        ("backend = \"pcie:1\"\n", &["line 1", "backend", "pcie:1"]),
        ("release-grace = \"soon\"\n", &["line 1", "release-grace", "soon"]),
        ("log-format = \"xml\"\n", &["line 1", "log-format"]),
        ("metrics = \"localhost\"\n", &["line 1", "metrics"]),
        ("[daemon]\nmtu = 1\n", &["unknown field `daemon`"]),
        ("mtu = 1500\nmtu = 1400\n", &["line 2", "duplicate key"]),
    ];
    for (text, wants) in cases {
        std::fs::write(&path, text).unwrap();
        let e = RunSettings::load(&path).unwrap_err();
        assert!(matches!(e, ConfigError::Parse { .. }), "{text}: {e:?}");
        let msg = e.to_string();
        assert!(
            msg.starts_with(&format!("config file {}:", path.display())),
            "{msg}"
        );
        for w in *wants {
            assert!(msg.contains(w), "{text}: {msg:?} lacks {w:?}");
        }
    }
}

#[test]
fn bad_values_name_the_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ironlb.toml");
    let cases: &[(&str, &str, &str)] = &[
        ("public-pool = [\"10.0.0.1/8\"]\n", "public-pool", "10.0.0.1/8"),
        ("port = [\"0=public\", \"1=vlan:3\"]\n", "port", "1=vlan:3"),
        ("underlay-src = \"::1\"\n", "underlay-src", ""),
        (
            "socket-group = \"no-such-group-ironlb\"\n",
            "socket-group",
            "no such group",
        ),
    ];
    for (text, key, what) in cases {
        std::fs::write(&path, text).unwrap();
        let e = RunSettings::load(&path).unwrap_err();
        let msg = e.to_string();
        assert!(
            matches!(&e, ConfigError::Value { key: k, .. } if k == key),
            "{text}: {e:?}"
        );
        assert!(
            msg.starts_with(&format!("config file {}: {key}: ", path.display())),
            "{msg}"
        );
        assert!(msg.contains(what), "{msg}");
    }
}

#[test]
fn manifests_is_required_and_the_rest_has_defaults() {
    let e = RunSettings::default().daemon_config(false).unwrap_err();
    assert!(matches!(e, ConfigError::Missing { key: "manifests" }), "{e:?}");
    let cfg = RunSettings {
        manifests: Some("/m".into()),
        ..RunSettings::default()
    }
    .daemon_config(false)
    .unwrap();
    assert_eq!(cfg.backend, BackendSpec::Inproc);
    assert_eq!(cfg.host.mtu, daemon::DEFAULT_MTU);
    assert_eq!(cfg.release_grace, RELEASE_GRACE);
    assert_eq!(cfg.drain_timeout, DRAIN_TIMEOUT);
    assert_eq!(cfg.debounce, Duration::from_millis(DEFAULT_DEBOUNCE_MS));
}

#[test]
fn every_key_reaches_the_daemon_config() {
    let cfg = every_key().daemon_config(true).unwrap();
    assert_eq!(cfg.manifests, PathBuf::from("/etc/ironlb/manifests"));
    assert_eq!(cfg.backend, BackendSpec::Vfio("0000:3b:00.0".into(), 2));
    assert_eq!(cfg.state_dir, PathBuf::from("/var/lib/ironlb-test"));
    assert_eq!(cfg.pools.public_v4.len(), 1);
    assert_eq!(cfg.pools.public_v6.len(), 1);
    assert_eq!(cfg.host.ports.len(), 3);
    assert_eq!(cfg.host.underlay_src, "fd00:1::2".parse::<Ipv6Addr>().unwrap());
    assert_eq!((cfg.host.mtu, cfg.host.hop_limit), (1500, 32));
    assert_eq!(cfg.socket, Some(PathBuf::from("/run/ironlb/ironlb.sock")));
    assert_eq!(cfg.socket_group, Some(0));
    assert_eq!(cfg.metrics, Some("127.0.0.1:9477".parse().unwrap()));
    assert_eq!(cfg.debounce, Duration::from_millis(50));
    assert_eq!(cfg.release_grace, Duration::from_secs(3600));
    assert_eq!(cfg.drain_timeout, Duration::from_secs(30));
    assert!(cfg.remove_unclaimed);
}
