//! The move lease: one mover per SQLite file at a time, across processes.
//!
//! Two processes can hold a `TierManager` on one file (StackMemory and the CLI; two StackMemory
//! sessions). Each serialises its own moves with `Mover::moving`, but that mutex is per process:
//! without more, process B's recovery on `open()` would "finish or undo" the journal entry of a
//! move process A is in the middle of, and undoing a copy A is about to rely on loses the frame.
//! So every holder of `moving` also holds this lease, a row in `tier_kv` written in a
//! `BEGIN IMMEDIATE` transaction: free, ours, or held by a process that is gone (its pid no longer
//! runs with the same start time, or it has held it for longer than `STALE_MS`) means we take it.
//! Journal entries are only begun and closed under the lease, so whoever holds it may treat every
//! open entry as its own or as a dead process's.
//!
//! Movers take the lease per batch, so a mover with many batches releases and retakes it within
//! a millisecond while another process polls every few: without more, the other process waits
//! for the whole run (a CLI `migrate` beside StackMemory's policy worker took minutes). So a
//! process that finds the lease held leaves its name in `move_lease_waiter`, and a free lease
//! goes to a fresh waiter first: batches of two processes alternate.

use rusqlite::{OptionalExtension, TransactionBehavior};

use super::HotTier;
use crate::model::units::now_millis;
use crate::model::Result;

const KEY: &str = "move_lease";
const WAITER_KEY: &str = "move_lease_waiter";
/// A waiter that has not polled for this long has given up (waiters poll at least every 25 ms).
const WAITER_FRESH_MS: i64 = 1000;
/// A waiter renews its entry when it is older than this (not on every poll: each renewal is a
/// write transaction beside StackMemory's own).
const WAITER_RENEW_MS: i64 = 250;
/// A holder that has kept the lease this long is taken to be hung (a batch takes seconds).
const STALE_MS: i64 = 10 * 60 * 1000;

/// Who holds the lease when it is not ours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseHolder {
    pub pid: u32,
    pub held_ms: i64,
}

impl HotTier {
    /// Takes the lease for `owner` (`pid:start:mover`) unless a live process holds it; returns the
    /// token to release it with, or who holds it.
    pub fn lease_try(&self, owner: &str) -> Result<std::result::Result<String, LeaseHolder>> {
        let mut c = self.lock_write()?;
        let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let now = now_millis();
        let current: Option<String> =
            tx.query_row("SELECT value FROM tier_kv WHERE key = ?1", [KEY], |r| r.get(0)).optional()?;
        let waiter: Option<String> =
            tx.query_row("SELECT value FROM tier_kv WHERE key = ?1", [WAITER_KEY], |r| r.get(0)).optional()?;
        let waiter = waiter.as_deref().and_then(parse_entry);
        if let Some(h) = current.as_deref().and_then(|v| live_holder(v, owner, now)) {
            // Queue up, unless someone else already is (they go first) or our entry is recent.
            let renew = match waiter {
                Some((w, at)) => now - at > WAITER_FRESH_MS || (w == owner && now - at > WAITER_RENEW_MS),
                None => true,
            };
            if renew {
                put(&tx, WAITER_KEY, &format!("{owner}:{now}"))?;
                tx.commit()?;
            }
            return Ok(Err(h));
        }
        // Free (or a dead holder's): a fresh waiter other than us goes first. Never when we still
        // hold it (a release that failed): the waiter could not take it from us either.
        let ours = current.as_deref().and_then(parse_entry).is_some_and(|(h, _)| h == owner);
        if let Some((w, at)) = waiter {
            if !ours && w != owner && now - at <= WAITER_FRESH_MS {
                let pid = w.split(':').next().and_then(|p| p.parse().ok()).unwrap_or(0);
                return Ok(Err(LeaseHolder { pid, held_ms: 0 }));
            }
            if w == owner {
                tx.execute("DELETE FROM tier_kv WHERE key = ?1", [WAITER_KEY])?;
            }
        }
        let token = format!("{owner}:{now}");
        put(&tx, KEY, &token)?;
        tx.commit()?;
        Ok(Ok(token))
    }

    /// Gives the lease back, if `token` still holds it.
    pub fn lease_release(&self, token: &str) -> Result<()> {
        let c = self.lock_write()?;
        c.execute("DELETE FROM tier_kv WHERE key = ?1 AND value = ?2", [KEY, token])?;
        Ok(())
    }
}

impl HotTier {
    /// This file's name among the machines sharing one PostgreSQL (`frame_holders`): made once,
    /// kept in `tier_kv`. Two processes making it at once agree on the first one written.
    pub fn holder_id(&self) -> Result<String> {
        let c = self.lock_write()?;
        // Read first: an open() of a file that has its id writes nothing.
        let known: Option<String> =
            c.query_row("SELECT value FROM tier_kv WHERE key = 'holder_id'", [], |r| r.get(0)).optional()?;
        if let Some(id) = known {
            return Ok(id);
        }
        let seed = format!("{}:{}:{}", self.path.display(), process_identity(), now_millis());
        let fresh = format!("{:016x}", xxhash_rust::xxh3::xxh3_64(seed.as_bytes()));
        c.execute("INSERT OR IGNORE INTO tier_kv (key, value) VALUES ('holder_id', ?1)", [fresh.as_str()])?;
        Ok(c.query_row("SELECT value FROM tier_kv WHERE key = 'holder_id'", [], |r| r.get(0))?)
    }
}

