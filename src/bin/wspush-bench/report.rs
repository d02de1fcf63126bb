//! Latency histograms, the live progress line and the JSON summary.

use std::io::Write;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use serde_json::{json, Value};

/// Microsecond latencies from 1 µs to 100 s, 3 significant digits.
pub struct Latencies(Histogram<u64>);

impl Latencies {
    pub fn new() -> Self {
        Self(Histogram::new_with_bounds(1, 100_000_000, 3).expect("valid histogram bounds"))
    }

    pub fn record(&mut self, latency: Duration) {
        let micros = latency.as_micros().clamp(1, 100_000_000) as u64;
        self.0.saturating_record(micros);
    }

    pub fn merge(&mut self, other: &Latencies) {
        let _ = self.0.add(&other.0);
    }

    /// p50, p99, p99.9 and max in microseconds.
    pub fn summary(&self) -> Value {
        if self.0.is_empty() {
            return json!(null);
        }
        json!({
            "p50": self.0.value_at_quantile(0.5),
            "p99": self.0.value_at_quantile(0.99),
            "p999": self.0.value_at_quantile(0.999),
            "max": self.0.max(),
        })
    }

    /// The histogram as JSON-safe text, for a child process to hand to its parent.
    pub fn encode(&self) -> String {
        let mut buf = Vec::new();
        use hdrhistogram::serialization::Serializer;
        let _ = hdrhistogram::serialization::V2Serializer::new().serialize(&self.0, &mut buf);
        hex::encode(buf)
    }

    pub fn decode(text: &str) -> Option<Self> {
        let bytes = hex::decode(text).ok()?;
        hdrhistogram::serialization::Deserializer::new()
            .deserialize(&mut bytes.as_slice())
            .ok()
            .map(Self)
    }
}

/// Wall-clock nanoseconds, comparable between processes on one machine.
pub fn wall_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// A progress line on stderr, redrawn at most once a second, only for runs over a second.
pub struct Progress {
    started: Instant,
    last: Instant,
    shown: bool,
}

impl Progress {
    pub fn new() -> Self {
        let now = Instant::now();
        Self {
            started: now,
            last: now,
            shown: false,
        }
    }

    pub fn update(&mut self, line: impl FnOnce() -> String) {
        if self.last.elapsed() >= Duration::from_secs(1) {
            self.last = Instant::now();
            self.shown = true;
            let _ = write!(
                std::io::stderr(),
                "\r[{:>5.1}s] {}\x1b[K",
                self.started.elapsed().as_secs_f64(),
                line()
            );
        }
    }

    pub fn finish(&self) {
        if self.shown {
            let _ = writeln!(std::io::stderr());
        }
    }
}
