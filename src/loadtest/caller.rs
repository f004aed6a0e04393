//! One simulated caller: connects like a gateway, streams a fixture on an absolute-deadline clock
//! (frame *i* at `start + i · 20 ms / speed`, a late frame goes out at once and is counted, never
//! skipped), presses its DTMF keys, keeps streaming silence for the tail, answers marks the way a
//! gateway does, then sends `stop` and closes.
//!
//! A simulated gateway buffer plays what the server sends in order and in real time: a mark is
//! answered once the audio sent before it has played, a `clear` drops the unplayed audio and
//! answers its marks at once (as Twilio does). Every server frame is recorded (arrival time, play
//! span, duration, audible or not) into a [`Timeline`] for [`analysis`](super::analysis).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::analysis::{AgentFrame, Timeline, TurnSpan};
use super::fixture::{EncodedAudio, Fixture};
use super::wire::{CallIds, ClientWire, ServerEvent};
use super::Options;
use crate::audio::codec::Decoder;
use crate::transport::{Encoding, Protocol, WireFormat};

/// A frame sent more than this after its deadline counts as late (the load generator lagged).
pub const LATE_AFTER: Duration = Duration::from_millis(10);
/// How long to wait for the server's close after the caller hung up.
pub const CLOSE_WAIT: Duration = Duration::from_secs(5);
/// Extra time a call may take beyond its audio before it is abandoned as timed out.
pub const CALL_SLACK: Duration = Duration::from_secs(30);

/// Kinds of protocol fault, as counted in the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FaultKind {
    /// TCP, TLS or websocket handshake failed.
    Connect,
    /// The upgrade was answered with this HTTP status.
    Http(u16),
    /// Connecting, the call or the closing handshake took too long.
    Timeout,
    /// The server closed with this (unexpected) code.
    Close(u16),
    /// The connection ended without a close frame.
    Dropped,
    /// A message the protocol does not allow.
    BadMessage,
    /// An audio frame that is not whole 20 ms frames of the negotiated codec.
    FrameSize,
}

impl std::fmt::Display for FaultKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Connect => f.write_str("connect"),
            Self::Http(s) => write!(f, "http_{s}"),
            Self::Timeout => f.write_str("timeout"),
            Self::Close(c) => write!(f, "close_{c}"),
            Self::Dropped => f.write_str("dropped"),
            Self::BadMessage => f.write_str("bad_message"),
            Self::FrameSize => f.write_str("frame_size"),
        }
    }
}

/// What one call did and saw, before analysis.
#[derive(Debug, Default)]
pub struct CallRecord {
    pub timeline: Timeline,
    /// When the call's clock started (the opening messages were sent).
    pub t0: Option<Instant>,
    /// Connect + websocket handshake, µs.
    pub connect_us: Option<u64>,
    pub frames_sent: u64,
    /// Frames sent more than [`LATE_AFTER`] after their deadline.
    pub late_sends: u64,
    pub frames_received: u64,
    pub marks_received: u32,
    pub marks_answered: u32,
    pub clears: u32,
    pub dtmf_sent: u32,
    /// In-band hang-up / transfer (native).
    pub hangup: Option<String>,
    pub transfer: Option<String>,
    /// The server's close frame (code, reason).
    pub close: Option<(u16, String)>,
    /// The server ended the call (normal close or in-band hang-up) before the caller did.
    pub ended_by_server: bool,
    /// Faults by kind.
    pub faults: BTreeMap<FaultKind, u32>,
    /// The fault that failed the call, described.
    pub error: Option<(FaultKind, String)>,
}

impl CallRecord {
    fn fault(&mut self, kind: FaultKind) {
        *self.faults.entry(kind).or_default() += 1;
    }

    fn fail(&mut self, kind: FaultKind, detail: String) {
        self.fault(kind);
        if self.error.is_none() {
            self.error = Some((kind, detail));
        }
    }
}

/// One call to make.
pub struct CallPlan {
    pub index: usize,
    pub fixture: Arc<Fixture>,
    pub audio: Arc<EncodedAudio>,
}

