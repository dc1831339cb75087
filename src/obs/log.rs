//! Logs through `tracing`: the core emits events (`warn!` for a failure that is not returned to a
//! caller, with its `code`), and `LogLayer` hands each one, as a structured record with secrets
//! redacted, to the sinks registered with `add_sink` (the JS `onLog` callbacks). Without a sink
//! nothing is formatted: `tracing`'s callsite filter sees no interest.
//!
//! Process-wide, as `tracing`'s dispatcher is: installed as the global default on the first
//! `add_sink` unless the host process already set one.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

use crate::model::TierError;

/// One log record as a sink receives it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LogRecord {
    /// `error`, `warn`, `info`, `debug`, `trace`.
    pub level: &'static str,
    /// The Rust module that logged it, e.g. `stackmemory_tiers::moves::demote`.
    pub target: String,
    pub message: String,
    /// Structured fields (`code`, `frameId`, `error`, ...), secrets redacted.
    pub fields: Map<String, Value>,
    /// Milliseconds since the epoch.
    pub time: i64,
}

pub type LogSink = Arc<dyn Fn(&LogRecord) + Send + Sync>;

struct Sink {
    id: u64,
    level: Level,
    f: LogSink,
}

fn sinks() -> &'static RwLock<Vec<Sink>> {
    static SINKS: OnceLock<RwLock<Vec<Sink>>> = OnceLock::new();
    SINKS.get_or_init(|| RwLock::new(Vec::new()))
}

/// The most verbose level any sink wants (`None`: no sink).
fn max_level() -> Option<Level> {
    sinks().read().ok()?.iter().map(|s| s.level).max()
}

/// `error`, `warn`, `info`, `debug`, `trace` → a level.
pub fn parse_level(s: &str) -> Option<Level> {
    match s {
        "error" => Some(Level::ERROR),
        "warn" => Some(Level::WARN),
        "info" => Some(Level::INFO),
        "debug" => Some(Level::DEBUG),
        "trace" => Some(Level::TRACE),
        _ => None,
    }
}

/// Registers a sink for records at `level` or more severe; returns its id for `remove_sink`.
pub fn add_sink(level: Level, f: LogSink) -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    install();
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    if let Ok(mut s) = sinks().write() {
        s.push(Sink { id, level, f });
    }
    tracing_core_rebuild();
    id
}

/// Removes a sink; false when there was none with this id.
pub fn remove_sink(id: u64) -> bool {
    let removed = match sinks().write() {
        Ok(mut s) => {
            let n = s.len();
            s.retain(|x| x.id != id);
            s.len() != n
        }
        Err(_) => false,
    };
    tracing_core_rebuild();
    removed
}

/// Callsites cache their interest: tell them the wanted levels changed.
fn tracing_core_rebuild() {
    tracing::callsite::rebuild_interest_cache();
}

fn install() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        use tracing_subscriber::layer::SubscriberExt;
        let subscriber = tracing_subscriber::registry().with(LogLayer);
        // A host that set its own global subscriber keeps it (ours then sees nothing).
        let _ = tracing::subscriber::set_global_default(subscriber);
    });
}

/// The layer that hands events to the sinks.
pub struct LogLayer;

impl<S: Subscriber> Layer<S> for LogLayer {
    fn enabled(&self, metadata: &tracing::Metadata<'_>, _: Context<'_, S>) -> bool {
        metadata.target().starts_with("stackmemory_tiers") && max_level().is_some_and(|l| *metadata.level() <= l)
    }

    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let level = *event.metadata().level();
        let Ok(sinks) = sinks().read() else { return };
        if !sinks.iter().any(|s| level <= s.level) {
            return;
        }
        let mut v = Fields::default();
        event.record(&mut v);
        let rec = LogRecord {
            level: match level {
                Level::ERROR => "error",
                Level::WARN => "warn",
                Level::INFO => "info",
                Level::DEBUG => "debug",
                _ => "trace",
            },
            target: event.metadata().target().to_string(),
            message: redact(&v.message),
            fields: v.fields,
            time: crate::model::units::now_millis(),
        };
        for s in sinks.iter().filter(|s| level <= s.level) {
            (s.f)(&rec);
        }
    }
}

