//! Playout: turns speech into paced wire frames.
//!
//! An absolute-deadline clock sends frame *n* at `start + n·20 ms` (no drift; after a stall it
//! skips the missed slots instead of bursting). Every slot carries one whole wire frame: queued
//! speech, or silence when nothing is queued. After an utterance's last sample a `mark` follows;
//! `Clear` drops everything queued and tells the gateway to drop its buffer within the same
//! frame. For each utterance it keeps the exact record of what left (`sent_ms`) and what the
//! gateway confirmed as played (mark echoes), reported as [`PlayoutEvent`]s.
//!
//! Speech arrives at 16 kHz and is resampled to the wire rate on arrival, so a tick only slices,
//! encodes and sends.

use std::collections::VecDeque;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{PlayoutCommand, PlayoutEvent, SpeechChunk, UtteranceId, PIPELINE_RATE_HZ};
use crate::agent::AmbientSound;
use crate::audio::ambient::{AmbientBed, AmbientMixer};
use crate::audio::codec::Encoder;
use crate::audio::resample::StreamResampler;
use crate::metrics::Metrics;
use crate::transport::{Outbound, WireFormat, FRAME_MS};

/// Most speech playout holds (wire-rate samples): 60 s. Beyond, the oldest is dropped.
pub const MAX_BUFFERED_MS: u64 = 60_000;
/// Marks awaiting their echo that playout remembers (older ones are forgotten).
pub const MAX_PENDING_MARKS: usize = 64;
/// A frame that leaves more than this after its deadline counts as late.
pub const LATE_AFTER: Duration = Duration::from_millis(10);

/// Once locked to the caller's frames, the playout deadline sits this long after each caller
/// frame's arrival, so the wake-up that reads the caller's frame also sends the agent's.
pub const LOCK_LEAD: Duration = Duration::from_millis(1);
/// A caller frame that arrives at most this long before the playout deadline takes the due
/// frame with it (sent up to this much early, in the same wake-up).
pub const COALESCE_WINDOW: Duration = Duration::from_millis(2);
/// Once locked, the most the playout clock's phase moves per caller frame (0.5 % of a frame:
/// the gateway's jitter buffer cannot tell).
pub const SLEW_PER_FRAME: Duration = Duration::from_micros(100);

/// The absolute-deadline frame clock (pure; the actor sleeps until [`FrameClock::deadline`]).
///
/// Its phase follows the caller's frames ([`FrameClock::caller_frame`]): a gateway sends a
/// frame every 20 ms, and a playout deadline just after each of them lets one wake-up per
/// frame do both directions instead of two (the per-call cost at low load is mostly
/// wake-ups). The first caller frame sets the phase; later ones slew it by at most
/// [`SLEW_PER_FRAME`], so network jitter cannot drag the clock and a gateway whose clock runs
/// a little fast or slow is followed (its buffer neither fills nor drains).
#[derive(Debug, Clone)]
pub struct FrameClock {
    start: Instant,
    frame: Duration,
    /// Index of the next frame to send.
    next: u64,
    /// The phase has been set from a caller frame.
    locked: bool,
}

/// What one tick of the clock found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tick {
    /// The frame left more than [`LATE_AFTER`] after its deadline.
    pub late: bool,
    /// Slots skipped because the sender woke up more than a whole frame late.
    pub skipped: u64,
}

impl FrameClock {
    pub fn new(start: Instant, frame: Duration) -> Self {
        Self { start, frame, next: 0, locked: false }
    }

    /// A caller frame arrived at `now`: moves the phase toward a deadline [`LOCK_LEAD`] after
    /// the arrivals (at once for the first frame, then by at most [`SLEW_PER_FRAME`]), and says
    /// whether the due frame should leave now (its deadline at most [`COALESCE_WINDOW`] away).
    pub fn caller_frame(&mut self, now: Instant) -> bool {
        let nanos = |d: Duration| d.as_nanos() as i128;
        let frame = nanos(self.frame);
        let due = self.deadline();
        let ahead = nanos(due.saturating_duration_since(now)) - nanos(now.saturating_duration_since(due));
        // Where the deadline grid sits relative to now + LEAD, wrapped to (−frame/2, frame/2].
        let mut error = (ahead - nanos(LOCK_LEAD)).rem_euclid(frame);
        if error > frame / 2 {
            error -= frame;
        }
        let limit = nanos(SLEW_PER_FRAME);
        let step = if self.locked { error.clamp(-limit, limit) } else { error };
        self.locked = true;
        let by = Duration::from_nanos(step.unsigned_abs() as u64);
        // A positive error: the deadline is later than wanted, so the grid moves earlier.
        self.start =
            if step > 0 { self.start.checked_sub(by).unwrap_or(self.start) } else { self.start + by };
        self.deadline() <= now + COALESCE_WINDOW
    }

