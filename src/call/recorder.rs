//! Recorder: writes a call's turns and timeline to the store as they happen, off the
//! conversation's path (a database write never delays a turn-taking decision), and publishes
//! each written turn on the call's live transcript feed.

use tokio::sync::mpsc;

use super::registry::TranscriptFeed;
use crate::store::{CallEvent, CallTurn, NewTurn, Store};

/// Records waiting to be written.
pub const RECORDER_QUEUE: usize = 128;

/// What to write.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Event(CallEvent),
    Turn(NewTurn),
    /// The agent's response to turn `seq` (the latest text; replaces what was there).
    Response {
        seq: i64,
        text: String,
    },
}

/// The conversation's end: numbered records, never blocking.
#[derive(Debug, Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Record>,
    next_event: i64,
}

impl Recorder {
    /// A recorder for `call_id` and the task that writes for it (ends when every handle is gone).
    /// Written turns are published on `feed` (no subscriber is fine).
    pub fn spawn(store: Store, call_id: String, feed: TranscriptFeed) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(RECORDER_QUEUE);
        (Self { tx, next_event: 1 }, tokio::spawn(write_all(store, call_id, rx, feed)))
    }

    /// Records a timeline event at `at_ms` with optional JSON detail.
    pub fn event(&mut self, kind: &str, at_ms: u64, detail: Option<serde_json::Value>) {
        let e = CallEvent {
            seq: self.next_event,
            kind: kind.to_string(),
            at_ms: at_ms as i64,
            detail: detail.map(|d| d.to_string()),
        };
        self.next_event += 1;
        self.send(Record::Event(e));
    }

    pub fn turn(&mut self, turn: NewTurn) {
        self.send(Record::Turn(turn));
    }

    pub fn response(&mut self, seq: i64, text: String) {
        self.send(Record::Response { seq, text });
    }

    fn send(&self, r: Record) {
        if let Err(e) = self.tx.try_send(r) {
            tracing::warn!(error = %e, "recorder queue full or closed: a call record entry was dropped");
        }
    }
}

async fn write_all(store: Store, call_id: String, mut rx: mpsc::Receiver<Record>, feed: TranscriptFeed) {
    let mut turns: std::collections::HashMap<i64, CallTurn> = std::collections::HashMap::new();
    while let Some(r) = rx.recv().await {
        let result = match r {
            Record::Event(e) => store.add_call_event(&call_id, &e).await,
            Record::Turn(t) => store.add_call_turn(&call_id, &t).await.map(|turn| {
                let _ = feed.send(turn.clone());
                turns.insert(t.seq, turn);
            }),
            Record::Response { seq, text } => match turns.get_mut(&seq) {
                Some(turn) => store.set_turn_response(&turn.id, &text).await.map(|()| {
                    turn.response = Some(text);
                    let _ = feed.send(turn.clone());
                }),
                None => Ok(()),
            },
        };
        if let Err(e) = result {
            tracing::error!(call_id, error = %e, "could not write to the call record");
        }
    }
}
