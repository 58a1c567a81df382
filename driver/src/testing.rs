//! Test backdoors on [`Device`] (feature `testing`): raw command submission, FENCE suppression and the naive
//! counter read. They let tests and benches reach under the driver's table logic; a production build has none of
//! them.

use crate::cmd::Cmd;
use crate::device::Device;
use crate::error::DriverError;
use ironlb_hw::regs::DROP_COUNTERS;
use ironlb_hw::DropReason;

impl Device {
    /// Send raw commands the way the driver does ([`Device`]'s mailbox/ring choice, FENCE handling), bypassing its
    /// table bookkeeping: what they change is not in the driver's state until the next adoption.
    pub fn submit_for_test(&mut self, cmds: &[Cmd]) -> Result<(), DriverError> {
        self.submit(cmds)
    }

    /// Send raw commands through the DMA ring only (fails on a device without one).
    pub fn submit_ring_for_test(&mut self, cmds: &[Cmd]) -> Result<(), DriverError> {
        self.submit_ring(cmds)
    }

    /// Send raw commands one by one through the mailbox.
    pub fn submit_mailbox_for_test(&mut self, cmds: &[Cmd]) -> Result<(), DriverError> {
        self.submit_mailbox(cmds)
    }

    /// Drop every FENCE (and the v1.0 drain wait), so freed memory is reused while packets that saw the old
    /// configuration may still read it. The pipelined-model test shows the damage with it on.
    pub fn skip_fences_for_test(&mut self, on: bool) {
        self.skip_fences = on;
    }

    /// Read a live 64-bit counter the naive way (low word, then high word), as a v1.0 driver did. It can tear at a
    /// 2^32 boundary; kept only so the counter-tear test can show that.
    pub fn drop_counter_naive_for_test(&mut self, reason: DropReason) -> u64 {
        self.acc.read64(DROP_COUNTERS + 8 * reason.index() as u32)
    }
}
