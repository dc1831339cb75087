//! stackmemory-tiers: a three-tier frame store for StackMemory.
//!
//! The core is plain Rust (testable with `cargo test`); `node/` is the thin napi glue, built only
//! with the `node` feature. Layers, lowest first (see docs/ARCHITECTURE.md):
//! `model` → `tiers` and `policy` → `moves` → `manager` → `node`; `sim` replays traces against
//! `policy`.

pub mod manager;
pub mod model;
pub mod moves;
pub mod policy;
pub mod sim;
pub mod tiers;

#[cfg(feature = "node")]
mod node;
