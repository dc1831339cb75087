//! The engine's memory as plain data, for the manager to persist and hand back on open.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Decision, Persistence, PinRecord, PolicyEngine};
use crate::policy::access::{AccessRecord, AccessTracker};
use crate::policy::filters::MoveRecord;

/// Everything the engine remembers, for the manager to persist and hand back on open.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EngineSnapshot {
    pub cycle: u64,
    pub access: Vec<AccessRecord>,
    pub pins: BTreeMap<String, PinRecord>,
    pub moves: BTreeMap<String, Vec<MoveRecord>>,
    pub persistence: BTreeMap<String, Persistence>,
    pub decisions: BTreeMap<String, Vec<Decision>>,
    /// Outcomes of executed moves (older snapshots have none).
    #[serde(default)]
    pub learning: super::learning::Learning,
    /// What remote reads were followed by (older snapshots have none).
    #[serde(default)]
    pub admission: super::admission::Admission,
    /// The victim duels (older snapshots have none).
    #[serde(default)]
    pub duels: super::duels::Duels,
    /// Frames read together (older snapshots have none).
    #[serde(default)]
    pub companions: super::companions::Companions,
    /// The first cycle's time (the start of `minDataCollection`).
    #[serde(default)]
    pub started_ms: Option<i64>,
}

impl PolicyEngine {
    /// Everything worth persisting. Moves in flight are not: after a restart they are re-decided.
    pub fn snapshot(&self) -> EngineSnapshot {
        EngineSnapshot {
            cycle: self.cycle,
            access: self.access.snapshot(),
            pins: self.pins.clone(),
            moves: self.moves.iter().map(|(k, v)| (k.clone(), v.iter().cloned().collect())).collect(),
            persistence: self.persistence.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            decisions: self.decisions.iter().map(|(k, v)| (k.clone(), v.iter().cloned().collect())).collect(),
            learning: self.learning.clone(),
            admission: self.admission.clone(),
            duels: self.duels.clone(),
            companions: self.companions.clone(),
            started_ms: self.started_ms,
        }
    }

    /// Loads a snapshot (replacing the engine's memory, keeping its options).
    pub fn restore(&mut self, snap: EngineSnapshot) {
        self.access = AccessTracker::new(self.tau_s());
        self.access.restore(snap.access);
        self.pins = snap.pins;
        self.moves = snap.moves.into_iter().map(|(k, v)| (k, v.into_iter().collect())).collect();
        self.persistence = snap.persistence.into_iter().collect();
        let keep = self.opts.decisions_per_frame.max(1);
        self.decisions = snap
            .decisions
            .into_iter()
            .map(|(k, v)| {
                let skip = v.len().saturating_sub(keep);
                (k, v.into_iter().skip(skip).collect())
            })
            .collect();
        self.learning = snap.learning;
        self.admission = snap.admission;
        self.duels = snap.duels;
        self.duels.reindex();
        self.companions = snap.companions;
        self.started_ms = snap.started_ms;
        self.in_flight.clear();
        self.cycle = snap.cycle;
    }
}
