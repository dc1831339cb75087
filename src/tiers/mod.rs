//! The three tiers, one backend each: `hot` (SQLite, StackMemory's own file), `warm` (Redis, a
//! non-durable shared copy), `cold` (PostgreSQL, the durable archive). A tier knows its backend and
//! the model, never another tier, the mover or the policies.

pub mod cold;
pub mod hot;
pub mod warm;

/// Told, by a remote tier, that a call failed because its server is unreachable (an I/O error, a
/// deadline passed, a connection refused): the manager's circuit breaker opens on it. The text
/// never holds a password.
pub type OutageHook = std::sync::Arc<dyn Fn(&str) + Send + Sync>;
