//! The three tiers, one backend each: `hot` (SQLite, StackMemory's own file), `warm` (Redis, a
//! non-durable shared copy), `cold` (PostgreSQL, the durable archive). A tier knows its backend and
//! the model, never another tier, the mover or the policies.

pub mod cold;
pub mod hot;
pub mod warm;
