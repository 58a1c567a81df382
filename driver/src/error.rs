//! Driver errors.

/// Errors raised by a backend while opening or mapping a device.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// DMA memory could not be allocated or mapped.
    #[error("cannot allocate {len} bytes of DMA memory: {reason}")]
    DmaAlloc {
        /// Requested length.
        len: usize,
        /// What failed.
        reason: String,
    },
    /// An I/O error from the operating system while doing `what`.
    #[error("{what}: {source}")]
    Io {
        /// The operation that failed.
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}
