//! The one retry policy: exponential backoff from [`Backoff::min`] doubling to [`Backoff::max`].
//!
//! Used for a load balancer that failed to program ([`crate::reconcile`]), for probing a device that stopped
//! answering and for retrying a sync that failed as a whole ([`crate::daemon`]).

use std::time::Duration;

/// Exponential backoff: the `n`th consecutive failure waits `min * 2^(n-1)`, at most `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay after the first failure.
    pub min: Duration,
    /// Longest delay.
    pub max: Duration,
}

/// The policy ironlb uses: 200 ms doubling to 30 s.
pub const BACKOFF: Backoff = Backoff {
    min: Duration::from_millis(200),
    max: Duration::from_secs(30),
};

impl Backoff {
    /// The delay after `failures` consecutive failures (`0` is treated as `1`).
    pub fn delay(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        self.min.saturating_mul(1u32 << doublings).min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_min_and_stops_at_max() {
        let ms = |n| BACKOFF.delay(n).as_millis();
        assert_eq!([ms(0), ms(1), ms(2), ms(3), ms(4)], [200, 200, 400, 800, 1600]);
        assert_eq!(BACKOFF.delay(8), Duration::from_millis(25_600));
        assert_eq!(BACKOFF.delay(9), BACKOFF.max);
        assert_eq!(BACKOFF.delay(u32::MAX), BACKOFF.max);
    }
}
