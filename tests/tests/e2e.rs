//! End to end with real network stacks and real clients (issue 6; docs/testing.md "End to end"): the model
//! serving TUN ports, programmed by the `ironlb` daemon over sim-shm, real TCP/UDP/SCTP/ICMP traffic from
//! unmodified clients in network namespaces, delivered by the underlay fabric to target VMs that answer directly.
//! Needs root, network namespaces and TUN; skipped with a message elsewhere, failing under `CI=true`.

use ironlb_hw::{FlowTuple, Vip, DOMAIN_PUBLIC};
use ironlb_tests::e2e::capture::{self, Capture};
use ironlb_tests::e2e::topology::{
    Spec, Topology, CLIENT_A, CLIENT_B, INTERNAL_VIP, PUB_CLIENT4, PUB_CLIENT6, ROUTER4, ROUTER6,
};
use ironlb_tests::e2e::{eventually, poll_until, run_bounded, script, should_run, PYTHON};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

const FABRIC: &str = env!("CARGO_BIN_EXE_ironlb-fabric");

/// One curl invocation: `n` requests over one connection (keep-alive). Ok(body lines) or Err(why).
fn curl(ns: &str, url: &str, n: usize, extra: &[&str]) -> Result<Vec<String>, String> {
    let mut argv = vec!["curl", "-sS", "--connect-timeout", "2", "--max-time", "3", "-g"];
    argv.extend_from_slice(extra);
    for _ in 0..n {
        argv.push(url);
    }
    let o = run_bounded(Some(ns), &argv, Duration::from_secs(5));
    if !o.status.success() {
        return Err(format!(
            "curl {url}: {} {}",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_string)
        .collect())
}

/// The target of one connection: every response must name the same target and the same server-side connection.
fn one_target(lines: &[String]) -> String {
    let first = lines.first().expect("a response");
    assert!(
        lines.iter().all(|l| l == first),
        "one connection answered by several: {lines:?}"
    );
    first.split_whitespace().next().expect("target name").to_string()
}

/// Per-target forwarded packets of one load balancer in `ironlb stats -o json`.
fn target_packets(stats: &Value, lb: &str) -> BTreeMap<String, u64> {
    let lb = stats["lbs"]
        .as_array()
        .and_then(|l| l.iter().find(|x| x["name"] == lb))
        .unwrap_or_else(|| panic!("{lb} not in stats: {stats}"));
    lb["targets"]
        .as_array()
        .expect("targets")
        .iter()
        .map(|t| {
            (
                t["target"].as_str().expect("address").to_string(),
                t["packets"].as_u64().expect("packets"),
            )
        })
        .collect()
}

fn drops(stats: &Value, reason: &str) -> u64 {
    stats["drops"][reason]
        .as_u64()
        .unwrap_or_else(|| panic!("drop reason {reason} not in {stats}"))
}

fn udp(ns: &str, dst: &str, port: u16, count: u32, timeout: &str) -> Value {
    let s = script("udp_client.py").to_string_lossy().into_owned();
    let (port, count) = (port.to_string(), count.to_string());
    let o = run_bounded(
        Some(ns),
        &[PYTHON, &s, dst, &port, &count, timeout],
        Duration::from_secs(60),
    );
    assert!(
        o.status.success(),
        "udp client: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).expect("udp client JSON")
}

fn craft(ns: &str, packets: &[String]) {
    let s = script("craft.py").to_string_lossy().into_owned();
    let mut argv = vec![PYTHON, s.as_str()];
    argv.extend(packets.iter().map(String::as_str));
    let o = run_bounded(Some(ns), &argv, Duration::from_secs(60));
    assert!(
        o.status.success(),
        "craft.py {packets:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Issue 6, items 1–4, 6 and 8: the public dual-stack load balancer.
#[test]
fn e2e_public_load_balancer() {
    if !should_run("e2e_public_load_balancer") {
        return;
    }
    let mut t = Topology::start(Spec::default(), Path::new(FABRIC));
    let (pub_ns, vip4, vip6) = (t.pub_ns.clone(), t.vip4.clone(), t.vip6.clone());
    let names: BTreeSet<String> = t.targets.iter().map(|x| x.name.clone()).collect();
    let stats0 = t.stats();

    // 1. curl over IPv4 and IPv6: ~100 connections of 3 requests each, every target answers, each connection
    //    stays on one target.
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    for (vip, family) in [
        (format!("http://{vip4}/"), "4"),
        (format!("http://[{vip6}]/"), "6"),
    ] {
        let mut fam_seen = BTreeSet::new();
        for i in 0..50 {
            let lines =
                curl(&pub_ns, &vip, 3, &[]).unwrap_or_else(|e| panic!("IPv{family} connection {i}: {e}"));
            assert_eq!(lines.len(), 3, "three responses: {lines:?}");
            let target = one_target(&lines);
            fam_seen.insert(target.clone());
            *seen.entry(target).or_default() += 1;
        }
        assert_eq!(
            fam_seen, names,
            "IPv{family}: every target answers over 50 connections"
        );
    }
    // 8 (TCP). Every connection sent at least SYN, ACK, 3 requests and FIN to its target; targets nobody saw
    // have no packets (there are none here: all answered).
    let stats1 = t.stats();
    let (p0, p1) = (
        target_packets(&stats0, "default/web"),
        target_packets(&stats1, "default/web"),
    );
    for (addr, after) in &p1 {
        let name = t.target_of_underlay(addr).expect("a known target");
        let delta = after - p0.get(addr).copied().unwrap_or(0);
        let conns = seen.get(&name).copied().unwrap_or(0);
        assert!(
            delta >= 6 * conns,
            "{name}: {delta} packets for {conns} connections"
        );
        assert_eq!(
            delta == 0,
            conns == 0,
            "{name}: packets {delta}, connections {conns}"
        );
    }
    let dump = t.dump();
    let lb = dump["lbs"]
        .as_object()
        .expect("lbs")
        .values()
        .find(|l| l["vips"].as_array().is_some_and(|v| v.len() == 2));
    let in_dump: BTreeSet<String> = lb.expect("the public LB in the dump")["targets"]
        .as_object()
        .expect("targets")
        .values()
        .filter_map(|e| t.target_of_underlay(e["underlay"].as_str()?))
        .collect();
    assert_eq!(
        in_dump,
        seen.keys().cloned().collect(),
        "ironlb dump's targets are the ones clients saw"
    );

    // 1 (UDP) and 8 (exact): to 1500 every datagram is answered, and each target's packet counter rose by exactly
    // the datagrams it answered; to 2049 (outside 1024–2048) nothing arrives and port_not_allowed counts them.
    let before = t.stats();
    let mut answered: BTreeMap<String, u64> = BTreeMap::new();
    for vip in [&vip4, &vip6] {
        let r = udp(&pub_ns, vip, 1500, 30, "2");
        assert_eq!(r["lost"], 0, "UDP to {vip}:1500: {r}");
        for (name, n) in r["answers"].as_object().expect("answers") {
            *answered.entry(name.clone()).or_default() += n.as_u64().expect("count");
        }
    }
    let after = t.stats();
    let (b, a) = (
        target_packets(&before, "default/web"),
        target_packets(&after, "default/web"),
    );
    let delta: BTreeMap<String, u64> = a
        .iter()
        .map(|(addr, n)| {
            (
                t.target_of_underlay(addr).expect("known"),
                n - b.get(addr).copied().unwrap_or(0),
            )
        })
        .filter(|(_, d)| *d > 0)
        .collect();
    assert_eq!(
        delta, answered,
        "per-target packets (ironlb stats) = datagrams each target answered"
    );
    let r = udp(&pub_ns, &vip4, 2049, 5, "0.3");
    assert_eq!(
        (r["lost"].as_u64(), r["answers"].as_object().map(|a| a.len())),
        (Some(5), Some(0)),
        "{r}"
    );
    let stats2 = t.stats();
    assert_eq!(
        drops(&stats2, "port_not_allowed") - drops(&after, "port_not_allowed"),
        5
    );

    // 2. nmap TCP 1–3000: only 80 open, the rest filtered (dropped without reply). A connect scan: replies come
    //    back on another interface than the probes leave (direct server return), which the kernel handles and a
    //    SYN scan's capture on the probing interface would not see.
    let nmap = "nmap -n -Pn -sT -p 1-3000 --max-retries 1 --min-rate 1000 --initial-rtt-timeout 100ms \
                --max-rtt-timeout 300ms --host-timeout 60s -oG -";
    let mut argv: Vec<&str> = nmap.split_whitespace().collect();
    argv.push(&vip4);
    let o = run_bounded(Some(&pub_ns), &argv, Duration::from_secs(70));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "nmap: {}", String::from_utf8_lossy(&o.stderr));
    let ports_line = out
        .lines()
        .find(|l| l.contains("Ports:"))
        .unwrap_or_else(|| panic!("nmap: {out}"));
    assert!(ports_line.contains("80/open/tcp"), "{ports_line}");
    assert_eq!(
        ports_line.matches("/open/").count(),
        1,
        "only 80 open: {ports_line}"
    );
    assert!(
        ports_line.contains("Ignored State: filtered (2999)"),
        "the rest filtered: {ports_line}"
    );

    // 3. ICMP echo: no reply, the icmp_echo drop counter counts every request.
    let s0 = t.stats();
    let o = run_bounded(
        Some(&pub_ns),
        &["ping", "-c", "3", "-i", "0.2", "-W", "1", &vip4],
        Duration::from_secs(10),
    );
    assert!(!o.status.success(), "ping {vip4} must get no reply");
    let o = run_bounded(
        Some(&pub_ns),
        &["ping", "-6", "-c", "3", "-i", "0.2", "-W", "1", &vip6],
        Duration::from_secs(10),
    );
    assert!(!o.status.success(), "ping {vip6} must get no reply");
    assert_eq!(drops(&t.stats(), "icmp_echo") - drops(&s0, "icmp_echo"), 6);

    // 3, 4, 6 with captures on the client's port and in every target.
    // The client's capture starts first and stops last, so it spans the targets' captures.
    let client_cap = Capture::start(&pub_ns, "m0", &t.logs, "client");
    let caps: Vec<(String, Capture)> = t
        .targets
        .iter()
        .map(|x| (x.name.clone(), Capture::start(&x.ns, &x.ifname, &t.logs, &x.name)))
        .collect();
    // Flows with known client ports, and the targets that own them.
    let t4 =
        one_target(&curl(&pub_ns, &format!("http://{vip4}/"), 1, &["--local-port", "41000"]).expect("curl"));
    let t6 = one_target(
        &curl(
            &pub_ns,
            &format!("http://[{vip6}]/"),
            1,
            &["--local-port", "41001"],
        )
        .expect("curl"),
    );
    craft(
        &pub_ns,
        &[
            format!("icmp4:{ROUTER4}:{vip4}:{PUB_CLIENT4}:41000"),
            format!("icmp6:[{ROUTER6}]:[{vip6}]:[{PUB_CLIENT6}]:41001"),
            format!("sctp:{PUB_CLIENT4}:{vip4}:5000:9000"),
            format!("sctp:[{PUB_CLIENT6}]:[{vip6}]:5001:9000"),
            format!("sctp:{PUB_CLIENT4}:{vip4}:5002:9001"),
            format!("opts:{PUB_CLIENT4}:{vip4}:45000"),
        ],
    );
    let vips: [IpAddr; 2] = [vip4.parse().unwrap(), vip6.parse().unwrap()];
    let to_vip = |p: &[u8]| capture::addrs(p).is_some_and(|(_, d)| vips.contains(&d));
    let sctp = |port: u16| {
        move |p: &[u8]| capture::l4(p).is_some_and(|(pr, _)| pr == 132) && capture::dst_port(p) == Some(port)
    };
    // This step's own packets (client ports 41000, 41001, 45000, the SCTP and ICMP packets), which all start and
    // end inside the captures; late packets of earlier steps may fall outside a capture.
    let sport = |l4: &[u8]| l4.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]]));
    let ours = |p: &[u8]| match capture::l4(p) {
        Some((6, l4)) => matches!(sport(l4), Some(41000 | 41001 | 45000)),
        Some((1 | 58 | 132, _)) => true,
        _ => false,
    };
    // Sorted, to compare as multisets: what the client sent to the VIPs (less what the port filter drops), and what
    // the targets received of it.
    let sent_of = |client: &[Vec<u8>]| -> Vec<Vec<u8>> {
        let mut v: Vec<Vec<u8>> = client
            .iter()
            .filter(|p| to_vip(p) && ours(p) && !sctp(9001)(p))
            .cloned()
            .collect();
        v.sort();
        v
    };
    let got_of = |targets: &mut dyn Iterator<Item = &Vec<u8>>| -> Vec<Vec<u8>> {
        let mut v: Vec<Vec<u8>> = targets.filter(|p| to_vip(p) && ours(p)).cloned().collect();
        v.sort();
        v
    };
    // Stop once the client's capture holds the last packet crafted (the one with IPv4 options, from port 45000;
    // dumpcap writes in order) and the targets' captures hold every packet of it that the client's holds. Bounded:
    // a packet that never arrives fails the assertions below, which say more than a timeout would.
    let last_crafted =
        |p: &Vec<u8>| p[0] == 0x46 && capture::l4(p).is_some_and(|(_, l4)| sport(l4) == Some(45000));
    let settled = poll_until(Duration::from_secs(10), || {
        let client = client_cap.packets();
        let targets: Vec<Vec<u8>> = caps.iter().flat_map(|(_, c)| c.packets()).collect();
        (client.iter().any(last_crafted) && sent_of(&client) == got_of(&mut targets.iter())).then_some(())
    });
    if settled.is_none() {
        eprintln!("the captures did not settle within 10 s: the assertions below say what is missing");
    }
    let target_pkts: BTreeMap<String, Vec<Vec<u8>>> = caps.into_iter().map(|(n, c)| (n, c.stop())).collect();
    let client_pkts = client_cap.stop();
    let received: BTreeMap<&String, Vec<&Vec<u8>>> = target_pkts
        .iter()
        .map(|(n, ps)| (n, ps.iter().filter(|p| to_vip(p)).collect()))
        .collect();
    let where_is = |pred: &dyn Fn(&[u8]) -> bool| -> Vec<String> {
        received
            .iter()
            .filter(|(_, ps)| ps.iter().any(|p| pred(p)))
            .map(|(n, _)| n.to_string())
            .collect()
    };
    // 3: the ICMP errors reach the flows' owners, and only them.
    let icmp4 = |p: &[u8]| capture::l4(p).is_some_and(|(proto, l4)| proto == 1 && l4[0] == 3);
    let ptb = |p: &[u8]| capture::l4(p).is_some_and(|(proto, l4)| proto == 58 && l4[0] == 2);
    assert_eq!(
        where_is(&icmp4),
        vec![t4.clone()],
        "frag-needed reaches the IPv4 flow's target"
    );
    assert_eq!(
        where_is(&ptb),
        vec![t6.clone()],
        "Packet Too Big reaches the IPv6 flow's target (client sent {} PTB; drops {})",
        client_pkts.iter().filter(|p| ptb(p)).count(),
        t.stats()["drops"]
    );
    // 4: SCTP to 9000 reaches one target per flow; to 9001 none.
    let allowed: usize = received
        .values()
        .map(|ps| ps.iter().filter(|p| sctp(9000)(p)).count())
        .sum();
    assert_eq!(
        allowed, 2,
        "both SCTP packets to the allowed port arrive, once each"
    );
    assert!(
        where_is(&sctp(9001)).is_empty(),
        "SCTP to a disallowed port arrives nowhere"
    );
    // 6: every packet the client sent to the VIPs (except the one the port filter drops) arrives byte-identical
    // (TTL, checksums, options) at exactly one target, with the client's real source address.
    let sent = sent_of(&client_pkts);
    let got = got_of(&mut target_pkts.values().flatten());
    assert!(
        sent.len() >= 10,
        "the client capture holds the test's packets ({} packets)",
        sent.len()
    );
    assert!(
        sent == got,
        "targets received exactly the client's packets, byte for byte ({} sent, {} received)",
        sent.len(),
        got.len()
    );
    let with_opts = got
        .iter()
        .find(|p| p[0] == 0x46)
        .expect("the packet with IPv4 options arrived");
    assert_eq!((with_opts[1], with_opts[8]), (0x28, 7), "TOS and TTL unchanged");
    let sources: BTreeSet<IpAddr> = got
        .iter()
        .filter_map(|p| capture::addrs(p).map(|(s, _)| s))
        .collect();
    let expected: BTreeSet<IpAddr> = [PUB_CLIENT4, PUB_CLIENT6, ROUTER4, ROUTER6]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
    assert_eq!(
        sources, expected,
        "targets see the clients' (and routers') real source addresses"
    );

    let fabric = t.stop_fabric();
    assert_eq!(
        (fabric.bad_outer, fabric.unknown_underlay),
        (0, 0),
        "every outer header is right: {fabric:?}"
    );
}

