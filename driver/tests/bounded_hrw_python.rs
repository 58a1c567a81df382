//! The default bucket-array scheme against its independent python3 transcription (bounded_hrw_reference.py, written
//! from the module docs of driver/src/tables/buckets.rs): every host, whatever its implementation, must compute the
//! same arrays. Sizes and target counts are chosen so that capacities bind and slots are shed.

use ironlb_driver::buckets::{BoundedRendezvous, BucketHasher, TargetKey};
use std::net::Ipv6Addr;
use std::process::Command;

fn python(m_log2: u8, keys: &[Ipv6Addr]) -> Vec<u32> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/bounded_hrw_reference.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(m_log2.to_string())
        .args(keys.iter().map(|k| k.to_string()))
        .output()
        .expect("python3 (installed by .ci/run)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .map(|t| t.parse().unwrap())
        .collect()
}

#[test]
fn rust_and_python_transcriptions_agree() {
    let cases: Vec<(u8, Vec<Ipv6Addr>)> = vec![
        // Sequential underlay addresses, unsorted input.
        (
            6,
            (1..=9u128)
                .rev()
                .map(|i| Ipv6Addr::from((0xfd00u128 << 112) + i))
                .collect(),
        ),
        // Many targets per slot: every capacity is 1 or 2, most slots are shed.
        (
            7,
            (0..90u128)
                .map(|i| Ipv6Addr::from((0x2001_0db8u128 << 96) + i * 0x1_0001))
                .collect(),
        ),
        // Scattered addresses at a size where about a fifth of the targets are over capacity.
        (
            9,
            (0..23u128)
                .map(|i| Ipv6Addr::from(i.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)))
                .collect(),
        ),
    ];
    for (m_log2, keys) in cases {
        let tk: Vec<TargetKey> = keys.iter().map(|&a| TargetKey::from(a)).collect();
        assert_eq!(
            BoundedRendezvous.assign(&tk, m_log2),
            python(m_log2, &keys),
            "m_log2 {m_log2}, {} targets",
            keys.len()
        );
    }
}
