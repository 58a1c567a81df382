//! What the Debian package ships that the binary generates: manual pages and shell completions from the CLI
//! definition (packaging/build-deb runs the same commands).

use std::process::Command;

fn ironlb(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ironlb"))
        .args(args)
        .output()
        .expect("run ironlb");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn manual_pages_cover_every_command_and_option() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("man");
    let (ok, msg) = ironlb(&["manpages", out.to_str().unwrap()]);
    assert!(ok, "{msg}");
    for cmd in [
        "ironlb",
        "ironlb-run",
        "ironlb-status",
        "ironlb-trace",
        "ironlb-dump",
        "ironlb-stats",
        "ironlb-validate",
        "ironlb-replay",
        "ironlb-completions",
    ] {
        let page =
            std::fs::read_to_string(out.join(format!("{cmd}.1"))).unwrap_or_else(|e| panic!("{cmd}.1: {e}"));
        assert!(page.starts_with(".ie"), "{cmd}.1 is not roff");
        assert!(page.contains(".SH NAME"), "{cmd}.1");
    }
    let run = std::fs::read_to_string(out.join("ironlb-run.1")).unwrap();
    for flag in [
        "config",
        "print\\-config",
        "manifests",
        "socket\\-group",
        "release\\-grace",
    ] {
        assert!(
            run.contains(&format!("\\-\\-{flag}")),
            "ironlb-run.1 lacks --{flag}"
        );
    }
    assert!(
        !out.join("ironlb-manpages.1").exists(),
        "the hidden generator has no page"
    );
}

#[test]
fn completions_for_bash_zsh_and_fish_know_the_run_flags() {
    for shell in ["bash", "zsh", "fish"] {
        let (ok, script) = ironlb(&["completions", shell]);
        assert!(ok, "{script}");
        assert!(
            script.contains("print-config"),
            "{shell} completion lacks --print-config"
        );
    }
}
