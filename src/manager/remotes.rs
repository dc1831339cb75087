//! The remote tiers' connections, each behind a circuit breaker.
//!
//! * **closed**: connected; calls go through. A call that fails because the server is unreachable
//!   (the tier reports it through its [`OutageHook`]) opens the breaker.
//! * **open**: the tier is skipped at no cost (`get` returns at once, well under a millisecond)
//!   until `next_probe`, which backs off exponentially with jitter (`BASE` · 2ⁿ⁻¹, at most `MAX`,
//!   times a random factor in [0.5, 1)) after each failed attempt.
//! * **half-open**: one probe (a fresh connect, bounded by the tier's connect timeout) is under
//!   way in a task of its own. Nobody holds a lock across it: callers wait for its outcome at most
//!   the budget they pass to `get` (zero for `open()`, a few ms for reads another tier can serve),
//!   then go on without the tier. Success closes the breaker, failure reopens it with a longer delay.
//!
//! A slot that never connected starts half-open on its first use (`open()` starts the probes
//! without waiting for them).

use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::watch;

use crate::model::units::now_millis;
use crate::model::{Result, TierError};
use crate::tiers::cold::ColdTier;
use crate::tiers::warm::WarmTier;
use crate::tiers::OutageHook;

/// First delay after a failure; doubles with each further one ...
const BASE: Duration = Duration::from_millis(250);
/// ... up to this.
const MAX: Duration = Duration::from_secs(30);

/// A remote tier the breaker can watch.
pub(super) trait Remote: Clone + Send + Sync + 'static {
    fn watch_outages(&self, hook: OutageHook);
}

impl Remote for WarmTier {
    fn watch_outages(&self, hook: OutageHook) {
        self.set_outage_hook(hook)
    }
}

impl Remote for ColdTier {
    fn watch_outages(&self, hook: OutageHook) {
        self.set_outage_hook(hook)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Closed,
    Open,
    HalfOpen,
}

struct State<T> {
    client: Option<T>,
    phase: Phase,
    /// Consecutive failed attempts (or calls) since the last success.
    failures: u32,
    next_probe: Option<Instant>,
    last_error: Option<String>,
    /// Bumped on every successful connect: an old client's late failure does not trip a new one.
    generation: u64,
}

pub(super) struct RemoteSlot<T> {
    name: &'static str,
    enabled: bool,
    state: Arc<Mutex<State<T>>>,
    /// Bumped when a probe ends; waiters watch it.
    probes: watch::Sender<u64>,
}

/// What a caller learns: the client, or why there is none.
type Got<T> = (Option<T>, Option<String>);

impl<T: Remote> RemoteSlot<T> {
    pub(super) fn new(name: &'static str, enabled: bool) -> Self {
        let state = State {
            client: None,
            phase: Phase::Closed,
            failures: 0,
            next_probe: None,
            last_error: None,
            generation: 0,
        };
        RemoteSlot { name, enabled, state: Arc::new(Mutex::new(state)), probes: watch::channel(0).0 }
    }

