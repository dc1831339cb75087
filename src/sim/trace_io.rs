//! Traces in, reports out: parsing JSON-lines traces (errors name the line), loading files, `simulate_json`.

use std::path::Path;

use serde_json::Value;

use super::{simulate, Op, SimOptions, TraceEvent};
use crate::model::{Result, TierError};
use crate::policy::PolicyOptions;

/// A whole number, written as an integer (JSON text) or as a float with no fraction: numbers from
/// JS arrive as doubles once they pass 32 bits (epoch milliseconds such as `Date.now()` do), and
/// are exact up to 2^53.
fn whole(v: &Value) -> Option<i64> {
    if let Some(n) = v.as_i64() {
        return Some(n);
    }
    let f = v.as_f64()?;
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    (f.is_finite() && f.fract() == 0.0 && f.abs() <= EXACT).then_some(f as i64)
}

fn parse_event(v: Value, at: &str) -> Result<TraceEvent> {
    let Value::Object(m) = v else { return Err(TierError::invalid_argument(at, "must be an object")) };
    for k in m.keys() {
        if !["frameId", "sizeBytes", "t", "op"].contains(&k.as_str()) {
            return Err(TierError::invalid_argument(
                format!("{at}.{k}"),
                "unknown field (known: frameId, sizeBytes, t, op)",
            ));
        }
    }
    let frame_id = match m.get("frameId") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => return Err(TierError::invalid_argument(format!("{at}.frameId"), "must be a non-empty string")),
    };
    let size_bytes = m
        .get("sizeBytes")
        .and_then(whole)
        .and_then(|n| u64::try_from(n).ok())
        .ok_or_else(|| TierError::invalid_argument(format!("{at}.sizeBytes"), "must be a whole number of bytes"))?;
    let t_ms = m
        .get("t")
        .and_then(whole)
        .ok_or_else(|| TierError::invalid_argument(format!("{at}.t"), "must be a whole number of milliseconds"))?;
    let op = match m.get("op").and_then(Value::as_str) {
        None => Op::Read,
        Some("read") => Op::Read,
        Some("write") => Op::Write,
        Some(_) => return Err(TierError::invalid_argument(format!("{at}.op"), "must be 'read' or 'write'")),
    };
    Ok(TraceEvent { frame_id, size_bytes, t_ms, op })
}

/// Parses JSON-lines trace text (blank lines skipped). Errors name the line: `trace[12].t`.
pub fn parse_trace(text: &str) -> Result<Vec<TraceEvent>> {
    let mut out = vec![];
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = format!("trace[{}]", n + 1);
        let v: Value = serde_json::from_str(line)
            .map_err(|e| TierError::invalid_argument(at.clone(), format!("not JSON: {e}")))?;
        out.push(parse_event(v, &at)?);
    }
    Ok(out)
}

/// Loads a JSON-lines trace file.
pub fn load_trace(path: impl AsRef<Path>) -> Result<Vec<TraceEvent>> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path)
        .map_err(|e| TierError::invalid_argument("path", format!("cannot read {}: {e}", path.display())))?;
    parse_trace(&text)
}

/// For the JS layer: `trace` is an array of events (or JSON-lines text), `options` is
/// `{ hotCapacityFrames?, hotCapacityBytes?, cycleMs?, policies? }`. Returns the report as JSON.
pub fn simulate_json(trace: &Value, options: &Value) -> Result<Value> {
    let generator = |name: &str| -> Result<Option<Vec<TraceEvent>>> {
        let num = |k: &str| -> Result<Option<u64>> {
            match options.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => whole(v)
                    .and_then(|n| u64::try_from(n).ok())
                    .map(Some)
                    .ok_or_else(|| TierError::invalid_argument(format!("options.{k}"), "must be a whole number >= 0")),
            }
        };
        let seed = num("seed")?.unwrap_or(42);
        let days = match num("days")? {
            Some(d) if (1..=366).contains(&d) => Some(d as u32),
            Some(_) => return Err(TierError::invalid_argument("options.days", "must be 1 to 366")),
            None => None,
        };
        use super::traces;
        Ok(match name {
            "sessions" => Some(traces::sessions(seed, days.unwrap_or(7))),
            "periodic" => Some(traces::periodic(seed, days.unwrap_or(7))),
            "read-once" => Some(traces::read_once(seed, days.unwrap_or(7))),
            "mixed" => Some(traces::mixed(seed, days.unwrap_or(7))),
            "fortnight" => Some(traces::fortnight(seed, days.unwrap_or(14))),
            _ => None,
        })
    };
    let events = match trace {
        Value::String(s) if !s.contains('\n') && !s.trim_start().starts_with('{') => match generator(s.trim())? {
            Some(ev) => ev,
            None => parse_trace(s)?,
        },
        Value::Array(a) => a
            .iter()
            .enumerate()
            .map(|(i, v)| parse_event(v.clone(), &format!("trace[{i}]")))
            .collect::<Result<Vec<_>>>()?,
        Value::String(s) => parse_trace(s)?,
        _ => return Err(TierError::invalid_argument("trace", "must be an array of events or JSON-lines text")),
    };
    let mut opts = SimOptions::default();
    match options {
        Value::Null => {}
        Value::Object(m) => {
            for k in m.keys() {
                if !["hotCapacityFrames", "hotCapacityBytes", "cycleMs", "policies", "seed", "days"]
                    .contains(&k.as_str())
                {
                    return Err(TierError::invalid_argument(format!("options.{k}"), "unknown option"));
                }
            }
            let pos = |k: &str| -> Result<Option<u64>> {
                match m.get(k) {
                    None | Some(Value::Null) => Ok(None),
                    Some(v) => v.as_u64().filter(|n| *n >= 1).map(Some).ok_or_else(|| {
                        TierError::invalid_argument(format!("options.{k}"), "must be a positive whole number")
                    }),
                }
            };
            let frames = pos("hotCapacityFrames")?;
            let bytes = pos("hotCapacityBytes")?;
            if frames.is_some() || bytes.is_some() {
                opts.hot_capacity_frames = frames;
                opts.hot_capacity_bytes = bytes;
            }
            if let Some(c) = pos("cycleMs")? {
                opts.cycle_ms = c.min(i64::MAX as u64) as i64;
            }
            if let Some(p) = m.get("policies") {
                opts.policy = PolicyOptions::from_json(p, PolicyOptions::default().hot_max_age_ms)?;
            }
        }
        _ => return Err(TierError::invalid_argument("options", "must be an object")),
    }
    let report = simulate(&events, &opts);
    serde_json::to_value(&report).map_err(|e| TierError::invalid_argument("report", e.to_string()))
}