    /// When the next frame is due.
    pub fn deadline(&self) -> Instant {
        self.start + self.frame * (self.next as u32)
    }

    /// Accounts for sending the due frame at `now` and advances. When `now` is past the
    /// following slot too, the missed slots are skipped (one frame now, none in a burst).
    pub fn tick(&mut self, now: Instant) -> Tick {
        let due = self.deadline();
        let lateness = now.saturating_duration_since(due);
        let late = lateness > LATE_AFTER;
        let behind = (lateness.as_nanos() / self.frame.as_nanos()) as u64;
        self.next += 1 + behind;
        Tick { late, skipped: behind }
    }

    /// Frames sent or skipped so far.
    pub fn position(&self) -> u64 {
        self.next
    }
}

/// One utterance's place in the sample stream (wire-rate sample positions).
#[derive(Debug)]
struct Segment {
    id: UtteranceId,
    start: u64,
    /// Output position of its last sample, once its last chunk arrived.
    end: Option<u64>,
    started: bool,
}

/// The playout actor's state.
pub struct Playout {
    format: WireFormat,
    encoder: Encoder,
    resampler: StreamResampler,
    /// Wire-rate samples waiting to be sent.
    buffer: VecDeque<i16>,
    max_buffered: usize,
    /// Utterances not yet fully sent, oldest first.
    segments: VecDeque<Segment>,
    /// Samples ever appended to `buffer` (output positions).
    queued_total: u64,
    /// Samples ever sent (or dropped) from `buffer`.
    sent_total: u64,
    /// Input (16 kHz) samples given to the resampler since it was last reset.
    input_total: u64,
    /// Output position of the resampler's first input sample (before its delay) since reset.
    anchor: u64,
    /// Marks sent and not yet echoed: (name, utterance, sent ms), oldest first. Bounded: a
    /// gateway that never echoes marks (Vonage) must not grow it for the length of the call.
    marks: VecDeque<(String, UtteranceId, u64)>,
    /// Utterances up to this id were cut by a `Clear`: late chunks of them are dropped.
    cleared_through: Option<UtteranceId>,
    /// Scratch buffers sized once.
    resampled: Vec<i16>,
    frame_pcm: Vec<i16>,
    frame_bytes: Vec<u8>,
    call_start: Instant,
    dropped_playout: Counter,
    /// The agent's ambient bed, mixed under every outbound frame (silence included).
    ambient: Option<AmbientMixer>,
}

#[derive(Debug, thiserror::Error)]
pub enum PlayoutError {
    #[error("codec: {0}")]
    Codec(String),
}

impl Playout {
    pub fn new(format: WireFormat, call_start: Instant, metrics: &Metrics) -> Result<Self, PlayoutError> {
        let encoder = Encoder::new(format).map_err(|e| PlayoutError::Codec(e.to_string()))?;
        let resampler = StreamResampler::new(PIPELINE_RATE_HZ, format.sample_rate_hz)
            .map_err(|e| PlayoutError::Codec(e.to_string()))?;
        let frame = format.frame_samples();
        let max_buffered = (MAX_BUFFERED_MS * u64::from(format.sample_rate_hz) / 1000) as usize;
        Ok(Self {
            format,
            encoder,
            resampler,
            buffer: VecDeque::with_capacity(frame * 50),
            max_buffered,
            segments: VecDeque::new(),
            queued_total: 0,
            sent_total: 0,
            input_total: 0,
            anchor: 0,
            marks: VecDeque::with_capacity(MAX_PENDING_MARKS),
            cleared_through: None,
            resampled: Vec::with_capacity(frame * 8),
            frame_pcm: vec![0; frame],
            frame_bytes: vec![0; 4000],
            call_start,
            dropped_playout: metrics.dropped("playout"),
            ambient: None,
        })
    }

    /// Mixes `kind`'s bed under every frame from now on (`none`: exact silence between utterances).
    pub fn set_ambient(&mut self, kind: AmbientSound) {
        self.ambient = AmbientBed::at_rate(kind, self.format.sample_rate_hz).map(AmbientMixer::random_start);
    }