#[derive(Default)]
struct Fields {
    message: String,
    fields: Map<String, Value>,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.record_str(field, &format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else {
            self.fields.insert(camel(field.name()), Value::String(redact(value)));
        }
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.fields.insert(camel(field.name()), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.fields.insert(camel(field.name()), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.fields.insert(camel(field.name()), Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.fields.insert(camel(field.name()), Value::from(value));
    }
}

/// `frame_id` → `frameId`, as JS names fields.
fn camel(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut up = false;
    for c in s.chars() {
        if c == '_' {
            up = true;
        } else if up {
            out.extend(c.to_uppercase());
            up = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// `text` with every password in a URL (`scheme://user:PASSWORD@host`) and in a key=value
/// connection string (`password=...`) replaced by `***`.
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        // The authority ends at the first '/', whitespace or quote; its userinfo at the last '@'.
        let end = tail.find(|c: char| c == '/' || c.is_whitespace() || c == '"' || c == '\'').unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => {
                let userinfo = &authority[..at];
                match userinfo.find(':') {
                    Some(colon) => {
                        out.push_str(&userinfo[..colon]);
                        out.push_str(":***");
                    }
                    None => out.push_str(userinfo),
                }
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    redact_key_values(&out)
}

fn redact_key_values(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    if !lower.contains("password=") {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut pos = 0;
    while let Some(i) = lower[pos..].find("password=") {
        let start = pos + i + "password=".len();
        out.push_str(&text[pos..start]);
        out.push_str("***");
        let end =
            text[start..].find(|c: char| c.is_whitespace() || c == '&' || c == ';').map_or(text.len(), |e| start + e);
        pos = end;
    }
    out.push_str(&text[pos..]);
    out
}

/// Failures by `ERR_*` code: returned to callers (`Returned`) or only logged (`Background`).
/// Process-wide, like the logs.
#[derive(Clone, Copy)]
pub enum ErrorKind {
    Returned,
    Background,
}

fn error_counts() -> &'static Mutex<[BTreeMap<&'static str, u64>; 2]> {
    static COUNTS: OnceLock<Mutex<[BTreeMap<&'static str, u64>; 2]>> = OnceLock::new();
    COUNTS.get_or_init(|| Mutex::new([BTreeMap::new(), BTreeMap::new()]))
}

pub fn count_error(kind: ErrorKind, code: &'static str) {
    if let Ok(mut c) = error_counts().lock() {
        *c[kind as usize].entry(code).or_insert(0) += 1;
    }
}

/// (returned, background) error counts by code.
pub fn error_snapshot() -> (BTreeMap<&'static str, u64>, BTreeMap<&'static str, u64>) {
    match error_counts().lock() {
        Ok(c) => (c[0].clone(), c[1].clone()),
        Err(_) => Default::default(),
    }
}

/// A failure nobody is told of otherwise (a cleanup, a background task): logged once at `warn`
/// with its code and what failed, and counted.
pub fn failed(what: &'static str, e: &TierError) {
    count_error(ErrorKind::Background, e.code());
    tracing::warn!(code = e.code(), what, error = %redact(&e.to_string()), "{what} failed");
}

/// `failed` for a result whose success is of no interest.
pub fn log_err<T>(what: &'static str, r: crate::model::Result<T>) {
    if let Err(e) = r {
        failed(what, &e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact("connect postgres://bob:s3cr%40t@db:5432/x failed"),
            "connect postgres://bob:***@db:5432/x failed"
        );
        assert_eq!(redact("redis://:hunter2@127.0.0.1:6379"), "redis://:***@127.0.0.1:6379");
        assert_eq!(redact("redis://127.0.0.1:6379/0"), "redis://127.0.0.1:6379/0");
        assert_eq!(redact("rediss://u@h"), "rediss://u@h");
        assert_eq!(redact("host=db password=abc user=x"), "host=db password=*** user=x");
        assert_eq!(camel("frame_id"), "frameId");
    }

    #[test]
    fn sinks_receive_structured_records() {
        let got: Arc<Mutex<Vec<LogRecord>>> = Arc::default();
        let g = got.clone();
        let id = add_sink(Level::WARN, Arc::new(move |r: &LogRecord| g.lock().unwrap().push(r.clone())));
        failed("unit test cleanup", &TierError::unavailable("redis", "redis://u:pw@h:1 refused"));
        tracing::debug!("not wanted at warn");
        assert!(remove_sink(id));
        failed("after removal", &TierError::unavailable("redis", "x"));
        let got = got.lock().unwrap();
        let mine: Vec<_> = got.iter().filter(|r| r.message.contains("unit test cleanup")).collect();
        assert_eq!(mine.len(), 1, "{got:?}");
        assert_eq!(mine[0].fields["code"], "ERR_TIER_UNAVAILABLE");
        assert!(!mine[0].fields["error"].as_str().unwrap_or("").contains("pw"));
        assert!(!got.iter().any(|r| r.message.contains("after removal")));
    }
}
