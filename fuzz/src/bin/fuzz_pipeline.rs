//! AFL entry point of the `pipeline` target (ironlb_fuzz::pipeline); build and run with scripts/fuzz.
fn main() {
    afl::fuzz!(|data: &[u8]| ironlb_fuzz::pipeline::run(data));
}
