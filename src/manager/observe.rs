//! The manager's side of observability: `stats()` and `metrics()` from its recorder, moves and
//! promotions recorded from their reports, remote connects logged (URL redacted).

use std::sync::Mutex;
use std::time::Instant;

use serde_json::Value;

use super::TierManager;
use crate::model::{Result, Tier};
use crate::moves::{MigrateReport, Moved};
use crate::obs::export::{prometheus, stats_json, Backends};
use crate::obs::{MoveCounts, Recorder, Series};

impl TierManager {
    fn backends(&self) -> Backends {
        Backends { redis: self.inner.warm.state(), postgres: self.inner.cold.state() }
    }

    /// Latency histograms per tier and operation, hits, moves, compression, errors, backends
    /// (since open and over the recent window). Synchronous: no round trip.
    pub fn stats(&self) -> Result<Value> {
        self.check_open()?;
        let mut v = stats_json(&self.inner.obs.snapshot(), &self.backends());
        v["compression"]["dictionaries"] = serde_json::to_value(self.inner.mover.dicts.info()).unwrap_or_default();
        Ok(v)
    }

    /// `trainDictionary({ projectId?, force? })`: train the project's dictionary now on its frames in
    /// SQLite (default: the project with the most frames here).
    pub async fn train_dictionary(&self, options: Option<&Value>) -> Result<crate::moves::Trained> {
        self.check_open()?;
        let null = Value::Null;
        let o = crate::model::values::Fields::root(
            options.unwrap_or(&null),
            "options",
            crate::model::values::Kind::Argument,
        )?;
        o.known(&["projectId", "force"])?;
        let force = o.boolean("force", false)?;
        let project = match o.opt_string("projectId")? {
            Some(p) if !p.is_empty() => p,
            Some(_) => return Err(crate::model::TierError::invalid_argument("options.projectId", "must not be empty")),
            None => self.inner.hot.call(|hot| hot.main_project()).await?.ok_or_else(|| {
                crate::model::TierError::invalid_argument("options.projectId", "the store holds no frames to sample")
            })?,
        };
        let rm = self.remotes().await;
        self.inner.mover.train_dictionary(&project, force, &rm).await
    }

    /// The same figures in Prometheus' text exposition format.
    pub fn metrics(&self) -> Result<String> {
        self.check_open()?;
        Ok(prometheus(&self.inner.obs.snapshot(), &self.backends()))
    }

    /// A move the policy (or `migrate` outside a run) made: one batch, its frames by outcome.
    pub(super) fn observe_report(&self, rep: &MigrateReport, to: Tier, started: Instant, batch: bool) {
        let obs = &self.inner.obs;
        if batch {
            for (from, n, bytes) in by_hop(&rep.moved) {
                if n > 0 {
                    obs.record(Series::Hop(from, lv(to)), started, bytes);
                }
            }
        }
        let from = main_source(&rep.moved, to);
        let moved = if rep.moved.is_empty() { rep.moved_count } else { rep.moved.len() } as u64;
        let failed = rep.failed.len().max(rep.failed_count) as u64;
        let counts = MoveCounts {
            moved,
            failed,
            held_back: rep.held_back.len() as u64,
            skipped: rep.skipped.len().max(rep.skipped_count) as u64,
        };
        obs.record_moves(from, lv(to), counts, rep.bytes_before, rep.bytes_after);
    }

    /// A promotion on read: a hop batch of one.
    pub(super) fn observe_promotion(&self, from: Tier, started: Instant, size: i64, ok: bool) {
        let obs = &self.inner.obs;
        if ok {
            obs.record(Series::Hop(lv(from), 1), started, size.max(0) as u64);
        }
        let counts = MoveCounts { moved: ok as u64, failed: (!ok) as u64, ..Default::default() };
        obs.record_moves(lv(from), 1, counts, 0, 0);
    }
}

/// A run's batches, timed from one `moved` callback to the next (the first from the run's start).
pub(super) struct Batches<'a> {
    obs: &'a Recorder,
    last: Mutex<Instant>,
}

impl<'a> Batches<'a> {
    pub(super) fn new(obs: &'a Recorder) -> Batches<'a> {
        Batches { obs, last: Mutex::new(Instant::now()) }
    }

    pub(super) fn batch(&self, moved: &[Moved]) {
        let Ok(mut last) = self.last.lock() else { return };
        for (from, _, bytes) in by_hop(moved) {
            if let Some(to) = moved.first().and_then(|m| Tier::parse(m.to)) {
                self.obs.record(Series::Hop(from, lv(to)), *last, bytes);
            }
        }
        *last = Instant::now();
    }

    /// The run's frames by outcome (its counts: a bulk run keeps no list).
    pub(super) fn finish(&self, rep: &MigrateReport, to: Tier) {
        if rep.dry_run {
            return;
        }
        let from = main_source(&rep.moved, to);
        let moved = rep.moved.len().max(rep.moved_count) as u64;
        let failed = if rep.failed_count > 0 { rep.failed_count } else { rep.failed.len() } as u64;
        let counts = MoveCounts {
            moved,
            failed,
            held_back: rep.held_back.len() as u64,
            skipped: rep.skipped_count.max(rep.skipped.len()) as u64,
        };
        self.obs.record_moves(from, lv(to), counts, rep.bytes_before, rep.bytes_after);
    }
}

fn lv(t: Tier) -> u8 {
    t.level() as u8
}

/// Moved frames grouped by source tier: (level, frames, 0 bytes: the report has no per-frame size).
fn by_hop(moved: &[Moved]) -> Vec<(u8, usize, u64)> {
    let mut out: Vec<(u8, usize, u64)> = vec![];
    for m in moved {
        let Some(from) = Tier::parse(m.from).map(lv) else { continue };
        match out.iter_mut().find(|x| x.0 == from) {
            Some(x) => x.1 += 1,
            None => out.push((from, 1, 0)),
        }
    }
    out
}

/// The tier most moved frames came from; without any, the usual source of a move to `to`.
fn main_source(moved: &[Moved], to: Tier) -> u8 {
    by_hop(moved).into_iter().max_by_key(|x| x.1).map(|x| x.0).unwrap_or(match to {
        Tier::Hot => 3,
        Tier::Warm => 1,
        Tier::Cold => 2,
    })
}

/// A remote connect, logged: the target (password redacted) at `info`, a failure at `warn` with its code.
pub(super) fn connect<T>(backend: &'static str, url: Option<&str>, r: Result<T>) -> Result<T> {
    let url = crate::obs::redact(url.unwrap_or(""));
    match &r {
        Ok(_) => tracing::info!(backend, url = %url, "connected"),
        Err(e) => {
            crate::obs::log::count_error(crate::obs::log::ErrorKind::Background, e.code());
            tracing::warn!(backend, url = %url, code = e.code(), error = %crate::obs::redact(&e.to_string()),
                "{backend} connect failed");
        }
    }
    r
}
