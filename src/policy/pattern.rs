//! Classifies a frame's access history into one of five patterns, each with a confidence in
//! `[0, 1]`, and predicts when the next access is due.
//!
//! The classifier only looks at the [`AccessStats`] the tracker keeps (count, last access and the
//! ring of recent inter-arrival times), so it costs nothing to store and works after a restart.
//! Checks run in this order, first match wins:
//!
//! 1. no or one access: [`Pattern::Cold`] (one read is no evidence of reuse);
//! 2. inter-arrival times growing steadily (log-gap vs index correlation ≥ 0.8, last/first ≥ 4):
//!    [`Pattern::Decaying`] (a task that is being wound down);
//! 3. gaps split in two groups at least 10× apart, the long ones ≥ 30 min: [`Pattern::Bursty`]
//!    (sessions: several reads close together, then a long pause);
//! 4. gaps regular (coefficient of variation ≤ 0.3) and at least 15 min: [`Pattern::Periodic`];
//! 5. short gaps (median < 15 min): [`Pattern::Hot`];
//! 6. anything else: [`Pattern::Cold`].
//!
//! A pattern whose next access is long overdue (more than [`STALE_FACTOR`] expected gaps since the
//! last access) is reported as [`Pattern::Cold`] instead: the behaviour it described has stopped.

use serde::{Deserialize, Serialize};

use super::access::AccessStats;

/// Gaps below this are "working on it right now" reads.
pub const HOT_GAP_S: f64 = 15.0 * 60.0;
/// The pause between two bursts must be at least this long to call the history bursty.
pub const BURST_PAUSE_MIN_S: f64 = 30.0 * 60.0;
/// The long and short gaps of a bursty history differ by at least this factor.
pub const BURST_SEPARATION: f64 = 10.0;
/// Largest coefficient of variation of the gaps that still counts as periodic.
pub const PERIODIC_MAX_CV: f64 = 0.3;
/// A pattern is stale (reported cold) once this many expected gaps passed without an access.
pub const STALE_FACTOR: f64 = 3.0;

/// What a frame's reads look like.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Pattern {
    /// Read again and again with short gaps.
    Hot,
    /// Read about every `period_s` seconds.
    #[serde(rename_all = "camelCase")]
    Periodic { period_s: f64 },
    /// Read in bursts of about `burst_size` reads separated by long pauses.
    #[serde(rename_all = "camelCase")]
    Bursty { burst_size: f64 },
    /// Reads thinning out; the access rate halves about every `half_life_s` seconds.
    #[serde(rename_all = "camelCase")]
    Decaying { half_life_s: f64 },
    /// Not read (recently, or more than once): no reuse expected.
    Cold,
}

impl Pattern {
    pub fn name(&self) -> &'static str {
        match self {
            Pattern::Hot => "hot",
            Pattern::Periodic { .. } => "periodic",
            Pattern::Bursty { .. } => "bursty",
            Pattern::Decaying { .. } => "decaying",
            Pattern::Cold => "cold",
        }
    }

    /// `periodic (every 6 h)`, `bursty (~5 reads)`, ... for reasons and explanations.
    pub fn describe(&self) -> String {
        match self {
            Pattern::Periodic { period_s } => format!("periodic (every {})", super::human_secs(*period_s)),
            Pattern::Bursty { burst_size } => format!("bursty (~{burst_size:.0} reads per burst)"),
            Pattern::Decaying { half_life_s } => {
                format!("decaying (rate halves every {})", super::human_secs(*half_life_s))
            }
            other => other.name().to_string(),
        }
    }
}

/// A pattern and how sure the classifier is of it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Classification {
    pub pattern: Pattern,
    /// In `[0, 1]`.
    pub confidence: f64,
    /// Seconds from the classification time until the next access is expected; `None` when no
    /// reuse is expected (cold).
    #[serde(rename = "nextAccessInS")]
    pub next_access_in_s: Option<f64>,
}

fn median(sorted: &[f64]) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let m = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[m]
    } else {
        (sorted[m - 1] + sorted[m]) / 2.0
    }
}

