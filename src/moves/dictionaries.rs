//! Per-project zstd dictionaries for the envelopes (`model::codec` format 2).
//!
//! The rule, in the order things happen:
//! - **Training.** A project's frames are plain zstd until the mover has demoted `min_frames` of
//!   them (500 by default). Their canonical JSON is the sample, gathered from the batches the mover
//!   encodes anyway (no extra read of SQLite). 90 % of it trains a dictionary of `max_size` bytes
//!   (16 KiB by default); the other 10 % measures it. It is adopted when it compresses that held-out
//!   tenth at least 1.1x better than plain zstd; otherwise the sample grows to twice its size and
//!   training is tried again, up to four times `min_frames`.
//! - **Saved before use.** An adopted dictionary is saved in SQLite, in PostgreSQL when that is
//!   configured, and in Redis when that is configured, before any envelope names it. PostgreSQL is
//!   the durable copy and must take it; Redis is a cache beside it, and the only shared copy
//!   without it (then it must take it). While a tier that must take it is down, the dictionary
//!   waits (envelopes stay plain).
//! - **Never deleted**, so every envelope stays readable; a decoder that lacks one (another
//!   machine, a lost SQLite file) finds it in SQLite, then Redis, then PostgreSQL (and caches it in
//!   Redis and SQLite; `Mover::ensure_dictionaries`).
//! - **Retrained on drift**: once `4 × min_frames` frames were encoded with a dictionary, if they
//!   compressed below 0.8x the ratio it was adopted with, a new sample is gathered and a new
//!   dictionary (a new id) replaces it for new envelopes; the old one stays for the old ones.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::{Mover, Remotes};
use crate::model::codec::{self, Dictionary};
use crate::model::units::now_seconds;
use crate::model::{Result, TierError};
use crate::tiers::hot::StoredDictionary;

/// A batch's envelopes by project: raw and encoded sizes, and whether the project's dictionary made it.
pub type EncodedSizes = Vec<(String, usize, usize, bool)>;
/// Frames' canonical JSON by project, towards a training sample.
pub type Sample = Vec<(String, Vec<u8>)>;

/// `compression.dictionaries` in the config.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DictConfig {
    pub enabled: bool,
    /// Frames of a project to sample before its first dictionary.
    pub min_frames: usize,
    /// The dictionary's size in bytes at most.
    pub max_size: usize,
}

impl Default for DictConfig {
    fn default() -> Self {
        DictConfig { enabled: true, min_frames: 500, max_size: 16 * 1024 }
    }
}

/// Adopted only when it beats plain zstd on held-out frames by this much.
const MIN_GAIN: f64 = 1.1;
/// Retrained when envelopes made with it compress below this share of its adoption ratio.
const DRIFT: f64 = 0.8;
/// Projects gathering a sample at once, at most (each holds up to `4 × min_frames` frames' JSON).
const MAX_GATHERING: usize = 8;

/// One project's dictionary state.
#[derive(Default)]
struct Project {
    current: Option<Arc<Dictionary>>,
    /// Held-out ratio (raw / envelope) of `current` when it was adopted.
    adopted_ratio: f64,
    plain_ratio: f64,
    samples_trained: i64,
    /// Gathering a sample for a first dictionary or a retraining.
    gathering: bool,
    /// Shared with a training under way (so taking it copies nothing); a batch that arrives
    /// meanwhile copies it once (`Arc::make_mut`).
    sample: Arc<Vec<Vec<u8>>>,
    /// Train once the sample has this many frames.
    train_at: usize,
    /// Trained, adopted, not yet saved in PostgreSQL (configured but down).
    unsaved: Option<(StoredDictionary, Arc<Dictionary>)>,
    /// Envelopes made with `current` since it was adopted: raw and encoded bytes, frames.
    raw: u64,
    packed: u64,
    frames: usize,
}

