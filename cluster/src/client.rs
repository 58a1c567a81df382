//! The store for synchronous callers (the `ironlb` CLI): each call runs on a private current-thread tokio runtime.
//!
//! [`Client::apply`] and [`Client::delete`] list the store, plan with [`crate::write`] (validation first) and
//! commit with per-object revision checks. When a commit meets a conflict on objects whose revision the caller did
//! not pin (no `resourceVersion` in the manifest), the store is listed and planned again, up to
//! [`APPLY_ATTEMPTS`] times, as `kubectl apply` does; a conflict on a pinned revision is reported at once.

use crate::settings::EtcdConfig;
use crate::store::{Listing, Store, StoreError, Stored};
use crate::write::{self, Incoming, Plan, Refusal};
use ironlb_api::ObjectRef;

/// Attempts of an apply or delete whose commit meets conflicts on unpinned objects.
pub const APPLY_ATTEMPTS: usize = 3;

/// Why an apply or delete wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Refused before writing (invalid objects, duplicates, stale resourceVersion, missing objects).
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The store failed, or objects kept changing under the write.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A connected store with its own runtime.
#[derive(Debug)]
pub struct Client {
    rt: tokio::runtime::Runtime,
    store: Store,
}

impl Client {
    /// Connects (bounded by the configuration's timeout).
    pub fn connect(cfg: &EtcdConfig) -> Result<Client, StoreError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime builds");
        let store = rt.block_on(Store::connect(cfg))?;
        Ok(Client { rt, store })
    }

    /// The async store (to run other operations on [`Client::block_on`]).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Runs a future on this client's runtime.
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// Every object, at the current revision.
    pub fn list(&self) -> Result<Listing, StoreError> {
        self.rt.block_on(self.store.list(None))
    }

    /// One object.
    pub fn get(&self, r: &ObjectRef) -> Result<Option<Stored>, StoreError> {
        self.rt.block_on(self.store.get(r))
    }

    /// Validates and writes `incoming`; returns the plan that was committed.
    pub fn apply(&self, incoming: Vec<Incoming>) -> Result<Plan, WriteError> {
        let pinned = incoming.iter().any(|i| i.resource_version.is_some());
        self.retry(pinned, |l| write::plan_apply(l, incoming.clone()))
    }

    /// Deletes `refs` (all or nothing); returns the plan that was committed.
    pub fn delete(&self, refs: Vec<ObjectRef>, ignore_missing: bool) -> Result<Plan, WriteError> {
        self.retry(false, |l| write::plan_delete(l, refs.clone(), ignore_missing))
    }

    fn retry(
        &self,
        pinned: bool,
        plan: impl Fn(&Listing) -> Result<Plan, Refusal>,
    ) -> Result<Plan, WriteError> {
        let mut attempt = 1;
        loop {
            let listing = self.list()?;
            let p = plan(&listing)?;
            match self.rt.block_on(self.store.commit(&p.writes)) {
                Ok(_) => return Ok(p),
                Err(StoreError::Conflict(c)) if !pinned && attempt < APPLY_ATTEMPTS => {
                    tracing::info!(
                        attempt,
                        conflicts = c.len(),
                        "objects changed while writing; planning again"
                    );
                    attempt += 1;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}