fn put(tx: &rusqlite::Transaction<'_>, key: &str, value: &str) -> Result<()> {
    tx.execute(
        "INSERT INTO tier_kv (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        [key, value],
    )?;
    Ok(())
}

/// `owner:ms` → (owner, ms).
fn parse_entry(value: &str) -> Option<(&str, i64)> {
    let (owner, at) = value.rsplit_once(':')?;
    Some((owner, at.parse().ok()?))
}

/// This process's identity in a lease: its pid and start time (a reused pid has another start).
pub fn process_identity() -> String {
    let pid = std::process::id();
    format!("{pid}:{}", start_time(pid).unwrap_or_default())
}

/// The holder in `value` (`pid:start:mover:acquired_ms`) if it is someone else and still alive.
fn live_holder(value: &str, owner: &str, now_ms: i64) -> Option<LeaseHolder> {
    let (holder, acquired) = value.rsplit_once(':')?;
    if holder == owner {
        return None;
    }
    let acquired: i64 = acquired.parse().ok()?;
    let mut parts = holder.split(':');
    let pid: u32 = parts.next()?.parse().ok()?;
    let start = parts.next()?;
    let held_ms = now_ms - acquired;
    if held_ms > STALE_MS {
        return None;
    }
    match start_time(pid) {
        Some(s) if s == start => Some(LeaseHolder { pid, held_ms }),
        // Gone, or the pid now runs another process.
        Some(_) | None if std::path::Path::new("/proc/self/stat").exists() => None,
        // No /proc to ask: trust the holder until it goes stale.
        _ => Some(LeaseHolder { pid, held_ms }),
    }
}

/// Field 22 of `/proc/<pid>/stat` (start time in clock ticks since boot), read after the command
/// name's closing parenthesis (a name may contain spaces and parentheses).
fn start_time(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holders_that_are_gone_or_ours_do_not_count() {
        let me = process_identity();
        let now = 1_000_000;
        // Another mover of this (live) process holds it.
        assert_eq!(live_holder(&format!("{me}:7:{now}"), &format!("{me}:8"), now + 5).map(|h| h.held_ms), Some(5));
        // Ours.
        assert_eq!(live_holder(&format!("{me}:8:{now}"), &format!("{me}:8"), now), None);
        // A pid with another start time, and one that runs nothing.
        let pid = std::process::id();
        assert_eq!(live_holder(&format!("{pid}:1:1:{now}"), "x", now), None);
        assert_eq!(live_holder(&format!("{}:1:1:{now}", u32::MAX - 1), "x", now), None);
        // Stale, and garbage.
        assert_eq!(live_holder(&format!("{me}:7:{now}"), "x", now + STALE_MS + 1), None);
        assert_eq!(live_holder("garbage", "x", now), None);
    }

    #[test]
    fn one_holder_at_a_time_and_release() {
        let dir = tempfile::tempdir().expect("tempdir");
        let hot = HotTier::open(&dir.path().join("l.db")).expect("open");
        let me = process_identity();
        let (a, b) = (format!("{me}:1"), format!("{me}:2"));
        let take = |o: &str| hot.lease_try(o).expect("sqlite");
        let ta = take(&a).expect("free lease");
        assert_eq!(take(&b).map_err(|h| h.pid), Err(std::process::id()));
        // The same mover takes it again (a new token); the old token no longer releases it.
        std::thread::sleep(std::time::Duration::from_millis(2));
        let ta2 = take(&a).expect("ours");
        hot.lease_release(&ta).expect("release");
        assert!(take(&b).is_err());
        hot.lease_release(&ta2).expect("release");
        assert!(take(&b).is_ok());
    }

    #[test]
    fn a_waiting_mover_gets_the_lease_before_the_holder_takes_it_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let hot = HotTier::open(&dir.path().join("w.db")).expect("open");
        let me = process_identity();
        let (a, b) = (format!("{me}:1"), format!("{me}:2"));
        let take = |o: &str| hot.lease_try(o).expect("sqlite");
        let ta = take(&a).expect("free lease");
        // b finds it held and queues; a's next batch yields to b.
        assert!(take(&b).is_err());
        hot.lease_release(&ta).expect("release");
        assert!(take(&a).is_err(), "a took the lease again before the waiting b");
        let tb = take(&b).expect("the waiter's turn");
        // b no longer waits: once b releases, a (which queued while b held it) goes next, not b.
        assert!(take(&a).is_err());
        hot.lease_release(&tb).expect("release");
        assert!(take(&b).is_err(), "b took the lease again before the waiting a");
        let ta = take(&a).expect("a's turn");
        hot.lease_release(&ta).expect("release");
        // Nobody waits: a mover takes it again at once.
        let ta = take(&a).expect("free, nobody waiting");
        hot.lease_release(&ta).expect("release");
    }
}
