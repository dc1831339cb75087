//! The engine's own pins: frames kept hot on request, within `maxPinnedBytes`.

use serde::{Deserialize, Serialize};

use super::PolicyEngine;
use crate::model::{Result, TierError};
use crate::policy::human_bytes;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PinRecord {
    pub size_bytes: u64,
    pub at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PinStatus {
    pub frames: usize,
    pub pinned_bytes: u64,
    /// `policies.maxPinnedBytes`.
    pub cap_bytes: u64,
}

impl PolicyEngine {
    /// Pins a frame: never demoted automatically, brought back hot by the next cycle. Refused when
    /// the pinned total would exceed `maxPinnedBytes`.
    pub fn pin(&mut self, frame_id: &str, size_bytes: u64, now_ms: i64) -> Result<PinStatus> {
        let current = self.pinned_bytes_except(frame_id);
        let cap = self.opts.max_pinned_bytes;
        if current.saturating_add(size_bytes) > cap {
            return Err(TierError::invalid_argument(
                "frameId",
                format!(
                    "pinning {frame_id} ({}) would exceed maxPinnedBytes ({}; {} pinned)",
                    human_bytes(size_bytes),
                    human_bytes(cap),
                    human_bytes(current)
                ),
            ));
        }
        self.pins.insert(frame_id.to_string(), PinRecord { size_bytes, at_ms: now_ms });
        Ok(self.pin_status())
    }

    /// Bytes pinned by frames other than `frame_id` (re-pinning a frame replaces its record).
    fn pinned_bytes_except(&self, frame_id: &str) -> u64 {
        self.pins.iter().filter(|(k, _)| k.as_str() != frame_id).map(|(_, p)| p.size_bytes).sum()
    }

    pub fn unpin(&mut self, frame_id: &str) -> bool {
        self.pins.remove(frame_id).is_some()
    }

    pub fn pin_status(&self) -> PinStatus {
        PinStatus {
            frames: self.pins.len(),
            pinned_bytes: self.pins.values().map(|p| p.size_bytes).sum(),
            cap_bytes: self.opts.max_pinned_bytes,
        }
    }
}
