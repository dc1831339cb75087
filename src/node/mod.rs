//! The napi glue: one file per JS class (or function), thin wrappers that convert types and call
//! one core function. Every error conversion lives in `error.rs`.

mod error;
mod simulate;
mod tier_manager;
