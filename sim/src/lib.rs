//! The ironlb device model: a bit-exact software implementation of docs/hw-spec.md.
//!
//! [`device::Device`] is the device (registers, mailbox, DMA ring, table memory, counters); the packet pipeline
//! computes verdicts from the device's table memory only.
#![deny(unsafe_code)] // allowed only in mem.rs, the shared mappings (docs/architecture.md)

mod config;
mod device;
mod mem;
#[cfg(feature = "pcap")]
pub mod pcap;
mod pipeline;
#[cfg(feature = "serve")]
mod ports;
#[cfg(feature = "serve")]
mod serve;
mod tables;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

// The crate's surface, chosen item by item (modules are private; `pcap` and `testing` are public as a whole).
pub use config::DeviceConfig;
pub use device::Device;
pub use mem::{open_private, DmaFault, HostMemory, Region};
pub use pipeline::inflight::Traffic;
pub use pipeline::parse::proto::name as protocol_name;
pub use pipeline::{BurstResult, FlowTrace, Trace, TraceStage, Verdict};
#[cfg(feature = "serve")]
pub use ports::{open_tuns, parse_tun, PacketPort, PortError, PortSet, PortStats, TunSpec, BURST};
#[cfg(feature = "serve")]
pub use serve::{serve, serve_loop, serve_loop_with_ports, ServeArgs};
pub use tables::TableMemory;