    fn samples_to_ms(&self, samples: u64) -> u64 {
        samples * 1000 / u64::from(self.format.sample_rate_hz)
    }

    /// Output position where input position `input_pos` (16 kHz) lands, resampler delay included.
    fn output_position(&self, input_pos: u64) -> u64 {
        self.anchor
            + input_pos * u64::from(self.format.sample_rate_hz) / u64::from(PIPELINE_RATE_HZ)
            + self.resampler.delay_samples() as u64
    }

    /// Queues a chunk of speech.
    pub fn enqueue(&mut self, chunk: SpeechChunk) {
        if self.cleared_through.is_some_and(|c| chunk.utterance_id <= c) {
            // Speech of a cut utterance that was already on its way: never play it.
            return;
        }
        let begins = self.segments.back().is_none_or(|s| s.id != chunk.utterance_id || s.end.is_some());
        if begins {
            let start = self.output_position(self.input_total);
            // An utterance that never got its last chunk ends where the next one begins, so it
            // cannot hold back every later mark.
            if let Some(open) = self.segments.back_mut().filter(|s| s.end.is_none()) {
                open.end = Some(start);
            }
            self.segments.push_back(Segment { id: chunk.utterance_id, start, end: None, started: false });
        }
        self.resampled.clear();
        self.resampler.process(&chunk.pcm, &mut self.resampled);
        self.input_total += chunk.pcm.len() as u64;
        self.queued_total += self.resampled.len() as u64;
        self.buffer.extend(self.resampled.iter().copied());
        if chunk.last {
            let end = self.output_position(self.input_total);
            if let Some(seg) = self.segments.back_mut() {
                seg.end = Some(end);
            }
        }
        let over = self.buffer.len().saturating_sub(self.max_buffered);
        if over > 0 {
            self.buffer.drain(..over);
            self.sent_total += over as u64;
            self.dropped_playout.inc_by(over.div_ceil(self.format.frame_samples()) as u64);
        }
    }

    /// Pushes the resampler's tail out when an ended utterance is still inside it.
    fn flush_tail_if_needed(&mut self) {
        let Some(end) = self.segments.iter().find_map(|s| s.end) else { return };
        if end <= self.queued_total || !self.buffer.is_empty() {
            return;
        }
        let silence = [0i16; super::PIPELINE_FRAME_SAMPLES];
        // A few 20 ms pushes always suffice (the resampler holds less than one chunk).
        for _ in 0..8 {
            if self.queued_total >= end {
                break;
            }
            self.resampled.clear();
            self.resampler.process(&silence, &mut self.resampled);
            self.input_total += silence.len() as u64;
            self.queued_total += self.resampled.len() as u64;
            self.buffer.extend(self.resampled.iter().copied());
        }
    }

    /// Builds the next frame and what follows it (marks) into `out`; reports events.
    pub fn next_frame(&mut self, out: &mut Vec<Outbound>, events: &mut Vec<PlayoutEvent>, now: Instant) {
        self.flush_tail_if_needed();
        let frame = self.format.frame_samples();
        let n = frame.min(self.buffer.len());
        for (dst, src) in self.frame_pcm.iter_mut().zip(self.buffer.drain(..n)) {
            *dst = src;
        }
        self.frame_pcm[n..].fill(0);
        if let Some(ambient) = self.ambient.as_mut() {
            ambient.mix(&mut self.frame_pcm);
        }
        self.sent_total += n as u64;
        match self.encoder.encode(&self.frame_pcm, &mut self.frame_bytes) {
            Ok(len) => out.push(Outbound::Audio(self.frame_bytes[..len].to_vec())),
            Err(e) => tracing::warn!(error = %e, "playout: frame encode failed"),
        }
        let at = now.saturating_duration_since(self.call_start);
        for seg in self.segments.iter_mut().filter(|s| !s.started && s.start < self.sent_total) {
            seg.started = true;
            events.push(PlayoutEvent::Started { utterance_id: seg.id, at });
        }
        while let Some(seg) = self.segments.front() {
            let Some(end) = seg.end.filter(|&e| e <= self.sent_total) else { break };
            let sent_ms = self.samples_to_ms(end.saturating_sub(seg.start));
            let name = format!("utt-{}", seg.id);
            if self.marks.len() == MAX_PENDING_MARKS {
                self.marks.pop_front();
            }
            self.marks.push_back((name.clone(), seg.id, sent_ms));
            out.push(Outbound::Mark(name));
            events.push(PlayoutEvent::Sent { utterance_id: seg.id, sent_ms });
            self.segments.pop_front();
        }
    }

