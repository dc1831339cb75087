//! stackmemory-tiers: a three-tier frame store for StackMemory.
//!
//! The core is plain Rust (testable with `cargo test`); `node/` is the thin napi glue, built only
//! with the `node` feature. See docs/ARCHITECTURE.md for where each concept lives.

pub mod codec;
pub mod cold;
pub mod config;
pub mod copy_guard;
pub mod error;
pub mod frame;
pub mod hot;
pub mod journal;
pub mod manager;
pub mod mover;
pub mod policy;
pub mod rng;
pub mod sim;
pub mod warm;

#[cfg(feature = "node")]
mod node;
