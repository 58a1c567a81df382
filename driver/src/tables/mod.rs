//! Host-side table logic: LB-table placement ([`lb`]) and consistent-hashing bucket arrays ([`buckets`]).

pub mod buckets;
pub mod lb;
