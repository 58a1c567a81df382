//! The golden fixture suite (docs/testing.md "Golden fixtures"): the same table, the same tester, every backend.
//! The configuration is programmed through the driver; packets are injected into the model behind the backend.

use ironlb_sim::DeviceConfig;
use ironlb_tests::fixtures::{inproc, run_fixtures, sim_shm};

#[test]
fn fixtures_inproc() {
    let s = run_fixtures(inproc(DeviceConfig::small()));
    eprintln!("{s:?}");
    assert!(s.cases >= 60);
}

#[test]
fn fixtures_sim_shm() {
    let s = run_fixtures(sim_shm(DeviceConfig::small()));
    eprintln!("{s:?}");
    assert!(s.cases >= 60);
}

/// The tester itself: a table with deliberately wrong expectations must fail on every one of them (not just the
/// first), with the case number, and on the counters they disturb.
#[test]
fn tester_reports_every_mismatch() {
    use ironlb_hw::DropReason;
    use ironlb_tests::fixtures::{cases, check_cases, Expect};
    let mut table = cases();
    let mut mutate = |no: u32, f: &mut dyn FnMut(&mut Expect)| {
        let c = table.iter_mut().find(|c| c.no == no).expect("case exists");
        f(&mut c.expect);
    };
    // Wrong tuple (the pipeline hashes client port 40000): flow label differs.
    mutate(1, &mut |e| {
        if let Expect::Forward(f) = e {
            f.tuple.src_port += 1;
        }
    });
    // Wrong drop reason.
    mutate(3, &mut |e| *e = Expect::Drop(DropReason::NoVip));
    // Wrong traffic class.
    mutate(20, &mut |e| {
        if let Expect::Forward(f) = e {
            f.traffic_class = 0;
        }
    });
    // Wrong inner bytes (one byte of the datagram).
    mutate(26, &mut |e| {
        if let Expect::Forward(f) = e {
            let n = f.inner.len();
            f.inner[n - 1] ^= 0xFF;
        }
    });
    let errs = check_cases(inproc(DeviceConfig::small()), &table).expect_err("mutated table must fail");
    let all = errs.join("\n\n");
    eprintln!("{all}");
    for want in [
        "case 1 [Main]",
        "case 3 [Main]",
        "case 20 [Main]",
        "case 26 [Main]",
        "(outer traffic class / flow label)",
        "(outer version / traffic class)",
        "(inner datagram byte 60)",
        "drop counter no_vip: expected +",
        "drop counter port_not_allowed: expected +",
    ] {
        assert!(all.contains(want), "report lacks {want:?}:\n{all}");
    }
}

/// docs/testing.md lists every case (regenerate the rows with `IRONLB_PRINT_FIXTURES=1 cargo test -p ironlb-tests
/// --test pipeline_fixtures docs_list -- --nocapture`).
#[test]
fn docs_list_every_case() {
    let rows = ironlb_tests::fixtures::markdown_rows(&ironlb_tests::fixtures::cases());
    if std::env::var_os("IRONLB_PRINT_FIXTURES").is_some() {
        println!("{rows}");
    }
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/testing.md"))
        .expect("docs/testing.md");
    let missing: Vec<&str> = rows.lines().filter(|r| !doc.contains(r)).collect();
    assert!(
        missing.is_empty(),
        "docs/testing.md \"Golden fixtures\" lacks these rows:\n{}",
        missing.join("\n")
    );
}
