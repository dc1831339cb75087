//! Bulk runs: a migration walked page by page (candidates read from the tier/age index after a
//! cursor, so a call's fixed cost does not grow with the store), cut into batches by frame count
//! and by a memory budget in bytes, throttled by a token bucket in frames/s and bytes/s, slowed
//! when the remote tiers slow down, checkpointed every N frames (`tier_runs`), cancellable, with
//! progress after every batch. A run killed, cancelled or failed resumes from its checkpoint:
//! frames already moved have left the source tier, so none is moved twice.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use governor::{Quota, RateLimiter};
use serde::{Deserialize, Serialize};

use super::report::{MigrateReport, MigrateRequest, Moved};
use super::{Hop, Mover, Remotes};
use crate::model::units::now_seconds;
use crate::model::{Result, Tier};
use crate::tiers::hot::{Candidate, CandidateFilter, Page, RunRecord};

/// Candidates read per page.
const PAGE: usize = 1000;

/// How a run moves: its pace and its checkpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunOptions {
    /// Frames between two checkpoints (default 1000).
    pub checkpoint_every: u64,
    /// Token bucket rates (none: as fast as the tiers go).
    pub frames_per_second: Option<u32>,
    pub bytes_per_second: Option<u64>,
    /// Bytes of frames in flight at once (default 64 MB); a frame larger than this moves alone.
    pub memory_budget: u64,
    /// Most frames per batch (`policies.batchSize`).
    pub max_batch: usize,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            checkpoint_every: 1000,
            frames_per_second: None,
            bytes_per_second: None,
            memory_budget: 64 * 1024 * 1024,
            max_batch: 500,
        }
    }
}

/// Where a run continues: the source tier it is walking and the last frame it finished there
/// (or, for a run over explicit ids, how many of them it has done).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cursor {
    pub source: usize,
    pub after: Option<(i64, i64)>,
    pub index: usize,
}

/// What a run reports while it runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    pub run_id: String,
    pub done: i64,
    pub total: i64,
    pub skipped: i64,
    pub failed: i64,
    pub bytes: i64,
    /// Frames per second since the run (or its resume) started.
    pub rate: f64,
    /// Seconds left at that rate, when the total is known.
    pub eta_seconds: Option<f64>,
    /// The hop of the last batch, e.g. `hot→warm`.
    pub hop: String,
    pub state: String,
    /// The most frames the next batch takes: `batchSize`, less while backpressure holds it down.
    pub batch_size: usize,
    /// Times backpressure slowed the run (since it, or its resume, started).
    pub slowed: u64,
}

/// Told of each batch's moved frames.
pub type MovedSink<'a> = dyn Fn(&[Moved]) + Send + Sync + 'a;

/// A run's controls: cancellation and the progress sink.
pub struct RunControl<'a> {
    pub cancel: &'a AtomicBool,
    pub progress: Option<&'a (dyn Fn(&Progress) + Send + Sync)>,
    /// Keep every frame's id in the report (`migrate()`); bulk runs keep counts only.
    pub collect: bool,
    /// Save checkpoints (`tier_runs`); the policy's small moves are not runs.
    pub persist: bool,
    /// Told of every batch's moved frames (the manager tells the policy engine).
    pub moved: Option<&'a MovedSink<'a>>,
    /// The remote tiers as they are now, asked before each batch: a run of hours uses a tier
    /// that came back (or a new connection after an outage) instead of the one it started with.
    pub remotes: Option<&'a RemotesSource<'a>>,
}

/// Where a run gets the current remote tiers (the manager's breakers).
pub type RemotesSource<'a> = dyn Fn() -> futures_util::future::BoxFuture<'a, Remotes> + Send + Sync + 'a;

type Bucket = RateLimiter<governor::state::NotKeyed, governor::state::InMemoryState, governor::clock::DefaultClock>;

/// A token bucket and the most tokens it hands out at once.
struct Limit {
    bucket: Bucket,
    burst: u64,
}

impl Limit {
    fn new(per_s: u64, burst: u64) -> Limit {
        let rate = NonZeroU32::new(per_s.clamp(1, u32::MAX as u64) as u32).unwrap_or(NonZeroU32::MIN);
        let burst = burst.clamp(1, u32::MAX as u64);
        let b = NonZeroU32::new(burst as u32).unwrap_or(NonZeroU32::MIN);
        Limit { bucket: RateLimiter::direct(Quota::per_second(rate).allow_burst(b)), burst }
    }

