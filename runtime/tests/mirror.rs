//! `ops::mirror` (the copy behind `ironlb trace|replay --backend`): a model loaded with a copy of a device's
//! tables treats every packet exactly as the device does — same verdicts, same encapsulated bytes, so the same
//! target for every flow.

use ironlb_hw::entry::PortKind;
use ironlb_runtime::alloc::Pools;
use ironlb_runtime::cli::build_packet;
use ironlb_runtime::daemon::{program_dir, DEFAULT_PUBLIC_POOLS};
use ironlb_runtime::reconcile::HostConfig;
use ironlb_runtime::{example, ops};
use ironlb_sim::Verdict;
use std::path::Path;

#[test]
fn a_copy_of_the_tables_forwards_every_flow_like_the_device() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let pools = Pools::parse(
        &DEFAULT_PUBLIC_POOLS
            .split(',')
            .map(str::to_string)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let host = HostConfig {
        ports: vec![
            (0, PortKind::Public),
            (1, PortKind::Network { vni: 100 }),
            (3, PortKind::Underlay),
        ],
        underlay_src: "fd00:ffff::7".parse().unwrap(),
        mtu: 1600,
        hop_limit: 9,
    };
    let mut p = program_dir(&examples, pools, &host, Default::default()).unwrap();
    assert!(p.report.errors.is_empty(), "{:?}", p.report);
    let (mut copy, copy_model) = ops::mirror(p.rec.device()).unwrap();
    assert_eq!(copy.underlay(), ("fd00:ffff::7".parse().unwrap(), 1600, 9));
    assert!(copy.enabled());

    // The example's client packets, and many TCP and UDP flows to the public VIP's ports and beyond.
    let mut packets: Vec<(u32, Vec<u8>)> = example::packets()
        .into_iter()
        .map(|p| (p.port, p.bytes))
        .collect();
    for i in 0..400u32 {
        let src = format!("198.51.{}.{}", i / 250, i % 250 + 1);
        let (proto, dport) = if i % 2 == 0 {
            ("tcp", 80)
        } else {
            ("udp", 1000 + (i % 1100) as u16)
        };
        let spec = format!("{proto} {src}:{} -> 203.0.113.10:{dport}", 1024 + i);
        packets.push((0, build_packet(&spec).unwrap()));
    }
    let mut forwarded = 0;
    for (port, bytes) in &packets {
        let (want, _) = p.model.lock().unwrap().dry_run(*port, bytes);
        let (got, _) = copy_model.lock().unwrap().dry_run(*port, bytes);
        assert_eq!(got, want, "port {port}, packet {bytes:02x?}");
        forwarded += matches!(want, Verdict::Forward { .. }) as usize;
    }
    assert!(forwarded > 200, "only {forwarded} of {} forwarded", packets.len());
}

#[test]
fn a_trace_shows_a_pinned_flow_on_the_device_and_says_a_copy_has_no_flow_table() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let pools = Pools::parse(
        &DEFAULT_PUBLIC_POOLS
            .split(',')
            .map(str::to_string)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let host = HostConfig {
        ports: vec![
            (0, PortKind::Public),
            (1, PortKind::Network { vni: 100 }),
            (3, PortKind::Underlay),
        ],
        underlay_src: "fd00:ffff::7".parse().unwrap(),
        mtu: 1600,
        hop_limit: 9,
    };
    let mut p = program_dir(&examples, pools, &host, Default::default()).unwrap();
    assert!(p.report.errors.is_empty(), "{:?}", p.report);
    assert!(p.rec.device().has_flow_table());
    let flow = "tcp 198.51.100.7:40000 -> 203.0.113.10:80";
    let flow_packet = ironlb_runtime::cli::TracePacket::Spec(flow.to_string());
    let names = p.rec.names();
    let trace = |dev: &mut ironlb_driver::Device, model, copy| {
        let out = ops::trace(
            ops::View {
                dev,
                model: Some(model),
                names: &names,
                copy,
            },
            "public",
            &flow_packet,
            ops::Format::Json,
        )
        .unwrap();
        serde_json::from_str::<serde_json::Value>(&out).unwrap()
    };
    // Not seen yet: the trace would learn it (and does not, a trace changes nothing).
    let before = trace(p.rec.device(), &p.model, false);
    assert_eq!(before["flow_table"], "device");
    assert_eq!(before["trace"]["pinned"], "learned", "{before}");
    let again = trace(p.rec.device(), &p.model, false);
    assert_eq!(
        again["trace"]["pinned"], "learned",
        "a trace learned the flow: {again}"
    );
    // Once the device has seen it, the trace shows the hit.
    let v = p.model.lock().unwrap().process(0, &build_packet(flow).unwrap());
    assert!(matches!(v, Verdict::Forward { .. }), "{v:?}");
    let hit = trace(p.rec.device(), &p.model, false);
    assert_eq!(hit["trace"]["pinned"], "hit", "{hit}");
    let text = ops::trace(
        ops::View {
            dev: p.rec.device(),
            model: Some(&p.model),
            names: &names,
            copy: false,
        },
        "public",
        &flow_packet,
        ops::Format::Table,
    )
    .unwrap();
    assert!(text.contains("pinned to target"), "{text}");
    // A copy of the tables has no flow table: the trace says so instead of showing a silent miss.
    let (mut copy, copy_model) = ops::mirror(p.rec.device()).unwrap();
    let on_copy = trace(&mut copy, &copy_model, true);
    assert_eq!(on_copy["flow_table"], "not_copied", "{on_copy}");
    let text = ops::trace(
        ops::View {
            dev: &mut copy,
            model: Some(&copy_model),
            names: &names,
            copy: true,
        },
        "public",
        &flow_packet,
        ops::Format::Table,
    )
    .unwrap();
    assert!(text.contains("without its flow table"), "{text}");
}
