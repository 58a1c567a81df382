//! The object store on etcd: list, get and transactional writes with optimistic concurrency (docs/cluster.md).
//!
//! Every request is bounded by the configured timeout; a timeout or an etcd error is a [`StoreError`] naming the
//! operation and the endpoints. Within that bound a request that met a member which is down, or a cluster between
//! two leaders, is sent again ([`Store::call`]): with several endpoints, one member of three going away is not an
//! error for ironlb. A write names the revision it expects each object to have ([`Expect`]); a
//! transaction whose expectations do not all hold writes nothing and fails with [`StoreError::Conflict`], listing
//! each object that changed.

use crate::alloc::Allocation;
use crate::codec::{self, DecodeError};
use crate::layout::Layout;
use crate::settings::EtcdConfig;
use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, GetOptions, GetResponse, Identity, TlsOptions,
    Txn, TxnOp, TxnResponse,
};
use ironlb_api::{Object, ObjectKey, ObjectRef};
use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// etcd's default limit on the operations of one transaction (`--max-txn-ops`); larger writes are split.
pub const MAX_TXN_OPS: usize = 128;

/// The most bytes of keys and values ironlb puts in one transaction: below etcd's default limit on one request
/// (`--max-request-bytes`, 1.5 MiB), with room for the comparisons and framing. A single write larger than this is
/// a transaction of its own.
pub const MAX_TXN_BYTES: usize = 1 << 20;

/// Keys per page of a [`Store::list`].
pub const LIST_PAGE: i64 = 128;

/// The largest answer a page of a listing may be: [`LIST_PAGE`] values at etcd's default limit on one request
/// (`--max-request-bytes`, 1.5 MiB) fit, where gRPC's default (4 MiB) would fail a page of a few large objects.
pub const MAX_ANSWER_BYTES: usize = 256 << 20;

/// Pause before a request is sent again after a transient failure ([`transient`]); it doubles up to
/// [`RESEND_MAX_PAUSE`], all within the request's timeout.
pub const RESEND_PAUSE: Duration = Duration::from_millis(20);

/// Longest pause between two sends of one request.
pub const RESEND_MAX_PAUSE: Duration = Duration::from_millis(500);

/// One object as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    /// The object.
    pub object: Object,
    /// Its resourceVersion: the key's `mod_revision`.
    pub revision: i64,
}

/// A key under the prefix whose value is not an object ironlb reads (written by something else).
#[derive(Debug, Clone, PartialEq)]
pub struct Undecodable {
    /// The etcd key.
    pub key: String,
    /// Why.
    pub error: DecodeError,
}

/// Every object (and allocation record) under the prefix at one revision.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Listing {
    /// The objects, by reference.
    pub objects: BTreeMap<ObjectRef, Stored>,
    /// The allocation records, by LoadBalancer, with their revisions.
    pub allocations: BTreeMap<ObjectKey, (Allocation, i64)>,
    /// The store's revision the listing was read at (or, followed by a watch, last brought up to).
    pub revision: i64,
    /// Values that are not objects (or allocation records).
    pub undecodable: Vec<Undecodable>,
}

impl Listing {
    /// Takes in the value of `key` at `mod_revision` (a listed key, or a watch's put). Keys that are neither
    /// objects nor allocation records are ignored.
    pub fn absorb(&mut self, layout: &Layout, key: &str, value: &[u8], mod_revision: i64) {
        self.undecodable.retain(|u| u.key != key);
        if let Some(r) = layout.parse_key(key) {
            match decode_at(&r, value) {
                Ok(object) => {
                    self.objects.insert(
                        r,
                        Stored {
                            object,
                            revision: mod_revision,
                        },
                    );
                }
                Err(error) => {
                    // The last good value stays; the problem is reported.
                    self.undecodable.push(Undecodable {
                        key: key.to_string(),
                        error,
                    })
                }
            }
        } else if let Some(lb) = layout.parse_allocation_key(key) {
            match Allocation::decode(value) {
                Ok(a) => {
                    self.allocations.insert(lb, (a, mod_revision));
                }
                Err(e) => self.undecodable.push(Undecodable {
                    key: key.to_string(),
                    error: DecodeError::Json(e),
                }),
            }
        }
    }