/// Runs one call to the end; never fails (failures are in the record).
pub async fn call(options: &Options, run_tag: &str, plan: &CallPlan) -> CallRecord {
    let mut rec = CallRecord::default();
    let audio_len = Duration::from_secs_f64(
        plan.audio.frames.len() as f64 * 0.020 / options.speed + options.tail.as_secs_f64(),
    );
    let limit = options.connect_timeout + audio_len + CLOSE_WAIT + CALL_SLACK;
    if tokio::time::timeout(limit, connect_and_run(options, run_tag, plan, &mut rec)).await.is_err() {
        rec.fail(FaultKind::Timeout, format!("the call did not finish within {:.0} s", limit.as_secs_f64()));
    }
    rec
}

async fn connect_and_run(options: &Options, run_tag: &str, plan: &CallPlan, rec: &mut CallRecord) {
    let config = WebSocketConfig::default().read_buffer_size(8192);
    let started = Instant::now();
    let connecting = tokio_tungstenite::connect_async_with_config(options.url.as_str(), Some(config), true);
    let ws = match tokio::time::timeout(options.connect_timeout, connecting).await {
        Err(_) => return rec.fail(FaultKind::Timeout, format!("connect: no answer from {}", options.url)),
        Ok(Err(WsError::Http(resp))) => {
            let status = resp.status().as_u16();
            return rec.fail(FaultKind::Http(status), format!("websocket upgrade refused: HTTP {status}"));
        }
        Ok(Err(e)) => return rec.fail(FaultKind::Connect, format!("connect: {e}")),
        Ok(Ok((ws, _))) => ws,
    };
    rec.connect_us = Some(started.elapsed().as_micros() as u64);
    let ids = CallIds::new(options.protocol, run_tag, plan.index);
    let wire = ClientWire::new(options.protocol, options.format, ids);
    converse(ws, wire, options, plan, rec).await;
}

/// Per-call receive state: the simulated gateway buffer and the decoder for the audible test.
struct Receiver {
    format: WireFormat,
    decoder: Decoder,
    samples: Vec<i16>,
    /// Sum of squares above which a frame is audible, per sample.
    audible_power: f64,
    /// When the gateway buffer runs dry (µs from call start).
    playhead_us: u64,
    /// Marks waiting for their audio to play: (due µs, answer), in due order.
    marks: VecDeque<(u64, Message)>,
    /// Every frame must be exactly 20 ms (Vonage plays binary frames of one size only); other
    /// protocols allow any whole number of 20 ms frames.
    exact_frames: bool,
}

impl Receiver {
    fn new(protocol: Protocol, format: WireFormat, silence_dbfs: f64) -> Receiver {
        let rms = 32768.0 * 10f64.powf(silence_dbfs / 20.0);
        Receiver {
            format,
            decoder: Decoder::new(format).expect("validated format"),
            samples: vec![0; format.frame_samples()],
            audible_power: rms * rms,
            playhead_us: 0,
            marks: VecDeque::new(),
            exact_frames: protocol == Protocol::Vonage,
        }
    }

    /// Records one audio payload arriving at `now_us`.
    fn audio(&mut self, payload: &[u8], now_us: u64, rec: &mut CallRecord) {
        rec.frames_received += 1;
        let needed = match self.format.encoding {
            Encoding::Pcmu | Encoding::Pcma => payload.len(),
            Encoding::L16Le | Encoding::L16Be => payload.len() / 2,
            Encoding::Opus => crate::audio::codec::MAX_OPUS_PACKET_SAMPLES_48K,
        };
        if self.samples.len() < needed {
            self.samples.resize(needed, 0);
        }
        let n = match self.decoder.decode(payload, &mut self.samples) {
            Ok(n) => n,
            Err(_) => {
                rec.fault(FaultKind::FrameSize);
                return;
            }
        };
        if let Some(frame_bytes) = self.format.frame_bytes() {
            let whole = !payload.is_empty() && payload.len() % frame_bytes == 0;
            if !whole || (self.exact_frames && payload.len() != frame_bytes) {
                rec.fault(FaultKind::FrameSize);
            }
        }
        let duration_us = n as u64 * 1_000_000 / u64::from(self.format.sample_rate_hz);
        let power: f64 = self.samples[..n].iter().map(|&s| f64::from(s) * f64::from(s)).sum();
        let audible = n > 0 && power > self.audible_power * n as f64;
        let play_start_us = now_us.max(self.playhead_us);
        self.playhead_us = play_start_us + duration_us;
        rec.timeline.frames.push(AgentFrame {
            arrival_us: now_us,
            play_start_us,
            play_end_us: self.playhead_us,
            duration_us,
            audible,
        });
    }

