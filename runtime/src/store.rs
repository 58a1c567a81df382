//! The reconciler's object store: every manifest file's loaded objects and load errors, in load order, with the
//! indexes an incremental sync needs to find the load balancers a change affects (docs/architecture.md,
//! "Incremental reconcile").
//!
//! Dependencies indexed (what makes load balancer L's device state or validity depend on another object):
//! - a NetworkInterface N can be a target of L when L's selector may match it: L is indexed under one of its
//!   `matchLabels` pairs (any pair will do: a matching interface carries all of them) or, without `matchLabels`,
//!   under its namespace and network; N is looked up under each of its own label pairs and its network;
//! - a LoadBalancerRouting names interfaces: routing → destinations (by name, the seeds' `name` or upstream's
//!   `targetRef.name`, and by address: upstream's `ip` within the routing's network), and the routing belongs to
//!   the load balancer of the same name;
//! - load balancers sharing a VIP (literal or `status.ips`) validate against each other (the first one claims it);
//! - a load balancer's literal VIPs validate against the interfaces of its network (an internal VIP may not be an
//!   interface's address): interfaces are indexed by network and literal address, and an interface edit affects
//!   the load balancers claiming one of its addresses.
//!
//! Networks, Prefixes and NodeUnderlays are few and their changes rare: a change to one takes the full sync.

use crate::api::ObjectKey;
use crate::api::{IpSource, LoadBalancer, LoadBalancerRouting, NetworkInterface, Object, ObjectRef};
use ironlb_api::load::{LoadError, Loaded};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::PathBuf;

/// One manifest file's new content for [`crate::reconcile::Reconciler::apply`].
#[derive(Debug, Clone, PartialEq)]
pub struct FileChange {
    /// The file.
    pub path: PathBuf,
    /// Its objects and load errors; `None` when the file was removed.
    pub content: Option<(Loaded, Vec<LoadError>)>,
}

/// Position of an object: its file and its index among the file's objects (load order).
pub(crate) type Pos = (PathBuf, usize);

/// `(namespace, network name)`.
type NetKey = (String, Option<String>);
/// `(namespace, network name, label key, label value)`.
type LabelKey = (String, Option<String>, String, String);

#[derive(Debug, Default, Clone)]
struct FileEntry {
    objects: Loaded,
    errors: Vec<LoadError>,
}

/// The objects of every file, and indexes over them. See the module documentation.
#[derive(Debug, Default)]
pub(crate) struct Store {
    files: BTreeMap<PathBuf, FileEntry>,
    /// The store's order (files by path, objects in file order) is the order the objects were given in, so a
    /// subset sorted by position validates exactly as within the whole set.
    ordered: bool,
    load_errors: usize,
    idx: Indexes,
}

/// Indexes over the store's objects (see the module documentation).
#[derive(Debug, Default)]
struct Indexes {
    /// Objects per `(kind, namespace, name)`, and how many keys have more than one.
    counts: BTreeMap<ObjectRef, u32>,
    duplicates: usize,
    lbs: BTreeMap<ObjectKey, Pos>,
    lb_by_ip: BTreeMap<IpAddr, BTreeSet<ObjectKey>>,
    lb_by_label: BTreeMap<LabelKey, BTreeSet<ObjectKey>>,
    lb_by_net: BTreeMap<NetKey, BTreeSet<ObjectKey>>,
    nics: BTreeMap<ObjectKey, Pos>,
    nic_by_label: BTreeMap<LabelKey, BTreeSet<ObjectKey>>,
    nic_by_net: BTreeMap<NetKey, BTreeSet<ObjectKey>>,
    /// Interfaces by network and literal address (an internal VIP may not be one of them).
    nic_by_ip: BTreeMap<(NetKey, IpAddr), BTreeSet<ObjectKey>>,
    routings: BTreeMap<ObjectKey, Pos>,
    routing_by_nic: BTreeMap<ObjectKey, BTreeSet<ObjectKey>>,
    /// Routings by network and destination address.
    routing_by_ip: BTreeMap<(NetKey, IpAddr), BTreeSet<ObjectKey>>,
    /// Networks, Prefixes and NodeUnderlays.
    others: BTreeSet<Pos>,
}