    /// Forgets `key` (a watch's delete).
    pub fn forget(&mut self, layout: &Layout, key: &str) {
        self.undecodable.retain(|u| u.key != key);
        if let Some(r) = layout.parse_key(key) {
            self.objects.remove(&r);
        } else if let Some(lb) = layout.parse_allocation_key(key) {
            self.allocations.remove(&lb);
        }
    }
}

/// What a write expects of the object's current revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// The object does not exist (a create).
    Absent,
    /// The object exists at exactly this revision.
    Revision(i64),
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expect::Absent => f.write_str("absent"),
            Expect::Revision(r) => write!(f, "at resourceVersion {r}"),
        }
    }
}

/// One write of a transaction.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// Create or replace an object.
    Put {
        /// The object (boxed: objects are large, deletes are small).
        object: Box<Object>,
        /// What its key must hold now.
        expect: Expect,
    },
    /// Delete an object.
    Delete {
        /// The object.
        object: ObjectRef,
        /// The revision it must have now.
        revision: i64,
    },
}

impl Write {
    /// The object written.
    pub fn object_ref(&self) -> ObjectRef {
        match self {
            Write::Put { object, .. } => object.object_ref(),
            Write::Delete { object, .. } => object.clone(),
        }
    }

    fn expect(&self) -> Expect {
        match self {
            Write::Put { expect, .. } => *expect,
            Write::Delete { revision, .. } => Expect::Revision(*revision),
        }
    }
}

/// An object that was not as a write expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The object.
    pub object: ObjectRef,
    /// What the write expected.
    pub expected: Expect,
    /// Its revision now (`None`: absent).
    pub found: Option<i64>,
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let found = match self.found {
            Some(r) => format!("it is at resourceVersion {r}"),
            None => "it does not exist".to_string(),
        };
        write!(f, "{}: expected {}, but {found}", self.object, self.expected)
    }
}

/// A failed store operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A TLS file cannot be read.
    #[error("etcd {what} {}: {source}", path.display())]
    TlsFile {
        /// `CA certificate`, `client certificate` or `client key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// etcd answered with an error, or could not be reached.
    #[error("etcd {endpoints}: {op}: {source}")]
    Etcd {
        /// The operation.
        op: &'static str,
        /// The endpoints.
        endpoints: String,
        /// The client's error.
        #[source]
        source: etcd_client::Error,
    },
    /// No answer in time.
    #[error("etcd {endpoints}: {op}: no answer within {waited:?}")]
    Timeout {
        /// The operation.
        op: &'static str,
        /// The endpoints.
        endpoints: String,
        /// How long it waited.
        waited: Duration,
    },
    /// Objects changed since they were read: nothing was written.
    #[error("conflict, nothing written: {}", list(.0))]
    Conflict(Vec<Conflict>),
}

fn list(c: &[Conflict]) -> String {
    c.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

/// A connection to the store.
#[derive(Clone)]
pub struct Store {
    client: Client,
    layout: Layout,
    endpoints: String,
    timeout: Duration,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.layout.prefix())
            .finish()
    }
}

fn read(what: &'static str, path: &PathBuf) -> Result<Vec<u8>, StoreError> {
    std::fs::read(path).map_err(|source| StoreError::TlsFile {
        what,
        path: path.clone(),
        source,
    })
}

