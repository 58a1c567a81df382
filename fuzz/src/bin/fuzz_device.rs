//! AFL entry point of the `device` target (ironlb_fuzz::device); build and run with scripts/fuzz.
fn main() {
    afl::fuzz!(|data: &[u8]| ironlb_fuzz::device::run(data));
}