/// What one project's dictionary is, for `stats()`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DictionaryInfo {
    pub project_id: String,
    /// The current dictionary's id (`None`: still plain zstd).
    pub id: Option<u32>,
    pub size: usize,
    pub samples: i64,
    /// Held-out ratio at adoption, with the dictionary and with plain zstd.
    pub ratio: f64,
    pub plain_ratio: f64,
    /// Since it was adopted (this process): frames encoded with it, and their ratio.
    pub frames: usize,
    pub live_ratio: f64,
    /// Frames sampled towards the next training (0 when not gathering).
    pub gathering: usize,
}

/// The outcome of a training.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Trained {
    pub project_id: String,
    pub id: u32,
    pub size: usize,
    pub samples: usize,
    pub ratio: f64,
    pub plain_ratio: f64,
    /// Adopted for new envelopes (the gain was at least 1.1x, or the caller forced it).
    pub adopted: bool,
}

pub struct Dictionaries {
    pub cfg: DictConfig,
    projects: Mutex<HashMap<String, Project>>,
}

impl Dictionaries {
    pub fn new(cfg: DictConfig) -> Dictionaries {
        Dictionaries { cfg, projects: Mutex::new(HashMap::new()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Project>> {
        // A panic while holding it cannot leave the map half-written in a way that matters (every
        // field is a cache or a counter): go on with it.
        self.projects.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The dictionaries to encode with now, by project, and the projects that are not gathering a
    /// sample (any other project's frames are sampled: it gathers, or is new).
    pub fn snapshot(&self) -> (HashMap<String, Arc<Dictionary>>, std::collections::HashSet<String>) {
        if !self.cfg.enabled {
            return Default::default();
        }
        let g = self.lock();
        let current = g.iter().filter_map(|(p, s)| s.current.clone().map(|d| (p.clone(), d))).collect();
        let settled = g.iter().filter(|(_, s)| !s.gathering).map(|(p, _)| p.clone()).collect();
        (current, settled)
    }

    /// Whether a project gathers a sample (a project with no state yet starts, while few do).
    #[cfg(test)]
    pub fn should_gather(&self, project: &str) -> bool {
        self.cfg.enabled && Self::start_gathering(&mut self.lock(), project, self.cfg.min_frames)
    }

    /// A project seen for the first time starts gathering, while fewer than `MAX_GATHERING` do.
    /// Returns whether it gathers.
    fn start_gathering(g: &mut HashMap<String, Project>, project: &str, min_frames: usize) -> bool {
        if let Some(s) = g.get(project) {
            return s.gathering;
        }
        if g.values().filter(|s| s.gathering).count() >= MAX_GATHERING {
            return false;
        }
        g.insert(project.to_string(), Project { gathering: true, train_at: min_frames, ..Default::default() });
        true
    }

    /// A batch was encoded: its frames' sizes by project (`dict` whether with the project's
    /// dictionary) and the sample frames gathered (a project seen for the first time starts
    /// gathering, see `start_gathering`). Returns the projects ready to train.
    pub fn observe(&self, sizes: &[(String, usize, usize, bool)], sample: Sample) -> Vec<String> {
        let mut g = self.lock();
        if self.cfg.enabled {
            for (p, _) in &sample {
                Self::start_gathering(&mut g, p, self.cfg.min_frames);
            }
        }
        for (p, raw, packed, dict) in sizes {
            let Some(s) = g.get_mut(p) else { continue };
            if *dict {
                s.raw += *raw as u64;
                s.packed += *packed as u64;
                s.frames += 1;
            }
        }
        let cap = 4 * self.cfg.min_frames;
        for (p, raw) in sample {
            if let Some(s) = g.get_mut(&p) {
                if s.gathering && s.sample.len() < cap {
                    Arc::make_mut(&mut s.sample).push(raw);
                }
            }
        }
        let mut ready = vec![];
        for (p, s) in g.iter_mut() {
            // Drift: enough envelopes made with it, compressing well below what it was adopted with.
            if !s.gathering && s.current.is_some() && s.frames >= cap && s.packed > 0 {
                let live = s.raw as f64 / s.packed as f64;
                if live < DRIFT * s.adopted_ratio {
                    tracing::info!(project = %p, live, adopted = s.adopted_ratio, "dictionary drifted: retraining");
                    s.gathering = true;
                    s.train_at = self.cfg.min_frames;
                }
                s.raw = 0;
                s.packed = 0;
                s.frames = 0;
            }
            if s.gathering && s.sample.len() >= s.train_at || s.unsaved.is_some() {
                ready.push(p.clone());
            }
        }
        ready
    }

    /// A project's sample for training (`None`: nothing to train). Shared, not copied: a rejected
    /// sample stays to grow.
    fn take_sample(&self, project: &str) -> Option<Arc<Vec<Vec<u8>>>> {
        let mut g = self.lock();
        let s = g.get_mut(project)?;
        if !s.gathering || s.sample.len() < s.train_at {
            return None;
        }
        Some(Arc::clone(&s.sample))
    }

    /// A trained dictionary was not adopted: gather twice the sample, or give up past the cap.
    fn rejected(&self, project: &str) {
        let mut g = self.lock();
        if let Some(s) = g.get_mut(project) {
            s.train_at = s.sample.len() * 2;
            if s.train_at > 4 * self.cfg.min_frames {
                tracing::info!(project = %project, frames = s.sample.len(), "no dictionary beats plain zstd here");
                s.gathering = false;
                s.sample = Arc::default();
            }
        }
    }

    /// Make `d` the project's current dictionary (it is saved everywhere it must be).
    fn adopt(&self, project: &str, d: Arc<Dictionary>, stored: &StoredDictionary) {
        let mut g = self.lock();
        let s = g.entry(project.to_string()).or_default();
        s.current = Some(d);
        s.adopted_ratio = stored.ratio;
        s.plain_ratio = stored.plain_ratio;
        s.samples_trained = stored.samples;
        s.gathering = false;
        s.sample = Arc::default();
        s.unsaved = None;
        s.raw = 0;
        s.packed = 0;
        s.frames = 0;
    }

    fn park(&self, project: &str, stored: StoredDictionary, d: Arc<Dictionary>) {
        let mut g = self.lock();
        let s = g.entry(project.to_string()).or_default();
        s.gathering = false;
        s.sample = Arc::default();
        s.unsaved = Some((stored, d));
    }

    fn take_unsaved(&self, project: &str) -> Option<(StoredDictionary, Arc<Dictionary>)> {
        self.lock().get_mut(project).and_then(|s| s.unsaved.take())
    }

    pub fn info(&self) -> Vec<DictionaryInfo> {
        let g = self.lock();
        let mut out: Vec<DictionaryInfo> = g
            .iter()
            .map(|(p, s)| DictionaryInfo {
                project_id: p.clone(),
                id: s.current.as_ref().map(|d| d.id),
                size: s.current.as_ref().map_or(0, |d| d.bytes.len()),
                samples: s.samples_trained,
                ratio: s.adopted_ratio,
                plain_ratio: s.plain_ratio,
                frames: s.frames,
                live_ratio: if s.packed > 0 { s.raw as f64 / s.packed as f64 } else { 0.0 },
                gathering: if s.gathering { s.sample.len() } else { 0 },
            })
            .collect();
        out.sort_by(|a, b| a.project_id.cmp(&b.project_id));
        out
    }
}

/// Train on 90 % of `sample`, measure on the rest (every tenth frame), plain zstd against it.
pub fn train(project: &str, sample: &[Vec<u8>], max_size: usize, level: i32) -> Result<(StoredDictionary, Dictionary)> {
    if sample.len() < 16 {
        return Err(TierError::invalid_argument(
            "options.projectId",
            format!("{project} has {} frames to sample, at least 16 are needed", sample.len()),
        ));
    }
    let (mut fit, mut held): (Vec<&[u8]>, Vec<&[u8]>) = (vec![], vec![]);
    for (i, s) in sample.iter().enumerate() {
        if i % 10 == 9 {
            held.push(s);
        } else {
            fit.push(s);
        }
    }
    let d = Dictionary::train(&fit, max_size)?;
    let (mut raw, mut plain, mut with) = (0usize, 0usize, 0usize);
    for h in held {
        raw += h.len();
        plain += codec::encode_raw(String::new(), h, level)?.bytes.len();
        with += codec::encode_raw_with(String::new(), h, level, &d)?.bytes.len();
    }
    let stored = StoredDictionary {
        id: d.id,
        project_id: project.to_string(),
        bytes: d.bytes.clone(),
        created_at: now_seconds(),
        samples: fit.len() as i64,
        ratio: raw as f64 / with.max(1) as f64,
        plain_ratio: raw as f64 / plain.max(1) as f64,
    };
    Ok((stored, d))
}

impl Mover {
    /// Load this file's dictionaries into the registry; the newest of each project is its current.
    pub async fn load_dictionaries(&self) -> Result<()> {
        let all = self.hot.call(|hot| hot.dict_all()).await?;
        for s in all {
            let Ok(d) = Dictionary::named(s.id, s.bytes.clone()).map(Arc::new) else {
                tracing::warn!(id = s.id, "a stored dictionary's bytes do not hash to its id: not used");
                continue;
            };
            codec::register(d.clone())?;
            if self.dicts.cfg.enabled {
                self.dicts.adopt(&s.project_id.clone(), d, &s);
            }
        }
        Ok(())
    }

    /// Every dictionary these envelopes name is in the registry after this (from SQLite, else
    /// Redis, else PostgreSQL, saved in SQLite then). One that cannot be found is left out: decoding that
    /// envelope then fails as corrupt, and the caller serves the frame from another copy.
    pub async fn ensure_dictionaries<'a>(&self, envelopes: impl Iterator<Item = &'a [u8]>, rm: &Remotes) {
        let mut missing: Vec<u32> =
            envelopes.filter_map(codec::dictionary_id).filter(|id| codec::registered(*id).is_none()).collect();
        missing.sort_unstable();
        missing.dedup();
        for id in missing {
            if let Err(e) = self.load_dictionary(id, rm).await {
                tracing::warn!(id, error = %e, code = e.code(), "a dictionary an envelope names could not be loaded");
            }
        }
    }

    async fn load_dictionary(&self, id: u32, rm: &Remotes) -> Result<()> {
        if let Some(s) = self.hot.call(move |hot| hot.dict_get(id)).await? {
            return codec::register(Arc::new(Dictionary::new(s.bytes)));
        }
        let Some(RemoteDictionary { project_id, dict: d, in_redis }) = self.remote_dictionary(id, rm).await? else {
            return Err(TierError::storage("dictionary", format!("{id} is in none of SQLite, Redis and PostgreSQL")));
        };
        if let (Some(w), false) = (&rm.warm, in_redis) {
            // Found in PostgreSQL: cache it in Redis for the next machine (best effort).
            if let Err(e) = w.dict_put(id, &project_id, &d.bytes).await {
                tracing::warn!(id, error = %e, code = e.code(), "caching a dictionary in Redis");
            }
        }
        let stored = StoredDictionary {
            id,
            project_id,
            bytes: d.bytes.clone(),
            created_at: 0,
            samples: 0,
            ratio: 0.0,
            plain_ratio: 0.0,
        };
        self.hot.call(move |hot| hot.dict_save(&stored)).await?;
        codec::register(d)
    }

    /// A dictionary from Redis (the cache, tried first), else PostgreSQL (the durable copy). A
    /// copy whose bytes do not hash to `id` is passed over; one that fails the same way in
    /// PostgreSQL is an error.
    async fn remote_dictionary(&self, id: u32, rm: &Remotes) -> Result<Option<RemoteDictionary>> {
        if let Some(w) = &rm.warm {
            match w.dict_get(id).await {
                Ok(Some((project_id, bytes))) => match Dictionary::named(id, bytes) {
                    Ok(d) => return Ok(Some(RemoteDictionary { project_id, dict: Arc::new(d), in_redis: true })),
                    Err(got) => {
                        tracing::warn!(id, got, "Redis' copy of a dictionary does not hash to its id: passed over")
                    }
                },
                Ok(None) => {}
                Err(e) => tracing::warn!(id, error = %e, code = e.code(), "reading a dictionary from Redis"),
            }
        }
        let Some(c) = &rm.cold else { return Ok(None) };
        let Some((project_id, bytes)) = c.dict_get(id).await? else { return Ok(None) };
        let d = Dictionary::named(id, bytes)
            .map_err(|got| TierError::storage("dictionary", format!("PostgreSQL's dictionary {id} hashes to {got}")))?;
        Ok(Some(RemoteDictionary { project_id, dict: Arc::new(d), in_redis: false }))
    }

    /// Train the projects whose sample is complete, and save the dictionaries parked while
    /// PostgreSQL was down. Failures are logged: envelopes simply stay plain meanwhile.
    pub(super) async fn train_ready(&self, ready: Vec<String>, rm: &Remotes) {
        for project in ready {
            if let Some((stored, d)) = self.dicts.take_unsaved(&project) {
                if let Err(e) = self.save_and_adopt(stored.clone(), d.clone(), rm).await {
                    tracing::warn!(project = %project, error = %e, "saving a dictionary");
                    self.dicts.park(&project, stored, d);
                }
                continue;
            }
            let Some(sample) = self.dicts.take_sample(&project) else { continue };
            // Another process on this file may have trained (or retrained) one meanwhile: use it.
            let p = project.clone();
            let newest = self
                .hot
                .call(move |hot| hot.dict_all())
                .await
                .ok()
                .and_then(|all| all.into_iter().rfind(|s| s.project_id == p));
            if let Some(s) = newest {
                let current = self.dicts.snapshot().0.get(&project).map(|d| d.id);
                if current != Some(s.id) {
                    if let Ok(d) = Dictionary::named(s.id, s.bytes.clone()).map(Arc::new) {
                        if codec::register(d.clone()).is_ok() {
                            tracing::info!(project = %project, id = s.id, "adopting the dictionary another process trained");
                            self.dicts.adopt(&project, d, &s);
                            continue;
                        }
                    }
                }
            }
            match self.train_sample(&project, sample, false, rm).await {
                Ok(t) if t.adopted => {
                    tracing::info!(project = %project, id = t.id, ratio = t.ratio, plain = t.plain_ratio, "dictionary adopted")
                }
                Ok(_) => self.dicts.rejected(&project),
                Err(e) => {
                    tracing::warn!(project = %project, error = %e, code = e.code(), "training a dictionary");
                    self.dicts.rejected(&project);
                }
            }
        }
    }

    /// `trainDictionary`: a sample of the project's frames in SQLite (its most recent, up to
    /// `4 × min_frames`), trained now; adopted when it gains 1.1x, or always with `force`.
    pub async fn train_dictionary(&self, project: &str, force: bool, rm: &Remotes) -> Result<Trained> {
        let (p, n) = (project.to_string(), (4 * self.dicts.cfg.min_frames).max(64));
        let sample = self.hot.call(move |hot| hot.dict_sample(&p, n)).await?;
        self.train_sample(project, Arc::new(sample), force, rm).await
    }

    async fn train_sample(
        &self,
        project: &str,
        sample: Arc<Vec<Vec<u8>>>,
        force: bool,
        rm: &Remotes,
    ) -> Result<Trained> {
        let (p, max, level) = (project.to_string(), self.dicts.cfg.max_size, self.compression_level);
        let n = sample.len();
        let (stored, d) = tokio::task::spawn_blocking(move || train(&p, &sample, max, level))
            .await
            .map_err(|e| TierError::storage("training a dictionary", e))??;
        let adopted = force || stored.ratio >= MIN_GAIN * stored.plain_ratio;
        let t = Trained {
            project_id: project.to_string(),
            id: d.id,
            size: d.bytes.len(),
            samples: n,
            ratio: stored.ratio,
            plain_ratio: stored.plain_ratio,
            adopted,
        };
        if adopted {
            let d = Arc::new(d);
            if let Err(e) = self.save_and_adopt(stored.clone(), d.clone(), rm).await {
                if e.is_unavailable() {
                    // A tier it must be saved in is down: saved and adopted once it is back.
                    self.dicts.park(project, stored, d);
                }
                return Err(e);
            }
        }
        Ok(t)
    }

    /// Saved in SQLite, PostgreSQL and Redis, registered, then current for new envelopes. It must
    /// reach PostgreSQL when that is configured (the durable copy), else Redis when that is
    /// configured (the only copy another machine can find); Redis beside PostgreSQL is a cache,
    /// filled on a best-effort basis (and again by the first machine that fetches it).
    async fn save_and_adopt(&self, stored: StoredDictionary, d: Arc<Dictionary>, rm: &Remotes) -> Result<()> {
        let cold_configured = rm.cold.is_some() || rm.cold_down.is_some();
        match (&rm.cold, &rm.cold_down) {
            (Some(c), _) => c.dict_put(stored.id, &stored.project_id, &stored.bytes).await?,
            (None, Some(why)) => return Err(TierError::unavailable("postgres", why.clone())),
            (None, None) => {}
        }
        match (&rm.warm, &rm.warm_down) {
            (Some(w), _) => {
                if let Err(e) = w.dict_put(stored.id, &stored.project_id, &stored.bytes).await {
                    if !cold_configured {
                        return Err(e);
                    }
                    tracing::warn!(id = stored.id, error = %e, code = e.code(), "caching a dictionary in Redis");
                }
            }
            (None, Some(why)) if !cold_configured => return Err(TierError::unavailable("redis", why.clone())),
            _ => {}
        }
        let s = stored.clone();
        self.hot.call(move |hot| hot.dict_save(&s)).await?;
        codec::register(d.clone())?;
        self.dicts.adopt(&stored.project_id, d, &stored);
        Ok(())
    }
}

/// A dictionary found in Redis or PostgreSQL.
struct RemoteDictionary {
    project_id: String,
    dict: Arc<Dictionary>,
    in_redis: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(i: usize) -> Vec<u8> {
        format!(
            r#"{{"anchors":[],"events":[{{"event_id":"e-{i}","event_type":"tool_call","payload":{{"tool":"bash","content":"cargo test --release step {i}"}}}}],"frame":{{"frame_id":"f-{i}","project_id":"p","type":"task","name":"task {i}","digest_text":"refactor the parser {i}","state":"closed"}}}}"#
        )
        .into_bytes()
    }

    #[test]
    fn a_sample_trains_a_dictionary_that_beats_plain_zstd_on_held_out_frames() {
        let sample: Vec<Vec<u8>> = (0..600).map(frame).collect();
        let (stored, d) = train("p", &sample, 16 * 1024, 3).expect("train");
        assert_eq!(stored.id, d.id);
        assert_eq!(stored.samples, 540);
        assert!(stored.ratio > MIN_GAIN * stored.plain_ratio, "{} vs {}", stored.ratio, stored.plain_ratio);
        assert!(train("p", &sample[..5], 16 * 1024, 3).is_err());
    }

    #[test]
    fn a_project_gathers_then_is_ready_and_drift_restarts_gathering() {
        let dicts = Dictionaries::new(DictConfig { enabled: true, min_frames: 20, max_size: 4096 });
        assert!(dicts.should_gather("p"));
        let sample: Vec<(String, Vec<u8>)> = (0..19).map(|i| ("p".to_string(), frame(i))).collect();
        assert!(dicts.observe(&[], sample).is_empty());
        assert_eq!(dicts.observe(&[], vec![("p".into(), frame(19))]), vec!["p".to_string()]);
        let s = dicts.take_sample("p").expect("sample");
        let (stored, d) = train("p", &s, 4096, 3).expect("train");
        dicts.adopt("p", Arc::new(d), &stored);
        assert!(!dicts.should_gather("p"));
        assert_eq!(dicts.snapshot().0.len(), 1);
        // 80 frames encoded at a third of the adoption ratio: drift.
        let packed = (100.0 / (stored.ratio / 3.0)) as usize;
        let sizes: Vec<(String, usize, usize, bool)> = (0..80).map(|_| ("p".to_string(), 100, packed, true)).collect();
        dicts.observe(&sizes, vec![]);
        assert!(dicts.should_gather("p"), "drift restarts gathering");
        assert_eq!(dicts.info()[0].id, Some(stored.id), "the old dictionary stays current until the new one");
    }

    /// `bench/dictionary.js`'s codec figures: the frames of `SMT_DICT_FRAMES` (JSON lines, as the
    /// store returns them), the first `SMT_DICT_SAMPLE` trained as the mover trains them, every
    /// later one held out: ratio and decode speed, plain zstd against the dictionary. One JSON line.
    #[test]
    #[ignore = "run by bench/dictionary.js"]
    fn dictionary_bench() {
        let Ok(path) = std::env::var("SMT_DICT_FRAMES") else { return };
        let n: usize = std::env::var("SMT_DICT_SAMPLE").ok().and_then(|s| s.parse().ok()).unwrap_or(500);
        let text = std::fs::read_to_string(path).expect("frames file");
        let frames: Vec<Vec<u8>> = text.lines().filter(|l| !l.is_empty()).map(|l| l.as_bytes().to_vec()).collect();
        let (sample, held) = frames.split_at(n.min(frames.len()));
        let t = std::time::Instant::now();
        let (_, d) = train("bench", sample, 16 * 1024, 3).expect("train");
        let train_ms = t.elapsed().as_secs_f64() * 1e3;
        let d = Arc::new(d);
        let lookup = |id: u32| (id == d.id).then(|| d.clone());
        let plain: Vec<_> = held.iter().map(|f| codec::encode_raw(String::new(), f, 3).expect("encode")).collect();
        let t = std::time::Instant::now();
        let with: Vec<_> =
            held.iter().map(|f| codec::encode_raw_with(String::new(), f, 3, &d).expect("encode")).collect();
        let enc_dict_s = t.elapsed().as_secs_f64();
        let raw: usize = held.iter().map(|f| f.len()).sum();
        // Best of 7 alternating rounds of 4 passes each, so a busy moment of the machine does not
        // decide the comparison. `old`: the decoder before contexts were reused (a new zstd
        // context per envelope, as `zstd::bulk::decompress` makes).
        let pass = |f: &dyn Fn()| {
            let t = std::time::Instant::now();
            for _ in 0..4 {
                f();
            }
            t.elapsed().as_secs_f64()
        };
        let (mut dec_plain, mut dec_dict, mut dec_old) = (f64::MAX, f64::MAX, f64::MAX);
        for _ in 0..7 {
            dec_plain = dec_plain.min(pass(&|| {
                for e in &plain {
                    codec::decode(&e.bytes).expect("decode");
                }
            }));
            dec_dict = dec_dict.min(pass(&|| {
                for e in &with {
                    codec::decode_with(&e.bytes, &lookup).expect("decode");
                }
            }));
            dec_old = dec_old.min(pass(&|| {
                for (e, f) in plain.iter().zip(held) {
                    let raw = zstd::bulk::decompress(&e.bytes[16..], f.len()).expect("decode");
                    assert_eq!(xxhash_rust::xxh3::xxh3_64(&raw), xxhash_rust::xxh3::xxh3_64(f));
                }
            }));
        }
        let mb = raw as f64 * 4.0 / 1e6;
        println!(
            "{}",
            serde_json::json!({
                "sample": sample.len(), "heldOut": held.len(), "rawBytes": raw, "trainMs": train_ms,
                "plainBytes": plain.iter().map(|e| e.bytes.len()).sum::<usize>(),
                "dictBytes": with.iter().map(|e| e.bytes.len()).sum::<usize>(),
                "decodePlainMBs": mb / dec_plain, "decodeDictMBs": mb / dec_dict, "decodeOldMBs": mb / dec_old,
                "encodeDictMBs": raw as f64 / 1e6 / enc_dict_s,
            })
        );
    }

    #[test]
    fn disabled_dictionaries_never_gather() {
        let dicts = Dictionaries::new(DictConfig { enabled: false, ..Default::default() });
        assert!(!dicts.should_gather("p"));
        assert!(dicts.snapshot().0.is_empty());
    }
}