    /// Drops everything queued and asks the gateway to drop its buffer; reports what each cut
    /// utterance had sent.
    pub fn clear(&mut self, out: &mut Vec<Outbound>, events: &mut Vec<PlayoutEvent>) {
        let newest = self.segments.back().map(|seg| seg.id);
        let rate = u64::from(self.format.sample_rate_hz);
        for seg in self.segments.drain(..) {
            let sent = self.sent_total.saturating_sub(seg.start);
            let sent = seg.end.map_or(sent, |e| sent.min(e.saturating_sub(seg.start)));
            let sent_ms = sent * 1000 / rate;
            events.push(PlayoutEvent::Cleared { utterance_id: seg.id, sent_ms, played_ms: sent_ms });
        }
        // Marks still awaiting their echo are moot: the gateway drops (and may echo) them, and an
        // echo must not report the cut utterance as played.
        self.marks.clear();
        self.cleared_through = self.cleared_through.max(newest);
        // Everything queued is gone; positions continue from what was sent.
        self.sent_total += self.buffer.len() as u64;
        self.buffer.clear();
        self.queued_total = self.sent_total;
        self.resampler.reset();
        self.input_total = 0;
        self.anchor = self.queued_total;
        out.push(Outbound::Clear);
    }

    /// A mark came back: that utterance has been played in full.
    /// Whole frames of audio queued and not yet sent.
    pub fn queued_frames(&self) -> u64 {
        self.queued_total.saturating_sub(self.sent_total) / self.format.frame_samples().max(1) as u64
    }

    pub fn mark_played(&mut self, name: &str) -> Option<PlayoutEvent> {
        let i = self.marks.iter().position(|(n, _, _)| n == name)?;
        let (_, utterance_id, sent_ms) = self.marks.remove(i)?;
        Some(PlayoutEvent::Played { utterance_id, played_ms: sent_ms })
    }
}

/// Playout on its clock: owns the [`Playout`] state, its inbox and its event channel; the task
/// that owns the socket (the session) sleeps until [`PlayoutDriver::deadline`] and calls
/// [`PlayoutDriver::tick`], then writes what it returns.
pub struct PlayoutDriver {
    playout: Playout,
    clock: FrameClock,
    inbox: mpsc::Receiver<PlayoutCommand>,
    events: mpsc::Sender<PlayoutEvent>,
    out: Vec<Outbound>,
    pending_events: Vec<PlayoutEvent>,
    late_frames: Counter,
    /// `switchboard_ws_send_queue_depth`, and this call's share of it.
    queue_depth: Gauge,
    queue_reported: i64,
}

/// Playout's inbox closed: every producer is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InboxClosed;

impl PlayoutDriver {
    pub fn new(
        playout: Playout,
        inbox: mpsc::Receiver<PlayoutCommand>,
        events: mpsc::Sender<PlayoutEvent>,
        metrics: &Metrics,
    ) -> Self {
        Self {
            playout,
            clock: FrameClock::new(Instant::now(), Duration::from_millis(u64::from(FRAME_MS))),
            inbox,
            events,
            out: Vec::with_capacity(4),
            pending_events: Vec::with_capacity(4),
            late_frames: metrics.playout_late_frames.clone(),
            queue_depth: metrics.ws_send_queue_depth.clone(),
            queue_reported: 0,
        }
    }

    /// When the next frame is due.
    pub fn deadline(&self) -> Instant {
        self.clock.deadline()
    }

    /// A caller frame arrived at `now` (see [`FrameClock::caller_frame`]); true when the due
    /// frame should be sent now, with it.
    pub fn caller_frame(&mut self, now: Instant) -> bool {
        self.clock.caller_frame(now)
    }

