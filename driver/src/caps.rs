//! Identification and capabilities, read once at open (docs/hw-spec.md §3.1). The type and the contract's rules
//! are [`ironlb_hw::caps`], shared with the model; this adds the driver's own limit.

use crate::access::DeviceAccess;
use crate::error::DriverError;
use crate::tables::buckets::MAX_M_LOG2;
use ironlb_hw::caps::{Caps, CapsError};

/// Read ID, VERSION and the capability registers; refuse a foreign device, another major version, values outside
/// the contract, and bucket arrays larger than this driver builds.
pub(crate) fn read(acc: &mut dyn DeviceAccess) -> Result<Caps, DriverError> {
    let caps = Caps::decode(|off| acc.read32(off))?;
    if caps.bucket_log2_min > MAX_M_LOG2 {
        return Err(CapsError::BadCapability {
            cap: "CAP_BUCKET_LOG2",
            value: caps.bucket_log2_register(),
            why: "the driver builds bucket arrays of at most 2^16 slots",
        }
        .into());
    }
    Ok(caps)
}
