//! The ironlb hardware contract, v1 (docs/hw-spec.md): BAR0 register map, table entry layouts, the hash functions,
//! and the drop reasons. Shared by the driver (which programs a device) and the software model (which is one).
//!
//! No I/O and no `unsafe` here.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod addr;
pub mod caps;
pub mod drop;
pub mod entry;
pub mod error;
pub mod hash;
pub mod regs;

pub use addr::{Family, Vip, DOMAIN_PUBLIC};
pub use caps::{Caps, CapsError};
pub use drop::DropReason;
pub use error::DecodeError;
pub use hash::{FlowTuple, LbKey};
