//! Runs one fuzz target's harness over files (e.g. AFL's crashes), each in turn, with the panic message and
//! location of the first that fails: `cargo run -p ironlb-fuzz --example fuzz_run -- <target> <file>...`.

fn main() {
    let mut args = std::env::args().skip(1);
    let target = args.next().expect("usage: fuzz_run <target> <file>...");
    let (_, run) = ironlb_fuzz::TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .unwrap_or_else(|| panic!("no target {target}"));
    for f in args {
        eprintln!("== {f}");
        run(&std::fs::read(&f).expect("input file"));
    }
}
