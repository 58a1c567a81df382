//! Replays every fuzz target's corpus (fuzz/corpus/<target>/: the seeds and what campaigns kept) and saved crash
//! inputs (fuzz/regressions/<target>/: each a bug found and fixed) through the target's harness: the same
//! assertions AFL runs, as plain regression tests.

use std::path::{Path, PathBuf};

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("corpus directory entry").path())
        .filter(|p| {
            p.is_file()
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    files.sort();
    files
}

fn replay(target: &str) {
    let (_, run) = ironlb_fuzz::TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .expect("a target of that name");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let corpus = inputs(&root.join("corpus").join(target));
    assert!(!corpus.is_empty(), "no corpus for target {target}");
    for f in corpus
        .iter()
        .chain(&inputs(&root.join("regressions").join(target)))
    {
        let data = std::fs::read(f).expect("corpus file");
        eprintln!("{}", f.display());
        run(&data);
    }
}

#[test]
fn pipeline_corpus() {
    replay("pipeline");
}

#[test]
fn device_corpus() {
    replay("device");
}

#[test]
fn manifest_corpus() {
    replay("manifest");
}

#[test]
fn pcap_corpus() {
    replay("pcap");
}

/// The pipeline seeds are meaningful: they reach forwards of both families and most drop reasons (a corpus of
/// inputs that all drop early would make the forward assertions of the harness vacuous).
#[test]
fn pipeline_corpus_reaches_forwards_and_drop_reasons() {
    use ironlb_sim::Verdict;
    use std::collections::BTreeSet;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/pipeline");
    let mut forwards = BTreeSet::new();
    let mut reasons = BTreeSet::new();
    for f in inputs(&root) {
        let data = std::fs::read(&f).expect("corpus file");
        let (port, pkt) = (u32::from(data[0] & 7), &data[2..]);
        ironlb_fuzz::pipeline::run(&data);
        let (v, _) = ironlb_fuzz::pipeline::with_device(|d| d.dry_run(port, pkt));
        match v {
            Verdict::Forward { packet, .. } => {
                forwards.insert(packet[40] >> 4);
            }
            Verdict::Drop(r) => {
                reasons.insert(r.name());
            }
        }
    }
    assert_eq!(forwards, BTreeSet::from([4, 6]), "forwards of both families");
    assert!(
        reasons.len() >= 13,
        "only {} drop reasons reached: {reasons:?}",
        reasons.len()
    );
}