impl Store {
    /// Connects (bounded by the configured timeout). The client key is read here and given to the TLS stack only.
    pub async fn connect(cfg: &EtcdConfig) -> Result<Store, StoreError> {
        let endpoints = cfg.endpoints.join(",");
        let mut opts = ConnectOptions::new()
            .with_connect_timeout(cfg.timeout)
            .with_timeout(cfg.timeout)
            .with_keep_alive(Duration::from_secs(10), cfg.timeout);
        if let Some(tls) = &cfg.tls {
            let mut t = TlsOptions::new();
            if let Some(ca) = &tls.ca {
                t = t.ca_certificate(Certificate::from_pem(read("CA certificate", ca)?));
            }
            if let Some((cert, key)) = &tls.identity {
                t = t.identity(Identity::from_pem(
                    read("client certificate", cert)?,
                    read("client key", key)?,
                ));
            }
            opts = opts.with_tls(t);
        }
        let client = resend("connect", &endpoints, cfg.timeout, || {
            Client::connect(&cfg.endpoints, Some(opts.clone()))
        })
        .await?;
        Ok(Store {
            client,
            layout: cfg.layout.clone(),
            endpoints,
            timeout: cfg.timeout,
        })
    }

    /// The key layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The endpoints, for messages.
    pub fn endpoints(&self) -> &str {
        &self.endpoints
    }

    /// The etcd client (for watches and leases, which outlive one request).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Runs one request, `request` making it on a handle of the client, within the configured timeout; a
    /// transient failure (a member down, no leader for a moment: [`transient`]) is sent again after a short pause,
    /// and the balanced channel takes a member at random for each send, so with several endpoints a resend reaches
    /// one that is up.
    pub async fn call<T, F>(
        &self,
        op: &'static str,
        mut request: impl FnMut(Client) -> F,
    ) -> Result<T, StoreError>
    where
        F: Future<Output = Result<T, etcd_client::Error>>,
    {
        resend(op, &self.endpoints, self.timeout, || request(self.client.clone())).await
    }

    /// A transaction ([`Store::call`]).
    pub async fn txn(&self, op: &'static str, txn: Txn) -> Result<TxnResponse, StoreError> {
        self.call(op, |mut c| {
            let txn = txn.clone();
            async move { c.txn(txn).await }
        })
        .await
    }

    /// A read of `key` ([`Store::call`]).
    pub async fn get_key(
        &self,
        op: &'static str,
        key: &str,
        opts: Option<GetOptions>,
    ) -> Result<GetResponse, StoreError> {
        self.call(op, |mut c| {
            let (key, opts) = (key.to_string(), opts.clone());
            async move { c.get(key, opts).await }
        })
        .await
    }

    /// Every object under the prefix, at one revision (`at`: that past revision; `None`: now). Read in pages of
    /// [`LIST_PAGE`] keys, the first page choosing the revision and every later one read at it, so the listing is
    /// one consistent cut of the store however large it is (a single answer for a fleet's store would pass the
    /// gRPC limit on one message, and hold etcd up while it is made).
    pub async fn list(&self, at: Option<i64>) -> Result<Listing, StoreError> {
        let prefix = self.layout.prefix().as_bytes();
        let end = prefix_end(prefix);
        let mut from = prefix.to_vec();
        let mut listing = Listing {
            revision: at.unwrap_or(0),
            ..Listing::default()
        };
        loop {
            let opts = GetOptions::new()
                .with_range(end.clone())
                .with_limit(LIST_PAGE)
                .with_revision(listing.revision);
            let resp = self
                .call("list", |c| {
                    let (from, opts) = (from.clone(), opts.clone());
                    async move {
                        c.kv_client()
                            .max_decoding_message_size(MAX_ANSWER_BYTES)
                            .get(from, Some(opts))
                            .await
                    }
                })
                .await?;
            if listing.revision <= 0 {
                listing.revision = resp.header().map_or(0, |h| h.revision());
            }
            for kv in resp.kvs() {
                let key = String::from_utf8_lossy(kv.key());
                listing.absorb(&self.layout, &key, kv.value(), kv.mod_revision());
            }
            match resp.kvs().last() {
                Some(last) if resp.more() => {
                    // The next page starts right after the last key read.
                    from = last.key().to_vec();
                    from.push(0);
                }
                _ => return Ok(listing),
            }
        }
    }

