//! The napi glue: thin wrappers over `crate::manager::TierManager`, no logic of their own.
//! Every error conversion lives in `error.rs`.

mod error;
mod tier_manager;