    /// The frame due now: takes the commands that arrived since the last frame, in order (a
    /// `Clear` therefore leaves within one frame), builds the frame and what follows it, and
    /// reports playout events. Returns the items to write, in order.
    pub fn tick(&mut self, now: Instant) -> Result<&[Outbound], InboxClosed> {
        self.out.clear();
        loop {
            match self.inbox.try_recv() {
                Ok(PlayoutCommand::Speak(chunk)) => self.playout.enqueue(chunk),
                Ok(PlayoutCommand::Clear) => self.playout.clear(&mut self.out, &mut self.pending_events),
                Ok(PlayoutCommand::MarkPlayed(name)) => self.mark_played(&name),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => return Err(InboxClosed),
            }
        }
        if self.clock.tick(now).late {
            self.late_frames.inc();
        }
        self.playout.next_frame(&mut self.out, &mut self.pending_events, now);
        let depth = self.playout.queued_frames() as i64;
        if depth != self.queue_reported {
            self.queue_depth.inc_by(depth - self.queue_reported);
            self.queue_reported = depth;
        }
        for ev in self.pending_events.drain(..) {
            if let Err(mpsc::error::TrySendError::Full(ev)) = self.events.try_send(ev) {
                // Per-frame path: a lagging conversation must not flood the log.
                tracing::debug!(?ev, "playout: conversation is not keeping up; event dropped");
            }
        }
        Ok(&self.out)
    }

    /// A mark came back from the gateway.
    pub fn mark_played(&mut self, name: &str) {
        if let Some(ev) = self.playout.mark_played(name) {
            if self.events.try_send(ev).is_err() {
                tracing::debug!("playout: conversation is not keeping up; played event dropped");
            }
        }
    }
}