    async fn take(&self, mut n: u64) {
        while n > 0 {
            let k = n.min(self.burst);
            if let Some(k32) = NonZeroU32::new(k as u32) {
                let _ = self.bucket.until_n_ready(k32).await;
            }
            n -= k;
        }
    }
}

/// Frames/s and bytes/s buckets (`rateLimit`); a batch waits for its tokens before it moves.
struct Throttle {
    frames: Option<Limit>,
    /// Counted in KiB: a bucket holds at most u32 tokens.
    kib: Option<Limit>,
}

impl Throttle {
    fn new(o: &RunOptions) -> Throttle {
        // A burst of one batch at most, so the pace holds from the first second.
        let frames = o.frames_per_second.map(|f| Limit::new(f as u64, (f as u64).min(o.max_batch as u64)));
        let kib = o.bytes_per_second.map(|b| Limit::new(b / 1024, (b / 1024).max(o.memory_budget / 1024)));
        Throttle { frames, kib }
    }

    async fn wait(&self, frames: usize, bytes: u64) {
        if let Some(l) = &self.frames {
            l.take(frames as u64).await;
        }
        if let Some(l) = &self.kib {
            l.take(bytes.div_ceil(1024)).await;
        }
    }
}

/// Slows a run down when the tiers slow down. A batch whose time per frame is more than three
/// times the usual (a moving average that one slow batch cannot inflate) halves the batch size and
/// pauses the run for half that batch's time (at most 250 ms), so a struggling Redis or PostgreSQL
/// gets fewer frames in flight and time between batches; normal batches grow the size back by a
/// quarter. The size never falls below an eighth of the maximum: a link that is slow per round
/// trip (not per frame) would otherwise shrink the batches to one frame and make every frame pay
/// a round trip.
struct Backpressure {
    per_frame: Option<f64>,
    cap: usize,
    max: usize,
    /// Times the run was slowed.
    slowed: u64,
}

impl Backpressure {
    fn new(max: usize) -> Backpressure {
        Backpressure { per_frame: None, cap: max.max(1), max: max.max(1), slowed: 0 }
    }

    fn floor(&self) -> usize {
        (self.max / 8).max(1)
    }

    /// `took`: the batch's time in the tiers (not its wait for the throttle or the move lease).
    async fn after(&mut self, frames: usize, took: Duration) {
        if frames == 0 {
            return;
        }
        let pf = took.as_secs_f64() / frames as f64;
        match self.per_frame {
            Some(usual) if pf > 3.0 * usual && took > Duration::from_millis(50) => {
                self.cap = (self.cap / 2).max(self.floor());
                self.slowed += 1;
                tracing::info!(
                    batch_ms = took.as_millis() as u64,
                    per_frame_us = (pf * 1e6) as u64,
                    usual_us = (usual * 1e6) as u64,
                    cap = self.cap,
                    "bulk run slowed: the tiers answer slower than usual"
                );
                tokio::time::sleep(took.min(Duration::from_millis(500)) / 2).await;
            }
            _ => self.cap = (self.cap + self.cap / 4 + 1).min(self.max),
        }
        self.per_frame = Some(match self.per_frame {
            None => pf,
            Some(u) => 0.8 * u + 0.2 * pf.min(3.0 * u),
        });
    }
}

/// The source tiers a move to `to` takes frames from, in the order a run walks them.
pub fn sources(to: Tier) -> &'static [Tier] {
    match to {
        Tier::Hot => &[Tier::Warm, Tier::Cold],
        // Warm frames held back (body still local) finish their move to warm, or go on to cold.
        Tier::Warm | Tier::Cold => &[Tier::Hot, Tier::Warm],
    }
}

/// The page of the `source`-th tier a run to `to` walks (`None` past the last). Without
/// PostgreSQL a run to warm leaves held-back frames where they are: moving them again would only
/// hold them back again.
pub fn source_page(
    to: Tier,
    source: usize,
    project_id: Option<String>,
    max_age_s: Option<i64>,
    has_cold: bool,
) -> Option<Page> {
    let tier = *sources(to).get(source)?;
    if to == Tier::Warm && tier == Tier::Warm && !has_cold {
        return None;
    }
    // A run to warm takes only the held-back frames of warm: the others are where it goes.
    let local_only = to == Tier::Warm && tier == Tier::Warm;
    Some(Page { tier: Some(tier), project_id, max_age_s, after: None, limit: PAGE, local_only })
}

