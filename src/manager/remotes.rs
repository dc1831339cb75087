//! The remote tiers' connections: made lazily, and retried at most every `RETRY` after a failure.

use std::time::{Duration, Instant};

use tokio::sync::Mutex as AsyncMutex;

use crate::model::Result;

/// A remote tier's connection, made lazily and retried at most every `RETRY` after a failure.
pub(super) struct RemoteSlot<T> {
    enabled: bool,
    state: AsyncMutex<SlotState<T>>,
}

struct SlotState<T> {
    client: Option<T>,
    last_error: Option<String>,
    last_attempt: Option<Instant>,
}

const RETRY: Duration = Duration::from_secs(2);

impl<T: Clone> RemoteSlot<T> {
    pub(super) fn new(enabled: bool) -> Self {
        RemoteSlot { enabled, state: AsyncMutex::new(SlotState { client: None, last_error: None, last_attempt: None }) }
    }

    /// The connection's state without waiting or connecting (`stats()`): a slot busy connecting
    /// reads as idle.
    pub(super) fn state(&self) -> crate::obs::export::Backend {
        use crate::obs::export::Backend;
        if !self.enabled {
            return Backend::Disabled;
        }
        match self.state.try_lock() {
            Ok(st) if st.client.is_some() => Backend::Up,
            Ok(st) if st.last_error.is_some() => Backend::Down,
            _ => Backend::Idle,
        }
    }

    pub(super) async fn get<F, Fut>(&self, connect: F) -> (Option<T>, Option<String>)
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        if !self.enabled {
            return (None, None);
        }
        let mut st = self.state.lock().await;
        if let Some(c) = &st.client {
            return (Some(c.clone()), None);
        }
        if st.last_attempt.is_some_and(|t| t.elapsed() < RETRY) {
            return (None, st.last_error.clone());
        }
        st.last_attempt = Some(Instant::now());
        match connect().await {
            Ok(c) => {
                st.client = Some(c.clone());
                st.last_error = None;
                (Some(c), None)
            }
            Err(e) => {
                st.last_error = Some(e.to_string());
                (None, st.last_error.clone())
            }
        }
    }
}
