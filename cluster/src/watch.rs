//! Following the store (docs/cluster.md "Agents"): list everything at one revision, then watch from the next
//! revision, so no change is missed or seen twice.
//!
//! [`follow`] ends when the watch cannot go on: [`FollowEnd::Compacted`] when etcd compacted past the revision the
//! watch needed (the caller lists again: a *relist*, which resyncs), or an error when etcd went away (the caller
//! retries with backoff and keeps what it has). The callback sees the whole [`Listing`] after the initial list and
//! after every watch response, so a consumer never sees half of one transaction.

use crate::store::{transient, Listing, Store, StoreError};
use etcd_client::{EventType, WatchOptions, WatchStream};

/// Why [`follow`] returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FollowEnd {
    /// etcd compacted its history past the revision the watch needed: list again.
    Compacted {
        /// The oldest revision etcd still has.
        compact_revision: i64,
    },
    /// etcd cancelled the watch for another reason, or closed its stream.
    Lost(String),
}

/// Lists the store and calls `on_change` with the listing, then watches from the listing's revision + 1 and calls
/// `on_change` after each batch of events, until the watch ends. `start` is the listing to start from instead of
/// a fresh list (a resumed watch), or `None`. A watch stream that worked and then failed or closed (its member went
/// away) is opened again from the next revision, on a member that is up; only when that fails does `follow` end.
pub async fn follow(
    store: &Store,
    start: Option<Listing>,
    mut on_change: impl FnMut(&Listing),
) -> Result<FollowEnd, StoreError> {
    let mut f = Follower::start(store, start).await?;
    on_change(f.listing());
    loop {
        match f.next().await? {
            Step::Changed => on_change(f.listing()),
            Step::Quiet => {}
            Step::Ended(end) => return Ok(end),
        }
    }
}

/// What one watch answer did to a [`Follower`]'s listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Keys changed.
    Changed,
    /// Nothing changed (a progress notification, or a stream opened again).
    Quiet,
    /// The watch cannot go on.
    Ended(FollowEnd),
}

/// A listing kept up to date by a watch, one answer at a time ([`Follower::next`]): [`follow`] for a caller that
/// does its own work between answers (the controller plans a round on the listing, then takes in what changed).
pub struct Follower {
    store: Store,
    listing: Listing,
    stream: WatchStream,
    /// Whether the current stream has answered: one that fails, or is closed, after it did (its member went away)
    /// is opened again from where it stopped, on a member that is up; one that never answered is not.
    answered: bool,
}

impl std::fmt::Debug for Follower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Follower")
            .field("revision", &self.listing.revision)
            .finish_non_exhaustive()
    }
}

impl Follower {
    /// Lists the store (or starts from `start`) and watches from the listing's revision + 1.
    pub async fn start(store: &Store, start: Option<Listing>) -> Result<Follower, StoreError> {
        let listing = match start {
            Some(l) => l,
            None => store.list(None).await?,
        };
        let stream = watch_from(store, listing.revision + 1).await?;
        Ok(Follower {
            store: store.clone(),
            listing,
            stream,
            answered: false,
        })
    }

    /// The listing as of the last answer taken in.
    pub fn listing(&self) -> &Listing {
        &self.listing
    }

    /// Waits for the next watch answer and takes it in. Cancel-safe: dropped while it waits, it has taken in
    /// nothing, and the next call waits for the same answer.
    pub async fn next(&mut self) -> Result<Step, StoreError> {
        let msg = self.stream.message().await;
        let resume = match &msg {
            Err(e) => self.answered && transient(e),
            Ok(None) => self.answered,
            Ok(Some(_)) => false,
        };
        if resume {
            tracing::debug!(revision = self.listing.revision, "watch stream lost; resuming it");
            self.stream = watch_from(&self.store, self.listing.revision + 1).await?;
            self.answered = false;
            return Ok(Step::Quiet);
        }
        let resp = match msg {
            Ok(Some(resp)) => resp,
            Ok(None) => {
                return Ok(Step::Ended(FollowEnd::Lost(
                    "etcd closed the watch stream".into(),
                )))
            }
            Err(source) => {
                return Err(StoreError::Etcd {
                    op: "watch",
                    endpoints: self.store.endpoints().to_string(),
                    source,
                })
            }
        };
        self.answered = true;
        if resp.compact_revision() > 0 {
            return Ok(Step::Ended(FollowEnd::Compacted {
                compact_revision: resp.compact_revision(),
            }));
        }
        if resp.canceled() {
            return Ok(Step::Ended(FollowEnd::Lost(format!(
                "watch cancelled: {}",
                resp.cancel_reason()
            ))));
        }
        let layout = self.store.layout();
        for ev in resp.events() {
            let Some(kv) = ev.kv() else { continue };
            let key = String::from_utf8_lossy(kv.key());
            match ev.event_type() {
                EventType::Put => self.listing.absorb(layout, &key, kv.value(), kv.mod_revision()),
                EventType::Delete => self.listing.forget(layout, &key),
            }
        }
        if let Some(h) = resp.header() {
            self.listing.revision = self.listing.revision.max(h.revision());
        }
        Ok(if resp.events().is_empty() {
            Step::Quiet
        } else {
            Step::Changed
        })
    }
}

/// A watch of the whole prefix from `revision` ([`Store::call`]: a member that is down is passed over).
async fn watch_from(store: &Store, revision: i64) -> Result<WatchStream, StoreError> {
    let opts = WatchOptions::new()
        .with_prefix()
        .with_start_revision(revision)
        .with_progress_notify();
    let prefix = store.layout().prefix().to_string();
    store
        .call("watch", |c| {
            let (prefix, opts) = (prefix.clone(), opts.clone());
            // etcd sends a watcher that is catching up many revisions in one answer: the listing's limit.
            async move {
                c.watch_client()
                    .max_decoding_message_size(crate::store::MAX_ANSWER_BYTES)
                    .watch(prefix, Some(opts))
                    .await
            }
        })
        .await
}
