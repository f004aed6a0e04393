//! Media-websocket test client: connects with tokio-tungstenite, speaks each gateway's wire format,
//! streams fixtures paced at 20 ms, echoes marks like a gateway does, and records what comes back.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A fixture's raw samples: μ-law bytes or little-endian 16-bit PCM bytes, and its rate.
pub struct Fixture {
    pub data: Vec<u8>,
    pub sample_rate_hz: u32,
    /// Bytes per sample: 1 (μ-law) or 2 (L16).
    pub width: usize,
}

impl Fixture {
    /// Reads a mono WAV from audio-fixtures/ (PCM 16-bit or μ-law), returning the data chunk.
    pub fn load(name: &str) -> Fixture {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("audio-fixtures").join(name);
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(&bytes[0..4], b"RIFF");
        assert_eq!(&bytes[8..12], b"WAVE");
        let (mut pos, mut rate, mut bits) = (12, 0u32, 0u16);
        while pos + 8 <= bytes.len() {
            let id = &bytes[pos..pos + 4];
            let len = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().unwrap()) as usize;
            let body = &bytes[pos + 8..(pos + 8 + len).min(bytes.len())];
            if id == b"fmt " {
                rate = u32::from_le_bytes(body[4..8].try_into().unwrap());
                bits = u16::from_le_bytes(body[14..16].try_into().unwrap());
            } else if id == b"data" {
                return Fixture { data: body.to_vec(), sample_rate_hz: rate, width: usize::from(bits / 8) };
            }
            pos += 8 + len + (len & 1);
        }
        panic!("{name}: no data chunk");
    }

    /// The annotation files of the recorded calls in `audio-fixtures/DIR` (`calls`,
    /// `calls-piper`), sorted by name.
    pub fn call_annotations(dir: &str) -> Vec<PathBuf> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("audio-fixtures").join(dir);
        let mut jsons: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("readable directory entry").path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        jsons.sort();
        jsons
    }

    /// The JSON annotation of a recorded call (`audio-fixtures/calls/NAME`).
    pub fn annotation(name: &str) -> Value {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("audio-fixtures/calls").join(name);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_json::from_str(&text).expect("annotation is JSON")
    }

    /// The fixture cut into 20 ms frames.
    pub fn frames(&self) -> Vec<Vec<u8>> {
        let frame = self.sample_rate_hz as usize / 50 * self.width;
        self.data.chunks(frame).filter(|c| c.len() == frame).map(<[u8]>::to_vec).collect()
    }
}

pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub fn unb64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD.decode(s).expect("server sent valid base64")
}

/// What the server sent on a media socket, in order.
#[derive(Debug, Default)]
pub struct Received {
    /// Audio payloads in arrival order.
    pub frames: Vec<Vec<u8>>,
    /// Marks (names) with the number of audio frames received before each.
    pub marks: Vec<(String, usize)>,
    /// `clear` messages: the frame count when each arrived.
    pub clears: Vec<usize>,
    /// In-band hang-up / transfer messages (native protocol).
    pub control: Vec<Value>,
    /// The close frame, if the server closed.
    pub close: Option<(u16, String)>,
    /// The socket ended.
    pub ended: bool,
}

/// How a gateway confirms a played mark on this protocol (None: it does not).
pub type Echo = fn(&str) -> Option<Message>;

/// A connected media client.
pub struct Client {
    tx: SplitSink<Ws, Message>,
    rx: SplitStream<Ws>,
    echo: Echo,
    pub got: Received,
}

impl Client {
    pub async fn connect(addr: std::net::SocketAddr, path: &str, echo: Echo) -> Client {
        let (ws, _) =
            tokio_tungstenite::connect_async(format!("ws://{addr}{path}")).await.expect("websocket connects");
        let (tx, rx) = ws.split();
        Client { tx, rx, echo, got: Received::default() }
    }

    /// Wraps an already connected socket.
    pub fn from_stream(ws: Ws, echo: Echo) -> Client {
        let (tx, rx) = ws.split();
        Client { tx, rx, echo, got: Received::default() }
    }

