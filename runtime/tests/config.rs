//! `ironlb run --config FILE`: file → effective configuration → `--print-config` → the same file, flags over keys,
//! bad files refused with exit code 2 before anything starts.

use std::process::Command;

fn ironlb(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ironlb"))
        .args(args)
        .env_remove("IRONLB_STATE_DIR")
        .env_remove("IRONLB_CONFIG")
        .output()
        .expect("run ironlb");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every key, none at its default.
const FULL: &str = r#"manifests = "/etc/ironlb/manifests"
backend = "sim-shm:/dev/shm/ironlb-test"
state-dir = "/var/lib/ironlb-test"
public-pool = ["198.51.100.0/24", "2001:db8:100::/64"]
port = ["0=public", "1=vni:7", "2=underlay"]
underlay-src = "fd00:1::2"
mtu = 1500
hop-limit = 32
socket = "/run/ironlb/test.sock"
socket-group = "0"
metrics = "127.0.0.1:9477"
log-format = "json"
color = "never"
debounce-ms = 50
release-grace = "1h"
drain-timeout = "30s"
lenient = true
"#;

#[test]
fn print_config_reproduces_a_complete_file_and_flags_override_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ironlb.toml");
    std::fs::write(&path, FULL).unwrap();
    let p = path.to_str().unwrap();
    let (code, out, err) = ironlb(&["run", "--config", p, "--print-config"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, FULL);

    // Printed again from what it printed: a fixed point.
    let again = dir.path().join("again.toml");
    std::fs::write(&again, &out).unwrap();
    let (_, out2, _) = ironlb(&["run", "--config", again.to_str().unwrap(), "--print-config"]);
    assert_eq!(out2, FULL);

    let (code, out, err) = ironlb(&[
        "run",
        "--config",
        p,
        "--print-config",
        "--mtu",
        "1400",
        "--port",
        "0=public,1=vni:9",
        "--backend",
        "inproc",
    ]);
    assert_eq!(code, 0, "{err}");
    let want = FULL
        .replace("mtu = 1500", "mtu = 1400")
        .replace(
            r#"["0=public", "1=vni:7", "2=underlay"]"#,
            r#"["0=public", "1=vni:9"]"#,
        )
        .replace(r#""sim-shm:/dev/shm/ironlb-test""#, r#""inproc""#);
    assert_eq!(out, want);
}

#[test]
fn bad_files_and_flags_exit_2_naming_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ironlb.toml");
    let p = path.to_str().unwrap();
    std::fs::write(&path, "mtu = 1500\nlisten = \"0.0.0.0:1\"\n").unwrap();
    let (code, _, err) = ironlb(&["run", "--config", p, "--print-config"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains(&format!("config file {p}")), "{err}");
    assert!(
        err.contains("line 2") && err.contains("unknown field `listen`"),
        "{err}"
    );

    std::fs::write(&path, "public-pool = [\"203.0.113.0/24\", \"2001:db8::1/64\"]\n").unwrap();
    let (code, _, err) = ironlb(&["run", "--config", p, "--print-config"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains(&format!("config file {p}: public-pool: ")), "{err}");

    let (code, _, err) = ironlb(&["run", "--config", "/nonexistent/ironlb.toml"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("config file /nonexistent/ironlb.toml"), "{err}");

    let (code, _, err) = ironlb(&["run", "--print-config", "--port", "9=nothing"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--port: "), "{err}");

    // No manifests anywhere: refused before anything starts.
    std::fs::write(&path, "mtu = 1500\n").unwrap();
    let (code, _, err) = ironlb(&["run", "--config", p]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--manifests (or `manifests` in the config file) is required"),
        "{err}"
    );
}
