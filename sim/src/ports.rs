//! Packet ports of the served model: `ironlb-sim serve --tun PORT=IFNAME` attaches device port `PORT` to a Linux
//! TUN device, so that real network stacks send packets into the pipeline and receive what it forwards.
//!
//! A port carries **L3 packets** (IPv4/IPv6, no link header), exactly what the pipeline takes (hw-spec §7) and
//! emits (outer IPv6 + inner datagram), so the devices are TUN (`IFF_TUN | IFF_NO_PI`), not TAP: a TAP port would
//! need an Ethernet header, ARP and neighbour discovery that the device model does not have (docs/sim.md "Packet
//! ports").
//!
//! [`PortSet::service`] is the dispatch step of the serve loop: read what is waiting on every port (at most
//! [`BURST`] packets per port and call, non-blocking), run each packet through [`Device::process_into`] on its
//! ingress port, and write a forwarded packet to the port attached to its egress port. Drops are counted by the
//! device (`DROP_COUNTERS`); a forwarded packet whose egress port has no attachment, and I/O errors, are counted in
//! [`PortStats`]. The ports are behind the [`PacketPort`] trait so the dispatch is unit-tested with in-memory ports.

use crate::Device;
use std::io;

/// Packets read from one port per [`PortSet::service`] call, so BAR polling stays responsive under load.
pub const BURST: usize = 32;

/// Largest packet a port delivers or the pipeline emits (IPv4/IPv6 datagram of 65535 bytes + a 40-byte outer
/// header).
const MAX_PACKET: usize = 65_535 + 40;

/// One attached device port.
pub trait PacketPort: Send {
    /// Copy the next waiting packet into `buf`: `Ok(Some(len))`, or `Ok(None)` when nothing is waiting (never blocks).
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>>;
    /// Send one packet out of the port.
    fn send(&mut self, pkt: &[u8]) -> io::Result<()>;
    /// Name for messages (e.g. the interface name).
    fn name(&self) -> &str;
}

/// Counters of the dispatch (the device counts its own verdicts: per LB, per target, drops by reason).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortStats {
    /// Packets read from the ports.
    pub received: u64,
    /// Packets the device forwarded and that were written to their egress port.
    pub sent: u64,
    /// Packets the device dropped.
    pub dropped: u64,
    /// Forwarded packets whose egress port is not attached (nothing to write them to).
    pub unattached: u64,
    /// Failed reads (other than "nothing waiting").
    pub recv_errors: u64,
    /// Failed writes (e.g. the egress interface is down).
    pub send_errors: u64,
}

/// Errors of setting up ports.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// `--tun` value not of the form `PORT=IFNAME`.
    #[error("--tun {0:?}: expected PORT=IFNAME (device port number, interface name of 1 to 15 bytes)")]
    Syntax(String),
    /// Two attachments for one device port.
    #[error("device port {port} is attached twice (--tun {first} and --tun {second})")]
    Duplicate {
        /// The device port.
        port: u32,
        /// First interface.
        first: String,
        /// Second interface.
        second: String,
    },
    /// Creating a TUN device failed.
    #[error("creating TUN device {ifname} for device port {port}: {source}")]
    Create {
        /// The device port.
        port: u32,
        /// The interface name.
        ifname: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The binary was built without TUN support.
    #[error("--tun {0}: ironlb-sim was built without the `tun` feature")]
    NoTunSupport(String),
}

/// A `--tun PORT=IFNAME` option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunSpec {
    /// Device port.
    pub port: u32,
    /// TUN interface name (created; at most 15 bytes, Linux's IFNAMSIZ − 1).
    pub ifname: String,
}

impl std::fmt::Display for TunSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}={}", self.port, self.ifname)
    }
}

/// Parse `PORT=IFNAME`.
pub fn parse_tun(s: &str) -> Result<TunSpec, String> {
    let err = || PortError::Syntax(s.to_string()).to_string();
    let (port, ifname) = s.split_once('=').ok_or_else(err)?;
    let port: u32 = port.trim().parse().map_err(|_| err())?;
    let ok_name = !ifname.is_empty()
        && ifname.len() <= 15
        && ifname
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':');
    if !ok_name {
        return Err(err());
    }
    Ok(TunSpec {
        port,
        ifname: ifname.to_string(),
    })
}

/// The attached ports of one device and the dispatch buffers.
pub struct PortSet {
    ports: Vec<(u32, Box<dyn PacketPort>)>,
    buf: Vec<u8>,
    out: Vec<u8>,
    stats: PortStats,
}

impl Default for PortSet {
    fn default() -> Self {
        PortSet::new()
    }
}

