//! The `ironlb` binary as a user runs it: exit codes (0 ok, 2 bad input) and what it prints.

use std::path::Path;
use std::process::Command;
#[path = "common/pcap.rs"]
mod common_pcap;

fn ironlb(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ironlb"))
        .args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .expect("run ironlb");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn validate_examples_ok_and_bad_input_exit_2() {
    let (code, out, _) = ironlb(&["validate", "examples"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("0 errors"), "{out}");

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: networking.ironcore.dev/v1alpha1\nkind: LoadBalancer\nmetadata: {name: x}\nspec:\n  type: Public\n  ipFamilies: [IPv4]\n  ports: [{protocol: tcp, port: 80, portEnd: 79}]\n  networkRef: {name: nope}\n",
    )
    .unwrap();
    let (code, out, err) = ironlb(&["validate", bad.to_str().unwrap()]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        out.contains("LoadBalancer default/x: spec.ports[0].portEnd"),
        "{out}"
    );
    assert!(
        out.contains("spec.networkRef.name: unknown Network default/nope"),
        "{out}"
    );
    let (code, _, err) = ironlb(&["validate", "/nonexistent/dir"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("/nonexistent/dir: no such file or directory"),
        "{err}"
    );
}

#[test]
fn replay_example_programs_and_forwards() {
    let (code, out, err) = ironlb(&["replay", "--example"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("vni:100 tcp 10.0.0.5:33000 -> 10.0.0.1:8080")
            && out.contains("forward -> target fd00:2::"),
        "{out}"
    );
    assert!(
        out.contains("drop (icmp_echo)") && out.contains("drop (no_vip)"),
        "{out}"
    );
    // Counters read back from the device agree with the verdicts: 5 packets forwarded for lb 1.
    assert!(
        out.lines()
            .any(|l| l.trim_start().starts_with("lb 1") && l.contains("packets    5")),
        "{out}"
    );
    let (code, _, err) = ironlb(&[
        "replay",
        "--example",
        "--ingress",
        "bogus",
        "--in",
        "x.pcap",
        "--out",
        "y.pcap",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--ingress bogus"), "{err}");
}

#[test]
fn trace_explains_forward_and_drop() {
    let (code, out, err) = ironlb(&[
        "trace",
        "--example",
        "--ingress",
        "public",
        "--packet",
        "tcp 198.51.100.7:40000 -> 203.0.113.10:80",
    ]);
    assert_eq!(code, 0, "{err}");
    for stage in [
        "lookup       hit lb_id=1",
        "port_filter  tcp/80 admitted",
        "hash         crc32=0x",
        "target       target",
    ] {
        assert!(out.contains(stage), "missing '{stage}' in\n{out}");
    }
    assert!(out.contains("verdict: forward on port 3"), "{out}");
    let (code, out, _) = ironlb(&[
        "trace",
        "--example",
        "--ingress",
        "vni:200",
        "--packet",
        "tcp 10.0.0.5:1 -> 10.0.0.1:8080",
        "-o",
        "json",
    ]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("trace JSON");
    assert_eq!(v["result"]["reason"], "no_vip");
    assert_eq!(v["trace"]["drop"], "no_vip");
    let (code, _, err) = ironlb(&[
        "trace",
        "--example",
        "--ingress",
        "public",
        "--packet",
        "gre 1.2.3.4 -> 5.6.7.8",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("unknown protocol 'gre'"), "{err}");
}

#[test]
fn dump_decodes_the_device() {
    let (code, out, err) = ironlb(&["dump", "--example"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("vip 203.0.113.10") && out.contains("allow UDP 1024-2048"),
        "{out}"
    );
    assert!(
        // Every bucket array has 4,096 slots whatever its target count (issue 13).
        out.contains("target") && out.contains("fd00:2::2") && out.contains("/4096"),
        "{out}"
    );
    let (code, out, _) = ironlb(&["dump", "--example", "-o", "json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("dump JSON");
    assert_eq!(v["lbs"]["1"]["vips"].as_array().map(Vec::len), Some(2));
    let (code, _, err) = ironlb(&["dump", "--backend", "sim-shm:/nonexistent/model"]);
    assert_eq!(code, 1, "a missing device is a runtime error");
    assert!(
        err.contains("/nonexistent/model.bar (is `ironlb-sim serve` running?)"),
        "{err}"
    );
    let (code, _, _) = ironlb(&["dump", "--backend", "bogus"]);
    assert_eq!(code, 2);
}

/// `trace --in FILE --index N` and `--hex` trace a packet as it arrived (here a non-first fragment and a packet with
/// a broken IPv4 checksum, which `--packet` cannot describe) and agree with `replay --verdicts` on the same capture.
#[test]
fn trace_takes_packets_from_a_capture_or_as_hex() {
    let whole = ironlb_runtime::cli::build_packet("udp 198.51.100.7:40000 -> 203.0.113.10:1500").unwrap();
    // A non-first fragment of a UDP datagram to the VIP: offset 185 (1,480 bytes), no UDP header of its own.
    let mut fragment = etherparse::Ipv4Header::new(
        16,
        64,
        etherparse::IpNumber::UDP,
        [198, 51, 100, 7],
        [203, 0, 113, 10],
    )
    .unwrap();
    fragment.fragment_offset = etherparse::IpFragOffset::try_new(185).unwrap();
    fragment.header_checksum = fragment.calc_header_checksum();
    let mut fragment_bytes = fragment.to_bytes().to_vec();
    fragment_bytes.extend_from_slice(&[0xab; 16]);
    let mut bad_checksum = whole.clone();
    bad_checksum[10] ^= 0xff;
    let packets = [whole, fragment_bytes.clone(), bad_checksum];
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("in.pcap");
    std::fs::write(
        &capture,
        common_pcap::raw_pcap(packets.iter().map(|p| (std::time::Duration::ZERO, &p[..]))),
    )
    .unwrap();
    let capture = capture.to_str().unwrap();
    let trace_json = |what: &[&str]| {
        let mut args = vec!["trace", "--example", "--ingress", "public", "-o", "json"];
        args.extend_from_slice(what);
        let (code, out, err) = ironlb(&args);
        assert_eq!(code, 0, "{what:?}: {err}");
        serde_json::from_str::<serde_json::Value>(out.trim()).expect("trace JSON")
    };
    let frag = trace_json(&["--in", capture, "--index", "1"]);
    assert_eq!(frag["trace"]["fragment"], "non_first", "{frag}");
    assert_eq!(frag["result"]["verdict"], "forward", "{frag}");
    // The same bytes as hex (with separators) trace the same.
    let spaced: Vec<String> = fragment_bytes.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(trace_json(&["--hex", &spaced.join(" ")]), frag);
    // Every packet: the trace's verdict is replay's.
    let lines = common_pcap::replay_example_verdicts(Path::new(capture), dir.path());
    assert_eq!(lines.len(), packets.len());
    for (i, line) in lines.iter().enumerate() {
        let t = trace_json(&["--in", capture, "--index", &i.to_string()]);
        assert_eq!(
            t["result"]["verdict"], line["verdict"],
            "packet {i}: {t} vs {line}"
        );
        assert_eq!(t["result"]["reason"], line["reason"], "packet {i}: {t} vs {line}");
    }
    assert_eq!(lines[2]["reason"], "ipv4_checksum");
    // The table output names the packet by file and index.
    let (code, out, err) = ironlb(&[
        "trace",
        "--example",
        "--ingress",
        "public",
        "--in",
        capture,
        "--index",
        "2",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with(&format!(
            "{capture} packet index 2 ({} bytes) on public:",
            packets[2].len()
        )),
        "{out}"
    );
    assert!(out.contains("verdict: drop (ipv4_checksum)"), "{out}");
    // Bad input: exit 2, naming what is wrong.
    for (args, says) in [
        (vec!["--in", capture, "--index", "3"], "holds 3 packets"),
        (vec!["--in", "/nonexistent.pcap"], "--in /nonexistent.pcap"),
        (vec!["--hex", "45 0g"], "--hex: Invalid character 'g'"),
        (vec![], "required arguments were not provided"),
        (
            vec!["--hex", "45", "--packet", "tcp 1.2.3.4:1 -> 5.6.7.8:80"],
            "cannot be used with",
        ),
    ] {
        let mut a = vec!["trace", "--example", "--ingress", "public"];
        a.extend_from_slice(&args);
        let (code, _, err) = ironlb(&a);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

/// An error that names its cause in its own message (`PATH: cause`) prints the cause once, not twice.
#[test]
fn an_error_prints_its_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    // The state directory would be below a regular file: it cannot be created.
    let state = file.join("state");
    let (code, _, err) = ironlb(&[
        "run",
        "--manifests",
        "examples",
        "--backend",
        "inproc",
        "--state-dir",
        state.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(&format!("{}: ", state.display())), "{err}");
    assert_eq!(err.matches("Not a directory").count(), 1, "{err}");
}
