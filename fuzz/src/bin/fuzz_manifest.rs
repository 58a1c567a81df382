//! AFL entry point of the `manifest` target (ironlb_fuzz::manifest); build and run with scripts/fuzz.
fn main() {
    afl::fuzz!(|data: &[u8]| ironlb_fuzz::manifest::run(data));
}
