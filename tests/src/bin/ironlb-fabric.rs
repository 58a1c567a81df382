//! `ironlb-fabric`: the underlay fabric of the end-to-end tests (docs/testing.md "End to end"), run inside the
//! test's fabric network namespace, where the device's underlay TUN lives.
//!
//! ```text
//! ironlb-fabric --underlay-src fd00:ffff::1 --hop-limit 64 \
//!     --target t1=fd00:1::1=IFNAME ...       one TUN per target (the test moves it into the target's namespace)
//!     --client IFNAME=198.51.100.7,2001:db8:c::7 ...   one return TUN per client namespace
//! ```
//!
//! Encapsulated packets are read with an `AF_PACKET` socket (every packet arriving on an interface of the fabric
//! namespace; the device's are those with the underlay source), checked ([`ironlb_tests::e2e::fabric::decap`]) and
//! their inner datagram written unchanged to the target's TUN: the target's kernel receives it. What a target
//! sends (its default route is that TUN) is written to the return TUN of the client owning the destination
//! address. Prints `ready` once every TUN exists, and one JSON line of [`FabricStats`] when stopped (SIGTERM).

use anyhow::{bail, Context, Result};
use ironlb_tests::e2e::fabric::{decap, destination, FabricStats, OuterRules};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use socket2::{Domain, Protocol, Socket, Type};
use std::collections::BTreeMap;
use std::io::{self, Read};
use std::net::IpAddr;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tun_rs::{DeviceBuilder, Layer, SyncDevice};

/// `ETH_P_ALL` (linux/if_ether.h): every protocol.
const ETH_P_ALL: u16 = 0x0003;
const MAX_PACKET: usize = 65_535 + 40;

struct Target {
    name: String,
    underlay: IpAddr,
    tun: SyncDevice,
}

struct Client {
    ifname: String,
    addrs: Vec<IpAddr>,
    tun: SyncDevice,
}

fn tun(ifname: &str) -> Result<SyncDevice> {
    let dev = DeviceBuilder::new()
        .name(ifname)
        .layer(Layer::L3)
        .packet_information(false)
        .build_sync()
        .with_context(|| format!("creating TUN {ifname}"))?;
    dev.set_nonblocking(true)
        .with_context(|| format!("TUN {ifname}: non-blocking"))?;
    Ok(dev)
}

fn value<'a>(it: &mut impl Iterator<Item = &'a String>, flag: &str) -> Result<&'a String> {
    it.next().with_context(|| format!("{flag} needs a value"))
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut rules = OuterRules {
        src: "fd00:ffff::1".parse()?,
        hop_limit: 64,
    };
    let (mut targets, mut clients) = (Vec::new(), Vec::new());
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--underlay-src" => rules.src = value(&mut it, flag)?.parse().context("--underlay-src")?,
            "--hop-limit" => rules.hop_limit = value(&mut it, flag)?.parse().context("--hop-limit")?,
            "--target" => {
                let v = value(&mut it, flag)?;
                let [name, underlay, ifname] = v.split('=').collect::<Vec<_>>()[..] else {
                    bail!("--target {v}: expected NAME=UNDERLAY=IFNAME");
                };
                let underlay = underlay
                    .parse()
                    .with_context(|| format!("--target {v}: underlay address"))?;
                targets.push(Target {
                    name: name.to_string(),
                    underlay,
                    tun: tun(ifname)?,
                });
            }
            "--client" => {
                let v = value(&mut it, flag)?;
                let Some((ifname, addrs)) = v.split_once('=') else {
                    bail!("--client {v}: expected IFNAME=ADDR[,ADDR...]");
                };
                let addrs = addrs
                    .split(',')
                    .map(|a| a.parse().with_context(|| format!("--client {v}: address {a}")))
                    .collect::<Result<Vec<IpAddr>>>()?;
                clients.push(Client {
                    ifname: ifname.to_string(),
                    addrs,
                    tun: tun(ifname)?,
                });
            }
            other => bail!("unknown argument {other:?}"),
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, Arc::clone(&stop)).context("signal handler")?;
    }
    let proto = Protocol::from(i32::from(ETH_P_ALL.to_be()));
    let sock = Socket::new(Domain::PACKET, Type::DGRAM, Some(proto)).context("AF_PACKET socket")?;
    sock.set_nonblocking(true)
        .context("AF_PACKET socket: non-blocking")?;
    sock.set_recv_buffer_size(4 << 20)
        .context("AF_PACKET socket: receive buffer")?;
    println!("ready");
    let stats = run(&rules, &sock, &targets, &clients, &stop)?;
    println!("{}", serde_json::to_string(&stats)?);
    Ok(())
}

