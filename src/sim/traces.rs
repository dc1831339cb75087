//! StackMemory-shaped trace generators, deterministic for a seed.
//!
//! - [`sessions`]: work sessions on a task stack — new frames written and read in bursts,
//!   recent frames far more than old ones, tasks resumed now and then, the odd glance at old work;
//! - [`periodic`]: old task frames revisited on their own rhythm (every 2–12 h), a small set
//!   read all the time, and a steady stream of frames read exactly once;
//! - [`read_once`]: searches that read many old frames once each, next to a working set;
//! - [`mixed`]: all three at once, on separate frame ids;
//! - [`fortnight`]: a developer's two weeks, written independently of the tuning above: task
//!   trees written and read in bursts, older tasks revisited with Zipf popularity (often the next
//!   working day), search hits read once, a few frames read every morning, quiet weekends.

use super::{Op, TraceEvent};
use crate::sim::rng::SplitMix64;

/// The traces' generator: [`SplitMix64`] with its own seed offset, so traces stay what they were.
pub type Rng = SplitMix64;

fn new_rng(seed: u64) -> Rng {
    SplitMix64::new(seed ^ 0x5151_7a7a_0000_0001)
}

const SEC: f64 = 1000.0;
const MIN: f64 = 60_000.0;
const HOUR: f64 = 3_600_000.0;
const DAY: f64 = 86_400_000.0;

/// Frame sizes: 2 KB to 128 KB, log-uniform (most frames are small digests, a few carry output).
fn size(rng: &mut Rng) -> u64 {
    (2048.0 * 2f64.powf(rng.range(0.0, 6.0))) as u64
}

struct Builder {
    events: Vec<TraceEvent>,
    sizes: std::collections::HashMap<String, u64>,
}

impl Builder {
    fn new() -> Self {
        Builder { events: vec![], sizes: Default::default() }
    }
    fn push(&mut self, rng: &mut Rng, id: &str, t: f64, op: Op) {
        let size_bytes = *self.sizes.entry(id.to_string()).or_insert_with(|| size(rng));
        self.events.push(TraceEvent { frame_id: id.to_string(), size_bytes, t_ms: t.round() as i64, op });
    }
    fn finish(mut self) -> Vec<TraceEvent> {
        // Stable: events at the same millisecond keep their generation order.
        self.events.sort_by_key(|e| e.t_ms);
        self.events
    }
}

/// Work sessions on task stacks, `days` long.
pub fn sessions(seed: u64, days: u32) -> Vec<TraceEvent> {
    let mut rng = new_rng(seed);
    let mut b = Builder::new();
    let mut tasks: Vec<Vec<String>> = vec![];
    let mut all: Vec<String> = vec![];
    let mut next_id = 0usize;
    for day in 0..days {
        let n_sessions = rng.int(3, 5);
        for s in 0..n_sessions {
            let start = day as f64 * DAY + 8.0 * HOUR + s as f64 * 3.0 * HOUR + rng.range(0.0, HOUR);
            let end = start + rng.range(30.0, 90.0) * MIN;
            let task = if !tasks.is_empty() && rng.chance(0.35) {
                let lo = tasks.len().saturating_sub(10);
                rng.int(lo as u64, tasks.len() as u64 - 1) as usize
            } else {
                let root = format!("s{next_id}");
                next_id += 1;
                b.push(&mut rng, &root, start, Op::Write);
                all.push(root.clone());
                tasks.push(vec![root]);
                tasks.len() - 1
            };
            let mut session: Vec<String> = vec![];
            let mut t = start + 5.0 * SEC;
            while t < end {
                t += rng.exp(20.0 * SEC).max(SEC);
                if session.is_empty() || rng.chance(0.08) {
                    let id = format!("s{next_id}");
                    next_id += 1;
                    b.push(&mut rng, &id, t, Op::Write);
                    session.push(id.clone());
                    tasks[task].push(id.clone());
                    all.push(id);
                    continue;
                }
                let r = rng.unit();
                let id = if r < 0.6 {
                    session[rng.recent(session.len(), 0.3)].clone()
                } else if r < 0.85 {
                    let fr = &tasks[task];
                    fr[rng.int(0, fr.len() as u64 - 1) as usize].clone()
                } else if r < 0.93 {
                    tasks[task][0].clone()
                } else {
                    all[rng.int(0, all.len() as u64 - 1) as usize].clone()
                };
                b.push(&mut rng, &id, t, Op::Read);
            }
        }
    }
    b.finish()
}

/// Periodic revisits of old tasks, a small always-read set, and frames read once.
pub fn periodic(seed: u64, days: u32) -> Vec<TraceEvent> {
    let mut rng = new_rng(seed.wrapping_add(1));
    let mut b = Builder::new();
    let span = days as f64 * DAY;
    for k in 0..80 {
        let id = format!("p{k}");
        let period = rng.range(2.0, 12.0) * HOUR;
        let mut t = rng.range(0.0, period);
        while t < span {
            let mut v = t;
            for _ in 0..rng.int(1, 3) {
                b.push(&mut rng, &id, v, Op::Read);
                v += rng.range(10.0, 60.0) * SEC;
            }
            t += period * rng.range(0.9, 1.1);
        }
    }
    for k in 0..20 {
        let id = format!("h{k}");
        let mut t = rng.range(0.0, 5.0 * MIN);
        while t < span {
            b.push(&mut rng, &id, t, Op::Read);
            t += rng.exp(20.0 * MIN).max(SEC);
        }
    }
    let mut t = 0.0;
    let mut n = 0usize;
    while t < span {
        t += rng.exp(MIN);
        b.push(&mut rng, &format!("o{n}"), t, Op::Read);
        n += 1;
    }
    b.finish()
}