impl Drop for PlayoutDriver {
    fn drop(&mut self) {
        // The call is over: its queued audio leaves the gauge.
        self.queue_depth.dec_by(self.queue_reported);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::Encoding;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn clock_has_no_drift_and_skips_instead_of_bursting() {
        let t0 = Instant::now();
        let mut c = FrameClock::new(t0, ms(20));
        assert_eq!(c.deadline(), t0);
        // On time (woken a little late, as timers do): not late, no skip.
        assert_eq!(c.tick(t0 + ms(1)), Tick { late: false, skipped: 0 });
        assert_eq!(c.deadline(), t0 + ms(20), "deadline is absolute, not now + 20 ms");
        // 15 ms late: late, but still its own slot.
        assert_eq!(c.tick(t0 + ms(35)), Tick { late: true, skipped: 0 });
        assert_eq!(c.deadline(), t0 + ms(40));
        // Stalled 70 ms: three slots missed are skipped; the next deadline is in the future.
        assert_eq!(c.tick(t0 + ms(110)), Tick { late: true, skipped: 3 });
        assert_eq!(c.deadline(), t0 + ms(120));
        assert_eq!(c.position(), 6);
    }

    #[test]
    fn first_caller_frame_sets_the_phase_and_later_ones_take_the_due_frame_along() {
        let t0 = Instant::now();
        let mut c = FrameClock::new(t0, ms(20));
        c.tick(t0); // next deadline t0 + 20
                    // Caller frames arrive 13 ms into each slot: the nearest grid point to 1 ms after them
                    // is 7 ms earlier, so the grid moves 7 ms earlier at once and this frame, now 1 ms
                    // away, leaves with the caller's.
        assert!(c.caller_frame(t0 + ms(13)));
        assert_eq!(c.deadline(), t0 + ms(14));
        assert_eq!(c.tick(t0 + ms(13)), Tick { late: false, skipped: 0 });
        assert!(c.caller_frame(t0 + ms(33)));
        assert_eq!(c.deadline(), t0 + ms(34), "already in phase: no move");
    }

    #[test]
    fn moving_the_grid_never_sends_two_frames_close_together() {
        let t0 = Instant::now();
        let mut c = FrameClock::new(t0, ms(20));
        c.tick(t0); // next deadline t0 + 20
                    // Arrivals 7 ms into each slot: 1 ms after them is 8 ms after the frame just sent, so
                    // the grid moves 8 ms later (next deadline t0 + 28), not 12 ms earlier (t0 + 8).
        assert!(!c.caller_frame(t0 + ms(7)));
        assert_eq!(c.deadline(), t0 + ms(28));
        assert!(c.caller_frame(t0 + ms(27)));
    }

    #[test]
    fn grid_moves_later_when_the_callers_frames_come_just_after_a_deadline() {
        let t0 = Instant::now();
        let mut c = FrameClock::new(t0, ms(20));
        c.tick(t0); // next deadline t0 + 20
                    // Arrivals 1 ms after deadlines (t0 + 1 ms is 19 ms before the next one): the nearest
                    // grid point is the one just passed, so the grid moves 2 ms later, not 18 ms earlier.
        assert!(!c.caller_frame(t0 + ms(1)));
        assert_eq!(c.deadline(), t0 + ms(22));
        assert!(c.caller_frame(t0 + ms(21)));
    }

    #[test]
    fn after_locking_the_phase_only_slews() {
        let t0 = Instant::now();
        let mut c = FrameClock::new(t0, ms(20));
        c.tick(t0);
        c.caller_frame(t0 + ms(19)); // locked: deadline t0 + 20 (19 + 1)
        assert_eq!(c.deadline(), t0 + ms(20));
        c.tick(t0 + ms(19));
        // One caller frame 5 ms late (network jitter): the grid moves 0.1 ms, not 5 ms, and
        // the next frame, 16 ms away, is not sent early.
        assert!(!c.caller_frame(t0 + ms(24)), "deadline t0 + 40 is 16 ms away");
        assert_eq!(c.deadline(), t0 + ms(40) + SLEW_PER_FRAME);
        // A gateway clock that runs 0.05 ms per frame slow is followed exactly.
        let mut arrival = t0 + ms(39) + Duration::from_micros(50);
        for _ in 0..50 {
            c.tick(c.deadline());
            arrival += ms(20) + Duration::from_micros(50);
            assert!(c.caller_frame(arrival));
        }
        let lead = c.deadline() - arrival;
        assert!(lead.abs_diff(LOCK_LEAD) <= Duration::from_micros(100), "lead {lead:?}");
    }

    fn l16_16k() -> WireFormat {
        WireFormat { encoding: Encoding::L16Le, sample_rate_hz: 16_000 }
    }

    fn chunk(id: UtteranceId, samples: usize, last: bool) -> SpeechChunk {
        SpeechChunk { utterance_id: id, pcm: vec![1000; samples], last }
    }

    fn frames(p: &mut Playout, n: usize) -> (Vec<Outbound>, Vec<PlayoutEvent>) {
        let (mut out, mut ev) = (Vec::new(), Vec::new());
        for _ in 0..n {
            p.next_frame(&mut out, &mut ev, Instant::now());
        }
        (out, ev)
    }

    #[test]
    fn whole_frames_silence_when_idle_and_a_mark_after_each_utterance() {
        let m = Metrics::new();
        let mut p = Playout::new(l16_16k(), Instant::now(), &m).unwrap();
        // Idle: one whole silent frame per slot.
        let (out, ev) = frames(&mut p, 2);
        assert_eq!(out.len(), 2);
        assert!(out
            .iter()
            .all(|o| matches!(o, Outbound::Audio(b) if b.len() == 640 && b.iter().all(|&x| x == 0))));
        assert!(ev.is_empty());
        // 50 ms of speech in two chunks → 3 frames (the last padded), then the mark.
        p.enqueue(chunk(7, 480, false));
        p.enqueue(chunk(7, 320, true));
        let (out, ev) = frames(&mut p, 3);
        let audio = out.iter().filter(|o| matches!(o, Outbound::Audio(_))).count();
        assert_eq!(audio, 3);
        assert_eq!(out.last(), Some(&Outbound::Mark("utt-7".into())));
        assert!(matches!(ev[0], PlayoutEvent::Started { utterance_id: 7, .. }));
        assert_eq!(ev[1], PlayoutEvent::Sent { utterance_id: 7, sent_ms: 50 });
        // The echo confirms it was played.
        assert_eq!(p.mark_played("utt-7"), Some(PlayoutEvent::Played { utterance_id: 7, played_ms: 50 }));
        assert_eq!(p.mark_played("utt-7"), None);
    }

    #[test]
    fn after_clear_no_stale_speech_and_no_played_report_for_cut_audio() {
        let m = Metrics::new();
        let mut p = Playout::new(l16_16k(), Instant::now(), &m).unwrap();
        p.enqueue(chunk(1, 320, true));
        let (out, _) = frames(&mut p, 1);
        assert_eq!(out.last(), Some(&Outbound::Mark("utt-1".into())));
        p.enqueue(chunk(2, 3200, false));
        let _ = frames(&mut p, 2);
        let (mut out, mut ev) = (Vec::new(), Vec::new());
        p.clear(&mut out, &mut ev);
        // The gateway echoes the discarded mark: it is not reported as played.
        assert_eq!(p.mark_played("utt-1"), None);
        // A chunk of the cut utterance that was already on its way is not played.
        p.enqueue(chunk(2, 320, true));
        let (out, ev) = frames(&mut p, 2);
        assert!(out.iter().all(|o| matches!(o, Outbound::Audio(b) if b.iter().all(|&x| x == 0))), "{out:?}");
        assert!(ev.is_empty(), "{ev:?}");
        // The next utterance plays.
        p.enqueue(chunk(3, 320, true));
        let (out, _) = frames(&mut p, 1);
        assert_eq!(out.last(), Some(&Outbound::Mark("utt-3".into())));
    }

    #[test]
    fn an_utterance_without_its_last_chunk_does_not_block_later_marks() {
        let m = Metrics::new();
        let mut p = Playout::new(l16_16k(), Instant::now(), &m).unwrap();
        p.enqueue(chunk(1, 320, false)); // its last chunk never comes
        p.enqueue(chunk(2, 320, true));
        let (out, ev) = frames(&mut p, 2);
        let marks: Vec<_> = out.iter().filter(|o| matches!(o, Outbound::Mark(_))).collect();
        assert_eq!(marks, vec![&Outbound::Mark("utt-1".into()), &Outbound::Mark("utt-2".into())]);
        assert!(ev.contains(&PlayoutEvent::Sent { utterance_id: 2, sent_ms: 20 }), "{ev:?}");
    }

    #[test]
    fn unechoed_marks_stay_bounded() {
        let m = Metrics::new();
        let mut p = Playout::new(l16_16k(), Instant::now(), &m).unwrap();
        for id in 0..(MAX_PENDING_MARKS as u64 + 10) {
            p.enqueue(chunk(id, 320, true));
            let _ = frames(&mut p, 1);
        }
        assert_eq!(p.marks.len(), MAX_PENDING_MARKS);
        assert_eq!(p.mark_played("utt-0"), None, "the oldest was forgotten");
        assert!(p.mark_played(&format!("utt-{}", MAX_PENDING_MARKS as u64 + 9)).is_some());
    }

    #[test]
    fn clear_drops_queued_audio_and_records_what_was_sent() {
        let m = Metrics::new();
        let mut p = Playout::new(l16_16k(), Instant::now(), &m).unwrap();
        p.enqueue(chunk(1, 16_000, true)); // 1 s
        p.enqueue(chunk(2, 3_200, false));
        let _ = frames(&mut p, 10); // 200 ms of utterance 1 left
        let (mut out, mut ev) = (Vec::new(), Vec::new());
        p.clear(&mut out, &mut ev);
        assert_eq!(out, vec![Outbound::Clear]);
        assert_eq!(
            ev,
            vec![
                PlayoutEvent::Cleared { utterance_id: 1, sent_ms: 200, played_ms: 200 },
                PlayoutEvent::Cleared { utterance_id: 2, sent_ms: 0, played_ms: 0 },
            ]
        );
        // Nothing of the cleared speech is sent afterwards: the next frame is silence.
        let (out, ev) = frames(&mut p, 1);
        assert!(matches!(&out[0], Outbound::Audio(b) if b.iter().all(|&x| x == 0)));
        assert!(ev.is_empty());
        // New speech after a clear plays and is accounted from zero.
        p.enqueue(chunk(3, 320, true));
        let (out, ev) = frames(&mut p, 1);
        assert_eq!(out.last(), Some(&Outbound::Mark("utt-3".into())));
        assert_eq!(ev.last(), Some(&PlayoutEvent::Sent { utterance_id: 3, sent_ms: 20 }));
    }

    #[test]
    fn resampled_speech_to_mulaw_8k_keeps_its_length() {
        let m = Metrics::new();
        let mut p = Playout::new(WireFormat::PCMU_8K, Instant::now(), &m).unwrap();
        p.enqueue(chunk(1, 16_000, true)); // 1 s at 16 kHz
        let (out, ev) = frames(&mut p, 60);
        assert!(out.iter().all(|o| !matches!(o, Outbound::Audio(b) if b.len() != 160)), "whole μ-law frames");
        let sent = ev.iter().find_map(|e| match e {
            PlayoutEvent::Sent { sent_ms, .. } => Some(*sent_ms),
            _ => None,
        });
        let sent = sent.expect("the utterance finished within 60 frames");
        assert!((1000..=1040).contains(&sent), "sent_ms {sent} ≈ 1000 (+ resampler delay)");
    }
}
