//! The napi glue: one file per JS class (or function), thin wrappers that convert types and call
//! one core function. Every error conversion lives in `error.rs`; `extension.rs` is the SQLite
//! extension entry point that binds the addon to the host's SQLite library.

mod error;
mod extension;
mod migrations;
mod observe;
mod simulate;
mod tier_manager;
