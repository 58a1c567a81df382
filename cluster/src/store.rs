//! The object store on etcd: list, get and transactional writes with optimistic concurrency (docs/cluster.md).
//!
//! Every request is bounded by the configured timeout; a timeout or an etcd error is a [`StoreError`] naming the
//! operation and the endpoints. A write names the revision it expects each object to have ([`Expect`]); a
//! transaction whose expectations do not all hold writes nothing and fails with [`StoreError::Conflict`], listing
//! each object that changed.

use crate::alloc::Allocation;
use crate::codec::{self, DecodeError};
use crate::layout::Layout;
use crate::settings::EtcdConfig;
use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, GetOptions, Identity, TlsOptions, Txn, TxnOp,
};
use ironlb_api::{Object, ObjectKey, ObjectRef};
use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

/// etcd's default limit on the operations of one transaction (`--max-txn-ops`); larger writes are split.
pub const MAX_TXN_OPS: usize = 128;

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
        let client = bounded(
            "connect",
            &endpoints,
            cfg.timeout,
            Client::connect(&cfg.endpoints, Some(opts)),
        )
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

    async fn call<T>(
        &self,
        op: &'static str,
        fut: impl Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T, StoreError> {
        bounded(op, &self.endpoints, self.timeout, fut).await
    }

    /// Every object under the prefix, at one revision (`at`: that past revision; `None`: now).
    pub async fn list(&self, at: Option<i64>) -> Result<Listing, StoreError> {
        let mut kv = self.client.kv_client();
        let mut opts = GetOptions::new().with_prefix();
        if let Some(r) = at {
            opts = opts.with_revision(r);
        }
        let resp = self
            .call("list", kv.get(self.layout.prefix(), Some(opts)))
            .await?;
        let revision = resp.header().map_or(0, |h| h.revision());
        let mut listing = Listing {
            revision,
            ..Listing::default()
        };
        for kv in resp.kvs() {
            let key = String::from_utf8_lossy(kv.key());
            listing.absorb(&self.layout, &key, kv.value(), kv.mod_revision());
        }
        Ok(listing)
    }

    /// One object, if stored.
    pub async fn get(&self, r: &ObjectRef) -> Result<Option<Stored>, StoreError> {
        let mut kv = self.client.kv_client();
        let key = self.layout.object_key(r);
        let resp = self.call("get", kv.get(key.as_bytes(), None)).await?;
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
        let mut kv = self.client.kv_client();
        Ok(self.call("transaction", kv.txn(txn)).await?.succeeded())
    }

    /// Performs `writes`, each only if its object is as expected; returns the store's revision after the last
    /// write. Up to [`MAX_TXN_OPS`] writes are one transaction (all or nothing); more are split into transactions
    /// of that size, in order, stopping at the first that fails.
    pub async fn commit(&self, writes: &[Write]) -> Result<i64, StoreError> {
        let mut revision = 0;
        for chunk in writes.chunks(MAX_TXN_OPS) {
            revision = self.commit_one(chunk).await?;
        }
        Ok(revision)
    }

    async fn commit_one(&self, writes: &[Write]) -> Result<i64, StoreError> {
        let mut compares = Vec::with_capacity(writes.len());
        let mut ops = Vec::with_capacity(writes.len());
        for w in writes {
            let key = self.layout.object_key(&w.object_ref());
            compares.push(match w.expect() {
                Expect::Absent => Compare::create_revision(key.as_bytes(), CompareOp::Equal, 0),
                Expect::Revision(r) => Compare::mod_revision(key.as_bytes(), CompareOp::Equal, r),
            });
            ops.push(match w {
                Write::Put { object, .. } => TxnOp::put(key.as_bytes(), codec::encode(object), None),
                Write::Delete { .. } => TxnOp::delete(key.as_bytes(), None),
            });
        }
        let txn = Txn::new().when(compares).and_then(ops);
        let mut kv = self.client.kv_client();
        let resp = self.call("transaction", kv.txn(txn)).await?;
        if resp.succeeded() {
            return Ok(resp.header().map_or(0, |h| h.revision()));
        }
        let mut conflicts = Vec::new();
        for w in writes {
            let r = w.object_ref();
            let key = self.layout.object_key(&r);
            let now = self.call("get", kv.get(key.as_bytes(), None)).await?;
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

async fn bounded<T>(
    op: &'static str,
    endpoints: &str,
    timeout: Duration,
    fut: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(source)) => Err(StoreError::Etcd {
            op,
            endpoints: endpoints.to_string(),
            source,
        }),
        Err(_) => Err(StoreError::Timeout {
            op,
            endpoints: endpoints.to_string(),
            waited: timeout,
        }),
    }
}
