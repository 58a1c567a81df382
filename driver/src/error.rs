//! Driver errors: one variant per failed operation, each saying what to do where there is something to do.

use ironlb_hw::regs::Opcode;
use std::time::Duration;

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
    /// The mapped register BAR is smaller than the register file of the contract.
    #[error(
        "{what} is {len} bytes, smaller than the {need}-byte register file (wrong file, BAR index or device)"
    )]
    BarTooSmall {
        /// What was mapped.
        what: String,
        /// Its length.
        len: usize,
        /// BAR0_SIZE.
        need: usize,
    },
    /// An I/O error from the operating system while doing `what`.
    #[error("{what}")]
    Io {
        /// The operation that failed.
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Errors of the device API.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The backend failed.
    #[error(transparent)]
    Access(#[from] AccessError),
    /// The identification or capability registers: not an ironlb device, another major version, or a value the
    /// contract (or this driver) cannot work with.
    #[error(transparent)]
    Caps(#[from] ironlb_hw::caps::CapsError),
    /// A poll did not see the expected value in time.
    #[error("timeout after {waited:?} waiting for {register} (device not running, or hung?)")]
    Timeout {
        /// What was polled.
        register: &'static str,
        /// How long.
        waited: Duration,
    },
    /// The device rejected a command.
    #[error("device rejected {op:?} on table {table} at index {index}: {status}")]
    Command {
        /// Opcode.
        op: Opcode,
        /// Table name.
        table: &'static str,
        /// First entry.
        index: u32,
        /// Status name.
        status: &'static str,
    },
    /// A table has no room.
    #[error("{table} table full: {detail}")]
    TableFull {
        /// Table name.
        table: &'static str,
        /// What could not be placed.
        detail: String,
    },
    /// An entry read back from the device does not decode.
    #[error("corrupt {table} entry {index} read from device: {source}")]
    Corrupt {
        /// Table name.
        table: &'static str,
        /// Entry index.
        index: u32,
        /// Decode error.
        #[source]
        source: ironlb_hw::DecodeError,
    },
    /// A VIP of the request is programmed for another LB (it must be removed from that one first).
    #[error("lb_id {lb_id}: VIP {vip} in domain {domain:#x} already belongs to lb_id {owner}")]
    VipInUse {
        /// The LB being applied.
        lb_id: u32,
        /// The VIP.
        vip: ironlb_hw::Vip,
        /// Its lookup domain.
        domain: u32,
        /// The LB holding it.
        owner: u32,
    },
    /// Registers read all-ones: the device was removed (surprise removal, link down) or is in reset.
    #[error("device gone: {register} reads 0xffffffff (removed, link down, or still in reset)")]
    DeviceGone {
        /// The register that read all-ones.
        register: &'static str,
    },
    /// The request needs a feature the device does not have (e.g. the flow table on a contract v1.1 part).
    #[error(
        "the device (contract 1.{minor}) has no {feature} (CAP_FEATURES bit missing, docs/hw-spec.md §9)"
    )]
    NoFeature {
        /// Feature name.
        feature: &'static str,
        /// The device's minor version.
        minor: u16,
    },
    /// The device was reset again while the driver re-programmed it after a reset ([`crate::Device::restore`]):
    /// part of what was restored is gone again; the restore is still owed.
    #[error("the device was reset again during the restore: {evidence}")]
    ResetDuringRestore {
        /// How the second reset was recognised.
        evidence: String,
    },
    /// The request itself is invalid (caller bug or unchecked input).
    #[error("invalid request: {0}")]
    Invalid(String),
}
