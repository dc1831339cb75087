//! `stats()` (JSON) and `metrics()` (Prometheus text exposition format 0.0.4) from a recorder's
//! snapshot, the process's error counts and the backends' states.

use std::fmt::Write;

use serde_json::{json, Map, Value};

use super::log::error_snapshot;
use super::recorder::{Series, ServedBy, Snapshot, WINDOW_SECS};

/// A remote tier's connection as the manager knows it, without a round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Not configured.
    Disabled,
    /// Not connected yet (connects on first use).
    Idle,
    Up,
    /// The last connect failed; retried after a pause.
    Down,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Disabled => "disabled",
            Backend::Idle => "idle",
            Backend::Up => "up",
            Backend::Down => "down",
        }
    }
}

pub struct Backends {
    pub redis: Backend,
    pub postgres: Backend,
}

/// Histogram buckets of `metrics()`, in seconds (10 µs to 10 s).
const BUCKETS: [f64; 19] = [
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
];

fn ratio(a: u64, b: u64) -> Option<f64> {
    (b > 0).then(|| a as f64 / b as f64)
}

/// The JSON of `stats()`.
pub fn stats_json(s: &Snapshot, backends: &Backends) -> Value {
    let mut operations = vec![];
    for x in &s.series {
        if x.count == 0 {
            continue;
        }
        operations.push(json!({
            "op": x.series.op(), "tier": x.series.tier(), "count": x.count, "bytes": x.bytes,
            "sinceOpen": x.latency(), "recent": x.recent_latency(),
        }));
    }
    let reads = |sb: ServedBy| s.series.iter().find(|x| x.series == Series::Retrieve(sb)).map_or(0, |x| x.count);
    let (hot, warm, cold, miss) =
        (reads(ServedBy::Hot), reads(ServedBy::Warm), reads(ServedBy::Cold), reads(ServedBy::Miss));
    let total = hot + warm + cold + miss;
    let hit = |n: u64| json!({"reads": n, "ratio": ratio(n, total)});
    let (returned, background) = error_snapshot();
    json!({
        "uptimeMs": s.uptime.as_millis() as u64,
        "recentWindowSeconds": WINDOW_SECS,
        "operations": operations,
        "hits": {"reads": total, "hot": hit(hot), "warm": hit(warm), "cold": hit(cold), "miss": hit(miss)},
        "moves": s.moves,
        "compression": {"bytesBefore": s.bytes_before, "bytesAfter": s.bytes_after,
            "ratio": ratio(s.bytes_before, s.bytes_after)},
        "errors": {"returned": returned, "background": background},
        "backends": {"redis": backends.redis.as_str(), "postgres": backends.postgres.as_str()},
    })
}