    pub async fn send(&mut self, msg: Message) {
        // A send may fail once the server has closed; the close is what tests look at.
        let _ = self.tx.send(msg).await;
    }

    /// Records one server message; echoes marks.
    async fn record(&mut self, msg: Message) {
        match msg {
            Message::Binary(b) => self.got.frames.push(b.to_vec()),
            Message::Text(t) => {
                let v: Value = serde_json::from_str(&t).expect("server text is JSON");
                // Vonage commands are keyed by `action` (notify = a mark, clear).
                let kind = v["event"].as_str().or_else(|| v["action"].as_str()).unwrap_or_default();
                match kind {
                    "media" | "playAudio" => {
                        self.got.frames.push(unb64(v["media"]["payload"].as_str().expect("payload")))
                    }
                    "mark" | "checkpoint" | "notify" => {
                        let name = v["mark"]["name"]
                            .as_str()
                            .or(v["name"].as_str())
                            .or(v["payload"]["name"].as_str())
                            .expect("mark name");
                        self.got.marks.push((name.to_string(), self.got.frames.len()));
                        if let Some(reply) = (self.echo)(name) {
                            self.send(reply).await;
                        }
                    }
                    "clear" | "clearAudio" => self.got.clears.push(self.got.frames.len()),
                    "hangup" | "transfer" => self.got.control.push(v),
                    other => panic!("unexpected server event {other}: {v}"),
                }
            }
            Message::Close(frame) => {
                self.got.close = frame.map(|f| (u16::from(f.code), f.reason.to_string()));
                self.got.ended = true;
            }
            _ => {}
        }
    }

    async fn next(&mut self) -> bool {
        match self.rx.next().await {
            Some(Ok(m)) => {
                self.record(m).await;
                !self.got.ended
            }
            _ => {
                self.got.ended = true;
                false
            }
        }
    }

    /// Sends `outgoing` one message per 20 ms while recording what comes back, then keeps
    /// recording for `tail`.
    pub async fn stream(&mut self, outgoing: Vec<Message>, tail: Duration) {
        let mut ticker = tokio::time::interval(Duration::from_millis(20));
        let mut pending = outgoing.into_iter();
        let mut done_at: Option<tokio::time::Instant> = None;
        loop {
            let until = done_at.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                _ = ticker.tick(), if done_at.is_none() => match pending.next() {
                    Some(m) => self.send(m).await,
                    None => done_at = Some(tokio::time::Instant::now() + tail),
                },
                more = self.next() => if !more { return },
                () = tokio::time::sleep_until(until), if done_at.is_some() => return,
            }
        }
    }

    /// Records for `d` (or until the socket ends).
    pub async fn collect_for(&mut self, d: Duration) {
        let _ = tokio::time::timeout(d, async { while self.next().await {} }).await;
    }

    /// Waits (bounded) for the server to close; returns (code, reason).
    pub async fn closed(&mut self) -> (u16, String) {
        let _ = tokio::time::timeout(Duration::from_secs(10), async { while self.next().await {} }).await;
        self.got.close.clone().expect("server sent a close frame")
    }
}

/// Twilio messages.
pub mod twilio {
    use super::*;

    pub fn start(params: Value) -> Message {
        Message::text(
            json!({
                "event": "start", "sequenceNumber": "1", "streamSid": "MZ0001",
                "start": {
                    "accountSid": "AC0001", "streamSid": "MZ0001", "callSid": "CA0001",
                    "tracks": ["inbound"], "customParameters": params,
                    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
                }
            })
            .to_string(),
        )
    }

    pub fn media(seq: usize, payload: &[u8]) -> Message {
        Message::text(
            json!({
                "event": "media", "sequenceNumber": (seq + 2).to_string(), "streamSid": "MZ0001",
                "media": {"track": "inbound", "chunk": (seq + 1).to_string(),
                          "timestamp": (seq * 20).to_string(), "payload": b64(payload)}
            })
            .to_string(),
        )
    }

    pub fn dtmf(digit: char) -> Message {
        Message::text(json!({"event": "dtmf", "streamSid": "MZ0001", "dtmf": {"track": "inbound_track", "digit": digit.to_string()}}).to_string())
    }