fn key_of(o: &Object) -> ObjectKey {
    o.key()
}

fn net_key(ns: &str, r: &Option<crate::api::LocalObjectReference>) -> NetKey {
    (ns.to_string(), r.as_ref().map(|r| r.name.clone()))
}

/// The VIPs a load balancer claims in validation: literal `spec.ips` and `status.ips`.
fn claimed_ips(lb: &LoadBalancer) -> impl Iterator<Item = IpAddr> + '_ {
    lb.spec
        .ips
        .iter()
        .filter_map(|s: &IpSource| s.ip.as_deref())
        .chain(lb.status.ips.iter().map(|s| s.ip.as_str()))
        .filter_map(|s| s.trim().parse().ok())
}

/// A network interface's literal addresses (`spec.ips` and `status.ips`).
fn nic_ips(n: &NetworkInterface) -> impl Iterator<Item = IpAddr> + '_ {
    n.spec
        .ips
        .iter()
        .filter_map(|s: &IpSource| s.ip.as_deref())
        .chain(n.status.ips.iter().map(|s| s.ip.as_str()))
        .filter_map(|s| s.trim().parse().ok())
}

/// A routing's destinations: the interface names and the addresses (with the routing's network).
fn routing_refs(r: &LoadBalancerRouting) -> (Vec<String>, Vec<(NetKey, IpAddr)>) {
    let nk = (
        r.metadata.namespace().to_string(),
        r.network_ref.as_ref().map(|n| n.name.clone()),
    );
    let names = r
        .destinations
        .iter()
        .filter_map(|d| d.interface_name().map(str::to_string))
        .collect();
    let ips = r
        .destinations
        .iter()
        .filter_map(|d| d.ip.as_deref()?.trim().parse().ok())
        .map(|ip| (nk.clone(), ip))
        .collect();
    (names, ips)
}

fn nic_labels(n: &NetworkInterface) -> impl Iterator<Item = LabelKey> + '_ {
    let (ns, net) = net_key(n.metadata.namespace(), &n.spec.network_ref);
    n.metadata
        .labels
        .iter()
        .map(move |(k, v)| (ns.clone(), net.clone(), k.clone(), v.clone()))
}

/// Where a load balancer's selector is indexed: one `matchLabels` pair, or its network.
enum SelectorSlot {
    Label(LabelKey),
    Net(NetKey),
}

fn selector_slot(lb: &LoadBalancer) -> Option<SelectorSlot> {
    let sel = lb.spec.network_interface_selector.as_ref()?;
    let (ns, net) = net_key(lb.metadata.namespace(), &lb.spec.network_ref);
    Some(match sel.match_labels.iter().next() {
        Some((k, v)) => SelectorSlot::Label((ns, net, k.clone(), v.clone())),
        None => SelectorSlot::Net((ns, net)),
    })
}