/// Issue 6, item 5: the internal load balancer answers its Network only.
#[test]
fn e2e_internal_load_balancer() {
    if !should_run("e2e_internal_load_balancer") {
        return;
    }
    let mut t = Topology::start(Spec::default(), Path::new(FABRIC));
    let url = format!("http://{INTERNAL_VIP}:8080/");
    let (a, b, p) = (t.a_ns.clone(), t.b_ns.clone(), t.pub_ns.clone());
    let s0 = t.stats();
    let mut seen = BTreeSet::new();
    for _ in 0..12 {
        seen.insert(one_target(
            &curl(&a, &url, 2, &[]).expect("internal VIP from Network A"),
        ));
    }
    assert!(
        seen.len() >= 2,
        "several targets behind the internal VIP: {seen:?}"
    );
    assert!(
        curl(&b, &url, 1, &["--max-time", "1.5"]).is_err(),
        "not reachable from Network B ({CLIENT_B})"
    );
    assert!(
        curl(&p, &url, 1, &["--max-time", "1.5"]).is_err(),
        "not reachable from the public client"
    );
    let s1 = t.stats();
    assert!(
        drops(&s1, "no_vip") > drops(&s0, "no_vip"),
        "the device dropped them: no such VIP in their domain"
    );
    let fabric = t.stop_fabric();
    assert!(
        fabric.returned["ra"] > 0 && fabric.returned["rb"] == 0,
        "{fabric:?} ({CLIENT_A})"
    );
}

