//! Decode errors.

/// Bytes read from the device that do not form a valid entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Reserved bits are set.
    #[error("{entry}: reserved bits set")]
    Reserved {
        /// Entry kind.
        entry: &'static str,
    },
    /// A field holds a value the contract does not define.
    #[error("{entry}: invalid {field}")]
    Field {
        /// Entry kind.
        entry: &'static str,
        /// Field name.
        field: &'static str,
    },
}
