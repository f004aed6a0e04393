//! Listener: caller audio in, [`ListenerEvent`]s out.
//!
//! Per inbound payload: decode the wire codec → resample to 16 kHz → cut 20 ms frames → in an
//! agent call, the [`listening`](super::listening) path (denoise → VAD → speech-to-text), whose
//! speech events and transcripts go to the conversation. In diagnostics loopback mode each frame
//! is handed straight to playout, 1 s per "utterance", so the whole media path runs and the
//! caller hears themself.

use std::time::Instant as StdInstant;

use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::listening::{Listening, ListeningSetup, SttJob};
use super::queue::Consumer;
use super::{
    ListenerEvent, PlayoutCommand, SpeechChunk, UtteranceId, PIPELINE_FRAME_SAMPLES, PIPELINE_RATE_HZ,
};
use crate::audio::codec::{Decoder, MAX_DECODED_SAMPLES};
use crate::audio::resample::StreamResampler;
use crate::metrics::Metrics;
use crate::transport::WireFormat;

/// Loopback groups the caller's audio into utterances of this many frames (1 s), so marks flow.
pub const LOOPBACK_UTTERANCE_FRAMES: u32 = 50;

/// What the session hands the listener, in arrival order.
#[derive(Debug, Clone, PartialEq)]
pub enum Ingress {
    /// One encoded payload in the wire format.
    Audio(Vec<u8>),
    /// A DTMF key.
    Dtmf(char),
}

/// The listener's connections.
pub struct ListenerIo {
    pub ingress: Consumer<Ingress>,
    pub events: mpsc::Sender<ListenerEvent>,
    /// Set in loopback mode: frames go straight to playout.
    pub loopback: Option<mpsc::Sender<PlayoutCommand>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ListenerError {
    #[error("codec: {0}")]
    Codec(String),
}

/// The listener actor's state.
pub struct Listener {
    decoder: Decoder,
    resampler: StreamResampler,
    /// Decoded wire-rate samples of one payload.
    decoded: Vec<i16>,
    /// 16 kHz samples not yet cut into a frame.
    pending: Vec<i16>,
    call_start: Instant,
    loopback_utterance: UtteranceId,
    loopback_frames: u32,
    /// Agent calls: denoise → VAD → speech-to-text.
    listening: Option<Listening>,
    /// Events of the payload being processed, sent once it is done.
    out: Vec<ListenerEvent>,
    /// Speech-to-text requests started by the payload being processed.
    new_jobs: Vec<SttJob>,
    frame_processing: Histogram,
    frames_in: Counter,
    dropped_invalid: Counter,
    dropped_playout: Counter,
}

impl Listener {
    pub fn new(
        format: WireFormat,
        call_start: Instant,
        metrics: &Metrics,
        listening: Option<ListeningSetup>,
    ) -> Result<Self, ListenerError> {
        Ok(Self {
            decoder: Decoder::new(format).map_err(|e| ListenerError::Codec(e.to_string()))?,
            resampler: StreamResampler::new(format.sample_rate_hz, PIPELINE_RATE_HZ)
                .map_err(|e| ListenerError::Codec(e.to_string()))?,
            decoded: vec![0; MAX_DECODED_SAMPLES],
            pending: Vec::with_capacity(PIPELINE_FRAME_SAMPLES * 8),
            call_start,
            loopback_utterance: 1,
            loopback_frames: 0,
            listening: listening.map(|setup| Listening::new(setup, metrics)),
            out: Vec::with_capacity(4),
            new_jobs: Vec::with_capacity(2),
            frame_processing: metrics.frame_processing.clone(),
            frames_in: metrics.frames_in.clone(),
            dropped_invalid: metrics.dropped("invalid"),
            dropped_playout: metrics.dropped("playout"),
        })
    }

    /// Runs until cancelled or the session stops feeding it.
    pub async fn run(mut self, mut io: ListenerIo, cancel: CancellationToken) {
        let cancelled = cancel.cancelled();
        tokio::pin!(cancelled);
        let mut jobs: FuturesUnordered<SttJob> = FuturesUnordered::new();
        loop {
            let item = tokio::select! {
                biased;
                () = &mut cancelled => break,
                Some(done) = jobs.next(), if !jobs.is_empty() => {
                    let mut events = Vec::new();
                    if let Some(l) = self.listening.as_mut() {
                        l.on_stt(done, &mut events);
                    }
                    let mut gone = false;
                    for event in events {
                        gone = gone || io.events.send(event).await.is_err();
                    }
                    if gone {
                        break;
                    }
                    continue;
                }
                item = io.ingress.recv() => item,
            };
            match item {
                None => break,
                Some(Ingress::Audio(payload)) => {
                    self.on_audio(&payload, io.loopback.as_ref());
                    jobs.extend(self.new_jobs.drain(..));
                    for event in self.out.drain(..) {
                        if io.events.send(event).await.is_err() {
                            return;
                        }
                    }
                }
                Some(Ingress::Dtmf(digit)) => {
                    let at = self.call_start.elapsed();
                    if io.events.send(ListenerEvent::Dtmf { digit, at }).await.is_err() {
                        break;
                    }
                }
            }
        }
    }

    fn on_audio(&mut self, payload: &[u8], loopback: Option<&mpsc::Sender<PlayoutCommand>>) {
        let started = StdInstant::now();
        self.frames_in.inc();
        let n = match self.decoder.decode(payload, &mut self.decoded) {
            Ok(n) => n,
            Err(e) => {
                self.dropped_invalid.inc();
                tracing::debug!(error = %e, "listener: undecodable payload dropped");
                return;
            }
        };
        self.resampler.process(&self.decoded[..n], &mut self.pending);
        while self.pending.len() >= PIPELINE_FRAME_SAMPLES {
            if let Some(listening) = self.listening.as_mut() {
                listening.on_frame(
                    &self.pending[..PIPELINE_FRAME_SAMPLES],
                    &mut self.out,
                    &mut self.new_jobs,
                );
            }
            if let Some(playout) = loopback {
                self.loopback_frames += 1;
                let last = self.loopback_frames == LOOPBACK_UTTERANCE_FRAMES;
                let chunk = SpeechChunk {
                    utterance_id: self.loopback_utterance,
                    pcm: self.pending[..PIPELINE_FRAME_SAMPLES].to_vec(),
                    last,
                };
                if last {
                    self.loopback_frames = 0;
                    self.loopback_utterance += 1;
                }
                if playout.try_send(PlayoutCommand::Speak(chunk)).is_err() {
                    self.dropped_playout.inc();
                }
            }
            self.pending.drain(..PIPELINE_FRAME_SAMPLES);
        }
        self.frame_processing.observe(started.elapsed().as_secs_f64());
    }
}
