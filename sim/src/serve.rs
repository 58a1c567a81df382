//! The model as its own process (`ironlb-sim serve`): the BAR register file and host memory are files (under
//! /dev/shm) that a driver in another process — or QEMU's ivshmem, which exposes the BAR file to a guest as a PCI
//! BAR — maps as well. The device reacts to them in [`serve_loop`], polling like hardware reacting to doorbells.
//!
//! Readiness: the model is serving once the BAR's `ID` register reads [`ID_MAGIC`](ironlb_hw::regs::ID_MAGIC) and `STATUS.READY` is set (both
//! are loaded by the reset the model performs on start). On a clean exit (SIGTERM/SIGINT) the model clears
//! `STATUS.READY` and leaves both files in place for the caller to remove; a stale BAR file of a model that was
//! killed still reads as ready, so a caller should remove old files before starting a model over them.
//!
//! Every start resets the device: restarting the *model* loses all tables. Restarting the driver/runtime does not,
//! since the model process keeps running and the driver adopts what the tables hold.

use crate::config::DeviceConfig;
use crate::device::Device;
use crate::mem::{HostMemory, Region};
use crate::ports::{self, PortSet, TunSpec};
use ironlb_hw::regs::{BAR0_SIZE, STATUS};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Bytes of the private placeholder host memory of a `--no-dma` model (never reached: it has no ring).
const NO_DMA_HOST_LEN: usize = 4096;

/// Idle polls spent spinning before yielding the CPU.
const SPIN_POLLS: u32 = 512;
/// Idle polls (after spinning) spent yielding before sleeping.
const YIELD_POLLS: u32 = 64;
/// Sleep between polls once idle for a while.
const IDLE_SLEEP: Duration = Duration::from_micros(50);

/// Poll `dev` until `stop` is set. Spins while there is work, then backs off when idle (spin a few hundred polls,
/// then yield, then sleep ~50 µs between polls), and returns to spinning as soon as a poll finds work. A command
/// therefore completes within about 50 µs of its doorbell even after a long idle period.
pub fn serve_loop(dev: &mut Device, stop: &AtomicBool) {
    serve_loop_with_ports(dev, &mut PortSet::new(), stop);
}

/// [`serve_loop`] with packet ports: every iteration services the BAR and then the ports ([`PortSet::service`]:
/// a bounded burst per port), and packet work counts as work for the backoff exactly like register work.
pub fn serve_loop_with_ports(dev: &mut Device, ports: &mut PortSet, stop: &AtomicBool) {
    let mut idle: u32 = 0;
    let start = std::time::Instant::now();
    let clock0 = dev.flow_clock();
    while !stop.load(Ordering::Relaxed) {
        // The flow clock (docs/hw-spec.md §11) follows the monotonic clock while the model serves.
        dev.set_flow_clock(clock0.wrapping_add(start.elapsed().as_millis() as u32));
        let bar_work = dev.poll();
        if bar_work | ports.service(dev) {
            idle = 0;
            continue;
        }
        idle = idle.saturating_add(1);
        if idle < SPIN_POLLS {
            std::hint::spin_loop();
        } else if idle < SPIN_POLLS + YIELD_POLLS {
            std::thread::yield_now();
        } else {
            std::thread::sleep(IDLE_SLEEP);
        }
    }
}

/// Parse a byte count or address: decimal, `0x` hex, or decimal with a binary suffix `K`, `M`, `G` (e.g. `64M`).
pub fn parse_u64(s: &str) -> Result<u64, String> {
    let t = s.trim().replace('_', "");
    let err = || format!("{s:?} is not a number (decimal, 0x-hex, or with a K/M/G suffix)");
    if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        return u64::from_str_radix(h, 16).map_err(|_| err());
    }
    let (num, shift) = match t.char_indices().last() {
        Some((i, 'k' | 'K')) => (&t[..i], 10),
        Some((i, 'm' | 'M')) => (&t[..i], 20),
        Some((i, 'g' | 'G')) => (&t[..i], 30),
        _ => (&t[..], 0),
    };
    let n: u64 = num.parse().map_err(|_| err())?;
    n.checked_mul(1u64 << shift).ok_or_else(err)
}