impl Indexes {
    /// Adds (`add`) or removes the object `o` at `pos`.
    fn update(&mut self, pos: &Pos, o: &Object, add: bool) {
        let key = key_of(o);
        let ck = key.clone().of(o.kind());
        let count = self.counts.entry(ck.clone()).or_default();
        if add {
            *count += 1;
            if *count == 2 {
                self.duplicates += 1;
            }
        } else {
            *count = count.saturating_sub(1);
            if *count == 1 {
                self.duplicates -= 1;
            }
            if *count == 0 {
                self.counts.remove(&ck);
            }
        }
        fn set<K: Ord, V: Ord + Clone>(m: &mut BTreeMap<K, BTreeSet<V>>, k: K, v: &V, add: bool) {
            if add {
                m.entry(k).or_default().insert(v.clone());
            } else if let Some(s) = m.get_mut(&k) {
                s.remove(v);
                if s.is_empty() {
                    m.remove(&k);
                }
            }
        }
        let at = |m: &mut BTreeMap<ObjectKey, Pos>| {
            if add {
                m.insert(key.clone(), pos.clone());
            } else if m.get(&key) == Some(pos) {
                m.remove(&key);
            }
        };
        match o {
            Object::LoadBalancer(lb) => {
                at(&mut self.lbs);
                for ip in claimed_ips(lb) {
                    set(&mut self.lb_by_ip, ip, &key, add);
                }
                match selector_slot(lb) {
                    Some(SelectorSlot::Label(l)) => set(&mut self.lb_by_label, l, &key, add),
                    Some(SelectorSlot::Net(n)) => set(&mut self.lb_by_net, n, &key, add),
                    None => {}
                }
            }
            Object::NetworkInterface(n) => {
                at(&mut self.nics);
                set(
                    &mut self.nic_by_net,
                    net_key(n.metadata.namespace(), &n.spec.network_ref),
                    &key,
                    add,
                );
                for l in nic_labels(n) {
                    set(&mut self.nic_by_label, l, &key, add);
                }
                let nk = net_key(n.metadata.namespace(), &n.spec.network_ref);
                for ip in nic_ips(n) {
                    set(&mut self.nic_by_ip, (nk.clone(), ip), &key, add);
                }
            }
            Object::LoadBalancerRouting(r) => {
                at(&mut self.routings);
                let (names, ips) = routing_refs(r);
                for name in names {
                    set(&mut self.routing_by_nic, key.sibling(name), &key, add);
                }
                for ip in ips {
                    set(&mut self.routing_by_ip, ip, &key, add);
                }
            }
            Object::Network(_) | Object::Prefix(_) | Object::NodeUnderlay(_) => {
                if add {
                    self.others.insert(pos.clone());
                } else {
                    self.others.remove(pos);
                }
            }
        }
    }

    /// Adds the load balancers whose state or validity may depend on `o` to `out`.
    fn dependents(&self, o: &Object, out: &mut BTreeSet<ObjectKey>) {
        let key = key_of(o);
        match o {
            Object::LoadBalancer(_) | Object::LoadBalancerRouting(_) => {
                out.insert(key);
            }
            Object::NetworkInterface(n) => {
                let nk = net_key(n.metadata.namespace(), &n.spec.network_ref);
                out.extend(self.lb_by_net.get(&nk).into_iter().flatten().cloned());
                for ip in nic_ips(n) {
                    out.extend(self.lb_by_ip.get(&ip).into_iter().flatten().cloned());
                }
                for l in nic_labels(n) {
                    out.extend(self.lb_by_label.get(&l).into_iter().flatten().cloned());
                }
                out.extend(self.routing_by_nic.get(&key).into_iter().flatten().cloned());
                for ip in nic_ips(n) {
                    let routings = self.routing_by_ip.get(&(nk.clone(), ip));
                    out.extend(routings.into_iter().flatten().cloned());
                }
            }
            Object::Network(_) | Object::Prefix(_) | Object::NodeUnderlay(_) => {}
        }
    }
}

impl Store {
    /// A store of `objects` (grouped by file) and `errors`.
    pub(crate) fn from_loaded(objects: Loaded, errors: Vec<LoadError>) -> Store {
        let mut s = Store {
            ordered: true,
            ..Store::default()
        };
        let mut last: Option<PathBuf> = None;
        for (path, o) in objects {
            if last.as_ref() != Some(&path) {
                if last.as_ref().is_some_and(|l| *l > path) || s.files.contains_key(&path) {
                    s.ordered = false;
                }
                last = Some(path.clone());
            }
            let entry = s.files.entry(path.clone()).or_default();
            let pos = (path.clone(), entry.objects.len());
            s.idx.update(&pos, &o, true);
            entry.objects.push((path, o));
        }
        for e in errors {
            s.load_errors += 1;
            s.files.entry(e.file.clone()).or_default().errors.push(e);
        }
        s
    }

