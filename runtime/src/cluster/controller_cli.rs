//! `ironlb controller`: cluster mode's controller (docs/cluster.md "Controller"). One is active at a time: it
//! campaigns for `PREFIX_ironlb/controller/leader` under an etcd lease and keeps the lease alive on a thread of its
//! own. While it leads it follows the store (a listing, then a watch) and, whenever the store changed, plans a
//! round on what it holds, validated once: gives every LoadBalancer its lb_id and IPs
//! ([`ironlb_cluster::controller::allocate_listed`]) and writes the routings its selector gives
//! ([`ironlb_cluster::routing::routing_listed`]), every write fenced by its lease. When a keep-alive fails it stops
//! writing at once and campaigns again; a controller that is stopped gives up its lease at once, and one that hangs
//! or dies loses it after its TTL; then another takes over.

use super::cli::{CliError, Connection};
use crate::alloc::Pools as PoolsArg;
use crate::backoff::BACKOFF;
use crate::config::ConfigError;
use ironlb_cluster::controller::{allocate_listed, campaign, keep_alive, Checked, Fence, Pools};
use ironlb_cluster::routing::routing_listed;
use ironlb_cluster::store::Listing;
use ironlb_cluster::watch::{Follower, Step};
use ironlb_cluster::{EtcdConfig, Store, StoreError};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// `ironlb controller`.
#[derive(clap::Args, Debug, Clone)]
pub struct ControllerArgs {
    /// Public address pool(s), CIDR, comma-separated or repeated; one per family at least [default: the
    /// `public-pool` key of --config, else 203.0.113.0/24,2001:db8:ff::/64].
    #[arg(long = "public-pool")]
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

/// The pools to allocate from: `--public-pool`, else the config file's `public-pool` (the key `ironlb run` reads, so
/// one file serves a host's daemon or agent and the controller), else the documentation prefixes.
fn public_pools(args: &ControllerArgs) -> Result<Vec<String>, CliError> {
    if !args.public_pool.is_empty() {
        return Ok(args.public_pool.clone());
    }
    let from_file = match &args.conn.config {
        Some(path) => crate::config::RunSettings::load(path)?.public_pool,
        None => None,
    };
    Ok(from_file.unwrap_or_else(|| vec![crate::daemon::DEFAULT_PUBLIC_POOLS.to_string()]))
}

/// How soon a round that left work undone (a lost race, an etcd error) is planned again without a change.
const RETRY_EVERY: Duration = Duration::from_millis(500);

/// Leads: follows the store (one listing, then a watch) and plans a round at once and whenever the store changed,
/// taking in every change that arrived meanwhile first. A round that fails or loses a race is planned again after
/// [`RETRY_EVERY`] even without a change; the lead is not given up for it, since every write is fenced by the
/// lease and nothing is written twice. Never returns: the caller ends it when the lease is lost or it is stopped.
async fn lead(store: &Store, pools: &Pools, fence: &Fence) {
    loop {
        let mut follower = match Follower::start(store, None).await {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(error = %e, "listing the store failed; listing again");
                tokio::time::sleep(RETRY_EVERY).await;
                continue;
            }
        };
        let why = rounds(store, &mut follower, pools, fence).await;
        tracing::info!(%why, "the watch of the store ended; listing again");
    }
}

/// How long a round waits for the watch to bring back the writes of the round before it, at most (it then plans
/// anyway; a write it sees again is a conflict, planned again).
const CATCH_UP: Duration = Duration::from_secs(5);

