//! The server's notion of "now". Tests move it forward instead of sleeping, and may stop it
//! so that several instances agree on it to the second.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};

/// `frozen_at_ms` when the clock runs with real time.
const RUNNING: i64 = i64::MIN;

#[derive(Clone, Debug)]
pub struct Clock {
    offset_seconds: Arc<AtomicI64>,
    frozen_at_ms: Arc<AtomicI64>,
}

impl Default for Clock {
    fn default() -> Self {
        Clock {
            offset_seconds: Arc::default(),
            frozen_at_ms: Arc::new(AtomicI64::new(RUNNING)),
        }
    }
}

impl Clock {
    pub fn now(&self) -> DateTime<Utc> {
        let base = match self.frozen_at_ms.load(Ordering::Relaxed) {
            RUNNING => Utc::now(),
            ms => DateTime::from_timestamp_millis(ms).unwrap_or_else(Utc::now),
        };
        base + Duration::seconds(self.offset_seconds.load(Ordering::Relaxed))
    }

    /// Moves this clock (and every clone of it) forward.
    pub fn advance(&self, seconds: i64) {
        self.offset_seconds.fetch_add(seconds, Ordering::Relaxed);
    }

    /// Stops this clock (and every clone of it) at `at`; from then on only `advance` moves it.
    pub fn freeze_at(&self, at: DateTime<Utc>) {
        self.offset_seconds.store(0, Ordering::Relaxed);
        self.frozen_at_ms.store(at.timestamp_millis(), Ordering::Relaxed);
    }
}
