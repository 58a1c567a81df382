//! The served software model (`ironlb-sim serve`) as the runtime tests start it: small tables, shared-memory
//! BAR and host memory under one path prefix, no TUN ports.

use ironlb_sim::ServeArgs;
use std::path::Path;

/// Arguments for a small served model whose BAR and host memory files are `<prefix>.bar` and `<prefix>.host`.
pub fn small_model_at(prefix: &Path) -> ServeArgs {
    ServeArgs {
        bar: prefix.with_extension("bar"),
        host_mem: prefix.with_extension("host"),
        host_mem_len: None,
        host_iova_base: ironlb_sim::DeviceConfig::small().host_iova_base,
        small: true,
        bar_offset: 0,
        no_dma: false,
        tun: Vec::new(),
    }
}
