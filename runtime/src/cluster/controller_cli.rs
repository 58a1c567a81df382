//! `ironlb controller`: cluster mode's controller (docs/cluster.md "Controller"). One is active at a time: it
//! campaigns for `PREFIX_ironlb/controller/leader` under an etcd lease, keeps the lease alive, and while it leads
//! lists the store once per round, gives every LoadBalancer its lb_id and IPs
//! ([`ironlb_cluster::controller::allocate_listed`]) and writes the routings its selector gives
//! ([`ironlb_cluster::routing::routing_listed`]), every write fenced by its lease. When a keep-alive fails it stops
//! writing at once and campaigns again; a controller that stops or hangs loses the lease after its TTL and another
//! takes over.

use super::cli::{CliError, Connection};
use crate::alloc::Pools as PoolsArg;
use crate::backoff::BACKOFF;
use crate::config::ConfigError;
use ironlb_cluster::controller::{allocate_listed, campaign, keep_alive, Fence, Pools};
use ironlb_cluster::routing::routing_listed;
use ironlb_cluster::{Client, Store};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// `ironlb controller`.
#[derive(clap::Args, Debug, Clone)]
pub struct ControllerArgs {
    /// Public address pool(s), CIDR, comma-separated or repeated; one per family at least.
    #[arg(long = "public-pool", default_value = crate::daemon::DEFAULT_PUBLIC_POOLS)]
    pub public_pool: Vec<String>,
    /// lb_ids are handed out below this (the devices' CAP_LB_IDS) [default: the reference part's].
    #[arg(long)]
    pub lb_id_cap: Option<u32>,
    /// Lease time: a controller that stops renewing its lease loses the lead after this many seconds.
    #[arg(long, default_value_t = 5)]
    pub lease_ttl: i64,
    /// This controller's name in the leader key (default: /etc/hostname and the process id).
    #[arg(long)]
    pub id: Option<String>,
    #[command(flatten)]
    pub conn: Connection,
}

/// How often a leading controller looks for work.
const ROUND_EVERY: Duration = Duration::from_millis(500);

/// Leads, allocating and writing routings (one round every [`ROUND_EVERY`]), until `stop` is set; the caller ends
/// it when the lease is lost. A round that fails (etcd answered with an error, or not in time: a write in flight
/// when the etcd leader died stays unanswered) is logged and the next round plans again from a fresh listing: the
/// lead is not given up for it, since every write is fenced by the lease and nothing is written twice.
async fn lead(store: &Store, pools: &Pools, fence: &Fence, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        // One listing for both steps: it is the round's largest read.
        let listing = match store.list(None).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "listing the store failed; the next round lists again");
                tokio::time::sleep(ROUND_EVERY).await;
                continue;
            }
        };
        match allocate_listed(store, &listing, pools, Some(fence)).await {
            Ok(r) => {
                if !r.allocated.is_empty() || !r.released.is_empty() {
                    tracing::info!(
                        allocated = r.allocated.len(),
                        released = r.released.len(),
                        conflicts = r.conflicts,
                        "allocation round"
                    );
                }
                for (lb, why) in &r.failed {
                    tracing::warn!(%lb, %why, "cannot allocate");
                }
            }
            Err(e) => tracing::warn!(error = %e, "allocation round failed; the next round plans again"),
        }
        match routing_listed(store, &listing, Some(fence)).await {
            Ok(r) if !r.written.is_empty() || !r.deleted.is_empty() => tracing::info!(
                written = r.written.len(),
                deleted = r.deleted.len(),
                conflicts = r.conflicts,
                "routing round"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "routing round failed; the next round plans again"),
        }
        tokio::time::sleep(ROUND_EVERY).await;
    }
}

/// Runs the controller until SIGTERM or SIGINT.
pub fn controller(args: &ControllerArgs) -> Result<(), CliError> {
    let bad = |key: &'static str, reason: String| {
        CliError::Config(ConfigError::Value {
            origin: "--".into(),
            key,
            reason,
        })
    };
    let p = PoolsArg::parse(&args.public_pool).map_err(|e| bad("public-pool", e.to_string()))?;
    if args.lease_ttl < 2 {
        return Err(bad("lease-ttl", "at least 2 seconds".into()));
    }
    let pools = Pools {
        public: p.public_v4.into_iter().chain(p.public_v6).collect(),
        lb_id_cap: args
            .lb_id_cap
            .unwrap_or_else(|| ironlb_sim::DeviceConfig::default().caps.lb_ids),
    };
    let id = args.id.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
        format!("{}-{}", host.trim(), std::process::id())
    });
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone()).map_err(CliError::Output)?;
    }
    let cfg = args.conn.resolve()?;
    let mut failures = 0u32;
    while !stop.load(Ordering::Relaxed) {
        let result = Client::connect(&cfg).and_then(|client| {
            client.block_on(async {
                let store = client.store();
                tracing::info!(%id, "campaigning for the controller lead");
                let fence = tokio::select! {
                    f = campaign(store, &id, args.lease_ttl, Duration::from_millis(500)) => f?,
                    _ = wait_stop(&stop) => return Ok(()),
                };
                tracing::info!(%id, lease = fence.lease, "leading");
                let every = Duration::from_secs((args.lease_ttl / 3).max(1) as u64);
                tokio::select! {
                    e = keep_alive(store, &fence, every) => {
                        tracing::warn!(error = %e, "lost the controller lease; stopped writing");
                        Ok(())
                    }
                    () = lead(store, &pools, &fence, &stop) => Ok(()),
                }
            })
        });
        match result {
            Ok(()) => failures = 0,
            Err(e) => {
                failures += 1;
                let retry_in = BACKOFF.delay(failures);
                tracing::warn!(error = %e, ?retry_in, "controller: etcd failed");
                std::thread::sleep(retry_in);
            }
        }
    }
    tracing::info!("ironlb controller stopping");
    Ok(())
}

async fn wait_stop(stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