/// Read everything waiting on `read` (non-blocking) and hand each packet to `f`.
fn drain(mut read: impl FnMut(&mut [u8]) -> io::Result<usize>, buf: &mut [u8], mut f: impl FnMut(&[u8])) {
    loop {
        match read(buf) {
            Ok(n) => f(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            // A TUN whose interface is down (or moving between namespaces) has nothing to read.
            Err(_) => return,
        }
    }
}

fn run(
    rules: &OuterRules,
    sock: &Socket,
    targets: &[Target],
    clients: &[Client],
    stop: &AtomicBool,
) -> Result<FabricStats> {
    let mut stats = FabricStats::default();
    for t in targets {
        stats.delivered.insert(t.name.clone(), 0);
    }
    for c in clients {
        stats.returned.insert(c.ifname.clone(), 0);
    }
    let by_underlay: BTreeMap<IpAddr, &Target> = targets.iter().map(|t| (t.underlay, t)).collect();
    let by_client: BTreeMap<IpAddr, &Client> = clients
        .iter()
        .flat_map(|c| c.addrs.iter().map(move |a| (*a, c)))
        .collect();
    let mut buf = vec![0u8; MAX_PACKET];
    while !stop.load(Ordering::Relaxed) {
        let mut fds = vec![PollFd::new(sock.as_fd(), PollFlags::POLLIN)];
        fds.extend(
            targets
                .iter()
                .map(|t| PollFd::new(t.tun.as_fd(), PollFlags::POLLIN)),
        );
        fds.extend(
            clients
                .iter()
                .map(|c| PollFd::new(c.tun.as_fd(), PollFlags::POLLIN)),
        );
        match poll(&mut fds, PollTimeout::from(100u8)) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => bail!("poll: {e}"),
        }
        drop(fds);
        // Underlay → targets.
        drain(
            |b| (&*sock).read(b),
            &mut buf,
            |pkt| {
                // Only what the device sends: other traffic of the namespace has another source.
                if pkt.len() < 40 || pkt[0] >> 4 != 6 || pkt[8..24] != rules.src.octets() {
                    return;
                }
                match decap(rules, pkt) {
                    Err(e) => {
                        stats.bad_outer += 1;
                        if stats.bad_outer_examples.len() < 8 {
                            stats.bad_outer_examples.push(e.to_string());
                        }
                    }
                    Ok((dst, inner)) => match by_underlay.get(&IpAddr::V6(dst)) {
                        None => stats.unknown_underlay += 1,
                        Some(t) => match t.tun.send(inner) {
                            Ok(_) => *stats.delivered.get_mut(&t.name).expect("every target counted") += 1,
                            Err(_) => stats.write_errors += 1,
                        },
                    },
                }
            },
        );
        // Targets → clients (direct server return).
        for t in targets {
            drain(
                |b| t.tun.recv(b),
                &mut buf,
                |pkt| match destination(pkt).and_then(|d| by_client.get(&d)) {
                    None => stats.unroutable += 1,
                    Some(c) => match c.tun.send(pkt) {
                        Ok(_) => *stats.returned.get_mut(&c.ifname).expect("every client counted") += 1,
                        Err(_) => stats.write_errors += 1,
                    },
                },
            );
        }
        // What client kernels send to their return TUN is not for anyone.
        for c in clients {
            drain(|b| c.tun.recv(b), &mut buf, |_| {});
        }
    }
    Ok(stats)
}
