//! The controller's allocation step (docs/cluster.md "Controller"): gives every valid LoadBalancer that has no
//! allocation record an lb_id and its public or Prefix IPs, in etcd transactions, and releases the records of
//! LoadBalancers that are gone.
//!
//! **No value is ever handed out twice**, however many controllers race: each lb_id and each IP is a *claim key*
//! (`PREFIX_ironlb/claims/lb-id/<n>`, `.../public-ip/<ip>`, `.../prefix-ip/<ns>/<prefix>/<ip>`) created in the same
//! transaction as the record, on the condition that none of them exists yet (`create_revision == 0`). Of two
//! transactions claiming one value etcd commits one; the other writes nothing and is planned again.
//!
//! The same transaction writes the LoadBalancer's `status.ips` (its VIPs), on the object as it was read. One
//! transaction carries many LoadBalancers' allocations ([`commit_parts`], shared with the routing step): one that
//! fails is sent again a LoadBalancer at a time.
//!
//! **Fencing.** A leader passes its [`Fence`]: every transaction also requires that the leader key is still held
//! under the leader's lease, so a controller whose lease expired (etcd then deletes its key) writes nothing, even
//! before it notices that it lost.

use crate::alloc::Allocation;
use crate::store::{transient, txn_ends, Listing, Store, StoreError, TxnShare, RESEND_PAUSE};
use etcd_client::{Compare, CompareOp, Txn, TxnOp};
use ipnet::IpNet;
use ironlb_api::types::IpFamily;
use ironlb_api::validate::{validate_parsed, LbParsed, Parsed, Validated, VipDomain};
use ironlb_api::{Object, ObjectKey};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How far a pool is searched for a free address.
const SEARCH_LIMIT: usize = 1 << 20;

/// The leader key and the lease it is held under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    /// The leader key.
    pub key: String,
    /// The lease.
    pub lease: i64,
}

/// What the controller hands out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pools {
    /// Public address pools (both families).
    pub public: Vec<IpNet>,
    /// lb_ids are `0..lb_id_cap` (the devices' `CAP_LB_IDS`).
    pub lb_id_cap: u32,
}

/// What one round did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Round {
    /// LoadBalancers given a record.
    pub allocated: Vec<ObjectKey>,
    /// Records released (their LoadBalancer is gone).
    pub released: Vec<ObjectKey>,
    /// Transactions that lost a race (planned again next round).
    pub conflicts: usize,
    /// LoadBalancers that could not be allocated, with why (an exhausted pool, say).
    pub failed: Vec<(ObjectKey, String)>,
    /// The store's revision after the round's last write (0: it wrote nothing); a round planned on a listing
    /// older than this would try again what this one did.
    pub revision: i64,
}

/// A listing with its objects validated, once per controller round for both of its steps (after the listing
/// itself, validation is the largest work of a round).
#[derive(Debug)]
pub struct Checked {
    /// The objects, in the listing's order, as validation reads them.
    objects: Vec<(PathBuf, Object)>,
    /// The verdicts and parsed values of `objects`.
    validated: Validated,
}

impl Checked {
    /// Validates the objects of `listing`.
    pub fn new(listing: &Listing) -> Checked {
        let objects: Vec<(PathBuf, Object)> = listing
            .objects
            .values()
            .map(|s| (PathBuf::from(crate::write::STORED_ORIGIN), s.object.clone()))
            .collect();
        let refs: Vec<&(PathBuf, Object)> = objects.iter().collect();
        let validated = validate_parsed(&refs);
        Checked { objects, validated }
    }

    /// The objects, each with whether it is valid.
    pub fn objects(&self) -> impl Iterator<Item = (&Object, bool)> {
        self.objects
            .iter()
            .zip(&self.validated.valid)
            .map(|((_, o), ok)| (o, *ok))
    }

    /// The parsed values of the valid objects.
    pub fn parsed(&self) -> &Parsed {
        &self.validated.parsed
    }
}