/// Searches reading many old frames once each, next to a working set read all day.
pub fn read_once(seed: u64, days: u32) -> Vec<TraceEvent> {
    let mut rng = new_rng(seed.wrapping_add(2));
    let mut b = Builder::new();
    let span = days as f64 * DAY;
    let mut t = 0.0;
    let mut n = 0usize;
    while t < span {
        t += rng.exp(10.0 * MIN);
        let mut v = t;
        for _ in 0..rng.int(10, 30) {
            // Mostly frames never seen before; sometimes one from an earlier search.
            let id = if n > 0 && rng.chance(0.1) {
                format!("q{}", rng.int(0, n as u64 - 1))
            } else {
                n += 1;
                format!("q{}", n - 1)
            };
            b.push(&mut rng, &id, v, Op::Read);
            v += rng.range(0.1, 1.0) * SEC;
        }
    }
    // Working set: 40 frames, the first few much more popular (Zipf-like via squaring).
    let mut t = 0.0;
    while t < span {
        t += rng.exp(30.0 * SEC);
        let k = (rng.unit() * rng.unit() * 40.0) as usize;
        b.push(&mut rng, &format!("w{k}"), t, Op::Read);
    }
    b.finish()
}

/// All three shapes at once (distinct frame ids).
pub fn mixed(seed: u64, days: u32) -> Vec<TraceEvent> {
    let mut events = sessions(seed, days);
    events.extend(periodic(seed, days));
    events.extend(read_once(seed, days));
    events.sort_by_key(|e| e.t_ms);
    events
}

/// A developer's fortnight (`days` long, weekends quiet): each working day 2-4 bursts, each a new
/// task tree (a root and 3-8 children written, then read a few times each within minutes) or a
/// revisit of an older task (yesterday's with probability 0.5, else Zipf over every task by a
/// popularity drawn at creation); 1-3 searches a day reading 5-15 never-seen hits once each; 4
/// frames read every morning around 9:00.
pub fn fortnight(seed: u64, days: u32) -> Vec<TraceEvent> {
    let mut rng = new_rng(seed.wrapping_add(7));
    let mut b = Builder::new();
    let mut tasks: Vec<(Vec<String>, f64)> = vec![];
    let mut yesterday: Vec<usize> = vec![];
    let (mut next_id, mut hits) = (0usize, 0usize);
    let morning: Vec<String> = (0..4).map(|k| format!("m{k}")).collect();
    for (k, id) in morning.iter().enumerate() {
        b.push(&mut rng, id, k as f64 * SEC, Op::Write);
    }
    for day in 0..days {
        let weekend = day % 7 >= 5;
        let d0 = day as f64 * DAY;
        if !weekend {
            for id in &morning {
                let t = d0 + 9.0 * HOUR + rng.range(0.0, 20.0 * MIN);
                b.push(&mut rng, id, t, Op::Read);
            }
        }
        let bursts = if weekend { rng.int(0, 1) } else { rng.int(2, 4) };
        let mut today = vec![];
        for k in 0..bursts {
            let mut t = d0 + 9.5 * HOUR + k as f64 * 2.5 * HOUR + rng.range(0.0, HOUR);
            let revisit = !tasks.is_empty() && rng.chance(0.45);
            let task = if revisit {
                if !yesterday.is_empty() && rng.chance(0.5) {
                    yesterday[rng.int(0, yesterday.len() as u64 - 1) as usize]
                } else {
                    // Zipf: weight 1 / rank of the popularity drawn at creation.
                    let total: f64 = tasks.iter().map(|(_, w)| w).sum();
                    let mut x = rng.unit() * total;
                    let mut pick = tasks.len() - 1;
                    for (i, (_, w)) in tasks.iter().enumerate() {
                        if x < *w {
                            pick = i;
                            break;
                        }
                        x -= w;
                    }
                    pick
                }
            } else {
                let n = rng.int(4, 9) as usize;
                let frames: Vec<String> = (0..n).map(|i| format!("t{}", next_id + i)).collect();
                next_id += n;
                for id in &frames {
                    t += rng.range(20.0, 120.0) * SEC;
                    b.push(&mut rng, id, t, Op::Write);
                }
                let rank = rng.int(1, 20) as f64;
                tasks.push((frames, 1.0 / rank));
                tasks.len() - 1
            };
            today.push(task);
            let frames = tasks[task].0.clone();
            let reads = if revisit { rng.int(3, 10) } else { rng.int(8, 25) };
            for _ in 0..reads {
                t += rng.exp(45.0 * SEC).max(SEC);
                let id =
                    if rng.chance(0.3) { &frames[0] } else { &frames[rng.int(0, frames.len() as u64 - 1) as usize] };
                b.push(&mut rng, id, t, Op::Read);
            }
        }
        if !weekend {
            for _ in 0..rng.int(1, 3) {
                let mut t = d0 + rng.range(9.0, 18.0) * HOUR;
                for _ in 0..rng.int(5, 15) {
                    t += rng.range(0.2, 2.0) * SEC;
                    b.push(&mut rng, &format!("hit{hits}"), t, Op::Read);
                    hits += 1;
                }
            }
        }
        if !today.is_empty() {
            yesterday = today;
        }
    }
    b.finish()
}

/// The shipped traces, by name: `sessions`, `periodic`, `read-once`, `mixed`.
pub fn shipped(seed: u64, days: u32) -> Vec<(&'static str, Vec<TraceEvent>)> {
    vec![
        ("sessions", sessions(seed, days)),
        ("periodic", periodic(seed, days)),
        ("read-once", read_once(seed, days)),
        ("mixed", mixed(seed, days)),
    ]
}
