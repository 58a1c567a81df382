//! Stale completion records (docs/hw-spec.md §3.5): after a doorbell, the ring's completion record in host memory
//! still holds the previous batch's `HEAD` until the device has consumed the new batch. Here the device sees each
//! doorbell only after the driver has polled that older record several times. The driver must keep waiting (an
//! older record is not its completion) and return only when the device has executed the whole batch.

use ironlb_driver::{
    AccessCounts, AccessError, Cmd, Device, DeviceAccess, DmaRegion, InprocBackend, SharedModel,
};
use ironlb_hw::regs::{TableId, RING_HEAD, RING_TAIL};
use ironlb_sim::DeviceConfig;

/// Polls of the stale record before the held doorbell reaches the device.
const STALE_POLLS: u32 = 5;

/// The in-process backend with doorbells (`RING_TAIL` writes) held back for [`STALE_POLLS`] waits.
struct LateDoorbell {
    inner: InprocBackend,
    held: Option<u32>,
    polls: u32,
}

impl DeviceAccess for LateDoorbell {
    fn bar_len(&self) -> usize {
        self.inner.bar_len()
    }
    fn read32(&mut self, offset: u32) -> u32 {
        self.inner.read32(offset)
    }
    fn write32(&mut self, offset: u32, value: u32) {
        if offset == RING_TAIL && value != 0 {
            // value 0 is the ring's (re)configuration, not a doorbell.
            self.held = Some(value);
            self.polls = 0;
        } else {
            self.inner.write32(offset, value)
        }
    }
    fn alloc_dma(&mut self, len: usize) -> Result<DmaRegion, AccessError> {
        self.inner.alloc_dma(len)
    }
    fn counts(&self) -> AccessCounts {
        self.inner.counts()
    }
    fn wait_hint(&mut self) {
        if let Some(tail) = self.held {
            self.polls += 1;
            if self.polls == STALE_POLLS {
                self.held = None;
                self.inner.write32(RING_TAIL, tail);
            }
        }
        self.inner.wait_hint()
    }
}

fn fill(index: u32, value: u32) -> Cmd {
    Cmd::Fill {
        table: TableId::Target,
        index,
        count: 1,
        value,
    }
}

fn target_word(model: &SharedModel, index: u32) -> u32 {
    let m = model.lock().unwrap();
    let e = m.tables().get(TableId::Target, index, 1).unwrap();
    u32::from_le_bytes(e[..4].try_into().unwrap())
}

#[test]
fn an_older_completion_record_is_not_taken_for_the_batch() {
    let inner = InprocBackend::new(DeviceConfig::small()).unwrap();
    let model = inner.model();
    let mut dev = Device::open(Box::new(LateDoorbell {
        inner,
        held: None,
        polls: 0,
    }))
    .unwrap();
    // Three batches in a row: each doorbell finds the previous batch's record (HEAD behind the new tail).
    for round in 1..=3u32 {
        let head_before = model.lock().unwrap().reg(RING_HEAD);
        dev.submit_ring_for_test(&[fill(round, 0x1000 + round), fill(round + 10, 0x2000 + round)])
            .unwrap();
        // Returned only after the device executed the batch (it saw the doorbell only after STALE_POLLS waits on the
        // older record), not on the older record.
        assert_eq!(target_word(&model, round), 0x1000 + round);
        assert_eq!(target_word(&model, round + 10), 0x2000 + round);
        let head = model.lock().unwrap().reg(RING_HEAD);
        assert_eq!(head, head_before.wrapping_add(2), "round {round}");
    }
}
