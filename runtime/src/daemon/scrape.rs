//! Scrape-time device figures for the metrics endpoint ([`super::metrics`]): the device's counters and table use,
//! labelled with the LoadBalancers that own them.

use super::control::Shared;
use super::metrics::{DeviceStats, LbStats, TableUse, TargetStats};
use crate::api::ObjectKey;
use crate::ops;
use crate::reconcile::Reconciler;
use std::collections::BTreeMap;
use std::sync::{Mutex, Weak};

/// Scrape-time device figures for the metrics endpoint.
pub(super) fn device_stats(shared: &Weak<Mutex<Shared>>) -> DeviceStats {
    let Some(shared) = shared.upgrade() else {
        return DeviceStats::default();
    };
    let mut sh = shared.lock().expect("daemon state lock");
    reconciler_stats(&mut sh.rec)
}

/// The device figures of the device a reconciler drives, labelled with its LoadBalancers (the daemon's scrape,
/// and the agent's after each sync).
pub(crate) fn reconciler_stats(rec: &mut Reconciler) -> DeviceStats {
    if rec.device_down().is_some() {
        // Reading counters would wait for a command timeout per read: the scrape shows `ironlb_device_up 0`.
        return DeviceStats::default();
    }
    let keys: BTreeMap<u32, ObjectKey> = rec
        .programmed()
        .iter()
        .map(|(k, s)| (s.lb_id, k.clone()))
        .collect();
    let names = rec.names();
    let stats = match ops::collect_stats(rec.device(), &names) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "reading device counters for metrics failed");
            return DeviceStats::default();
        }
    };
    let mut out = DeviceStats::default();
    for lb in &stats.lbs {
        // An LB no object claims (an orphan about to be removed) still gets distinct labels.
        let ObjectKey { namespace: ns, name } = keys
            .get(&lb.lb_id)
            .cloned()
            .unwrap_or_else(|| ObjectKey::new("", format!("orphan-lb-{}", lb.lb_id)));
        out.lbs.push(LbStats {
            namespace: ns.clone(),
            name: name.clone(),
            lb_id: lb.lb_id,
            packets: lb.packets,
            bytes: lb.bytes,
        });
        for t in &lb.targets {
            out.targets.push(TargetStats {
                namespace: ns.clone(),
                name: name.clone(),
                target: t.target,
                packets: t.packets,
                bytes: t.bytes,
            });
        }
    }
    out.drops = ironlb_hw::DropReason::ALL
        .iter()
        .map(|r| (r.name(), stats.drops.get(r.name()).copied().unwrap_or(0)))
        .collect();
    out.flows = stats
        .flows
        .map(|f| f.named().map(|(c, n)| (c.name(), n)).to_vec())
        .unwrap_or_default();
    out.tables = stats
        .tables
        .iter()
        .map(|t| TableUse {
            table: match t.table.as_str() {
                "lb" => "lb",
                "range" => "range",
                "target" => "target",
                "flow" => "flow",
                _ => "bucket",
            },
            used: t.used,
            capacity: t.capacity,
        })
        .collect();
    out
}
