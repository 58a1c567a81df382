//! Helpers shared by the allocator test files.
#![allow(dead_code)]

use ironlb_runtime::alloc::{Allocator, Pools};
use ironlb_runtime::api::IpFamily;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

pub type Key = ironlb_runtime::api::ObjectKey;

pub fn key(name: &str) -> Key {
    Key::new("default", name)
}

pub fn pools(v: &[&str]) -> Pools {
    Pools::parse(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

pub fn cidr(s: &str) -> ipnet::IpNet {
    ironlb_runtime::api::ipam::parse_cidr(s).unwrap()
}

pub fn tmp_of(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".tmp");
    PathBuf::from(s)
}

/// The file on disk parses, equals the in-memory state, and no tmp file lingers.
pub fn assert_durable(a: &Allocator) {
    let on_disk = Allocator::load_state(a.path()).unwrap();
    assert_eq!(&on_disk, a.state());
    assert!(!tmp_of(a.path()).exists(), "tmp file lingers");
}

pub const V4: IpFamily = IpFamily::IPv4;
pub const V6: IpFamily = IpFamily::IPv6;
