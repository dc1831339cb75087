//! stackmemory-tiers: a three-tier frame store for StackMemory.
//!
//! The core is plain Rust (testable with `cargo test`); `node/` is the thin napi glue, built only
//! with the `node` feature. Layers, lowest first (see docs/ARCHITECTURE.md):
//! `model` → `tiers` and `policy` → `moves` → `manager` → `node`; `sim` replays traces against
//! `policy`.

pub mod manager;
pub mod model;
pub mod moves;
pub mod obs;
pub mod policy;
pub mod sim;
pub mod tiers;

#[cfg(feature = "node")]
mod node;

#[cfg(test)]
mod prop_kit;
#[cfg(test)]
mod test_alloc;

#[cfg(all(feature = "bundled", feature = "node"))]
compile_error!(
    "features `bundled` (cargo test: a SQLite of our own) and `node` (the shipped addon, on the host's \
     SQLite) exclude each other: build the addon with --no-default-features --features node"
);
#[cfg(not(any(feature = "bundled", feature = "node")))]
compile_error!("enable `bundled` (the default, for cargo test) or `node` (the shipped addon)");
