//! The comparison policies, all at the same hot capacity: LRU, LFU, S3-FIFO and Bélády's optimum.
//! Each is told about every access and, on a miss, whether to admit; it returns the frames it
//! evicts. Frame ids are dense indices (see `super::simulate`).

use std::collections::{HashSet, VecDeque};

/// Hot capacity: a frame count, a byte budget, or both.
#[derive(Debug, Clone, Copy)]
pub struct Capacity {
    pub frames: Option<u64>,
    pub bytes: Option<u64>,
}

impl Capacity {
    pub fn fits(&self, frames: u64, bytes: u64) -> bool {
        self.frames.is_none_or(|f| frames <= f) && self.bytes.is_none_or(|b| bytes <= b)
    }
}

/// What a baseline did with one access.
pub struct Step {
    /// The frame now lives in hot (it was admitted, or already there).
    pub admitted: bool,
    pub evicted: Vec<usize>,
}

impl Step {
    /// The frame is hot (a hit) and nothing was evicted.
    fn resident() -> Step {
        Step { admitted: true, evicted: vec![] }
    }
    /// The frame stays out of hot.
    fn refused() -> Step {
        Step { admitted: false, evicted: vec![] }
    }
}

pub trait Baseline {
    fn name(&self) -> &'static str;
    /// `i`: index of the event; `hit`: the frame is resident.
    fn access(&mut self, i: usize, frame: usize, size: u64, hit: bool) -> Step;
}

/// Shared bookkeeping of resident frames.
struct Resident {
    cap: Capacity,
    set: HashSet<usize>,
    bytes: u64,
    sizes: Vec<u64>,
}

impl Resident {
    fn new(cap: Capacity, n: usize) -> Self {
        Resident { cap, set: HashSet::new(), bytes: 0, sizes: vec![0; n] }
    }
    fn fits_with(&self, size: u64) -> bool {
        self.cap.fits(self.set.len() as u64 + 1, self.bytes + size)
    }
    fn insert(&mut self, f: usize, size: u64) {
        if self.set.insert(f) {
            self.sizes[f] = size;
            self.bytes += size;
        }
    }
    fn remove(&mut self, f: usize) {
        if self.set.remove(&f) {
            self.bytes -= self.sizes[f];
        }
    }
}

/// Admits frame `f` after evicting by `key` (smallest first, ties by index) until `size` fits. A
/// frame bigger than the whole capacity is never admitted.
fn admit_evicting(r: &mut Resident, f: usize, size: u64, key: impl Fn(usize) -> (u64, u64)) -> Step {
    if !r.cap.fits(1, size) {
        return Step::refused();
    }
    let mut evicted = vec![];
    while !r.fits_with(size) {
        let Some(victim) = r.set.iter().copied().min_by_key(|&v| (key(v), v)) else { return Step::refused() };
        r.remove(victim);
        evicted.push(victim);
    }
    r.insert(f, size);
    Step { admitted: true, evicted }
}

pub struct Lru {
    r: Resident,
    last: Vec<u64>,
}

impl Lru {
    pub fn new(cap: Capacity, n: usize) -> Self {
        Lru { r: Resident::new(cap, n), last: vec![0; n] }
    }
}

impl Baseline for Lru {
    fn name(&self) -> &'static str {
        "LRU"
    }
    fn access(&mut self, i: usize, f: usize, size: u64, hit: bool) -> Step {
        self.last[f] = i as u64 + 1;
        if hit {
            return Step::resident();
        }
        let last = &self.last;
        admit_evicting(&mut self.r, f, size, |v| (last[v], 0))
    }
}

/// LFU with counts kept across evictions (ties broken by recency).
pub struct Lfu {
    r: Resident,
    count: Vec<u64>,
    last: Vec<u64>,
}

impl Lfu {
    pub fn new(cap: Capacity, n: usize) -> Self {
        Lfu { r: Resident::new(cap, n), count: vec![0; n], last: vec![0; n] }
    }
}

impl Baseline for Lfu {
    fn name(&self) -> &'static str {
        "LFU"
    }
    fn access(&mut self, i: usize, f: usize, size: u64, hit: bool) -> Step {
        self.count[f] += 1;
        self.last[f] = i as u64 + 1;
        if hit {
            return Step::resident();
        }
        let (count, last) = (&self.count, &self.last);
        admit_evicting(&mut self.r, f, size, |v| (count[v], last[v]))
    }
}

/// S3-FIFO (Yang et al., SOSP'23): a small FIFO (10 %) filters one-hit wonders, a main FIFO with
/// lazy promotion (2-bit frequency, reinsertion) holds the rest, a ghost FIFO of evicted ids
/// sends returning frames straight to main. Moves between small and main stay hot.
pub struct S3Fifo {
    r: Resident,
    small: VecDeque<usize>,
    main: VecDeque<usize>,
    ghost: VecDeque<usize>,
    ghost_set: HashSet<usize>,
    in_small: Vec<bool>,
    freq: Vec<u8>,
    small_bytes: u64,
    small_frames: u64,
}