/// A label value escaped as the exposition format wants (`\`, `"`, newline).
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn head(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Prometheus' text exposition format (version 0.0.4).
pub fn prometheus(s: &Snapshot, backends: &Backends) -> String {
    let mut o = String::with_capacity(16 * 1024);
    let p = "stackmemory_tiers";
    let name = format!("{p}_operation_duration_seconds");
    head(&mut o, &name, "histogram", "Latency of operations by operation and tier (or hop), since open.");
    for x in s.series.iter().filter(|x| x.count > 0) {
        let labels = format!("op=\"{}\",tier=\"{}\"", x.series.op(), esc(&x.series.tier()));
        for le in BUCKETS {
            let n = x.total.count_between(0, (le * 1e9) as u64);
            let _ = writeln!(o, "{name}_bucket{{{labels},le=\"{le}\"}} {n}");
        }
        let _ = writeln!(o, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", x.count);
        let _ = writeln!(o, "{name}_sum{{{labels}}} {}", x.sum_ns as f64 / 1e9);
        let _ = writeln!(o, "{name}_count{{{labels}}} {}", x.count);
    }
    let name = format!("{p}_operation_recent_seconds");
    head(&mut o, &name, "gauge", "Latency quantiles over the recent window (the last 60 s), by operation and tier.");
    for x in s.series.iter().filter(|x| !x.recent.is_empty()) {
        let labels = format!("op=\"{}\",tier=\"{}\"", x.series.op(), esc(&x.series.tier()));
        for q in [0.5, 0.9, 0.99, 0.999] {
            let v = x.recent.value_at_quantile(q) as f64 / 1e9;
            let _ = writeln!(o, "{name}{{{labels},quantile=\"{q}\"}} {v}");
        }
    }
    let name = format!("{p}_operation_bytes_total");
    head(&mut o, &name, "counter", "Bytes of the frames read, stored or moved, by operation and tier.");
    for x in s.series.iter().filter(|x| x.count > 0) {
        let _ = writeln!(o, "{name}{{op=\"{}\",tier=\"{}\"}} {}", x.series.op(), esc(&x.series.tier()), x.bytes);
    }
    let name = format!("{p}_moves_total");
    head(&mut o, &name, "counter", "Frames of moves by hop and outcome.");
    for (hop, c) in &s.moves {
        for (outcome, n) in
            [("moved", c.moved), ("failed", c.failed), ("held_back", c.held_back), ("skipped", c.skipped)]
        {
            let _ = writeln!(o, "{name}{{hop=\"{}\",outcome=\"{outcome}\"}} {n}", esc(hop));
        }
    }
    let name = format!("{p}_hit_ratio");
    head(&mut o, &name, "gauge", "Share of reads served by each tier (miss: no tier), since open.");
    let reads: Vec<(&str, u64)> = [ServedBy::Hot, ServedBy::Warm, ServedBy::Cold, ServedBy::Miss]
        .iter()
        .map(|sb| {
            let x = s.series.iter().find(|x| x.series == Series::Retrieve(*sb));
            (["hot", "warm", "cold", "miss"][*sb as usize], x.map_or(0, |x| x.count))
        })
        .collect();
    let total: u64 = reads.iter().map(|r| r.1).sum();
    for (tier, n) in &reads {
        let _ = writeln!(o, "{name}{{tier=\"{tier}\"}} {}", ratio(*n, total).unwrap_or(0.0));
    }
    let name = format!("{p}_compression_ratio");
    head(&mut o, &name, "gauge", "Bytes of moved frames as stored in SQLite over bytes written remotely.");
    let _ = writeln!(o, "{name} {}", ratio(s.bytes_before, s.bytes_after).unwrap_or(0.0));
    let (returned, background) = error_snapshot();
    let name = format!("{p}_errors_total");
    head(&mut o, &name, "counter", "Errors by code: returned to a caller, or background (logged only); process-wide.");
    for (kind, m) in [("returned", &returned), ("background", &background)] {
        for (code, n) in m {
            let _ = writeln!(o, "{name}{{code=\"{code}\",kind=\"{kind}\"}} {n}");
        }
    }
    let name = format!("{p}_backend_up");
    head(&mut o, &name, "gauge", "1 when the remote tier is connected, 0 when down or not yet connected.");
    for (b, st) in [("redis", backends.redis), ("postgres", backends.postgres)] {
        if st != Backend::Disabled {
            let _ = writeln!(o, "{name}{{backend=\"{b}\",state=\"{}\"}} {}", st.as_str(), (st == Backend::Up) as u8);
        }
    }
    let name = format!("{p}_uptime_seconds");
    head(&mut o, &name, "gauge", "Seconds since this TierManager opened.");
    let _ = writeln!(o, "{name} {}", s.uptime.as_secs_f64());
    o
}

/// `stats()` without the operations that never ran, as a `Map` (tests).
pub fn keys(v: &Value) -> Vec<String> {
    v.as_object().map(|m: &Map<String, Value>| m.keys().cloned().collect()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::obs::Recorder;
    use std::time::Instant;

    #[test]
    fn exposition_has_histograms_and_counters() {
        let r = Recorder::new();
        let t = Instant::now();
        r.record_ns(Series::Retrieve(ServedBy::Hot), 30_000, 100, t);
        r.record_ns(Series::Retrieve(ServedBy::Warm), 400_000, 100, t);
        r.record_moves(1, 2, crate::obs::MoveCounts { moved: 3, ..Default::default() }, 300, 100);
        let b = Backends { redis: Backend::Up, postgres: Backend::Disabled };
        let text = prometheus(&r.snapshot(), &b);
        assert!(text.contains("# TYPE stackmemory_tiers_operation_duration_seconds histogram"));
        assert!(text.contains(
            "stackmemory_tiers_operation_duration_seconds_bucket{op=\"retrieve\",tier=\"hot\",le=\"0.00005\"} 1"
        ));
        assert!(text.contains(
            "stackmemory_tiers_operation_duration_seconds_bucket{op=\"retrieve\",tier=\"warm\",le=\"0.00025\"} 0"
        ));
        assert!(text.contains("stackmemory_tiers_moves_total{hop=\"hot→warm\",outcome=\"moved\"} 3"));
        assert!(text.contains("stackmemory_tiers_compression_ratio 3"));
        assert!(text.contains("stackmemory_tiers_hit_ratio{tier=\"hot\"} 0.5"));
        let st = stats_json(&r.snapshot(), &b);
        assert_eq!(st["hits"]["hot"]["reads"], 1);
        assert_eq!(st["moves"]["hot→warm"]["moved"], 3);
        assert!(keys(&st).contains(&"errors".to_string()));
    }
}