impl std::fmt::Debug for PortSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ports: Vec<(u32, &str)> = self.ports.iter().map(|(p, io)| (*p, io.name())).collect();
        f.debug_struct("PortSet")
            .field("ports", &ports)
            .field("stats", &self.stats)
            .finish()
    }
}

impl PortSet {
    /// No ports attached.
    pub fn new() -> PortSet {
        PortSet {
            ports: Vec::new(),
            buf: vec![0; MAX_PACKET],
            out: Vec::with_capacity(MAX_PACKET),
            stats: PortStats::default(),
        }
    }

    /// Attach `io` as device port `port`.
    pub fn attach(&mut self, port: u32, io: Box<dyn PacketPort>) -> Result<(), PortError> {
        if let Some((_, first)) = self.ports.iter().find(|(p, _)| *p == port) {
            return Err(PortError::Duplicate {
                port,
                first: first.name().to_string(),
                second: io.name().to_string(),
            });
        }
        self.ports.push((port, io));
        Ok(())
    }

    /// True when no port is attached.
    pub fn is_empty(&self) -> bool {
        self.ports.is_empty()
    }

    /// Dispatch counters so far.
    pub fn stats(&self) -> PortStats {
        self.stats
    }

    /// One dispatch step: up to [`BURST`] packets from each port through the pipeline; forwarded packets written
    /// to their egress port. Returns true if any packet was read (work was done).
    pub fn service(&mut self, dev: &mut Device) -> bool {
        let mut work = false;
        for i in 0..self.ports.len() {
            let ingress = self.ports[i].0;
            for _ in 0..BURST {
                let len = match self.ports[i].1.recv(&mut self.buf) {
                    Ok(Some(len)) => len,
                    Ok(None) => break,
                    Err(e) => {
                        self.stats.recv_errors += 1;
                        tracing::debug!(port = ingress, ifname = self.ports[i].1.name(), "read: {e}");
                        break;
                    }
                };
                work = true;
                self.stats.received += 1;
                let egress = match dev.process_into(ingress, &self.buf[..len], &mut self.out) {
                    Ok(egress) => egress,
                    Err(_) => {
                        self.stats.dropped += 1;
                        continue;
                    }
                };
                let Some((_, io)) = self.ports.iter_mut().find(|(p, _)| *p == egress) else {
                    self.stats.unattached += 1;
                    continue;
                };
                match io.send(&self.out) {
                    Ok(()) => self.stats.sent += 1,
                    Err(e) => {
                        self.stats.send_errors += 1;
                        tracing::debug!(port = egress, ifname = io.name(), "write: {e}");
                    }
                }
            }
        }
        work
    }
}

/// Create one TUN device per spec and attach them (docs/sim.md "Packet ports").
pub fn open_tuns(specs: &[TunSpec]) -> Result<PortSet, PortError> {
    let mut set = PortSet::new();
    for spec in specs {
        let io = tun::open(spec)?;
        set.attach(spec.port, io)?;
    }
    Ok(set)
}

#[cfg(feature = "tun")]
mod tun {
    use super::{PacketPort, PortError, TunSpec};
    use std::io;
    use tun_rs::{DeviceBuilder, Layer, SyncDevice};

    /// A TUN device (`IFF_TUN | IFF_NO_PI`, non-blocking). It disappears when the model exits.
    struct TunPort {
        dev: SyncDevice,
        name: String,
    }

    pub(super) fn open(spec: &TunSpec) -> Result<Box<dyn PacketPort>, PortError> {
        let create = |source| PortError::Create {
            port: spec.port,
            ifname: spec.ifname.clone(),
            source,
        };
        let dev = DeviceBuilder::new()
            .name(&spec.ifname)
            .layer(Layer::L3)
            .packet_information(false)
            .build_sync()
            .map_err(create)?;
        dev.set_nonblocking(true).map_err(create)?;
        Ok(Box::new(TunPort {
            dev,
            name: spec.ifname.clone(),
        }))
    }

    impl PacketPort for TunPort {
        fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
            match self.dev.recv(buf) {
                Ok(n) => Ok(Some(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
                Err(e) => Err(e),
            }
        }

        fn send(&mut self, pkt: &[u8]) -> io::Result<()> {
            let n = self.dev.send(pkt)?;
            if n != pkt.len() {
                return Err(io::Error::other(format!(
                    "short write: {n} of {} bytes",
                    pkt.len()
                )));
            }
            Ok(())
        }

        fn name(&self) -> &str {
            &self.name
        }
    }
}

#[cfg(not(feature = "tun"))]
mod tun {
    use super::{PacketPort, PortError, TunSpec};