/// One connection of the client loop: its source port, the phases at its start and end, and its result.
struct Conn {
    sport: u16,
    start: usize,
    end: usize,
    result: Result<String, String>,
}

/// The public LB's bucket array in `ironlb dump -o json`, as underlay addresses per slot.
fn web_slots(dump: &Value) -> Vec<String> {
    let id = dump["names"]
        .as_object()
        .and_then(|n| n.iter().find(|(_, v)| *v == "default/web"))
        .map(|(k, _)| k.clone())
        .unwrap_or_else(|| panic!("default/web not in dump: {dump}"));
    let lb = &dump["lbs"][&id];
    let targets = &lb["targets"];
    lb["slots"]
        .as_array()
        .expect("slots")
        .iter()
        .map(|s| {
            let idx = s.as_u64().expect("slot").to_string();
            targets[&idx]["underlay"].as_str().unwrap_or("none").to_string()
        })
        .collect()
}

/// The target a flow from the public client to VIP:80 maps to (hw-spec §6: CRC32 flow hash, slot = hash & (M−1)).
fn slot_target(slots: &[String], vip: &str, sport: u16) -> String {
    let flow = FlowTuple {
        domain: DOMAIN_PUBLIC,
        src: Vip::from(PUB_CLIENT4.parse::<IpAddr>().unwrap()),
        dst: Vip::from(vip.parse::<IpAddr>().unwrap()),
        protocol: 6,
        src_port: sport,
        dst_port: 80,
    };
    assert!(
        slots.len().is_power_of_two(),
        "bucket array of {} slots",
        slots.len()
    );
    slots[flow.hash() as usize & (slots.len() - 1)].clone()
}