    /// Every object, in store order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &(PathBuf, Object)> {
        self.files.values().flat_map(|f| f.objects.iter())
    }

    /// Whether a NetworkInterface of this key exists (valid or not).
    pub(crate) fn has_interface(&self, k: &ObjectKey) -> bool {
        self.idx.nics.contains_key(k)
    }

    /// Every load error, in file order.
    pub(crate) fn errors(&self) -> impl Iterator<Item = &LoadError> {
        self.files.values().flat_map(|f| f.errors.iter())
    }

    /// Every object and load error, with `changes` applied (the input of a full sync).
    pub(crate) fn with_changes(&self, changes: &[FileChange]) -> (Loaded, Vec<LoadError>) {
        let mut files: BTreeMap<&PathBuf, (&Loaded, &Vec<LoadError>)> = self
            .files
            .iter()
            .map(|(p, f)| (p, (&f.objects, &f.errors)))
            .collect();
        for c in changes {
            match &c.content {
                Some((o, e)) => files.insert(&c.path, (o, e)),
                None => files.remove(&c.path),
            };
        }
        let mut objects = Vec::new();
        let mut errors = Vec::new();
        for (o, e) in files.into_values() {
            objects.extend(o.iter().cloned());
            errors.extend(e.iter().cloned());
        }
        (objects, errors)
    }

    fn get(&self, pos: &Pos) -> Option<&(PathBuf, Object)> {
        self.files.get(&pos.0)?.objects.get(pos.1)
    }

    fn lb(&self, k: &ObjectKey) -> Option<&LoadBalancer> {
        match self.idx.lbs.get(k).and_then(|p| self.get(p)) {
            Some((_, Object::LoadBalancer(lb))) => Some(lb),
            _ => None,
        }
    }

    /// True when an incremental sync can use this store: its order is the full sync's, no file has load errors
    /// and no object is defined twice.
    pub(crate) fn incremental_ok(&self) -> bool {
        self.ordered && self.load_errors == 0 && self.idx.duplicates == 0
    }

    /// Applies `changes` for an incremental sync. Returns the load balancers affected (with those in `touched`,
    /// closed over shared VIPs)
    /// and the positions of every object their validation and desired state read, in store order. Gives the
    /// changes back (and leaves the store untouched) when they need a full sync: a Network or Prefix changed, a
    /// file has load errors, or the store cannot be used incrementally (see [`Store::incremental_ok`]). The
    /// caller checks [`Store::incremental_ok`] again afterwards (the changes may have defined an object twice).
    pub(crate) fn apply_incremental(
        &mut self,
        changes: Vec<FileChange>,
        touched: BTreeSet<ObjectKey>,
    ) -> Result<(BTreeSet<ObjectKey>, Vec<Pos>), Vec<FileChange>> {
        let structural = |o: &Object| {
            matches!(
                o,
                Object::Network(_) | Object::Prefix(_) | Object::NodeUnderlay(_)
            )
        };
        let eligible = self.incremental_ok()
            && changes.iter().all(|c| {
                let old = self
                    .files
                    .get(&c.path)
                    .map(|f| f.objects.as_slice())
                    .unwrap_or_default();
                let new = c.content.as_ref().map(|(o, _)| o.as_slice()).unwrap_or_default();
                let errs = c.content.as_ref().is_some_and(|(_, e)| !e.is_empty());
                !errs
                    && !old.iter().chain(new).any(|(_, o)| structural(o))
                    && new.iter().all(|(p, _)| *p == c.path)
            });
        if !eligible {
            return Err(changes);
        }
        let mut scope = touched;
        let mut queue: Vec<IpAddr> = Vec::new();
        for c in changes {
            let old = self.files.remove(&c.path).unwrap_or_default().objects;
            let new = c.content.map(|(o, _)| o).unwrap_or_default();
            // An object at the same position with the same content changed nothing.
            let same = |i: usize| old.get(i).is_some_and(|o| Some(o) == new.get(i));
            // Re-index what changed: out with the old objects, in with the new (same position, same content:
            // the index entries stay as they are).
            for (i, (_, o)) in old.iter().enumerate().filter(|(i, _)| !same(*i)) {
                self.idx.update(&(c.path.clone(), i), o, false);
                self.idx.dependents(o, &mut scope);
                if let Object::LoadBalancer(lb) = o {
                    queue.extend(claimed_ips(lb));
                }
            }
            for (i, (_, o)) in new.iter().enumerate().filter(|(i, _)| !same(*i)) {
                self.idx.update(&(c.path.clone(), i), o, true);
            }
            for (_, (_, o)) in new.iter().enumerate().filter(|(i, _)| !same(*i)) {
                self.idx.dependents(o, &mut scope);
            }
            if !new.is_empty() {
                self.files.insert(
                    c.path,
                    FileEntry {
                        objects: new,
                        errors: Vec::new(),
                    },
                );
            }
        }
        // Load balancers sharing a VIP with an affected one validate together: close over them.
        for k in &scope {
            queue.extend(self.lb(k).into_iter().flat_map(claimed_ips));
        }
        let mut seen_ips = BTreeSet::new();
        while let Some(ip) = queue.pop() {
            if !seen_ips.insert(ip) {
                continue;
            }
            for k in self.idx.lb_by_ip.get(&ip).into_iter().flatten() {
                if scope.insert(k.clone()) {
                    queue.extend(self.lb(k).into_iter().flat_map(claimed_ips));
                }
            }
        }
        let positions = self.positions_for(&scope);
        Ok((scope, positions))
    }

    /// Positions of what the load balancers in `scope` read: themselves, their routings and the interfaces those
    /// name or address, the interfaces their selectors may match, and every Network, Prefix and NodeUnderlay; in
    /// store order.
    fn positions_for(&self, scope: &BTreeSet<ObjectKey>) -> Vec<Pos> {
        let idx = &self.idx;
        let mut pos: BTreeSet<Pos> = idx.others.clone();
        let empty = BTreeSet::new();
        for k in scope {
            if let Some(p) = idx.routings.get(k) {
                pos.insert(p.clone());
                if let Some((_, Object::LoadBalancerRouting(r))) = self.get(p) {
                    let (names, ips) = routing_refs(r);
                    for name in names {
                        pos.extend(idx.nics.get(&k.sibling(name)).cloned());
                    }
                    for ip in ips {
                        let same = idx.nic_by_ip.get(&ip).unwrap_or(&empty);
                        pos.extend(same.iter().filter_map(|n| idx.nics.get(n).cloned()));
                    }
                }
            }
            let Some(p) = idx.lbs.get(k) else { continue };
            pos.insert(p.clone());
            let Some(lb) = self.lb(k) else { continue };
            let (ns, net) = net_key(lb.metadata.namespace(), &lb.spec.network_ref);
            // Literal VIPs are checked against the interfaces of the network with the same address.
            for ip in claimed_ips(lb) {
                let same = idx
                    .nic_by_ip
                    .get(&((ns.clone(), net.clone()), ip))
                    .unwrap_or(&empty);
                pos.extend(same.iter().filter_map(|n| idx.nics.get(n).cloned()));
            }
            let Some(sel) = &lb.spec.network_interface_selector else {
                continue;
            };
            let candidates = sel
                .match_labels
                .iter()
                .map(|(lk, lv)| {
                    idx.nic_by_label
                        .get(&(ns.clone(), net.clone(), lk.clone(), lv.clone()))
                        .unwrap_or(&empty)
                })
                .min_by_key(|s| s.len())
                .unwrap_or_else(|| idx.nic_by_net.get(&(ns.clone(), net.clone())).unwrap_or(&empty));
            pos.extend(candidates.iter().filter_map(|n| idx.nics.get(n).cloned()));
        }
        pos.into_iter().collect()
    }

    /// The objects at `positions`.
    pub(crate) fn objects_at<'a>(&'a self, positions: &[Pos]) -> Vec<&'a (PathBuf, Object)> {
        positions.iter().filter_map(|p| self.get(p)).collect()
    }
}
