//! AFL entry point of the `pcap` target (ironlb_fuzz::pcap); build and run with scripts/fuzz.
fn main() {
    afl::fuzz!(|data: &[u8]| ironlb_fuzz::pcap::run(data));
}