impl Mover {
    /// Runs (or resumes, from `rec.cursor`) a migration: see the module docs. `rec` holds the
    /// run's counters and checkpoint; it is saved every `checkpoint_every` frames and at the end.
    pub async fn run(
        &self,
        rec: &mut RunRecord,
        req: &MigrateRequest,
        opts: &RunOptions,
        remotes: &Remotes,
        ctl: &RunControl<'_>,
    ) -> Result<MigrateReport> {
        let started = Instant::now();
        let done_at_start = rec.done;
        let mut report = MigrateReport { to_tier: req.to.as_str(), dry_run: req.dry_run, ..Default::default() };
        if !req.dry_run {
            let _moving = self.lock_moves().await?;
            self.recover(remotes).await?;
        }
        let mut cursor: Cursor = rec.cursor.as_deref().and_then(|c| serde_json::from_str(c).ok()).unwrap_or_default();
        let throttle = Throttle::new(opts);
        let mut pressure = Backpressure::new(opts.max_batch);
        let mut since_checkpoint = 0u64;
        let mut chosen_total = 0usize;
        let mut hop = String::new();
        let explicit = self.explicit_ids(req).await?;
        let now = now_seconds();
        let max_age_s = req.older_than_ms.map(|ms| now - (ms / 1000) as i64);
        let mut remotes = remotes.clone();
        'pages: loop {
            if ctl.cancel.load(Ordering::SeqCst) {
                rec.state = "cancelled".into();
                break;
            }
            // The next page of candidates (and the cursor after it).
            let page: Vec<(Candidate, Cursor)> = match &explicit {
                Some(ids) => {
                    let slice: Vec<String> = ids.iter().skip(cursor.index).take(PAGE).cloned().collect();
                    if slice.is_empty() {
                        break;
                    }
                    self.explicit_page(&slice, cursor.index, req, &mut report).await?
                }
                None => {
                    let Some(mut p) =
                        source_page(req.to, cursor.source, req.project_id.clone(), max_age_s, remotes.cold.is_some())
                    else {
                        break;
                    };
                    p.after = cursor.after;
                    // A run with a `limit` reads little more than it needs: `migrate({ limit: 1 })`
                    // read a page of 1,000 candidates, a fixed cost that grew with the store
                    // (4.2 ms at 10,000 frames, 6.6 ms at 1,000,000; bench/scale.js).
                    if let Some(l) = req.limit {
                        p.limit = l.saturating_sub(chosen_total).saturating_mul(2).clamp(64, PAGE);
                    }
                    let got = self.hot.call(move |hot| hot.candidates_page(&p)).await?;
                    if got.is_empty() {
                        cursor = Cursor { source: cursor.source + 1, after: None, index: 0 };
                        continue;
                    }
                    let src = cursor.source;
                    got.into_iter().map(|(c, key)| (c, Cursor { source: src, after: Some(key), index: 0 })).collect()
                }
            };
            let page_end = page.last().map(|(_, k)| k.clone());
            // The rules, then batches by count and bytes, each of one path.
            let mut batch: Vec<(Candidate, Cursor)> = vec![];
            let mut bytes = 0u64;
            for (c, key) in page {
                let skips = report.skipped_count;
                if !self.choose(&c, req, explicit.is_some(), now, &mut report) {
                    // Counted only when the report counts it (a rule refused it).
                    rec.skipped += (report.skipped_count - skips) as i64;
                    continue;
                }
                if req.limit.is_some_and(|l| chosen_total >= l) {
                    break;
                }
                chosen_total += 1;
                let size = c.size_bytes.max(0) as u64;
                let same_path = batch.first().is_none_or(|(f, _)| (f.tier, f.body_local) == (c.tier, c.body_local));
                if !batch.is_empty() && (batch.len() >= pressure.cap || bytes + size > opts.memory_budget || !same_path)
                {
                    bytes = 0;
                    let b = std::mem::take(&mut batch);
                    if let Some(current) = ctl.remotes {
                        remotes = current().await;
                    }
                    hop = self
                        .run_batch(b, req, &remotes, ctl, rec, &mut report, &throttle, &mut pressure, &mut cursor)
                        .await?;
                    since_checkpoint = self.checkpoint(rec, &cursor, ctl, since_checkpoint, opts).await?;
                    self.report_progress(rec, started, done_at_start, ctl, &hop, &pressure);
                    if ctl.cancel.load(Ordering::SeqCst) {
                        rec.state = "cancelled".into();
                        break 'pages;
                    }
                }
                bytes += size;
                batch.push((c, key));
            }
            if !batch.is_empty() {
                let b = std::mem::take(&mut batch);
                if let Some(current) = ctl.remotes {
                    remotes = current().await;
                }
                hop = self
                    .run_batch(b, req, &remotes, ctl, rec, &mut report, &throttle, &mut pressure, &mut cursor)
                    .await?;
                self.report_progress(rec, started, done_at_start, ctl, &hop, &pressure);
            }
            if let Some(k) = page_end {
                cursor = k;
            }
            since_checkpoint = self.checkpoint(rec, &cursor, ctl, since_checkpoint, opts).await?;
            if req.limit.is_some_and(|l| chosen_total >= l) {
                break;
            }
        }
        if rec.state == "running" {
            rec.state = "done".into();
            rec.finished_at = Some(now_seconds());
            // The frames the run looked at, as it found them (frames stored while it ran count too).
            rec.total = rec.done + rec.skipped + rec.failed;
        }
        rec.cursor = serde_json::to_string(&cursor).ok();
        if ctl.persist {
            let r = rec.clone();
            self.hot.call(move |hot| hot.run_save(&r)).await?;
        }
        self.report_progress(rec, started, done_at_start, ctl, &hop, &pressure);
        report.duration_ms = started.elapsed().as_secs_f64() * 1000.0;
        Ok(report)
    }

    /// The ids of an explicit request, with the closed subtree of each for a demotion.
    async fn explicit_ids(&self, req: &MigrateRequest) -> Result<Option<Vec<String>>> {
        let Some(ids) = req.frame_ids.clone() else { return Ok(None) };
        if req.to == Tier::Hot || !req.subtrees {
            return Ok(Some(ids));
        }
        Ok(Some(self.hot.call(move |hot| hot.with_closed_descendants(&ids)).await?))
    }

    /// One page of an explicit request (`ids` from position `start`): the frames in the order
    /// asked, unknown ones reported.
    async fn explicit_page(
        &self,
        ids: &[String],
        start: usize,
        req: &MigrateRequest,
        report: &mut MigrateReport,
    ) -> Result<Vec<(Candidate, Cursor)>> {
        let filter = CandidateFilter { project_id: req.project_id.clone(), frame_ids: Some(ids.to_vec()), tiers: None };
        let cands = self.hot.call(move |hot| hot.candidates(&filter)).await?;
        let mut by_id: std::collections::HashMap<String, Candidate> =
            cands.into_iter().map(|c| (c.frame_id.clone(), c)).collect();
        let asked: Vec<&String> = req.frame_ids.iter().flatten().collect();
        let mut out = vec![];
        for (i, id) in ids.iter().enumerate() {
            let key = Cursor { source: 0, after: None, index: start + i + 1 };
            match by_id.remove(id) {
                Some(c) => out.push((c, key)),
                None if asked.contains(&id) => report.skip(id, "unknown frame"),
                None => {}
            }
        }
        Ok(out)
    }

    /// One batch down its path, under the move lock (held for the batch only: a promotion a read
    /// wants, or a delete, waits for at most one batch of a bulk run).
    #[allow(clippy::too_many_arguments)]
    async fn run_batch(
        &self,
        batch: Vec<(Candidate, Cursor)>,
        req: &MigrateRequest,
        remotes: &Remotes,
        ctl: &RunControl<'_>,
        rec: &mut RunRecord,
        report: &mut MigrateReport,
        throttle: &Throttle,
        pressure: &mut Backpressure,
        cursor: &mut Cursor,
    ) -> Result<String> {
        let Some((first, _)) = batch.first() else { return Ok(String::new()) };
        let (from, body_local) = (Tier::from_level(first.tier).unwrap_or(Tier::Hot), first.body_local);
        let hop = format!("{}→{}", from.as_str(), req.to.as_str());
        let bytes: u64 = batch.iter().map(|(c, _)| c.size_bytes.max(0) as u64).sum();
        let ids: Vec<String> = batch.iter().map(|(c, _)| c.frame_id.clone()).collect();
        let last = batch.last().map(|(_, k)| k.clone()).unwrap_or_default();
        if req.dry_run {
            for (c, _) in &batch {
                report.moved.push(Moved::new(&c.frame_id, from, req.to));
                report.bytes_before += c.size_bytes.max(0) as u64;
            }
            rec.done += batch.len() as i64;
            *cursor = last;
            return Ok(hop);
        }
        throttle.wait(batch.len(), bytes).await;
        let mut part = MigrateReport::default();
        let took = {
            let _moving = self.lock_moves().await?;
            let t0 = Instant::now();
            let hop = Hop { ids: &ids, from, to: req.to, run: req.run_id.as_deref() };
            let r = if body_local {
                self.demote_local(&hop, remotes, &mut part).await
            } else if req.to == Tier::Hot {
                self.promote(&hop, remotes, &mut part).await
            } else {
                self.shift_remote(&hop, remotes, &mut part).await
            };
            if let Err(e) = r {
                part.fail(&ids, &e);
            }
            t0.elapsed()
        };
        pressure.after(batch.len(), took).await;
        if let Some(tell) = ctl.moved {
            tell(&part.moved);
        }
        rec.done += part.moved.len() as i64;
        rec.failed += part.failed.len() as i64;
        rec.skipped += part.skipped_count as i64;
        rec.bytes += part.bytes_before.max(bytes) as i64;
        report.absorb(part, ctl.collect);
        *cursor = last;
        Ok(hop)
    }

    /// Saves the run when `checkpoint_every` frames passed since the last save; returns the new
    /// count since.
    async fn checkpoint(
        &self,
        rec: &mut RunRecord,
        cursor: &Cursor,
        ctl: &RunControl<'_>,
        since: u64,
        o: &RunOptions,
    ) -> Result<u64> {
        let now_done = (rec.done + rec.skipped + rec.failed) as u64;
        if !ctl.persist || now_done < since + o.checkpoint_every {
            return Ok(since);
        }
        rec.cursor = serde_json::to_string(cursor).ok();
        let r = rec.clone();
        self.hot.call(move |hot| hot.run_save(&r)).await?;
        Ok(now_done)
    }

    fn report_progress(
        &self,
        rec: &RunRecord,
        started: Instant,
        done_at_start: i64,
        ctl: &RunControl<'_>,
        hop: &str,
        pressure: &Backpressure,
    ) {
        let Some(sink) = ctl.progress else { return };
        let secs = started.elapsed().as_secs_f64().max(1e-3);
        let rate = (rec.done - done_at_start).max(0) as f64 / secs;
        let left = (rec.total - rec.done - rec.skipped - rec.failed).max(0) as f64;
        sink(&Progress {
            run_id: rec.run_id.clone(),
            done: rec.done,
            total: rec.total,
            skipped: rec.skipped,
            failed: rec.failed,
            bytes: rec.bytes,
            rate,
            eta_seconds: (rec.total > 0 && rate > 0.0).then(|| left / rate),
            hop: hop.to_string(),
            state: rec.state.clone(),
            batch_size: pressure.cap,
            slowed: pressure.slowed,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn backpressure_halves_batches_when_the_tiers_slow_down_and_grows_them_back() {
        let mut p = Backpressure::new(400);
        for _ in 0..5 {
            p.after(400, Duration::from_millis(40)).await;
        }
        assert_eq!((p.cap, p.slowed), (400, 0));
        // 10x slower per frame: halved, and the run paused for half the batch's time.
        let t = Instant::now();
        p.after(400, Duration::from_millis(400)).await;
        assert!(t.elapsed() >= Duration::from_millis(200), "{:?}", t.elapsed());
        assert_eq!((p.cap, p.slowed), (200, 1));
        // Slower still (2 ms a frame): down to the floor (an eighth), never to one frame.
        for _ in 0..5 {
            p.after(p.cap, Duration::from_millis(2 * p.cap as u64)).await;
        }
        assert_eq!((p.cap, p.slowed), (50, 6));
        // A slowness that lasts becomes the usual: the batches grow again.
        p.after(p.cap, Duration::from_millis(2 * p.cap as u64)).await;
        assert_eq!((p.cap, p.slowed), (63, 6));
        // A slow batch that is short in time (< 50 ms) is noise, not pressure.
        let mut q = Backpressure::new(400);
        q.after(400, Duration::from_millis(4)).await;
        q.after(400, Duration::from_millis(40)).await;
        assert_eq!((q.cap, q.slowed), (400, 0));
        // Fast again: grown back by a quarter per batch, up to the maximum.
        for _ in 0..20 {
            p.after(p.cap, Duration::from_micros(100 * p.cap as u64)).await;
        }
        assert_eq!(p.cap, 400);
    }
}
