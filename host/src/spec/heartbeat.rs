//! How a busy child's heartbeats are judged: a fixed timeout or the φ-accrual
//! detector (its arithmetic is the sandbox's watchdog's).

use std::time::Duration;

/// How a busy child's heartbeats are judged.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum HeartbeatPolicy {
    /// Killed when it has not beaten for this long while busy.
    Timeout(Duration),
    /// Killed when the φ-accrual suspicion reaches its threshold.
    PhiAccrual(PhiAccrual),
}

/// The φ-accrual detector's parameters; the defaults are Akka's (cluster failure
/// detector).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PhiAccrual {
    /// φ at which the child is judged hung. Default 8 (a false positive about once in
    /// 10⁸ beats, if intervals were normal).
    pub threshold: f64,
    /// The least standard deviation assumed, so regular beats do not make the detector
    /// jumpy. Default 100 ms.
    pub min_std_dev: Duration,
    /// A pause added to the mean interval, accepted without suspicion. Default 3 s.
    pub acceptable_pause: Duration,
    /// Intervals kept. Default 1000.
    pub max_samples: usize,
    /// The interval assumed before any was measured (with a deviation of a quarter of
    /// it). Default 1 s.
    pub first_estimate: Duration,
}

impl Default for PhiAccrual {
    fn default() -> Self {
        Self {
            threshold: 8.0,
            min_std_dev: Duration::from_millis(100),
            acceptable_pause: Duration::from_secs(3),
            max_samples: 1000,
            first_estimate: Duration::from_secs(1),
        }
    }
}
