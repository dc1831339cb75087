//! `tiers.sqlite`: the hot tier's limits (the seed's 500 MB, 1,000 frames, 24 h).

use crate::model::units::MB;
use crate::model::values::Fields;
use crate::model::Result;

#[derive(Debug, Clone, PartialEq)]
pub struct SqliteConfig {
    /// `maxSize`: bytes of frame bodies hot may hold before pressure demotes them.
    pub max_size: u64,
    /// `maxFrames`: frames hot may hold.
    pub max_frames: u64,
    /// `maxAge`: how long a frame stays hot unread (the default of `policies.hotMaxAge`).
    pub max_age_ms: u64,
}

impl SqliteConfig {
    pub fn from_fields(sq: &Fields<'_>) -> Result<SqliteConfig> {
        sq.known(&["maxSize", "maxFrames", "maxAge"])?;
        Ok(SqliteConfig {
            max_size: sq.size("maxSize", 500 * MB, 1)?,
            max_frames: sq.int("maxFrames", 1000, 1, u32::MAX as u64)?,
            max_age_ms: sq.duration_ms("maxAge", 24 * 3600 * 1000, 1)?,
        })
    }
}