    /// The gateway drops what it has not played; every waiting mark is answered now.
    fn clear(&mut self, now_us: u64, rec: &mut CallRecord) -> Vec<Message> {
        rec.clears += 1;
        rec.timeline.clears.push(now_us);
        for f in rec.timeline.frames.iter_mut().rev() {
            if f.play_end_us <= now_us {
                break;
            }
            f.play_end_us = now_us.max(f.play_start_us);
        }
        self.playhead_us = self.playhead_us.min(now_us);
        self.marks.drain(..).map(|(_, answer)| answer).collect()
    }
}

/// The call itself, over any websocket-like stream (the tests use an in-memory one).
pub async fn converse<S>(
    ws: S,
    mut wire: ClientWire,
    options: &Options,
    plan: &CallPlan,
    rec: &mut CallRecord,
) where
    S: Sink<Message, Error = WsError> + Stream<Item = Result<Message, WsError>> + Unpin,
{
    let (mut tx, mut rx) = ws.split();
    let mut rx_state = Receiver::new(wire.protocol(), options.format, options.silence_dbfs);
    let speed = options.speed;
    let to_us = |ms: u32| (f64::from(ms) * 1000.0 / speed) as u64;
    rec.timeline.turns = plan
        .fixture
        .turns
        .iter()
        .map(|t| TurnSpan { start_us: to_us(t.start_ms), end_us: to_us(t.end_ms) })
        .collect();

    let mut params: Vec<(String, String)> = Vec::new();
    if let Some(agent) = &options.agent_id {
        params.push(("agentId".into(), agent.clone()));
    }
    if let Some(key) = &options.key {
        params.push(("token".into(), key.clone()));
    }
    params.extend(options.params.iter().cloned());

    let t0 = Instant::now();
    rec.t0 = Some(t0);
    let now_us = |t0: Instant| t0.elapsed().as_micros() as u64;
    for m in wire.opening(&params) {
        if tx.send(m).await.is_err() {
            break;
        }
    }
    let period_ns = (20_000_000.0 / speed) as u64;
    let fixture_frames = plan.audio.frames.len() as u64;
    let tail_frames = (options.tail.as_nanos() as u64).div_ceil(period_ns);
    let total = fixture_frames + tail_frames;
    let deadline = |i: u64| t0 + Duration::from_nanos(period_ns * i);
    let dtmf = &plan.fixture.dtmf;
    let (mut next, mut next_dtmf) = (0u64, 0usize);
    let far = t0 + Duration::from_secs(86_400);
    let mut open = true;
    let mut send_failed = false;

    while next < total && open {
        let send_at = deadline(next);
        let mark_at = rx_state.marks.front().map(|(due, _)| t0 + Duration::from_micros(*due));
        let dtmf_at = dtmf.get(next_dtmf).map(|d| t0 + Duration::from_micros(to_us(d.at_ms)));
        let outgoing: Option<Message> = tokio::select! {
            biased;
            () = tokio::time::sleep_until(send_at) => {
                if Instant::now() > send_at + LATE_AFTER {
                    rec.late_sends += 1;
                }
                let payload = plan.audio.frames.get(next as usize).unwrap_or(&plan.audio.silence);
                let m = wire.media(next, payload);
                next += 1;
                rec.frames_sent += 1;
                // The caller's audio up to here has been sent (send clock).
                rec.timeline.sent_until_us = next * period_ns / 1000;
                Some(m)
            }
            () = tokio::time::sleep_until(mark_at.unwrap_or(far)), if mark_at.is_some() => {
                rec.marks_answered += 1;
                rx_state.marks.pop_front().map(|(_, answer)| answer)
            }
            () = tokio::time::sleep_until(dtmf_at.unwrap_or(far)), if dtmf_at.is_some() => {
                let d = &dtmf[next_dtmf];
                next_dtmf += 1;
                rec.dtmf_sent += 1;
                Some(wire.dtmf(d.digit, d.duration_ms))
            }
            msg = rx.next() => {
                let at = now_us(t0);
                match msg {
                    Some(Ok(m)) => {
                        let answers = receive(&mut wire, &mut rx_state, &m, at, rec);
                        for a in answers {
                            if tx.send(a).await.is_err() {
                                open = false;
                            }
                        }
                        if matches!(m, Message::Close(_)) {
                            open = false;
                        }
                    }
                    Some(Err(e)) => {
                        rec.fail(FaultKind::Dropped, format!("connection lost: {e}"));
                        open = false;
                    }
                    None => {
                        rec.fail(FaultKind::Dropped, "connection ended without a close frame".into());
                        open = false;
                    }
                }
                None
            }
        };
        if let Some(m) = outgoing {
            if tx.send(m).await.is_err() {
                send_failed = true;
                break;
            }
        }
    }

    if send_failed && rec.close.is_none() && rec.error.is_none() {
        // The server went away while the caller was talking: what it said last decides how.
        let at = now_us(t0);
        let drained = tokio::time::timeout(CLOSE_WAIT, async {
            while let Some(Ok(m)) = rx.next().await {
                receive(&mut wire, &mut rx_state, &m, at, rec);
                if rec.close.is_some() {
                    break;
                }
            }
        })
        .await;
        if rec.close.is_none() && rec.error.is_none() {
            let why = if drained.is_err() { "stopped reading" } else { "ended without a close frame" };
            rec.fail(FaultKind::Dropped, format!("the connection {why} while the caller was sending"));
        }
    } else if rec.close.is_none() && rec.error.is_none() {
        // The caller hangs up: stop (where the protocol has one), then close, as gateways do.
        if let Some(stop) = wire.stop() {
            let _ = tx.send(stop).await;
        }
        let bye = CloseFrame { code: CloseCode::Normal, reason: "caller hung up".into() };
        let _ = tx.send(Message::Close(Some(bye))).await;
        let closing = async {
            while let Some(Ok(m)) = rx.next().await {
                if let Message::Close(frame) = m {
                    return frame.map(|f| (u16::from(f.code), f.reason.to_string()));
                }
            }
            None
        };
        match tokio::time::timeout(CLOSE_WAIT, closing).await {
            Ok(frame) => rec.close = Some(frame.unwrap_or((1005, String::new()))),
            Err(_) => rec.fault(FaultKind::Timeout),
        }
    }
    rec.timeline.end_us = now_us(t0);
    rec.timeline.sent_until_us = rec.timeline.sent_until_us.min(rec.timeline.end_us);
}