/// Options of `ironlb-sim serve`.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
#[command(after_long_help = SERVE_HELP)]
pub struct ServeArgs {
    /// BAR0 register file (created with exactly 64 KiB, or reused if it already has that size).
    #[arg(long, default_value = "/dev/shm/ironlb.bar")]
    pub bar: PathBuf,
    /// Host-memory (DMA window) file (created, or reused if it already has --host-mem-len bytes).
    #[arg(long = "host-mem", default_value = "/dev/shm/ironlb.host")]
    pub host_mem: PathBuf,
    /// Bytes of host memory [default: 64M, or 8M with --small].
    #[arg(long, value_parser = parse_u64)]
    pub host_mem_len: Option<u64>,
    /// IOVA of the first byte of the host-memory file.
    #[arg(long, value_parser = parse_u64, default_value = "0x100000000")]
    pub host_iova_base: u64,
    /// Model the small test part (DeviceConfig::small) instead of the reference part.
    #[arg(long)]
    pub small: bool,
    /// Offset of the register file inside the BAR file. Only 0 is supported in v1 (the whole file is BAR0).
    #[arg(long, value_parser = parse_u64, default_value = "0")]
    pub bar_offset: u64,
    /// Serve no host-memory file: the device has no DMA command ring (CAP_RING_MAX_LOG2 = 0) and the driver sends
    /// every command and read through the mailbox. For a BAR exposed to a QEMU guest through ivshmem, where the
    /// model cannot reach guest memory (tests/qemu/run.sh).
    #[arg(long, conflicts_with_all = ["host_mem", "host_mem_len"])]
    pub no_dma: bool,
    /// Attach device port PORT to a new TUN device IFNAME (L3, no packet information; repeatable). The model reads
    /// packets from it into the pipeline and writes forwarded packets to the TUN of their egress port; the device
    /// is removed when the model exits. Needs CAP_NET_ADMIN (docs/sim.md "Packet ports").
    #[arg(long = "tun", value_name = "PORT=IFNAME", value_parser = ports::parse_tun)]
    pub tun: Vec<TunSpec>,
}

const SERVE_HELP: &str = "\
Readiness: the model serves once the BAR file's ID register (offset 0) reads 0x31424c49 (\"ILB1\") and STATUS \
(offset 0x44) has bit 0 READY set. Remove stale files before starting: a BAR file left by a killed model still \
reads as ready.

Every start resets the device, so restarting the model loses its tables; restarting the runtime does not, because \
the model process keeps running. SIGTERM/SIGINT stop the model cleanly: STATUS.READY is cleared and both files are \
left in place for the caller to remove.";

impl ServeArgs {
    /// The device configuration these options describe.
    pub fn config(&self) -> Result<DeviceConfig, String> {
        let mut cfg = if self.small {
            DeviceConfig::small()
        } else {
            DeviceConfig::default()
        };
        if self.no_dma {
            if self.host_mem_len.is_some() {
                return Err("--no-dma serves no host memory: drop --host-mem-len".into());
            }
            cfg.caps.ring_max_log2 = 0;
            cfg.host_mem_len = NO_DMA_HOST_LEN;
        }
        if let Some(len) = self.host_mem_len {
            cfg.host_mem_len = usize::try_from(len)
                .ok()
                .filter(|l| *l > 0)
                .ok_or_else(|| format!("--host-mem-len {len} is not a usable size"))?;
        }
        cfg.host_iova_base = self.host_iova_base;
        if cfg.host_iova_base.checked_add(cfg.host_mem_len as u64).is_none() {
            return Err("host memory would extend past the top of the IOVA space".into());
        }
        Ok(cfg)
    }

