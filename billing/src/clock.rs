//! The billing clock: real time times a scale (`--billing-clock-scale`) from an anchor that is
//! kept in the catalog, so the clock continues across restarts (time the server was down
//! counts, at the scale it ran with, as it does for a volume that exists meanwhile) and never
//! runs backwards when the scale changes.

use serde::{Deserialize, Serialize};

/// An anchor: at real time `real0` the billing clock read `billing0`, and it runs `scale` times
/// real time from there (all times ms since the Unix epoch).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Clock {
    pub real0: u64,
    pub billing0: u64,
    pub scale: f64,
}

impl Clock {
    /// A clock that reads real time `real` now and runs at `scale`.
    pub fn new(real: u64, scale: f64) -> Clock {
        Clock {
            real0: real,
            billing0: real,
            scale,
        }
    }

    /// The billing time at real time `real` (never before the anchor).
    pub fn at(&self, real: u64) -> u64 {
        let elapsed = real.saturating_sub(self.real0) as f64 * self.scale;
        self.billing0.saturating_add(elapsed as u64)
    }

    /// The clock to run with at start-up, at real time `real` and `scale`, after this one (the
    /// stored anchor): the same anchor at the same scale; otherwise a new anchor where this
    /// clock reads now, so the clock goes on from where it is at the new pace. `None`: keep
    /// this one.
    pub fn resume(&self, real: u64, scale: f64) -> Option<Clock> {
        (self.scale != scale).then(|| Clock {
            real0: real,
            billing0: self.at(real),
            scale,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continues_across_restarts_and_scale_changes() {
        let c = Clock::new(1_000, 3600.0);
        assert_eq!(c.at(1_000), 1_000);
        assert_eq!(c.at(2_000), 1_000 + 3_600_000);
        assert_eq!(c.at(500), 1_000, "never before the anchor");
        assert_eq!(c.resume(5_000, 3600.0), None);
        let d = c.resume(5_000, 1.0).unwrap();
        assert_eq!(d.at(5_000), c.at(5_000));
        assert_eq!(d.at(6_000), c.at(5_000) + 1_000);
    }
}