    pub fn mark(name: &str) -> Message {
        Message::text(json!({"event": "mark", "streamSid": "MZ0001", "mark": {"name": name}}).to_string())
    }

    pub fn stop() -> Message {
        Message::text(json!({"event": "stop", "streamSid": "MZ0001", "stop": {"accountSid": "AC0001", "callSid": "CA0001"}}).to_string())
    }
}

/// Native protocol messages.
pub mod native {
    use super::*;

    pub fn start(fields: Value) -> Message {
        let mut v = json!({"event": "start"});
        for (k, val) in fields.as_object().unwrap() {
            v[k] = val.clone();
        }
        Message::text(v.to_string())
    }

    pub fn dtmf(digit: char) -> Message {
        Message::text(json!({"event": "dtmf", "digit": digit.to_string()}).to_string())
    }

    pub fn mark(name: &str) -> Message {
        Message::text(json!({"event": "mark", "name": name}).to_string())
    }

    pub fn stop() -> Message {
        Message::text(json!({"event": "stop"}).to_string())
    }
}

/// Vonage messages.
pub mod vonage {
    use super::*;

    pub fn connected(rate: u32, headers: Value) -> Message {
        let mut v = json!({"event": "websocket:connected", "content-type": format!("audio/l16;rate={rate}")});
        for (k, val) in headers.as_object().unwrap() {
            v[k] = val.clone();
        }
        Message::text(v.to_string())
    }

    pub fn dtmf(digit: char) -> Message {
        Message::text(
            json!({"event": "websocket:dtmf", "digit": digit.to_string(), "duration": 250}).to_string(),
        )
    }

    /// What Vonage sends once the audio queued before a `notify` has played.
    pub fn notified(name: &str) -> Message {
        Message::text(json!({"event": "websocket:notify", "payload": {"name": name}}).to_string())
    }
}

/// Telnyx messages (snake_case; custom parameters in `start.custom_parameters`).
pub mod telnyx {
    use super::*;

    pub fn start(params: Value, encoding: &str, rate: u32) -> Message {
        Message::text(
            json!({
                "event": "start", "sequence_number": "1", "stream_id": "32DE0DEA-0001",
                "start": {
                    "call_control_id": "v3:call-0001", "from": "+13122010094", "to": "+13122123456",
                    "custom_parameters": params,
                    "media_format": {"encoding": encoding, "sample_rate": rate, "channels": 1}
                }
            })
            .to_string(),
        )
    }

    pub fn media(seq: usize, payload: &[u8]) -> Message {
        Message::text(
            json!({
                "event": "media", "sequence_number": (seq + 2).to_string(), "stream_id": "32DE0DEA-0001",
                "media": {"track": "inbound", "chunk": (seq + 1).to_string(),
                          "timestamp": (seq * 20).to_string(), "payload": b64(payload)}
            })
            .to_string(),
        )
    }

    pub fn mark(name: &str) -> Message {
        Message::text(
            json!({"event": "mark", "stream_id": "32DE0DEA-0001", "mark": {"name": name}}).to_string(),
        )
    }
}

/// Plivo messages (custom parameters in `extra_headers`).
pub mod plivo {
    use super::*;

    pub const STREAM: &str = "87654321-4321-4321-4321-cba987654321";

    pub fn start(extra_headers: &str) -> Message {
        Message::text(
            json!({
                "event": "start", "sequenceNumber": 1,
                "start": {"callId": "12345678-0001", "streamId": STREAM, "accountId": "MA0001",
                          "tracks": ["inbound"], "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000}},
                "extra_headers": extra_headers
            })
            .to_string(),
        )
    }

    pub fn media(seq: usize, payload: &[u8]) -> Message {
        Message::text(
            json!({
                "event": "media", "sequenceNumber": seq + 2, "streamId": STREAM,
                "media": {"track": "inbound", "timestamp": (seq * 20).to_string(), "chunk": seq + 1,
                          "payload": b64(payload)}
            })
            .to_string(),
        )
    }

    pub fn played(name: &str) -> Message {
        Message::text(
            json!({"event": "playedStream", "sequenceNumber": 9, "streamId": STREAM, "name": name})
                .to_string(),
        )
    }
}