    pub(super) fn open(spec: &TunSpec) -> Result<Box<dyn PacketPort>, PortError> {
        Err(PortError::NoTunSupport(spec.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{self, packet, LbSpec, SimpleAlloc};
    use crate::DeviceConfig;
    use ironlb_hw::entry::Protocol;
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};

    /// An in-memory port: packets queued in `rx` are received; sent packets land in `tx`.
    #[derive(Clone, Default)]
    struct MemPort {
        rx: Arc<Mutex<VecDeque<Vec<u8>>>>,
        tx: Arc<Mutex<Vec<Vec<u8>>>>,
        fail_send: bool,
    }

    impl PacketPort for MemPort {
        fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
            Ok(self.rx.lock().unwrap().pop_front().map(|p| {
                buf[..p.len()].copy_from_slice(&p);
                p.len()
            }))
        }
        fn send(&mut self, pkt: &[u8]) -> io::Result<()> {
            if self.fail_send {
                return Err(io::Error::other("down"));
            }
            self.tx.lock().unwrap().push(pkt.to_vec());
            Ok(())
        }
        fn name(&self) -> &str {
            "mem"
        }
    }

    fn device() -> Device {
        let mut dev = Device::new(DeviceConfig::small()).unwrap();
        testing::setup_ports(&mut dev);
        let spec = LbSpec::new(testing::PUBLIC, "203.0.113.10".parse().unwrap(), 1)
            .range(Protocol::Tcp, 80, 80)
            .targets(["fd00:1::1".parse().unwrap()]);
        testing::install(&mut dev, &spec, &mut SimpleAlloc::default());
        dev
    }

    fn syn(dport: u16) -> Vec<u8> {
        packet::tcp(
            "198.51.100.7".parse().unwrap(),
            "203.0.113.10".parse().unwrap(),
            40000,
            dport,
            b"x",
        )
    }

    #[test]
    fn forwards_to_the_egress_port_and_counts() {
        let mut dev = device();
        let (public, underlay) = (MemPort::default(), MemPort::default());
        let mut set = PortSet::new();
        set.attach(testing::PORT_PUBLIC, Box::new(public.clone()))
            .unwrap();
        set.attach(testing::PORT_UNDERLAY, Box::new(underlay.clone()))
            .unwrap();
        assert!(!set.service(&mut dev), "no packet waiting is no work");

        let good = syn(80);
        public.rx.lock().unwrap().extend([good.clone(), syn(81)]);
        assert!(set.service(&mut dev));
        let sent = underlay.tx.lock().unwrap().clone();
        assert_eq!(sent.len(), 1, "one forwarded, one dropped (port 81)");
        let crate::Verdict::Forward { packet, .. } = device().process(testing::PORT_PUBLIC, &good) else {
            panic!("the reference device must forward port 80");
        };
        assert_eq!(sent[0], packet, "the port gets exactly the pipeline's output");
        assert!(public.tx.lock().unwrap().is_empty());
        let s = set.stats();
        assert_eq!((s.received, s.sent, s.dropped, s.unattached), (2, 1, 1, 0));
        assert_eq!(
            dev.drop_counters().iter().sum::<u64>(),
            1,
            "the device counted the drop"
        );
    }

    #[test]
    fn bursts_are_bounded_and_errors_counted() {
        let mut dev = device();
        let public = MemPort::default();
        let mut set = PortSet::new();
        set.attach(testing::PORT_PUBLIC, Box::new(public.clone()))
            .unwrap();
        public.rx.lock().unwrap().extend((0..BURST + 3).map(|_| syn(80)));
        assert!(set.service(&mut dev));
        assert_eq!(set.stats().received, BURST as u64, "one burst per call");
        assert_eq!(set.stats().unattached, BURST as u64, "no underlay port attached");
        assert!(set.service(&mut dev));
        assert_eq!(set.stats().received, BURST as u64 + 3);

        let down = MemPort {
            fail_send: true,
            ..MemPort::default()
        };
        set.attach(testing::PORT_UNDERLAY, Box::new(down)).unwrap();
        public.rx.lock().unwrap().push_back(syn(80));
        set.service(&mut dev);
        assert_eq!(set.stats().send_errors, 1);
        let dup = set.attach(testing::PORT_PUBLIC, Box::new(MemPort::default()));
        assert!(matches!(dup, Err(PortError::Duplicate { port: 0, .. })));
    }

    #[test]
    fn tun_specs() {
        assert_eq!(
            parse_tun("3=e2e-ul"),
            Ok(TunSpec {
                port: 3,
                ifname: "e2e-ul".into()
            })
        );
        for bad in ["", "3", "x=a", "3=", "3=sixteen-bytes-xx", "3=a/b", "3=a b"] {
            assert!(parse_tun(bad).is_err(), "{bad:?}");
        }
    }
}
