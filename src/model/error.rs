//! Every error the core can return, each with a stable code that JS sees as `err.code`.
//! The napi glue converts `TierError` in one place (`src/node/error.rs`).

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TierError {
    /// A bundle or argument failed validation; `field` names what is wrong.
    InvalidFrame { field: String, message: String },
    /// A frame bundle is larger than `maxFrameBytes`.
    FrameTooLarge { frame_id: String, size: u64, limit: u64 },
    /// A configuration value is wrong; `field` is its dotted path, e.g. `tiers.redis.ttl`.
    InvalidConfig { field: String, message: String },
    /// A method argument other than a frame is wrong (tier names, options, queries).
    InvalidArgument { field: String, message: String },
    /// The manager was closed.
    Closed,
    /// SQLite (or another local store) failed; `cause` keeps the backend's own message.
    Storage { message: String, cause: String },
    /// A remote tier (Redis, PostgreSQL) is disabled or unreachable.
    TierUnavailable { tier: String, cause: String },
    /// Data read back from a tier does not match its checksum.
    Corrupt { frame_id: String, tier: String, message: String },
    /// The frame is not in any tier.
    NotFound { frame_id: String },
    /// Another process kept the file's move lease for longer than we wait (`tiers/hot/lease.rs`).
    Busy { message: String },
}

pub type Result<T> = std::result::Result<T, TierError>;

impl TierError {
    pub fn code(&self) -> &'static str {
        match self {
            TierError::InvalidFrame { .. } => "ERR_INVALID_FRAME",
            TierError::FrameTooLarge { .. } => "ERR_FRAME_TOO_LARGE",
            TierError::InvalidConfig { .. } => "ERR_INVALID_CONFIG",
            TierError::InvalidArgument { .. } => "ERR_INVALID_ARGUMENT",
            TierError::Closed => "ERR_CLOSED",
            TierError::Storage { .. } => "ERR_STORAGE",
            TierError::TierUnavailable { .. } => "ERR_TIER_UNAVAILABLE",
            TierError::Corrupt { .. } => "ERR_CORRUPT",
            TierError::NotFound { .. } => "ERR_NOT_FOUND",
            TierError::Busy { .. } => "ERR_BUSY",
        }
    }

    pub fn invalid_frame(field: impl Into<String>, message: impl Into<String>) -> Self {
        TierError::InvalidFrame { field: field.into(), message: message.into() }
    }
    pub fn invalid_config(field: impl Into<String>, message: impl Into<String>) -> Self {
        TierError::InvalidConfig { field: field.into(), message: message.into() }
    }
    pub fn invalid_argument(field: impl Into<String>, message: impl Into<String>) -> Self {
        TierError::InvalidArgument { field: field.into(), message: message.into() }
    }
    pub fn storage(message: impl Into<String>, cause: impl fmt::Display) -> Self {
        TierError::Storage { message: message.into(), cause: cause.to_string() }
    }
    pub fn unavailable(tier: impl Into<String>, cause: impl fmt::Display) -> Self {
        TierError::TierUnavailable { tier: tier.into(), cause: cause.to_string() }
    }
    /// True for errors that say a remote tier could not be reached (worth retrying later).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, TierError::TierUnavailable { .. })
    }
}

impl fmt::Display for TierError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TierError::InvalidFrame { field, message } => write!(f, "invalid frame: {field}: {message}"),
            TierError::FrameTooLarge { frame_id, size, limit } => {
                write!(f, "frame {frame_id} is {size} bytes, over the limit of {limit} bytes (limits.maxFrameBytes)")
            }
            TierError::InvalidConfig { field, message } => write!(f, "invalid config: {field}: {message}"),
            TierError::InvalidArgument { field, message } => write!(f, "invalid argument: {field}: {message}"),
            TierError::Closed => write!(f, "the TierManager is closed"),
            TierError::Storage { message, cause } => write!(f, "storage error: {message}: {cause}"),
            TierError::TierUnavailable { tier, cause } => write!(f, "{tier} tier unavailable: {cause}"),
            TierError::Corrupt { frame_id, tier, message } => {
                write!(f, "corrupt copy of frame {frame_id} in the {tier} tier: {message}")
            }
            TierError::NotFound { frame_id } => write!(f, "frame {frame_id} is not in any tier"),
            TierError::Busy { message } => write!(f, "busy: {message}"),
        }
    }
}

impl std::error::Error for TierError {}

impl From<rusqlite::Error> for TierError {
    fn from(e: rusqlite::Error) -> Self {
        TierError::storage("sqlite", e)
    }
}