/// Handles one server message; returns the messages to send back now.
fn receive(
    wire: &mut ClientWire,
    rx: &mut Receiver,
    m: &Message,
    at: u64,
    rec: &mut CallRecord,
) -> Vec<Message> {
    if let Message::Close(frame) = m {
        let (code, reason) =
            frame.as_ref().map_or((1005, String::new()), |f| (u16::from(f.code), f.reason.to_string()));
        rec.close = Some((code, reason.clone()));
        if matches!(code, 1000 | 1005) {
            rec.ended_by_server = true;
        } else {
            rec.fail(FaultKind::Close(code), format!("server closed {code}: {reason}"));
        }
        return Vec::new();
    }
    match wire.parse(m) {
        Ok(ServerEvent::Audio(payload)) => {
            rx.audio(&payload, at, rec);
            Vec::new()
        }
        Ok(ServerEvent::Mark { answer, .. }) => {
            rec.marks_received += 1;
            let due = at.max(rx.playhead_us);
            rx.marks.push_back((due, answer));
            Vec::new()
        }
        Ok(ServerEvent::Clear { ack }) => {
            let answers = rx.clear(at, rec);
            rec.marks_answered += answers.len() as u32;
            answers.into_iter().chain(ack).collect()
        }
        Ok(ServerEvent::Hangup { reason }) => {
            rec.hangup = Some(reason);
            rec.ended_by_server = true;
            Vec::new()
        }
        Ok(ServerEvent::Transfer { to }) => {
            rec.transfer = Some(to);
            Vec::new()
        }
        Ok(ServerEvent::Ignored) => Vec::new(),
        Err(_) => {
            rec.fault(FaultKind::BadMessage);
            Vec::new()
        }
    }
}

#[cfg(test)]
#[path = "caller_tests.rs"]
mod tests;