/// Issue 6, item 7 (and 8 during the run): changes under load, and a kill -9 of the daemon.
#[test]
fn e2e_changes_under_load() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    if !should_run("e2e_changes_under_load") {
        return;
    }
    let spec = Spec {
        targets: 4,
        selected: 3,
        ..Spec::default()
    };
    let mut t = Topology::start(spec, Path::new(FABRIC));
    let (pub_ns, vip4) = (t.pub_ns.clone(), t.vip4.clone());
    let phase = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let conns: Arc<Mutex<Vec<Conn>>> = Arc::default();
    // The bounded client loop: one new connection at a time, each from its own source port.
    let client = {
        let (phase, stop, conns, ns) = (phase.clone(), stop.clone(), conns.clone(), pub_ns.clone());
        let url = format!("http://{vip4}/");
        std::thread::spawn(move || {
            for i in 0..2000u16 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let sport = 42000 + i;
                let start = phase.load(Ordering::SeqCst);
                let result = curl(&ns, &url, 1, &["--local-port", &sport.to_string()]).map(|l| {
                    l.first()
                        .and_then(|l| l.split_whitespace().next())
                        .unwrap_or("")
                        .to_string()
                });
                let end = phase.load(Ordering::SeqCst);
                conns.lock().unwrap().push(Conn {
                    sport,
                    start,
                    end,
                    result,
                });
            }
        })
    };
    let count = |p: usize| conns.lock().unwrap().iter().filter(|c| c.start == p).count();
    let answered_in = |p: usize| -> BTreeSet<String> {
        conns
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.start == p)
            .filter_map(|c| c.result.clone().ok())
            .collect()
    };
    let settle = |p: usize| {
        eventually(
            &format!("15 connections in phase {p}"),
            Duration::from_secs(60),
            || (count(p) >= 15).then_some(()),
        )
    };
    let has = |d: &Value, u: &str| web_slots(d).iter().any(|s| s == u);

    // Phase 0: steady. UDP 1700 is inside 1024–2048 and answered.
    settle(0);
    assert_eq!(udp(&pub_ns, &vip4, 1700, 3, "2")["lost"], 0);
    let d0 = t.dump();
    // Phase 1: add t4; phase 2 once the device holds it.
    phase.store(1, Ordering::SeqCst);
    t.add_target("t4");
    let d1 = eventually("t4 in the device", Duration::from_secs(20), || {
        Some(t.dump()).filter(|d| has(d, "fd00:1::4"))
    });
    phase.store(2, Ordering::SeqCst);
    settle(2);
    eventually("new connections to reach t4", Duration::from_secs(30), || {
        answered_in(2).contains("t4").then_some(())
    });
    // Phase 3: remove t1; phase 4 once the device no longer holds it.
    phase.store(3, Ordering::SeqCst);
    t.remove_target("t1");
    let d2 = eventually("t1 gone from the device", Duration::from_secs(20), || {
        Some(t.dump()).filter(|d| !has(d, "fd00:1::1"))
    });
    phase.store(4, Ordering::SeqCst);
    settle(4);
    // Phase 5: change the port ranges (TCP 81 added, UDP shrunk to 1024–1600); phase 6 once programmed.
    phase.store(5, Ordering::SeqCst);
    t.set_public_ports(&[
        ("tcp", 80, None),
        ("tcp", 81, None),
        ("udp", 1024, Some(1600)),
        ("sctp", 9000, None),
    ]);
    eventually("the new port ranges", Duration::from_secs(20), || {
        curl(
            &pub_ns,
            &format!("http://{vip4}:81/"),
            1,
            &["--connect-timeout", "0.5"],
        )
        .ok()
    });
    phase.store(6, Ordering::SeqCst);
    settle(6);
    let r = udp(&pub_ns, &vip4, 1700, 3, "0.5");
    assert_eq!(r["lost"], 3, "UDP 1700 is outside the new range: {r}");
    for _ in 0..5 {
        curl(&pub_ns, &format!("http://{vip4}:81/"), 1, &[]).expect("new connections to TCP 81");
    }
    // Phase 7: kill -9 the daemon and restart it; phase 8 once it answers again.
    let before_kill = t.dump();
    let stats_kill = t.stats();
    phase.store(7, Ordering::SeqCst);
    t.kill_daemon();
    settle(7);
    t.start_daemon();
    t.wait_ready(&["default/web", "default/internal"]);
    let after_restart = t.dump();
    phase.store(8, Ordering::SeqCst);
    settle(8);
    stop.store(true, Ordering::SeqCst);
    client.join().expect("client loop");
    assert_eq!(
        before_kill["lbs"], after_restart["lbs"],
        "tables adopted, not flushed or rewritten"
    );
    let (k, r) = (
        target_packets(&stats_kill, "default/web"),
        target_packets(&t.stats(), "default/web"),
    );
    for (addr, n) in &k {
        assert!(
            r.get(addr).is_some_and(|m| m >= n),
            "counter of {addr} kept across the restart"
        );
    }

    let conns = conns.lock().unwrap();
    // New connections follow each change.
    assert!(
        !answered_in_list(&conns, 4).contains("t1"),
        "no new connection reaches the removed t1"
    );
    // No connection to an unchanged target fails: a failure is allowed only if it overlapped a target change
    // (phase 1 or 3) and its flow's slot moved to another target with that change.
    let windows = [
        (1, web_slots(&d0), web_slots(&d1)),
        (3, web_slots(&d1), web_slots(&d2)),
    ];
    let mut excused = 0;
    for c in conns.iter() {
        let Err(e) = &c.result else { continue };
        let moved = windows.iter().any(|(w, before, after)| {
            c.start <= *w
                && *w <= c.end
                && slot_target(before, &vip4, c.sport) != slot_target(after, &vip4, c.sport)
        });
        assert!(
            moved,
            "connection from port {} (phases {}..{}) failed: {e}",
            c.sport, c.start, c.end
        );
        excused += 1;
    }
    let total = conns.len();
    eprintln!("e2e_changes_under_load: {total} connections, {excused} failed on moved slots during a change");
    assert!(
        excused <= 2,
        "at most one in-flight connection per change can break"
    );
    for p in [5, 6, 7, 8] {
        assert!(conns
            .iter()
            .filter(|c| c.start == p || c.end == p)
            .all(|c| c.result.is_ok()));
    }
    let fabric = t.stop_fabric();
    assert_eq!((fabric.bad_outer, fabric.unknown_underlay), (0, 0), "{fabric:?}");
}

