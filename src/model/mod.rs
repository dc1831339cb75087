//! The model: what a frame is, how it travels (the envelope), what may move, errors and units.
//! Knows no storage and no policy; every other layer builds on it.

pub mod codec;
pub mod error;
pub mod frame;
pub mod normalize;
pub mod rules;
pub mod tier;
pub mod units;
pub mod values;

#[cfg(test)]
mod codec_props;
#[cfg(test)]
mod normalize_props;

pub use error::{Result, TierError};
pub use frame::{Bundle, Row, SearchText};
pub use normalize::normalize_bundle;
pub use tier::{EvictionStrategy, Tier};