fn claims_of(store: &Store, a: &Allocation) -> Vec<String> {
    let p = store.layout().record_prefix("claims");
    let mut v = vec![format!("{p}lb-id/{}", a.lb_id)];
    v.extend(a.public_ips.iter().map(|ip| format!("{p}public-ip/{ip}")));
    v.extend(
        a.prefix_ips
            .iter()
            .map(|(k, ip)| format!("{p}prefix-ip/{}/{}/{ip}", k.namespace, k.name)),
    );
    v
}

fn first_free(net: IpNet, used: &BTreeSet<IpAddr>) -> Option<IpAddr> {
    net.hosts()
        .take(SEARCH_LIMIT)
        // An IPv6 subnet's first address is its subnet-router anycast address: never handed out.
        .filter(|ip| !(net.addr().is_ipv6() && *ip == net.network()))
        .find(|ip| !used.contains(ip))
}

/// What is handed out already, as a round goes (values only ever join it during the allocation step).
#[derive(Debug, Default)]
struct Used {
    ids: BTreeSet<u32>,
    /// Every lb_id below this is in `ids` (the search for a free one starts here).
    ids_below: u32,
    public: BTreeSet<IpAddr>,
    prefix: BTreeMap<ObjectKey, BTreeSet<IpAddr>>,
}

impl Used {
    fn of(records: &BTreeMap<ObjectKey, (Allocation, i64)>) -> Used {
        let mut used = Used::default();
        for (a, _) in records.values() {
            used.add(a);
        }
        used
    }

    fn add(&mut self, a: &Allocation) {
        self.ids.insert(a.lb_id);
        self.public.extend(a.public_ips.iter().copied());
        for (k, ip) in &a.prefix_ips {
            self.prefix.entry(k.clone()).or_default().insert(*ip);
        }
    }

    /// The lowest free lb_id below `cap`.
    fn free_id(&mut self, cap: u32) -> Option<u32> {
        while self.ids_below < cap && self.ids.contains(&self.ids_below) {
            self.ids_below += 1;
        }
        (self.ids_below < cap).then_some(self.ids_below)
    }
}

/// The allocation for one LoadBalancer, given what is used.
fn plan(
    lb: &LbParsed,
    prefixes: &BTreeMap<ObjectKey, IpNet>,
    pools: &Pools,
    used: &mut Used,
) -> Result<Allocation, String> {
    let lb_id = used.free_id(pools.lb_id_cap).ok_or("no free lb_id")?;
    let (used_public, used_prefix) = (&used.public, &used.prefix);
    let mut a = Allocation {
        lb_id,
        ..Allocation::default()
    };
    match lb.domain {
        VipDomain::Public => {
            for family in &lb.families {
                let in_pool = |ip: &IpAddr| pools.public.iter().any(|n| n.contains(ip));
                let preferred = lb
                    .status_ips
                    .iter()
                    .copied()
                    .find(|ip| IpFamily::of(ip) == *family && in_pool(ip) && !used_public.contains(ip));
                let ip = preferred
                    .or_else(|| {
                        pools
                            .public
                            .iter()
                            .filter(|n| IpFamily::of(&n.addr()) == *family)
                            .find_map(|n| first_free(*n, used_public))
                    })
                    .ok_or_else(|| format!("public {family} pool exhausted (or none)"))?;
                if !a.public_ips.contains(&ip) {
                    a.public_ips.push(ip);
                }
            }
        }
        VipDomain::Vni(_) => {
            for pk in &lb.prefixes {
                let Some(net) = prefixes.get(pk) else { continue };
                let empty = BTreeSet::new();
                let used = used_prefix.get(pk).unwrap_or(&empty);
                let preferred = lb
                    .filled_ips
                    .iter()
                    .chain(&lb.status_ips)
                    .copied()
                    .find(|ip| net.contains(ip) && !used.contains(ip));
                let ip = preferred
                    .or_else(|| first_free(*net, used))
                    .ok_or_else(|| format!("Prefix {pk} exhausted"))?;
                a.prefix_ips.insert(pk.clone(), ip);
            }
        }
    }
    Ok(a)
}

/// The VIPs a LoadBalancer has with allocation `a`: its public IPs, or its literal IPs and Prefix IPs.
fn vips(lb: &LbParsed, a: &Allocation) -> Vec<IpAddr> {
    match lb.domain {
        VipDomain::Public => a.public_ips.clone(),
        VipDomain::Vni(_) => lb
            .literal_ips
            .iter()
            .copied()
            .chain(a.prefix_ips.values().copied())
            .collect(),
    }
}