fn answered_in_list(conns: &[Conn], p: usize) -> BTreeSet<String> {
    conns
        .iter()
        .filter(|c| c.start == p)
        .filter_map(|c| c.result.clone().ok())
        .collect()
}

/// Long-lived keep-alive TCP connections from the public client (tests/e2e/hold.py): one request each per tick.
struct Hold(ironlb_tests::e2e::Proc);

/// Per connection (client source port): the answer (`tN conn=M`: target and server-side connection) or an error.
type Answers = BTreeMap<u64, Result<String, String>>;

impl Hold {
    fn start(t: &Topology, count: usize) -> Hold {
        let script = script("hold.py").to_string_lossy().into_owned();
        let n = count.to_string();
        let p = ironlb_tests::e2e::Proc::spawn(
            "hold",
            Some(&t.pub_ns),
            &[PYTHON, &script, "--addr", &t.vip4, "--count", &n],
            &t.logs,
            true,
        );
        let mut h = Hold(p);
        let first = h.read();
        assert!(
            first.values().all(Result::is_ok),
            "every connection answered: {first:?}"
        );
        h
    }

    fn read(&mut self) -> Answers {
        let line = self
            .0
            .line(Duration::from_secs(120))
            .unwrap_or_else(|| panic!("hold.py printed nothing; log:\n{}", self.0.log_text()));
        let v: Value = serde_json::from_str(&line).expect("hold.py JSON");
        v.as_array()
            .expect("list")
            .iter()
            .map(|c| {
                let sport = c["sport"].as_u64().expect("sport");
                match c["answer"].as_str() {
                    Some(a) => (sport, Ok(a.to_string())),
                    None => (sport, Err(c["error"].to_string())),
                }
            })
            .collect()
    }

