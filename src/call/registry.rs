//! The live calls of this node: admission against the concurrent-call cap, a handle to end any
//! live call, and the drain of all of them at shutdown.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::store::CallTurn;

/// Why a call was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("at capacity ({0} concurrent calls)")]
    AtCapacity(usize),
    #[error("server is draining")]
    Draining,
}

struct Live {
    /// Cancelling ends the call (hang-up by the API, drain deadline).
    cancel: CancellationToken,
    /// The call's live transcript: every turn as it is written (see [`TranscriptFeed`]).
    feed: broadcast::Sender<CallTurn>,
    /// Why it was ended from outside, when it was (set before `cancel` fires).
    reason: Arc<OnceLock<String>>,
}

/// Turns a live-transcript subscriber may fall behind by before it has to re-read the store.
pub const FEED_CAPACITY: usize = 64;

/// The sending end of a call's live transcript: the recorder publishes each turn after it is
/// written to the store (again, with its response, when the response is written). Subscribers
/// see the feed close when the call has ended and its record is final.
pub type TranscriptFeed = broadcast::Sender<CallTurn>;

/// Registry of live calls, shared by every session.
pub struct CallRegistry {
    max_calls: usize,
    /// Places taken (admitted, bound or not yet bound to a call id).
    taken: Mutex<usize>,
    /// Live calls by id, for ending them from outside.
    calls: Mutex<HashMap<String, Live>>,
    /// Current count, watched by the drain.
    count: watch::Sender<usize>,
    draining: std::sync::atomic::AtomicBool,
    /// Parent of every call's token: cancelling it ends every admitted call, bound or not yet.
    root: CancellationToken,
    metrics: Arc<Metrics>,
}

/// Holds a call's place; dropping it releases the place.
pub struct Admission {
    registry: Arc<CallRegistry>,
    call_id: Option<String>,
    /// Cancelled when the call must end from outside.
    pub cancel: CancellationToken,
    /// The call's live transcript; closes for subscribers when the admission is dropped.
    pub feed: TranscriptFeed,
    /// Set by [`CallRegistry::end_with`] before `cancel` fires: the call is to hang up for this
    /// reason (the gateway is told, as for an agent's hang-up). Unset on a drain.
    pub end_reason: Arc<OnceLock<String>>,
}

impl CallRegistry {
    pub fn new(max_calls: usize, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            max_calls,
            taken: Mutex::new(0),
            calls: Mutex::new(HashMap::new()),
            count: watch::Sender::new(0),
            draining: false.into(),
            root: CancellationToken::new(),
            metrics,
        })
    }

    /// Reserves a place (before any call record exists), or says why not.
    pub fn admit(self: &Arc<Self>) -> Result<Admission, Refusal> {
        if self.is_draining() {
            return Err(Refusal::Draining);
        }
        let mut taken = self.taken.lock().unwrap_or_else(|e| e.into_inner());
        if *taken >= self.max_calls {
            return Err(Refusal::AtCapacity(self.max_calls));
        }
        *taken += 1;
        let n = *taken;
        drop(taken);
        self.count.send_replace(n);
        self.metrics.calls_active.set(n as i64);
        Ok(Admission {
            registry: self.clone(),
            call_id: None,
            cancel: self.root.child_token(),
            feed: broadcast::Sender::new(FEED_CAPACITY),
            end_reason: Arc::default(),
        })
    }

    pub fn active(&self) -> usize {
        *self.count.borrow()
    }

    pub fn at_capacity(&self) -> bool {
        self.active() >= self.max_calls
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Ends one live call; false when it is not live on this node.
    pub fn end(&self, call_id: &str) -> bool {
        let calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        match calls.get(call_id) {
            Some(live) => {
                live.cancel.cancel();
                true
            }
            None => false,
        }
    }

    /// Hangs one live call up for `reason` (the gateway is told, the record says why); false
    /// when it is not live on this node.
    pub fn end_with(&self, call_id: &str, reason: &str) -> bool {
        let calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        match calls.get(call_id) {
            Some(live) => {
                let _ = live.reason.set(reason.to_string());
                live.cancel.cancel();
                true
            }
            None => false,
        }
    }

    /// A subscription to a live call's transcript; `None` when the call is not live on this node.
    pub fn subscribe(&self, call_id: &str) -> Option<broadcast::Receiver<CallTurn>> {
        let calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        calls.get(call_id).map(|live| live.feed.subscribe())
    }

    /// Refuses new calls from now on and waits up to `deadline` for the live ones to finish;
    /// then ends the rest. Returns how many had to be ended.
    pub async fn drain(&self, deadline: Duration) -> usize {
        self.draining.store(true, std::sync::atomic::Ordering::SeqCst);
        let mut rx = self.count.subscribe();
        let idle = async {
            while *rx.borrow_and_update() > 0 {
                if rx.changed().await.is_err() {
                    break;
                }
            }
        };
        if tokio::time::timeout(deadline, idle).await.is_ok() {
            return 0;
        }
        // The root reaches calls still being admitted (not yet bound to an id) too.
        self.root.cancel();
        self.active()
    }

    /// Waits (bounded) until no call is live.
    pub async fn wait_idle(&self, limit: Duration) -> bool {
        let mut rx = self.count.subscribe();
        tokio::time::timeout(limit, async {
            while *rx.borrow_and_update() > 0 {
                if rx.changed().await.is_err() {
                    break;
                }
            }
        })
        .await
        .is_ok()
    }
}

impl Admission {
    /// Binds the place to the call record just created, so the call can be ended by id.
    pub fn bind(&mut self, call_id: &str) {
        let mut calls = self.registry.calls.lock().unwrap_or_else(|e| e.into_inner());
        calls.insert(
            call_id.to_string(),
            Live { cancel: self.cancel.clone(), feed: self.feed.clone(), reason: self.end_reason.clone() },
        );
        self.call_id = Some(call_id.to_string());
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        if let Some(id) = &self.call_id {
            self.registry.calls.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
        }
        let mut taken = self.registry.taken.lock().unwrap_or_else(|e| e.into_inner());
        *taken -= 1;
        let n = *taken;
        drop(taken);
        self.registry.count.send_replace(n);
        self.registry.metrics.calls_active.set(n as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn cap_refuses_then_frees_and_drain_ends_the_rest() {
        let r = CallRegistry::new(2, Arc::new(Metrics::new()));
        let a = r.admit().unwrap();
        let mut b = r.admit().unwrap();
        b.bind("b");
        assert_eq!(r.admit().err(), Some(Refusal::AtCapacity(2)));
        assert!(r.at_capacity());
        drop(a);
        let mut c = r.admit().unwrap();
        c.bind("c");
        assert!(!r.end("a"), "a was never bound");
        assert!(r.end("b"));
        assert!(b.cancel.is_cancelled());
        drop(b);
        // A place taken but not yet bound to a call id (the call record is being written).
        let unbound = r.admit().unwrap();
        // Drain: c does not finish by itself, so it is ended at the deadline — and so is the
        // unbound one, which the drain cannot find by id.
        let ended = r.drain(Duration::from_millis(20)).await;
        assert_eq!(ended, 2);
        assert!(c.cancel.is_cancelled());
        assert!(unbound.cancel.is_cancelled());
        drop(unbound);
        assert_eq!(r.admit().err(), Some(Refusal::Draining));
        drop(c);
        assert!(r.wait_idle(Duration::from_millis(100)).await);
    }
}
