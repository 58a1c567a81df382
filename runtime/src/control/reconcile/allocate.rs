//! Step 3 of a sync: lb_ids and IPs for the valid load balancers, in one durable batch, before anything is
//! programmed, so a crash at any later point restarts with the same allocations.

use super::presence::Presence;
use super::{ReconcileError, Reconciler};
use crate::alloc::{AllocError, Allocator};
use crate::api::ObjectKey;
use crate::validate::{LbParsed, Parsed, VipDomain};
use ipnet::IpNet;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

/// What the allocation step gives the rest of the sync.
#[derive(Debug, Default)]
pub(super) struct Allocated {
    /// The lb_id of every load balancer the sync looks at that has one.
    pub lb_ids: BTreeMap<ObjectKey, u32>,
    /// Their allocated IPs.
    pub ips: BTreeMap<ObjectKey, Vec<IpAddr>>,
    /// Load balancers whose allocation failed (e.g. a pool is exhausted): not programmed this sync.
    pub failed: BTreeMap<ObjectKey, AllocError>,
}

impl Reconciler {
    /// Releases the allocations of `released` and allocates for every valid load balancer, in one durable batch.
    /// A per-LB failure (a pool exhausted) is returned in [`Allocated::failed`]; a failure to persist (I/O, a
    /// corrupt state) stops the sync before anything is programmed.
    pub(super) fn allocate_all(
        &mut self,
        presence: &Presence<'_>,
        parsed: &Parsed,
        released: &[ObjectKey],
        scope: Option<&BTreeSet<ObjectKey>>,
    ) -> Result<Allocated, ReconcileError> {
        let failed = self.alloc.batch(|a| {
            for k in released {
                a.release(k)?;
            }
            let mut failed: BTreeMap<ObjectKey, AllocError> = BTreeMap::new();
            for lb in presence.valid_lbs() {
                let key = lb.metadata.key();
                let Some(p) = parsed.load_balancers.get(&key) else {
                    continue;
                };
                if let Err(e) = allocate(a, &key, p, &parsed.prefixes) {
                    if matches!(e, AllocError::Io { .. } | AllocError::Corrupt { .. }) {
                        return Err(e);
                    }
                    failed.insert(key, e);
                }
            }
            Ok(failed)
        });
        let failed = match failed {
            Ok(Ok(f)) => f,
            Ok(Err(e)) | Err(e) => return Err(ReconcileError::Alloc(e)),
        };
        let (lb_ids, ips) = match scope {
            Some(scope) => self.alloc.snapshot_for(scope),
            None => self.alloc.snapshot(),
        };
        Ok(Allocated { lb_ids, ips, failed })
    }
}

/// Allocates what `lb` needs: its lb_id, and public IPs (Public) or Prefix IPs (Internal); releases what it no
/// longer needs.
fn allocate(
    a: &mut Allocator,
    key: &ObjectKey,
    lb: &LbParsed,
    prefixes: &BTreeMap<ObjectKey, IpNet>,
) -> Result<(), AllocError> {
    a.lb_id(key)?;
    // status.ips records an earlier allocation (another host, a lost state file): honour it when still free.
    let recorded = &lb.status_ips;
    match lb.domain {
        VipDomain::Public => {
            a.public_ips_preferring(key, &lb.families, recorded)?;
            a.retain_prefix_ips(key, &BTreeSet::new())?;
        }
        VipDomain::Vni(_) => {
            a.public_ips(key, &[])?;
            let mut live = BTreeSet::new();
            for pk in &lb.prefixes {
                if let Some(net) = prefixes.get(pk) {
                    // A cluster's IPAM decision first, then the recorded allocation.
                    let preferred: Vec<IpAddr> = lb.filled_ips.iter().chain(recorded).copied().collect();
                    a.prefix_ip_preferring(key, pk, *net, &preferred)?;
                }
                live.insert(pk.clone());
            }
            a.retain_prefix_ips(key, &live)?;
        }
    }
    Ok(())
}