    /// One more request on every connection.
    fn tick(&mut self) -> Answers {
        run_bounded(
            None,
            &["kill", "-USR1", &self.0.pid().to_string()],
            Duration::from_secs(5),
        );
        self.read()
    }
}

/// The connections whose answers came from target `name`.
fn on_target(a: &Answers, name: &str) -> BTreeSet<u64> {
    a.iter()
        .filter(|(_, r)| r.as_ref().is_ok_and(|s| s.starts_with(&format!("{name} "))))
        .map(|(p, _)| *p)
        .collect()
}

/// The underlay addresses of `default/web`'s (serving, draining) targets in `ironlb dump -o json`.
fn web_targets(dump: &Value) -> (BTreeSet<String>, BTreeSet<String>) {
    let id = dump["names"]
        .as_object()
        .and_then(|n| n.iter().find(|(_, v)| *v == "default/web"))
        .map(|(k, _)| k.clone())
        .unwrap_or_else(|| panic!("default/web not in dump: {dump}"));
    let lb = &dump["lbs"][&id];
    let set = |v: &Value| -> BTreeSet<String> {
        v.as_object()
            .map(|m| {
                m.values()
                    .filter_map(|t| t["underlay"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    (set(&lb["targets"]), set(&lb["draining"]))
}

/// Issue 18 end to end: established TCP connections keep their target across target additions, a drain and the
/// removal of other targets (0 moved); a draining target gets no new connection, keeps its old ones until the
/// drain deadline, and loses them only then.
#[test]
fn e2e_pinned_flows_survive_target_changes_and_a_drain() {
    if !should_run("e2e_pinned_flows_survive_target_changes_and_a_drain") {
        return;
    }
    const DRAIN: Duration = Duration::from_secs(15);
    let spec = Spec {
        targets: 4,
        selected: 3,
        drain_timeout: Some("15s"),
        ..Spec::default()
    };
    let mut t = Topology::start(spec, Path::new(FABRIC));
    let (pub_ns, vip4) = (t.pub_ns.clone(), t.vip4.clone());
    let ul = |t: &Topology, n: &str| t.target(n).underlay.clone();
    let mut hold = Hold::start(&t, 30);
    let first = hold.tick();
    assert!(first.values().all(Result::is_ok), "{first:?}");
    let (on_t1, on_t3) = (on_target(&first, "t1"), on_target(&first, "t3"));
    assert!(
        !on_t1.is_empty() && !on_t3.is_empty(),
        "30 connections reach t1 and t3: {first:?}"
    );

    // A target added: no established connection moves (same target, same server-side connection).
    t.add_target("t4");
    let u4 = ul(&t, "t4");
    eventually("t4 in the device", Duration::from_secs(20), || {
        web_targets(&t.dump()).0.contains(&u4).then_some(())
    });
    assert_eq!(hold.tick(), first, "a connection moved when t4 was added");
    eventually("new connections to reach t4", Duration::from_secs(60), || {
        let l = curl(&pub_ns, &format!("http://{vip4}/"), 1, &[]).ok()?;
        l.first().filter(|a| a.starts_with("t4 ")).map(|_| ())
    });

    // t3 leaves Available: it drains. Its connections stay, no new connection reaches it.
    t.set_target_state("t3", "Pending");
    let drain_written = std::time::Instant::now();
    let u3 = ul(&t, "t3");
    eventually("t3 draining on the device", Duration::from_secs(20), || {
        let (serving, draining) = web_targets(&t.dump());
        (!serving.contains(&u3) && draining.contains(&u3)).then_some(())
    });
    let status = t.ironlb_json(&["status"]).expect("status");
    let web = status
        .as_array()
        .and_then(|a| a.iter().find(|s| s["name"] == "web"))
        .expect("web in status");
    assert_eq!(web["drainingTargets"][0]["address"], u3.as_str(), "{web}");
    assert_eq!(web["drainingTargets"][0]["networkInterface"], "t3", "{web}");
    assert_eq!(hold.tick(), first, "a connection moved when t3 started draining");
    for i in 0..40u16 {
        let l = curl(
            &pub_ns,
            &format!("http://{vip4}/"),
            1,
            &["--local-port", &(44000 + i).to_string()],
        )
        .expect("a new connection");
        assert!(
            !l[0].starts_with("t3 "),
            "new connection from port {} reached the draining t3",
            44000 + i
        );
    }
    assert_eq!(hold.tick(), first, "a connection moved while t3 drains");

    // The deadline: t3 is removed and its flows flushed; its connections end (their next packets reach another
    // target, which resets them), every other connection stays.
    eventually(
        "t3 removed at its deadline",
        DRAIN + Duration::from_secs(30),
        || {
            let (serving, draining) = web_targets(&t.dump());
            (!serving.contains(&u3) && !draining.contains(&u3)).then_some(())
        },
    );
    assert!(
        drain_written.elapsed() >= DRAIN,
        "t3 removed {:?} after its drain started, before the {DRAIN:?} deadline",
        drain_written.elapsed()
    );
    let after = hold.tick();
    for (sport, want) in &first {
        if on_t3.contains(sport) {
            assert!(
                after[sport].is_err(),
                "connection {sport} on the removed t3: {:?}",
                after[sport]
            );
        } else {
            assert_eq!(
                &after[sport], want,
                "connection {sport} moved when t3 was removed"
            );
        }
    }

    // t1's NetworkInterface deleted: cut at once (no drain); only its connections end.
    t.remove_target("t1");
    let u1 = ul(&t, "t1");
    eventually("t1 cut", Duration::from_secs(20), || {
        let (serving, draining) = web_targets(&t.dump());
        (!serving.contains(&u1) && !draining.contains(&u1)).then_some(())
    });
    let last = hold.tick();
    for (sport, want) in &first {
        if on_t3.contains(sport) || on_t1.contains(sport) {
            assert!(
                last[sport].is_err(),
                "connection {sport} on a removed target: {:?}",
                last[sport]
            );
        } else {
            assert_eq!(&last[sport], want, "connection {sport} moved when t1 was deleted");
        }
    }
    let kept = last.values().filter(|r| r.is_ok()).count();
    eprintln!(
        "e2e_pinned_flows: {} connections, {kept} kept across +t4, drain t3, -t1 ({} on t3, {} on t1 ended with their target)",
        first.len(),
        on_t3.len(),
        on_t1.len()
    );
    let fabric = t.stop_fabric();
    assert_eq!((fabric.bad_outer, fabric.unknown_underlay), (0, 0), "{fabric:?}");
}
