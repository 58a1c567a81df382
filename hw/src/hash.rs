//! Hash functions of the contract (docs/hw-spec.md §6). All are CRC-32/IEEE (reflected, polynomial 0xEDB88320,
//! final xor), exactly as `crc32fast` and Python's `zlib.crc32(data, seed)` compute it, where `seed` is the value
//! passed as the starting CRC. Multi-byte integers are hashed big-endian (network order).

use crate::addr::Vip;

/// Seed of the flow hash.
pub const FLOW_SEED: u32 = 0x5EED_F10E;
/// Seed of the LB-table (cuckoo) hash.
pub const CUCKOO_SEED: u32 = 0x1B1B_0001;
/// Largest LB table: the two bucket indices are taken from disjoint 16-bit halves of one CRC.
pub const MAX_LB_BUCKETS: u32 = 1 << 16;

/// Length of the flow-hash input.
pub const FLOW_KEY_LEN: usize = 41;
/// Length of the cuckoo-hash input.
pub const LB_KEY_LEN: usize = 21;

/// CRC-32/IEEE of `data` starting from `seed` (zlib.crc32(data, seed)).
pub fn crc32(seed: u32, data: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new_with_initial(seed);
    h.update(data);
    h.finalize()
}

/// The tuple a flow is identified by. For ICMP errors it is the embedded packet's tuple reversed; for fragments the
/// ports are zero (docs/hw-spec.md §6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub struct FlowTuple {
    /// Domain the packet arrived in (VNI or [`crate::addr::DOMAIN_PUBLIC`]).
    pub domain: u32,
    /// Client address (IPv4 mapped).
    pub src: Vip,
    /// VIP.
    pub dst: Vip,
    /// IP protocol number.
    pub protocol: u8,
    /// Client port.
    pub src_port: u16,
    /// VIP port.
    pub dst_port: u16,
}

impl FlowTuple {
    /// The 41 hashed bytes: domain(4, BE) | src(16) | dst(16) | protocol(1) | src_port(2, BE) | dst_port(2, BE).
    pub fn key_bytes(&self) -> [u8; FLOW_KEY_LEN] {
        let mut k = [0u8; FLOW_KEY_LEN];
        k[0..4].copy_from_slice(&self.domain.to_be_bytes());
        k[4..20].copy_from_slice(&self.src.0);
        k[20..36].copy_from_slice(&self.dst.0);
        k[36] = self.protocol;
        k[37..39].copy_from_slice(&self.src_port.to_be_bytes());
        k[39..41].copy_from_slice(&self.dst_port.to_be_bytes());
        k
    }

    /// Flow hash: `crc32(FLOW_SEED, key_bytes)`. Slot = hash & (M-1); outer flow label = hash & 0xFFFFF.
    pub fn hash(&self) -> u32 {
        crc32(FLOW_SEED, &self.key_bytes())
    }
}

/// The LB-table key: (domain, address family, VIP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct LbKey {
    /// VNI of a Network (24 bits) or [`crate::addr::DOMAIN_PUBLIC`].
    pub domain: u32,
    /// The VIP (IPv4 mapped); its family is derived from it.
    pub vip: Vip,
}

impl LbKey {
    /// The 21 hashed bytes: domain(4, BE) | family(1: 4 or 6) | vip(16).
    pub fn key_bytes(&self) -> [u8; LB_KEY_LEN] {
        let mut k = [0u8; LB_KEY_LEN];
        k[0..4].copy_from_slice(&self.domain.to_be_bytes());
        k[4] = self.vip.family().number();
        k[5..21].copy_from_slice(&self.vip.0);
        k
    }

    /// The two candidate buckets for a table of `n_buckets` (a power of two, 2 ..= 2^16):
    /// `h = crc32(CUCKOO_SEED, key)`, `b1 = h & (n-1)`, `b2 = (h >> 16) & (n-1)`, and if `b2 == b1` then
    /// `b2 = b1 ^ 1`, so the two buckets always differ.
    ///
    /// Why one CRC and two halves, not two seeds: CRC-32 is affine over GF(2), so CRCs of the same bytes under two
    /// seeds differ by a constant and would pair every bucket with one fixed partner (measured: random keys then
    /// fill a 4-way table to only 23%). The low and high halves of one CRC are different linear functions of the key.
    pub fn buckets(&self, n_buckets: u32) -> [u32; 2] {
        debug_assert!(n_buckets.is_power_of_two() && (2..=MAX_LB_BUCKETS).contains(&n_buckets));
        let h = crc32(CUCKOO_SEED, &self.key_bytes());
        let mask = n_buckets - 1;
        let b1 = h & mask;
        let mut b2 = (h >> 16) & mask;
        if b2 == b1 {
            b2 = b1 ^ 1;
        }
        [b1, b2]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_standard_check_value() {
        // The CRC-32/IEEE check value of "123456789" (seed 0) is 0xCBF43926.
        assert_eq!(crc32(0, b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn buckets_always_differ() {
        for d in 0..2000u32 {
            let key = LbKey {
                domain: d,
                vip: Vip::from_ipv4([10, 0, (d >> 8) as u8, d as u8]),
            };
            let [a, b] = key.buckets(2);
            assert_ne!(a, b);
            let [a, b] = key.buckets(8192);
            assert_ne!(a, b);
            assert!(a < 8192 && b < 8192);
        }
    }
}