fn fenced(fence: Option<&Fence>) -> Vec<Compare> {
    fence
        .map(|f| vec![Compare::lease(f.key.as_bytes(), CompareOp::Equal, f.lease)])
        .unwrap_or_default()
}

/// One object's share of a fenced transaction: its conditions and writes ([`commit_parts`]).
#[derive(Debug, Clone)]
pub struct Part {
    /// What must hold.
    pub compares: Vec<Compare>,
    /// What is written when it does.
    pub ops: Vec<TxnOp>,
    /// Bytes of the keys and values written.
    pub bytes: usize,
}

impl Part {
    /// A part of no conditions and no writes (built up with [`Part::put`] and [`Part::require`]).
    pub fn new() -> Part {
        Part {
            compares: Vec::new(),
            ops: Vec::new(),
            bytes: 0,
        }
    }

    /// Adds a condition.
    pub fn require(&mut self, c: Compare) {
        self.compares.push(c);
    }

    /// Adds a put of `value` at `key`.
    pub fn put(&mut self, key: &str, value: Vec<u8>) {
        self.bytes += key.len() + value.len();
        self.ops.push(TxnOp::put(key.as_bytes(), value, None));
    }

    /// Adds a delete of `key`.
    pub fn delete(&mut self, key: &str) {
        self.bytes += key.len();
        self.ops.push(TxnOp::delete(key.as_bytes(), None));
    }

    /// What it adds to a transaction.
    pub fn share(&self) -> TxnShare {
        TxnShare {
            compares: self.compares.len(),
            ops: self.ops.len(),
            bytes: self.bytes,
        }
    }
}

impl Default for Part {
    fn default() -> Self {
        Part::new()
    }
}

/// Commits `parts` in as few fenced transactions as etcd takes ([`txn_ends`]); returns, per part, whether it was
/// written. A transaction that fails (a race lost on one value, an object edited meanwhile) is sent again one part
/// at a time, so one conflict holds up none of the others; with the lease gone every part fails.
pub async fn commit_parts(
    store: &Store,
    op: &'static str,
    fence: Option<&Fence>,
    parts: &[Part],
) -> Result<Committed, StoreError> {
    let mut done = Committed {
        written: Vec::with_capacity(parts.len()),
        revision: 0,
    };
    let shares: Vec<TxnShare> = parts.iter().map(Part::share).collect();
    let mut start = 0;
    for end in txn_ends(&shares, fenced(fence).len()) {
        let batch = &parts[start..end];
        let committed = done.take(commit_together(store, op, fence, batch).await?, batch.len());
        if !committed && batch.len() > 1 {
            done.written.truncate(start);
            for p in batch {
                done.take(
                    commit_together(store, op, fence, std::slice::from_ref(p)).await?,
                    1,
                );
            }
        }
        start = end;
    }
    Ok(done)
}

/// What [`commit_parts`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Committed {
    /// Per part, whether it was written.
    pub written: Vec<bool>,
    /// The store's revision after the last transaction that committed (0: none did).
    pub revision: i64,
}

impl Committed {
    /// Records a transaction of `n` parts that committed at `revision` (`Some`) or did not; whether it did.
    fn take(&mut self, revision: Option<i64>, n: usize) -> bool {
        if let Some(r) = revision {
            self.revision = self.revision.max(r);
        }
        self.written.extend(std::iter::repeat_n(revision.is_some(), n));
        revision.is_some()
    }
}

/// One fenced transaction of `parts`; the store's revision after it, if it committed.
async fn commit_together(
    store: &Store,
    op: &'static str,
    fence: Option<&Fence>,
    parts: &[Part],
) -> Result<Option<i64>, StoreError> {
    let mut compares = fenced(fence);
    let mut ops = Vec::new();
    for p in parts {
        compares.extend(p.compares.iter().cloned());
        ops.extend(p.ops.iter().cloned());
    }
    let resp = store.txn(op, Txn::new().when(compares).and_then(ops)).await?;
    Ok(resp
        .succeeded()
        .then(|| resp.header().map_or(0, |h| h.revision())))
}