    /// One object, if stored.
    pub async fn get(&self, r: &ObjectRef) -> Result<Option<Stored>, StoreError> {
        let key = self.layout.object_key(r);
        let resp = self.get_key("get", &key, None).await?;
        let Some(kv) = resp.kvs().first() else {
            return Ok(None);
        };
        match decode_at(r, kv.value()) {
            Ok(object) => Ok(Some(Stored {
                object,
                revision: kv.mod_revision(),
            })),
            Err(error) => {
                tracing::warn!(%key, %error, "stored value is not an object ironlb reads");
                Ok(None)
            }
        }
    }

    /// Writes the allocation record of LoadBalancer `lb` if its record is as `expect` says (a create: absent);
    /// returns whether it was written.
    pub async fn put_allocation(
        &self,
        lb: &ObjectKey,
        a: &Allocation,
        expect: Expect,
    ) -> Result<bool, StoreError> {
        let key = self.layout.allocation_key(lb);
        let cmp = match expect {
            Expect::Absent => Compare::create_revision(key.as_bytes(), CompareOp::Equal, 0),
            Expect::Revision(r) => Compare::mod_revision(key.as_bytes(), CompareOp::Equal, r),
        };
        let txn = Txn::new()
            .when(vec![cmp])
            .and_then(vec![TxnOp::put(key.as_bytes(), a.encode(), None)]);
        Ok(self.txn("transaction", txn).await?.succeeded())
    }

    /// Performs `writes`, each only if its object is as expected; returns the store's revision after the last
    /// write. Writes are grouped into transactions (each all or nothing) of at most [`MAX_TXN_OPS`] writes and
    /// [`MAX_TXN_BYTES`] of keys and values, in order, stopping at the first that fails.
    pub async fn commit(&self, writes: &[Write]) -> Result<i64, StoreError> {
        let encoded: Vec<(String, Option<Vec<u8>>)> = writes
            .iter()
            .map(|w| {
                let value = match w {
                    Write::Put { object, .. } => Some(codec::encode(object)),
                    Write::Delete { .. } => None,
                };
                (self.layout.object_key(&w.object_ref()), value)
            })
            .collect();
        let shares: Vec<TxnShare> = encoded
            .iter()
            .map(|(k, v)| TxnShare::write(k.len() + v.as_ref().map_or(0, Vec::len)))
            .collect();
        let mut revision = 0;
        let mut start = 0;
        for end in txn_ends(&shares, 0) {
            revision = self.commit_one(&writes[start..end], &encoded[start..end]).await?;
            start = end;
        }
        Ok(revision)
    }

    async fn commit_one(
        &self,
        writes: &[Write],
        encoded: &[(String, Option<Vec<u8>>)],
    ) -> Result<i64, StoreError> {
        let mut compares = Vec::with_capacity(writes.len());
        let mut ops = Vec::with_capacity(writes.len());
        for (w, (key, value)) in writes.iter().zip(encoded) {
            compares.push(match w.expect() {
                Expect::Absent => Compare::create_revision(key.as_bytes(), CompareOp::Equal, 0),
                Expect::Revision(r) => Compare::mod_revision(key.as_bytes(), CompareOp::Equal, r),
            });
            ops.push(match value {
                Some(v) => TxnOp::put(key.as_bytes(), v.clone(), None),
                None => TxnOp::delete(key.as_bytes(), None),
            });
        }
        let txn = Txn::new().when(compares).and_then(ops);
        let resp = self.txn("transaction", txn).await?;
        if resp.succeeded() {
            return Ok(resp.header().map_or(0, |h| h.revision()));
        }
        let mut conflicts = Vec::new();
        for w in writes {
            let r = w.object_ref();
            let key = self.layout.object_key(&r);
            let now = self.get_key("get", &key, None).await?;
            let found = now.kvs().first().map(|kv| kv.mod_revision());
            let expected = w.expect();
            let holds = match expected {
                Expect::Absent => found.is_none(),
                Expect::Revision(e) => found == Some(e),
            };
            if !holds {
                conflicts.push(Conflict {
                    object: r,
                    expected,
                    found,
                });
            }
        }
        Err(StoreError::Conflict(conflicts))
    }
}

/// What one write, or one object's share of a transaction, adds to the transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnShare {
    /// Conditions.
    pub compares: usize,
    /// Writes.
    pub ops: usize,
    /// Bytes of keys and values written.
    pub bytes: usize,
}