fn mean_sd(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    if xs.is_empty() {
        return (0.0, 0.0);
    }
    let mean = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

fn clamp01(x: f64) -> f64 {
    if x.is_finite() {
        x.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

/// How much history we have, in `[0, 1]`: 8 gaps or more is full evidence.
fn evidence(n_gaps: usize) -> f64 {
    (n_gaps as f64 / 8.0).min(1.0)
}

/// Classifies `stats` as of `now_ms`.
pub fn classify(stats: &AccessStats, now_ms: i64) -> Classification {
    let age = stats.age_s(now_ms);
    let cold = |confidence: f64| Classification {
        pattern: Pattern::Cold,
        confidence: clamp01(confidence),
        next_access_in_s: None,
    };
    if stats.count <= 1 || stats.gaps_s.is_empty() {
        // One read says nothing about reuse; the older it is, the surer we are nothing follows.
        return cold(0.3 + 0.6 * (1.0 - (-age / 86_400.0).exp()));
    }
    // Zero gaps are out-of-order or same-millisecond accesses: they carry no timing information.
    let gaps: Vec<f64> = stats.gaps_s.iter().copied().filter(|g| *g > 0.0).collect();
    if gaps.is_empty() {
        return Classification { pattern: Pattern::Hot, confidence: 0.3, next_access_in_s: Some(0.0) };
    }
    let n = gaps.len();
    let mut sorted = gaps.clone();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let med = median(&sorted);
    let last_gap = gaps[n - 1];

    // 2. Decaying: log-gaps rise with the index.
    if n >= 3 {
        let xs: Vec<f64> = (0..n).map(|i| i as f64).collect();
        let ys: Vec<f64> = gaps.iter().map(|g| g.ln()).collect();
        let (mx, sx) = mean_sd(&xs);
        let (my, sy) = mean_sd(&ys);
        if sx > 0.0 && sy > 0.0 {
            let cov = xs.iter().zip(&ys).map(|(x, y)| (x - mx) * (y - my)).sum::<f64>() / n as f64;
            let corr = cov / (sx * sy);
            let slope = cov / (sx * sx);
            if corr >= 0.8 && gaps[n - 1] / gaps[0] >= 4.0 && slope > 0.0 {
                // Gaps grow by e^slope per access, so the rate halves after ln2/slope accesses,
                // which at the current spacing takes about that many current gaps.
                let growth = slope.exp();
                let next_gap = last_gap * growth;
                let half_life_s = last_gap * (std::f64::consts::LN_2 / slope).max(1.0);
                if age > STALE_FACTOR * next_gap {
                    return cold(0.6);
                }
                return Classification {
                    pattern: Pattern::Decaying { half_life_s },
                    confidence: clamp01(0.5 * corr + 0.5 * evidence(n)),
                    next_access_in_s: Some((next_gap - age).max(0.0)),
                };
            }
        }
    }

    // 3. Bursty: the biggest ratio between consecutive sorted gaps splits short from long.
    if n >= 3 {
        let mut best = (0usize, 1.0f64);
        for i in 1..n {
            let ratio = sorted[i] / sorted[i - 1].max(1e-3);
            if ratio > best.1 {
                best = (i, ratio);
            }
        }
        let (split, ratio) = best;
        let short = &sorted[..split];
        let long = &sorted[split..];
        if ratio >= BURST_SEPARATION && short.len() >= 2 && !long.is_empty() && long[0] >= BURST_PAUSE_MIN_S {
            let burst_size = (n + 1) as f64 / (long.len() + 1) as f64;
            let intra = median(short);
            let pause = median(long);
            // Inside a burst the next read comes after an intra-burst gap; once a burst has run
            // its usual length (or the gap exceeds the short ones), the next one is a pause away.
            let reads_in_current_burst = gaps.iter().rev().take_while(|g| **g < long[0]).count() + 1;
            let in_burst = age < 4.0 * intra.max(1.0) && (reads_in_current_burst as f64) < burst_size + 0.5;
            let next = if in_burst { intra - age } else { pause - age };
            if age > STALE_FACTOR * pause {
                return cold(0.6);
            }
            let confidence = 0.5 * clamp01(ratio.log10() / 2.0) + 0.5 * clamp01(long.len() as f64 / 3.0);
            return Classification {
                pattern: Pattern::Bursty { burst_size },
                confidence: clamp01(confidence),
                next_access_in_s: Some(next.max(0.0)),
            };
        }
    }

    // 4. Periodic: regular gaps.
    let (mean, sd) = mean_sd(&gaps);
    let cv = if mean > 0.0 { sd / mean } else { f64::INFINITY };
    if n >= 2 && cv <= PERIODIC_MAX_CV && med >= HOT_GAP_S {
        if age > STALE_FACTOR * mean {
            return cold(0.6);
        }
        let confidence = 0.5 * clamp01(1.0 - cv / PERIODIC_MAX_CV) + 0.5 * evidence(n);
        // Overdue periodic frames are expected any moment now.
        return Classification {
            pattern: Pattern::Periodic { period_s: mean },
            confidence: clamp01(confidence),
            next_access_in_s: Some((mean - age).max(0.0)),
        };
    }

    // 5. Hot: short gaps, and the last access recent.
    if med < HOT_GAP_S {
        let stale_after = (4.0 * med).max(HOT_GAP_S);
        if age > stale_after {
            return cold(clamp01(0.4 + 0.1 * (age / stale_after)));
        }
        let confidence = 0.5 + 0.5 * evidence(n) * (1.0 - age / stale_after);
        return Classification {
            pattern: Pattern::Hot,
            confidence: clamp01(confidence),
            next_access_in_s: Some((med - age).max(0.0)),
        };
    }

    // 6. Irregular and slow: treat like its typical gap, low confidence, cold once stale.
    if age > STALE_FACTOR * med {
        return cold(0.6);
    }
    Classification { pattern: Pattern::Cold, confidence: 0.35, next_access_in_s: Some((med - age).max(0.0)) }
}

#[cfg(test)]
mod tests {
    use super::super::synth::{self, Label};
    use super::*;

    #[test]
    fn classifier_accuracy_on_labelled_synthetic_traces() {
        let cases = synth::labelled_cases(0x5eed, 80);
        let mut correct = 0usize;
        let mut confusion: std::collections::BTreeMap<(String, String), usize> = Default::default();
        for case in &cases {
            let c = classify(&case.stats, case.now_ms);
            let got = c.pattern.name();
            assert!((0.0..=1.0).contains(&c.confidence), "confidence {} out of range", c.confidence);
            if got == case.label.name() {
                correct += 1;
            }
            *confusion.entry((case.label.name().to_string(), got.to_string())).or_default() += 1;
        }
        let accuracy = correct as f64 / cases.len() as f64;
        assert!(accuracy >= 0.85, "accuracy {accuracy:.3} < 0.85; confusion (label, got): {confusion:?}");
        // Each label must be recognised on its own, not only on average.
        for label in Label::ALL {
            let total: usize = confusion.iter().filter(|((l, _), _)| l == label.name()).map(|(_, n)| n).sum();
            let ok = confusion.get(&(label.name().to_string(), label.name().to_string())).copied().unwrap_or(0);
            assert!(ok as f64 >= 0.7 * total as f64, "{}: {ok}/{total}; {confusion:?}", label.name());
        }
    }

    #[test]
    fn parameters_are_estimated() {
        let stats = synth::stats_from_times(&[0, 3_600_000, 7_200_000, 10_800_000, 14_400_000]);
        let c = classify(&stats, 15_000_000);
        match c.pattern {
            Pattern::Periodic { period_s } => assert!((period_s - 3600.0).abs() < 1.0),
            other => panic!("expected periodic, got {other:?}"),
        }
        assert_eq!(c.next_access_in_s.map(|s| s.round()), Some(3000.0));
        let single = synth::stats_from_times(&[0]);
        assert_eq!(classify(&single, 10).pattern, Pattern::Cold);
    }
}