impl S3Fifo {
    pub fn new(cap: Capacity, n: usize) -> Self {
        S3Fifo {
            r: Resident::new(cap, n),
            small: VecDeque::new(),
            main: VecDeque::new(),
            ghost: VecDeque::new(),
            ghost_set: HashSet::new(),
            in_small: vec![false; n],
            freq: vec![0; n],
            small_bytes: 0,
            small_frames: 0,
        }
    }

    fn small_is_large(&self) -> bool {
        let c = self.r.cap;
        c.frames.is_some_and(|f| self.small_frames * 10 >= f) || c.bytes.is_some_and(|b| self.small_bytes * 10 >= b)
    }

    /// Remembers an evicted frame, so that its return goes straight to main.
    fn remember_in_ghost(&mut self, f: usize) {
        if self.ghost_set.insert(f) {
            self.ghost.push_back(f);
        }
        let limit = self.main.len().max(1);
        while self.ghost.len() > limit {
            if let Some(g) = self.ghost.pop_front() {
                self.ghost_set.remove(&g);
            }
        }
    }

    /// Evicts one frame; `None` when nothing is resident.
    fn evict_one(&mut self) -> Option<usize> {
        loop {
            if (self.small_is_large() || self.main.is_empty()) && !self.small.is_empty() {
                let t = self.small.pop_front()?;
                self.in_small[t] = false;
                self.small_bytes -= self.r.sizes[t];
                self.small_frames -= 1;
                if self.freq[t] > 0 {
                    self.freq[t] = 0;
                    self.main.push_back(t);
                } else {
                    self.r.remove(t);
                    self.remember_in_ghost(t);
                    return Some(t);
                }
            } else {
                let t = self.main.pop_front()?;
                if self.freq[t] > 0 {
                    self.freq[t] -= 1;
                    self.main.push_back(t);
                } else {
                    self.r.remove(t);
                    return Some(t);
                }
            }
        }
    }
}

impl Baseline for S3Fifo {
    fn name(&self) -> &'static str {
        "S3-FIFO"
    }
    fn access(&mut self, _i: usize, f: usize, size: u64, hit: bool) -> Step {
        if hit {
            self.freq[f] = (self.freq[f] + 1).min(3);
            return Step::resident();
        }
        if !self.r.cap.fits(1, size) {
            return Step::refused();
        }
        let mut evicted = vec![];
        while !self.r.fits_with(size) {
            match self.evict_one() {
                Some(v) => evicted.push(v),
                None => break,
            }
        }
        self.freq[f] = 0;
        self.r.insert(f, size);
        if self.ghost_set.remove(&f) {
            self.ghost.retain(|g| *g != f);
            self.main.push_back(f);
        } else {
            self.small.push_back(f);
            self.in_small[f] = true;
            self.small_bytes += size;
            self.small_frames += 1;
        }
        Step { admitted: true, evicted }
    }
}

/// Bélády's offline optimum: evicts the resident frame whose next access is farthest, and does
/// not admit a frame whose own next access is farther than every victim's (or never comes).
pub struct Belady {
    r: Resident,
    /// For each event, the index of the same frame's next event (`u64::MAX`: never).
    next_of_event: Vec<u64>,
    next: Vec<u64>,
}

impl Belady {
    pub fn new(cap: Capacity, n: usize, next_of_event: Vec<u64>) -> Self {
        Belady { r: Resident::new(cap, n), next_of_event, next: vec![u64::MAX; n] }
    }
}

impl Baseline for Belady {
    fn name(&self) -> &'static str {
        "Belady (optimum)"
    }
    fn access(&mut self, i: usize, f: usize, size: u64, hit: bool) -> Step {
        let nxt = self.next_of_event.get(i).copied().unwrap_or(u64::MAX);
        self.next[f] = nxt;
        if hit {
            return Step::resident();
        }
        if nxt == u64::MAX || !self.r.cap.fits(1, size) {
            return Step::refused();
        }
        // Victims farthest-first, until the frame fits; all must be needed later than it.
        let mut order: Vec<usize> = self.r.set.iter().copied().collect();
        order.sort_by_key(|&v| (std::cmp::Reverse(self.next[v]), v));
        let (mut frames, mut bytes) = (self.r.set.len() as u64 + 1, self.r.bytes + size);
        let mut victims = vec![];
        for v in order {
            if self.r.cap.fits(frames, bytes) {
                break;
            }
            if self.next[v] <= nxt {
                return Step::refused();
            }
            frames -= 1;
            bytes -= self.r.sizes[v];
            victims.push(v);
        }
        if !self.r.cap.fits(frames, bytes) {
            return Step::refused();
        }
        for &v in &victims {
            self.r.remove(v);
        }
        self.r.insert(f, size);
        Step { admitted: true, evicted: victims }
    }
}
