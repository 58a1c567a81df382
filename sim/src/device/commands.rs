//! Mailbox and DMA ring command execution (docs/hw-spec.md §4). PLACEHOLDER: being implemented.

use super::Device;

/// Execute a pending mailbox command. Returns true when one ran.
pub(crate) fn poll_mailbox(_d: &mut Device) -> bool {
    false
}

/// Execute pending ring descriptors. Returns true when any ran.
pub(crate) fn poll_ring(_d: &mut Device) -> bool {
    false
}
