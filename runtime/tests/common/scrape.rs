//! One `GET /metrics` of a metrics endpoint, bounded in time.

use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::time::Duration;

/// The response (head and body) of `GET /metrics` at `addr`.
pub fn scrape(addr: SocketAddr) -> String {
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body
}