/// Sorts `keys` by whether their part was `written`: into `done`, or counted in `conflicts`.
fn tally(keys: Vec<ObjectKey>, written: Vec<bool>, done: &mut Vec<ObjectKey>, conflicts: &mut usize) {
    for (key, ok) in keys.into_iter().zip(written) {
        if ok {
            done.push(key);
        } else {
            *conflicts += 1;
        }
    }
}

/// One LoadBalancer's allocation as a [`Part`]: its record and every claim key absent, and the LoadBalancer still
/// at the revision read; then the record, the claims and its `status.ips`.
fn claim(store: &Store, listing: &Listing, key: &ObjectKey, lb: &LbParsed, a: &Allocation) -> Part {
    let mut part = Part::new();
    let record = store.layout().allocation_key(key);
    part.require(Compare::create_revision(record.as_bytes(), CompareOp::Equal, 0));
    part.put(&record, a.encode());
    for c in claims_of(store, a) {
        part.require(Compare::create_revision(c.as_bytes(), CompareOp::Equal, 0));
        part.put(&c, key.to_string().into_bytes());
    }
    // The LoadBalancer's status.ips, written in the same transaction, on the object as it was read (a concurrent
    // edit makes the transaction fail; the next round plans from the edited object).
    let lb_ref = key.clone().of(ironlb_api::Kind::LoadBalancer);
    if let Some(stored) = listing.objects.get(&lb_ref) {
        if let Object::LoadBalancer(mut o) = stored.object.clone() {
            o.status.ips = vips(lb, a)
                .into_iter()
                .map(|ip| ironlb_api::types::StatusIp { ip: ip.to_string() })
                .collect();
            let lb_key = store.layout().object_key(&lb_ref);
            part.require(Compare::mod_revision(
                lb_key.as_bytes(),
                CompareOp::Equal,
                stored.revision,
            ));
            part.put(&lb_key, crate::codec::encode(&Object::LoadBalancer(o)));
        }
    }
    part
}

/// One round: allocates what is missing and releases what is gone, many LoadBalancers per transaction
/// ([`commit_parts`]).
pub async fn allocate_round(
    store: &Store,
    pools: &Pools,
    fence: Option<&Fence>,
) -> Result<Round, StoreError> {
    let listing = store.list(None).await?;
    allocate_listed(store, &listing, &Checked::new(&listing), pools, fence).await
}

/// [`allocate_round`] on a listing the caller already read and validated (a controller round reads and validates
/// the store once for its allocation and routing steps).
pub async fn allocate_listed(
    store: &Store,
    listing: &Listing,
    checked: &Checked,
    pools: &Pools,
    fence: Option<&Fence>,
) -> Result<Round, StoreError> {
    let parsed = checked.parsed();
    let mut used = Used::of(&listing.allocations);
    let mut round = Round::default();
    let mut keys = Vec::new();
    let mut parts = Vec::new();
    for (key, lb) in &parsed.load_balancers {
        if listing.allocations.contains_key(key) {
            continue;
        }
        match plan(lb, &parsed.prefixes, pools, &mut used) {
            Ok(a) => {
                // Taken for the rest of the round whether or not its transaction commits (a value a lost
                // transaction held is free again next round).
                used.add(&a);
                parts.push(claim(store, listing, key, lb, &a));
                keys.push(key.clone());
            }
            Err(why) => round.failed.push((key.clone(), why)),
        }
    }
    let done = commit_parts(store, "allocate", fence, &parts).await?;
    round.revision = round.revision.max(done.revision);
    tally(keys, done.written, &mut round.allocated, &mut round.conflicts);
    let present: BTreeSet<&ObjectKey> = listing.objects.keys().filter_map(|r| r.load_balancer()).collect();
    let mut keys = Vec::new();
    let mut parts = Vec::new();
    for (key, (a, revision)) in &listing.allocations {
        if present.contains(key) {
            continue;
        }
        let record = store.layout().allocation_key(key);
        let mut part = Part::new();
        part.require(Compare::mod_revision(
            record.as_bytes(),
            CompareOp::Equal,
            *revision,
        ));
        part.delete(&record);
        for c in claims_of(store, a) {
            part.delete(&c);
        }
        parts.push(part);
        keys.push(key.clone());
    }
    let done = commit_parts(store, "release", fence, &parts).await?;
    round.revision = round.revision.max(done.revision);
    tally(keys, done.written, &mut round.released, &mut round.conflicts);
    Ok(round)
}