impl TxnShare {
    /// One conditional write of `bytes`.
    pub fn write(bytes: usize) -> TxnShare {
        TxnShare {
            compares: 1,
            ops: 1,
            bytes,
        }
    }
}

/// Where each transaction ends when `shares` are cut into as few as etcd takes, each also carrying `reserved`
/// conditions of its own (a leader's fence): as many shares as fit [`MAX_TXN_OPS`] conditions, [`MAX_TXN_OPS`]
/// writes and [`MAX_TXN_BYTES`], at least one.
pub fn txn_ends(shares: &[TxnShare], reserved: usize) -> Vec<usize> {
    let mut ends = Vec::new();
    let mut start = 0;
    let mut sum = TxnShare {
        compares: reserved,
        ops: 0,
        bytes: 0,
    };
    for (i, s) in shares.iter().enumerate() {
        let fits = sum.compares + s.compares <= MAX_TXN_OPS
            && sum.ops + s.ops <= MAX_TXN_OPS
            && sum.bytes + s.bytes <= MAX_TXN_BYTES;
        if i > start && !fits {
            ends.push(i);
            start = i;
            sum = TxnShare {
                compares: reserved,
                ops: 0,
                bytes: 0,
            };
        }
        sum.compares += s.compares;
        sum.ops += s.ops;
        sum.bytes += s.bytes;
    }
    if start < shares.len() {
        ends.push(shares.len());
    }
    ends
}

/// The end of the key range of every key that starts with `prefix`: the prefix with its last byte below 0xff
/// increased and what follows dropped (a prefix of 0xff bytes only, or none, has no end: `\0` asks etcd for every
/// key from the start).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    match prefix.iter().rposition(|b| *b < 0xff) {
        Some(i) => {
            let mut end = prefix[..=i].to_vec();
            end[i] += 1;
            end
        }
        None => vec![0],
    }
}

/// The object stored under `r`'s key, which must be `r` itself (a value naming another object is refused).
fn decode_at(r: &ObjectRef, bytes: &[u8]) -> Result<Object, DecodeError> {
    let object = codec::decode(bytes)?;
    if object.object_ref() != *r {
        return Err(DecodeError::Json(format!(
            "the value is {}, not the object its key names ({r})",
            object.object_ref()
        )));
    }
    Ok(object)
}

/// Whether a request that failed with `e` may be sent again: etcd answered `Unavailable` (a member that is down or
/// stopping, a cluster between two leaders, no quorum yet), or the request failed below gRPC, on its connection (a
/// member killed while it was answering: such a status is made on this side and carries the failure as its
/// source, whatever its code, while an answer from etcd never has a source).
///
/// Sending again is safe for every request ironlb makes: reads repeat, and every write is a transaction
/// conditioned on revisions (a create on the key being absent), so a write that was applied but whose answer was
/// lost fails its conditions when sent again — it is reported as a conflict, which callers already handle by
/// planning again, and is never applied twice. (A lease grant sent again may leave an unused lease, which expires.)
pub fn transient(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => true,
        etcd_client::Error::GRpcStatus(s) => {
            s.code() == tonic::Code::Unavailable || std::error::Error::source(s).is_some()
        }
        _ => false,
    }
}

/// Sends `request` until it succeeds, fails with an error that is not [`transient`], or `timeout` has passed
/// since the first send (pauses from [`RESEND_PAUSE`] doubling to [`RESEND_MAX_PAUSE`] in between).
async fn resend<T, F>(
    op: &'static str,
    endpoints: &str,
    timeout: Duration,
    mut request: impl FnMut() -> F,
) -> Result<T, StoreError>
where
    F: Future<Output = Result<T, etcd_client::Error>>,
{
    let deadline = Instant::now() + timeout;
    let mut pause = RESEND_PAUSE;
    loop {
        let source = match tokio::time::timeout_at(deadline.into(), request()).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(source)) => source,
            Err(_) => {
                return Err(StoreError::Timeout {
                    op,
                    endpoints: endpoints.to_string(),
                    waited: timeout,
                })
            }
        };
        if !transient(&source) || Instant::now() + pause >= deadline {
            return Err(StoreError::Etcd {
                op,
                endpoints: endpoints.to_string(),
                source,
            });
        }
        tracing::debug!(op, %endpoints, error = %source, ?pause, "etcd request failed; sending it again");
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(RESEND_MAX_PAUSE);
    }
}

