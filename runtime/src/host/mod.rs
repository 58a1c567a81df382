//! The host around the daemon: handing the NIC to vfio-pci ([`bind`]) and finding what is wrong on a host
//! ([`doctor`]). docs/operations.md §3.

pub mod bind;
pub mod doctor;

#[cfg(test)]
mod fake;