    /// Create (or reuse) both files and build the device over them (reset: ID, capabilities, STATUS.READY).
    pub fn open_device(&self) -> Result<Device, String> {
        if self.bar_offset != 0 {
            return Err(format!(
                "--bar-offset {:#x}: only 0 is supported (the BAR file is the register file)",
                self.bar_offset
            ));
        }
        const _: () = assert!(
            BAR0_SIZE.is_power_of_two(),
            "ivshmem maps the BAR file as a PCI BAR"
        );
        let cfg = self.config()?;
        let bar = Region::file(&self.bar, BAR0_SIZE, true).map_err(|e| {
            format!(
                "BAR file {}: {e} (remove it if it is left over from another configuration)",
                self.bar.display()
            )
        })?;
        let host = if self.no_dma {
            // Private memory nothing else maps: the device has no ring, so it never DMAs.
            Region::anon(cfg.host_mem_len).map_err(|e| format!("--no-dma placeholder host memory: {e}"))?
        } else {
            Region::file(&self.host_mem, cfg.host_mem_len, true).map_err(|e| {
                format!(
                    "host-memory file {}: {e} (remove it, or pass the matching --host-mem-len)",
                    self.host_mem.display()
                )
            })?
        };
        let base = cfg.host_iova_base;
        Ok(Device::with_regions(cfg, bar, HostMemory { region: host, base }))
    }
}

/// `ironlb-sim serve`: open the files, announce readiness on stderr, serve until `stop` is set, then clear
/// `STATUS.READY`. Signal handling is the caller's (the binary sets `stop` from SIGTERM/SIGINT).
pub fn serve(args: &ServeArgs, stop: &AtomicBool) -> Result<(), String> {
    let mut dev = args.open_device()?;
    if args.no_dma {
        eprintln!(
            "ironlb-sim: serving BAR {} without DMA (no command ring: mailbox only)",
            args.bar.display()
        );
    } else {
        eprintln!(
            "ironlb-sim: serving BAR {} host memory {} ({} bytes at IOVA {:#x})",
            args.bar.display(),
            args.host_mem.display(),
            dev.host().region.len(),
            dev.host().base
        );
    }
    let mut ports = ports::open_tuns(&args.tun).map_err(|e| e.to_string())?;
    for t in &args.tun {
        eprintln!("ironlb-sim: port {} on TUN {}", t.port, t.ifname);
    }
    serve_loop_with_ports(&mut dev, &mut ports, stop);
    dev.set_reg(STATUS, 0);
    if !ports.is_empty() {
        eprintln!("ironlb-sim: packet ports: {:?}", ports.stats());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(parse_u64("4096"), Ok(4096));
        assert_eq!(parse_u64("0x100000000"), Ok(1 << 32));
        assert_eq!(parse_u64("0X1_0000"), Ok(0x10000));
        assert_eq!(parse_u64("64M"), Ok(64 << 20));
        assert_eq!(parse_u64("8k"), Ok(8192));
        assert_eq!(parse_u64("1G"), Ok(1 << 30));
        assert!(parse_u64("").is_err());
        assert!(parse_u64("M").is_err());
        assert!(parse_u64("0xg").is_err());
        assert!(parse_u64("-1").is_err());
        assert!(parse_u64("99999999999999G").is_err());
    }

    #[test]
    fn config_from_args() {
        let mut a = ServeArgs {
            bar: "/x".into(),
            host_mem: "/y".into(),
            host_mem_len: None,
            host_iova_base: 0x1_0000_0000,
            small: true,
            bar_offset: 0,
            no_dma: false,
            tun: Vec::new(),
        };
        assert_eq!(a.config().unwrap(), DeviceConfig::small());
        a.small = false;
        assert_eq!(a.config().unwrap(), DeviceConfig::default());
        a.host_mem_len = Some(1 << 20);
        a.host_iova_base = 0x2000;
        let c = a.config().unwrap();
        assert_eq!((c.host_mem_len, c.host_iova_base), (1 << 20, 0x2000));
        a.host_mem_len = Some(0);
        assert!(a.config().is_err());
        a.host_mem_len = Some(4096);
        a.host_iova_base = u64::MAX;
        assert!(a.config().is_err());
        a.host_iova_base = 0;
        a.bar_offset = 4096;
        assert!(a.open_device().unwrap_err().contains("--bar-offset"));
        a.bar_offset = 0;
        a.no_dma = true;
        assert!(a.config().unwrap_err().contains("--no-dma"));
        a.host_mem_len = None;
        let c = a.config().unwrap();
        assert_eq!(c.caps.ring_max_log2, 0);
        assert_eq!(
            DeviceConfig {
                caps: DeviceConfig::default().caps,
                host_mem_len: DeviceConfig::default().host_mem_len,
                ..c
            },
            DeviceConfig {
                host_iova_base: 0,
                ..DeviceConfig::default()
            }
        );
    }
}