#[cfg(test)]
mod tests {
    use super::{prefix_end, transient, txn_ends, TxnShare, MAX_TXN_BYTES, MAX_TXN_OPS};
    use etcd_client::Error;
    use tonic::{Code, Status};

    #[test]
    fn transactions_are_cut_at_the_condition_write_and_byte_limits() {
        let w = |bytes| TxnShare::write(bytes);
        let ends = |v: &[TxnShare]| txn_ends(v, 0);
        assert_eq!(ends(&[]), Vec::<usize>::new());
        assert_eq!(ends(&[w(10); 3]), [3]);
        assert_eq!(
            ends(&vec![w(10); 2 * MAX_TXN_OPS + 1]),
            [MAX_TXN_OPS, 2 * MAX_TXN_OPS, 2 * MAX_TXN_OPS + 1]
        );
        // Bytes: three writes of 0.4 MiB make two transactions; a write above the limit goes alone.
        let big = MAX_TXN_BYTES * 2 / 5;
        assert_eq!(ends(&[w(big), w(big), w(big)]), [2, 3]);
        assert_eq!(ends(&[w(10), w(2 * MAX_TXN_BYTES), w(10)]), [1, 2, 3]);
        // Exactly at the limit fits.
        let half = MAX_TXN_BYTES / 2;
        assert_eq!(ends(&[w(half), w(half), w(1)]), [2, 3]);
        // Shares of five conditions and four writes, with a fence: 25 fit (1 + 125 conditions), not 26.
        let lb = TxnShare {
            compares: 5,
            ops: 4,
            bytes: 100,
        };
        assert_eq!(txn_ends(&[lb; 30], 1), [25, 30]);
        assert_eq!(txn_ends(&[lb; 30], 0), [25, 30]);
        let wide = TxnShare {
            compares: 1,
            ops: 3,
            bytes: 100,
        };
        assert_eq!(txn_ends(&[wide; 50], 1), [42, 50]);
    }

    #[test]
    fn a_prefix_range_ends_after_its_last_key() {
        assert_eq!(prefix_end(b"/ironlb/"), b"/ironlb0");
        assert_eq!(prefix_end(b"a\xff\xff"), b"b");
        assert_eq!(prefix_end(b"\xff"), b"\0");
        assert_eq!(prefix_end(b""), b"\0");
    }

    #[test]
    fn unavailable_and_failed_connections_are_sent_again_answers_are_not() {
        // etcd's answers: a member between leaders, or stopping, is Unavailable; the rest are final.
        assert!(transient(&Error::GRpcStatus(Status::unavailable(
            "etcdserver: leader changed"
        ))));
        assert!(!transient(&Error::GRpcStatus(Status::new(
            Code::NotFound,
            "etcdserver: requested lease not found"
        ))));
        assert!(!transient(&Error::GRpcStatus(Status::new(
            Code::Unknown,
            "an answer"
        ))));
        // A failure of the connection under a request: made on this side, with the failure as its source.
        let mut broken = Status::new(
            Code::Unknown,
            "h2 protocol error: error reading a body from connection",
        );
        broken.set_source(std::sync::Arc::new(std::io::Error::from(
            std::io::ErrorKind::BrokenPipe,
        )));
        assert!(transient(&Error::GRpcStatus(broken)));
        assert!(transient(&Error::IoError(
            std::io::ErrorKind::ConnectionReset.into()
        )));
        // The client's own errors are not.
        assert!(!transient(&Error::WatchError("bad request".into())));
        assert!(!transient(&Error::InvalidArgs("empty endpoints".into())));
    }
}