/// Rounds on `follower`'s listing until its watch ends; returns why it ended.
async fn rounds(store: &Store, follower: &mut Follower, pools: &Pools, fence: &Fence) -> String {
    let mut due = true;
    loop {
        if due {
            let (settled, wrote) = round(store, follower.listing(), pools, fence).await;
            due = !settled;
            match catch_up(follower, wrote).await {
                Ok(changed) => due |= changed,
                Err(why) => return why,
            }
        }
        // A round left work undone: plan again after a pause even without a change.
        let waited = if due {
            tokio::time::timeout(RETRY_EVERY, follower.next()).await.ok()
        } else {
            Some(follower.next().await)
        };
        if let Some(step) = waited {
            match taken(step) {
                Ok(changed) => due |= changed,
                Err(why) => return why,
            }
        }
        match drain(follower).await {
            Ok(changed) => due |= changed,
            Err(why) => return why,
        }
    }
}

/// Takes in watch answers until the listing holds the store's revision `wrote` (a round's last write), at most
/// [`CATCH_UP`], so that the next round does not try again what the last one did. Whether any answer changed the
/// listing, or why the watch ended.
async fn catch_up(follower: &mut Follower, wrote: i64) -> Result<bool, String> {
    let deadline = tokio::time::Instant::now() + CATCH_UP;
    let mut changed = false;
    while follower.listing().revision < wrote {
        let Ok(step) = tokio::time::timeout_at(deadline, follower.next()).await else {
            tracing::debug!(
                wrote,
                "the watch has not brought back the round's writes; planning anyway"
            );
            break;
        };
        changed |= taken(step)?;
    }
    Ok(changed)
}

/// Takes in the watch answers that have arrived, without waiting, so that one round covers every change made
/// while the last one ran. Whether any changed the listing, or why the watch ended.
async fn drain(follower: &mut Follower) -> Result<bool, String> {
    let mut changed = false;
    while let Ok(step) = tokio::time::timeout(Duration::ZERO, follower.next()).await {
        changed |= taken(step)?;
    }
    Ok(changed)
}

/// Whether a watch answer changed the listing, or why the watch ended.
fn taken(step: Result<Step, StoreError>) -> Result<bool, String> {
    match step {
        Ok(Step::Changed) => Ok(true),
        Ok(Step::Quiet) => Ok(false),
        Ok(Step::Ended(end)) => Err(format!("{end:?}")),
        Err(e) => Err(e.to_string()),
    }
}