/// Becomes the leader: grants a lease of `ttl_s` seconds and creates `PREFIX_ironlb/controller/leader` under it,
/// waiting (polling every `poll`) while another controller holds it. The caller keeps the lease alive
/// ([`keep_alive`]); when it lapses, etcd deletes the key and fenced writes fail.
pub async fn campaign(
    store: &Store,
    id: &str,
    ttl_s: i64,
    poll: std::time::Duration,
) -> Result<Fence, StoreError> {
    let key = format!("{}leader", store.layout().record_prefix("controller"));
    loop {
        // A lease only when the key is free: a lease granted while waiting would lapse unused.
        let held = !store.get_key("campaign", &key, None).await?.kvs().is_empty();
        if !held {
            let lease = store
                .call(
                    "lease grant",
                    |mut c| async move { c.lease_grant(ttl_s, None).await },
                )
                .await?
                .id();
            let txn = Txn::new()
                .when(vec![Compare::create_revision(
                    key.as_bytes(),
                    CompareOp::Equal,
                    0,
                )])
                .and_then(vec![TxnOp::put(
                    key.as_bytes(),
                    id,
                    Some(etcd_client::PutOptions::new().with_lease(lease)),
                )]);
            if store.txn("campaign", txn).await?.succeeded() {
                return Ok(Fence { key, lease });
            }
            // Another controller got in first (or this one did, in a send whose answer was lost and which was sent
            // again: revoking the lease frees the key, and the next pass takes it).
            let _ = store
                .call("lease revoke", |mut c| async move { c.lease_revoke(lease).await })
                .await;
        }
        tokio::time::sleep(poll).await;
    }
}

/// Keeps the leader's lease alive, once every `every`, until a keep-alive says the lease is gone or etcd is
/// unreachable; returns why. The keep-alives go over one stream to one member: when that stream fails transiently
/// (its member went away) while the lease is surely still alive (within the TTL of the last answer), a new stream
/// is opened, on a member that is up.
pub async fn keep_alive(store: &Store, fence: &Fence, every: std::time::Duration) -> StoreError {
    let lease = fence.lease;
    let etcd = |source| StoreError::Etcd {
        op: "lease keep-alive",
        endpoints: store.endpoints().to_string(),
        source,
    };
    // Until when the lease is known to live (the last answer's TTL): before any answer, not at all.
    let mut alive_until = Instant::now();
    loop {
        let (mut keeper, mut responses) = match store
            .call("lease keep-alive", |mut c| async move {
                c.lease_keep_alive(lease).await
            })
            .await
        {
            Ok(p) => p,
            Err(e) => return e,
        };
        // Why the stream ended, and whether another may be opened.
        let (reopen, failed) = loop {
            if let Err(e) = keeper.keep_alive().await {
                // The stream is gone (its member went away): its requests have nowhere to go.
                break (true, e);
            }
            match responses.message().await {
                Ok(Some(r)) if r.ttl() > 0 => {
                    alive_until = Instant::now() + Duration::from_secs(r.ttl() as u64);
                }
                Ok(Some(_)) => {
                    return etcd(etcd_client::Error::LeaseKeepAliveError(
                        "the lease expired".into(),
                    ))
                }
                Ok(None) => {
                    break (
                        true,
                        etcd_client::Error::LeaseKeepAliveError("etcd closed the keep-alive stream".into()),
                    )
                }
                Err(e) => break (transient(&e), e),
            }
            tokio::time::sleep(every).await;
        };
        if !reopen || Instant::now() + RESEND_PAUSE >= alive_until {
            return etcd(failed);
        }
        tracing::debug!(error = %failed, "lease keep-alive stream failed; opening another");
        tokio::time::sleep(RESEND_PAUSE).await;
    }
}