    /// The connection's state without waiting or connecting (`stats()`).
    pub(super) fn state(&self) -> crate::obs::export::Backend {
        use crate::obs::export::Backend;
        if !self.enabled {
            return Backend::Disabled;
        }
        let st = self.lock();
        if st.client.is_some() {
            Backend::Up
        } else if st.last_error.is_some() {
            Backend::Down
        } else {
            Backend::Idle
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<T>> {
        // A panic while holding this lock cannot leave the state inconsistent (plain fields).
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The client when the breaker is closed; else starts a probe if one is due and waits for it
    /// at most `wait` (`patient`: also after failures; else only for the very first connect, so
    /// a read never waits on a probe of a tier that failed before). Never holds a lock across
    /// the connect.
    pub(super) async fn get<F, Fut>(&self, connect: F, wait: Duration, patient: bool) -> Got<T>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<T>> + Send + 'static,
    {
        if !self.enabled {
            return (None, None);
        }
        let mut rx = {
            let mut st = self.lock();
            match st.phase {
                Phase::Closed if st.client.is_some() => return (st.client.clone(), None),
                Phase::Open if st.next_probe.is_some_and(|t| Instant::now() < t) => {
                    return (None, st.last_error.clone())
                }
                Phase::HalfOpen => {}
                // Never connected, or open and due: probe now, in a task of its own.
                _ => {
                    st.phase = Phase::HalfOpen;
                    self.spawn_probe(connect());
                }
            }
            if st.failures > 0 && !patient {
                return (None, st.last_error.clone());
            }
            self.probes.subscribe()
        };
        if !wait.is_zero() {
            let _ = tokio::time::timeout(wait, rx.changed()).await;
        }
        let st = self.lock();
        match (&st.client, st.phase) {
            (Some(c), Phase::Closed) => (Some(c.clone()), None),
            _ => (
                None,
                Some(st.last_error.clone().unwrap_or_else(|| {
                    TierError::unavailable(self.name, "connecting (the first attempt is under way)").to_string()
                })),
            ),
        }
    }

    fn spawn_probe<Fut>(&self, connecting: Fut)
    where
        Fut: std::future::Future<Output = Result<T>> + Send + 'static,
    {
        let state = Arc::downgrade(&self.state);
        let probes = self.probes.clone();
        let name = self.name;
        tokio::spawn(async move {
            let outcome = connecting.await;
            let Some(state) = state.upgrade() else { return };
            {
                let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
                match outcome {
                    Ok(client) => {
                        st.generation += 1;
                        client.watch_outages(trip_hook(Arc::downgrade(&state), st.generation, name));
                        st.client = Some(client);
                        st.phase = Phase::Closed;
                        st.failures = 0;
                        st.next_probe = None;
                        st.last_error = None;
                    }
                    Err(e) => fail(&mut st, e.to_string()),
                }
            }
            probes.send_modify(|n| *n += 1);
        });
    }

    /// Makes an open breaker's next probe due now: a bulk run is worth one fresh attempt before
    /// it fails a batch of frames on an earlier failure (a first connect that timed out under
    /// load, say).
    pub(super) fn retry_now(&self) {
        let mut st = self.lock();
        if st.phase == Phase::Open {
            st.next_probe = None;
        }
    }

    /// `status()`'s view: state, consecutive failures, next probe (unix ms) and the last error.
    pub(super) fn status(&self) -> Value {
        let st = self.lock();
        let state = match st.phase {
            Phase::Closed if st.client.is_some() || !self.enabled => "closed",
            Phase::Open => "open",
            _ => "half-open",
        };
        let next = st.next_probe.filter(|_| st.phase == Phase::Open).map(|t| {
            now_millis() + t.saturating_duration_since(Instant::now()).as_millis().min(i64::MAX as u128) as i64
        });
        json!({"state": state, "failures": st.failures, "nextProbeAt": next, "lastError": st.last_error})
    }
}

/// A failed attempt or call: open, and schedule the next probe.
fn fail<T>(st: &mut State<T>, why: String) {
    st.failures = st.failures.saturating_add(1);
    st.client = None;
    st.phase = Phase::Open;
    st.next_probe = Some(Instant::now() + backoff(st.failures));
    st.last_error = Some(why);
}

/// The hook a connected tier calls on an outage: opens the breaker if `generation` is current.
fn trip_hook<T: Send + 'static>(state: Weak<Mutex<State<T>>>, generation: u64, name: &'static str) -> OutageHook {
    Arc::new(move |why: &str| {
        let Some(state) = state.upgrade() else { return };
        let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
        if st.generation == generation && st.phase == Phase::Closed {
            fail(&mut st, TierError::unavailable(name, why).to_string());
        }
    })
}

/// `BASE · 2^(n-1)`, at most `MAX`, times a random factor in [0.5, 1) (so many processes that
/// lost one server do not all come back at the same instant).
fn backoff(failures: u32) -> Duration {
    let exp = BASE.saturating_mul(1u32 << failures.saturating_sub(1).min(16));
    let capped = exp.min(MAX);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(failures);
    let unit = (h.finish() >> 11) as f64 / (1u64 << 53) as f64;
    capped.mul_f64(0.5 + unit / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone)]
    struct Fake(Arc<Mutex<Option<OutageHook>>>);

    impl Remote for Fake {
        fn watch_outages(&self, hook: OutageHook) {
            *self.0.lock().unwrap() = Some(hook);
        }
    }

    #[tokio::test]
    async fn opens_on_failure_skips_at_once_and_closes_after_a_probe() {
        let slot: RemoteSlot<Fake> = RemoteSlot::new("fake", true);
        let fail = || async { Err::<Fake, _>(TierError::unavailable("fake", "refused")) };
        let (c, why) = slot.get(fail, Duration::from_secs(1), true).await;
        assert!(c.is_none() && why.unwrap().contains("refused"));
        assert_eq!(slot.status()["state"], "open");
        assert_eq!(slot.status()["failures"], 1);
        assert!(slot.status()["nextProbeAt"].as_i64().unwrap() > now_millis() - 1000);
        // Open and not due: no connect is even started, and the answer is immediate.
        let t = Instant::now();
        let never = || async { Err::<Fake, _>(TierError::unavailable("fake", "must not be called")) };
        let (c, why) = slot.get(never, Duration::from_secs(1), true).await;
        assert!(c.is_none() && t.elapsed() < Duration::from_millis(5));
        assert!(why.unwrap().contains("refused"));
        assert_eq!(slot.status()["failures"], 1);
        // Due: a slow probe is not waited for by an impatient caller after a failure.
        tokio::time::sleep(BASE).await;
        let hooked = Arc::new(Mutex::new(None));
        let h2 = hooked.clone();
        let slow = move || async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Ok(Fake(h2))
        };
        let t = Instant::now();
        let (c, _) = slot.get(slow, Duration::from_secs(1), false).await;
        assert!(c.is_none() && t.elapsed() < Duration::from_millis(5));
        assert_eq!(slot.status()["state"], "half-open");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(slot.status()["state"], "closed");
        let never = || async { Err::<Fake, _>(TierError::unavailable("fake", "must not be called")) };
        let (c, _) = slot.get(never, Duration::ZERO, false).await;
        assert!(c.is_some());
        // The tier reports an outage: open again, the client dropped.
        let hook = hooked.lock().unwrap().clone().unwrap();
        hook("ping: broken pipe");
        assert_eq!(slot.status()["state"], "open");
        assert!(slot.status()["lastError"].as_str().unwrap().contains("broken pipe"));
    }

    #[test]
    fn backoff_grows_with_jitter_and_is_capped() {
        for n in 1..40 {
            let d = backoff(n);
            let full = BASE.saturating_mul(1u32 << (n - 1).min(16)).min(MAX);
            assert!(d >= full / 2 && d <= full, "{n}: {d:?} vs {full:?}");
        }
        assert!(backoff(30) <= MAX);
        assert!(backoff(3) > backoff(1));
    }
}