/// One round on `listing`, validated once for both steps: allocation, then routings. Returns whether it left
/// nothing to plan again (no lost race, no failed request), and the store's revision after its last write (0:
/// none).
async fn round(store: &Store, listing: &Listing, pools: &Pools, fence: &Fence) -> (bool, i64) {
    let checked = Checked::new(listing);
    let mut settled = true;
    let mut wrote = 0;
    match allocate_listed(store, listing, &checked, pools, Some(fence)).await {
        Ok(r) => {
            if !r.allocated.is_empty() || !r.released.is_empty() || r.conflicts > 0 {
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
            settled &= r.conflicts == 0;
            wrote = wrote.max(r.revision);
        }
        Err(e) => {
            tracing::warn!(error = %e, "allocation round failed; planning again");
            settled = false;
        }
    }
    match routing_listed(store, listing, &checked, Some(fence)).await {
        Ok(r) => {
            if !r.written.is_empty() || !r.deleted.is_empty() || r.conflicts > 0 {
                tracing::info!(
                    written = r.written.len(),
                    deleted = r.deleted.len(),
                    conflicts = r.conflicts,
                    "routing round"
                );
            }
            settled &= r.conflicts == 0;
            wrote = wrote.max(r.revision);
        }
        Err(e) => {
            tracing::warn!(error = %e, "routing round failed; planning again");
            settled = false;
        }
    }
    (settled, wrote)
}

/// The thread that keeps the leader's lease alive, with its own runtime and connection, so that no round, however
/// long its work keeps the leading runtime busy, delays a keep-alive. Dropping it ends the thread.
struct LeaseKeeper {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LeaseKeeper {
    /// Starts keeping `fence`'s lease alive (a keep-alive every `every`); the receiver gets why the lease was lost
    /// (or is closed, if the thread ended without saying).
    fn start(
        cfg: &EtcdConfig,
        fence: &Fence,
        every: Duration,
    ) -> (LeaseKeeper, oneshot::Receiver<StoreError>) {
        let (lost_tx, lost_rx) = oneshot::channel();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let (cfg, fence) = (cfg.clone(), fence.clone());
        let thread = std::thread::Builder::new()
            .name("lease-keeper".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a current-thread runtime builds");
                rt.block_on(async {
                    let store = match Store::connect(&cfg).await {
                        Ok(s) => s,
                        Err(e) => {
                            let _ = lost_tx.send(e);
                            return;
                        }
                    };
                    tokio::select! {
                        e = keep_alive(&store, &fence, every) => {
                            let _ = lost_tx.send(e);
                        }
                        _ = stop_rx => {}
                    }
                });
            })
            .expect("a thread starts");
        let keeper = LeaseKeeper {
            stop: Some(stop_tx),
            thread: Some(thread),
        };
        (keeper, lost_rx)
    }
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
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
    let p = PoolsArg::parse(&public_pools(args)?).map_err(|e| bad("public-pool", e.to_string()))?;
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
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime builds");
    let every = Duration::from_secs((args.lease_ttl / 3).max(1) as u64);
    let mut failures = 0u32;
    while !stop.load(Ordering::Relaxed) {
        let result = rt.block_on(async {
            let store = Store::connect(&cfg).await?;
            tracing::info!(%id, "campaigning for the controller lead");
            let fence = tokio::select! {
                f = campaign(&store, &id, args.lease_ttl, Duration::from_millis(500)) => f?,
                _ = wait_stop(&stop) => return Ok(()),
            };
            tracing::info!(%id, lease = fence.lease, "leading");
            let (_keeper, lost) = LeaseKeeper::start(&cfg, &fence, every);
            tokio::select! {
                e = lost => {
                    let error = e.map_or_else(|_| "the keep-alive thread ended".to_string(), |e| e.to_string());
                    tracing::warn!(%error, "lost the controller lease; stopped writing");
                }
                () = lead(&store, &pools, &fence) => {}
                () = wait_stop(&stop) => resign(&store, &fence).await,
            }
            Ok::<(), StoreError>(())
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

/// Gives up the lead on a clean stop: revoking the lease deletes the leader key, so a standby takes over at once
/// instead of after the lease time. Best effort: if etcd does not answer, the lease lapses by itself.
async fn resign(store: &Store, fence: &Fence) {
    let lease = fence.lease;
    match store
        .call("lease revoke", |mut c| async move { c.lease_revoke(lease).await })
        .await
    {
        Ok(_) => tracing::info!(lease, "gave up the controller lead"),
        Err(e) => tracing::warn!(error = %e, "could not give up the lead; it lapses after the lease time"),
    }
}

async fn wait_stop(stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    #[derive(clap::Parser)]
    struct Cmd {
        #[command(flatten)]
        controller: ControllerArgs,
    }

    fn pools_of(args: &[&str]) -> Vec<String> {
        let c = Cmd::try_parse_from(std::iter::once("controller").chain(args.iter().copied())).unwrap();
        public_pools(&c.controller).unwrap()
    }

    #[test]
    fn public_pools_come_from_the_flag_else_the_config_file_else_the_default() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ironlb.toml");
        std::fs::write(
            &file,
            "public-pool = [\"198.18.0.0/24\", \"2001:db8:aa::/64\"]\n[etcd]\nendpoints = [\"http://127.0.0.1:2379\"]\n",
        )
        .unwrap();
        let config = format!("--config={}", file.display());
        assert_eq!(pools_of(&[&config]), ["198.18.0.0/24", "2001:db8:aa::/64"]);
        assert_eq!(
            pools_of(&[&config, "--public-pool=192.0.2.0/24,2001:db8:bb::/64"]),
            ["192.0.2.0/24,2001:db8:bb::/64"]
        );
        assert_eq!(pools_of(&[]), [crate::daemon::DEFAULT_PUBLIC_POOLS]);
    }
}
