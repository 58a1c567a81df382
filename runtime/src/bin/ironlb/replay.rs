//! `ironlb replay`: program the software model and replay packets through it (the built-in client packets, or
//! a capture on one ingress).

use super::local::{local_copy, local_example, local_manifests_with, Local};
use super::{op_err, pools, ReplayArgs};
use anyhow::{bail, Context, Result};
use ironlb_runtime::cli::BadInput;
use ironlb_runtime::example;
use ironlb_runtime::manifest::LoadOptions;
use ironlb_runtime::ops;
use ironlb_sim::Verdict;
use std::fs::File;
use std::io::{BufReader, BufWriter};

/// `ironlb replay`; exit 2 when a manifest did not load, as `validate` (the packets were replayed all the same).
pub(super) fn replay(args: ReplayArgs) -> Result<()> {
    let ReplayArgs {
        example,
        manifests,
        backend,
        pools: pool_args,
        ingress,
        input,
        out,
        verdicts,
        host,
        lenient,
    } = args;
    let opts = if lenient {
        LoadOptions::LENIENT
    } else {
        LoadOptions::default()
    };
    let mut bad_input = 0;
    let mut l = if example {
        local_example()?
    } else if let Some(b) = &backend {
        local_copy(b)?
    } else {
        let (l, problems) = local_manifests_with(
            manifests.as_deref().expect("clap: manifests"),
            pools(&pool_args)?,
            &host.host()?,
            opts,
            false,
        )?;
        bad_input = problems.bad_input;
        l
    };
    match (ingress, input, out) {
        (Some(ingress), Some(input), Some(out)) => {
            let port = ops::ingress_port(l.dev(), &ingress).map_err(op_err)?;
            let inp = File::open(&input).map_err(|e| BadInput(format!("--in {}: {e}", input.display())))?;
            let outf = File::create(&out).with_context(|| format!("--out {}", out.display()))?;
            let vf = match &verdicts {
                Some(p) => Some(BufWriter::new(
                    File::create(p).with_context(|| format!("--verdicts {}", p.display()))?,
                )),
                None => None,
            };
            let mut m = l.model.lock().expect("model lock");
            let s = ironlb_sim::pcap::replay(&mut m, port, BufReader::new(inp), BufWriter::new(outf), vf)
                .with_context(|| format!("replaying {}", input.display()))?;
            out!(
                "replayed {} packets on {ingress}: {} forwarded, {} dropped, {} skipped",
                s.packets,
                s.forwarded,
                s.dropped.values().sum::<u64>(),
                s.skipped
            );
            for (r, n) in &s.dropped {
                out!("  dropped {n:>6}  {r}");
            }
        }
        _ => builtin(&mut l)?,
    }
    // Like `validate`: the packets were replayed through what did load, but the input was not all good.
    if bad_input > 0 {
        bail!(BadInput(format!(
            "{bad_input} manifest errors (see above): replayed without them"
        )));
    }
    Ok(())
}

fn builtin(l: &mut Local) -> Result<()> {
    out!("programmed by the driver into the software model:");
    let ids: Vec<u32> = l.names.keys().copied().collect();
    for id in &ids {
        let name = l.names[id].clone();
        let st = l.dev().lb_state(*id).context("programmed LB missing")?.clone();
        let vips: Vec<String> = st.spec.vips.iter().map(|k| k.vip.to_string()).collect();
        out!("  lb {id} {name}");
        out!(
            "       VIPs {}  targets {}  bucket array M={}",
            vips.join(", "),
            st.spec
                .targets
                .iter()
                .map(|t| t.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            st.slots.len()
        );
    }
    out!("\nreplaying {} client packets:", example::packets().len());
    for p in example::packets() {
        let v = l.model.lock().expect("model lock").process(p.port, &p.bytes);
        let what = match v {
            Verdict::Forward { packet, .. } => {
                let dst = std::net::Ipv6Addr::from(<[u8; 16]>::try_from(&packet[24..40]).expect("outer dst"));
                format!("forward -> target {dst}")
            }
            Verdict::Drop(r) => format!("drop ({r})"),
        };
        out!("  {:<66} {what}", p.what);
    }
    out!("\ncounters read back from the device:");
    let lbc = l.dev().lb_counters()?;
    let tc = l.dev().target_counters()?;
    for id in &ids {
        let c = lbc[*id as usize];
        out!(
            "  lb {:<12}     packets {:>4} bytes {:>6}",
            id,
            c.packets,
            c.bytes
        );
    }
    for id in &ids {
        let st = l.dev().lb_state(*id).context("programmed LB")?.clone();
        for (addr, i) in &st.target_index {
            let c = tc[*i as usize];
            out!(
                "  target {addr:<12} packets {:>4} bytes {:>6}",
                c.packets,
                c.bytes
            );
        }
    }
    for (r, n) in l.dev().drop_counters() {
        if n > 0 {
            out!("  drop {:<20} {n:>4}", r.name());
        }
    }
    Ok(())
}
