//! Per-20 ms-frame cost of the whole media path of one loopback call, per protocol, without
//! sockets: the work the session, listener and playout actors do for one frame in and one out.
//!
//! ```text
//! wire message ─ Wire::decode ─ Decoder::decode ─ StreamResampler (wire → 16 kHz) ─ 320-sample
//! SpeechChunk ─ Playout::enqueue (16 kHz → wire) ─ Playout::next_frame (slice, encode) ─ Wire::encode
//! ```
//!
//! Groups are protocols, functions are stages, parameters are the negotiated codec:
//! `twilio/whole_path/pcmu_8k`, `native/whole_path/opus_48k`, … Twilio also has each stage alone
//! (`wire_decode`, `codec_resample`, `playout_enqueue`, `playout_next_frame`, `wire_encode`), so
//! the whole-path figure can be split.
//!
//! Inputs are real wire messages built before timing (the shapes of the unit tests in
//! `src/transport/<proto>.rs`, carrying a speech-like signal encoded in the wire codec), cycled
//! through a ring of [`RING_FRAMES`]. Every call is started with its protocol's start message and
//! warmed up with a few frames, so iterations are steady state. As in loopback mode, speech is
//! grouped into 1 s utterances, so every 50th frame also carries a mark; the bench echoes it back
//! to playout as the gateway would.
//!
//! Run: `cargo bench --bench pipeline -- --warm-up-time 1 --measurement-time 3`.

use std::hint::black_box;
use std::time::Duration;

use base64::Engine as _;
use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion};
use switchboard::audio::codec::{self, Decoder, Encoder, MAX_DECODED_SAMPLES};
use switchboard::audio::resample::StreamResampler;
use switchboard::call::listener::LOOPBACK_UTTERANCE_FRAMES;
use switchboard::call::playout::Playout;
use switchboard::call::{PlayoutEvent, SpeechChunk, UtteranceId, PIPELINE_FRAME_SAMPLES, PIPELINE_RATE_HZ};
use switchboard::metrics::Metrics;
use switchboard::transport::{Encoding, MediaEvent, Outbound, Protocol, Wire, WireFormat, WsMessage};
use tokio::time::Instant;

/// Distinct inbound messages cycled through (2 s). More than Telnyx's resync distance (64
/// chunks), so when the ring wraps its chunk counter restarts as a renumbering, not a late chunk.
const RING_FRAMES: usize = 100;

/// Frames fed before timing starts: resampler histories filled, first utterance under way.
const WARM_UP_FRAMES: usize = 2 * RING_FRAMES + 7;

/// Frames per batch in the stage-alone playout benches (untimed half, then timed half).
const PLAYOUT_BATCH: u64 = 50;

/// A speech-like test signal (as in `benches/audio.rs`): three partials under a slow amplitude
/// wobble plus a little deterministic noise, [`RING_FRAMES`] × 20 ms at `rate_hz`.
fn signal(rate_hz: u32) -> Vec<i16> {
    let len = rate_hz as usize / 50 * RING_FRAMES;
    let mut noise: u32 = 0x1234_5678;
    (0..len)
        .map(|n| {
            let t = n as f64 / rate_hz as f64;
            let tau = 2.0 * std::f64::consts::PI;
            let envelope = 0.6 + 0.4 * (tau * 3.0 * t).sin();
            let voiced =
                (tau * 180.0 * t).sin() + 0.5 * (tau * 720.0 * t).sin() + 0.25 * (tau * 2200.0 * t).sin();
            noise = noise.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let hiss = (noise >> 16) as f64 / 65536.0 - 0.5;
            (9000.0 * envelope * voiced + 300.0 * hiss) as i16
        })
        .collect()
}

/// The test signal encoded in `format`, one payload per 20 ms frame.
fn payloads(format: WireFormat) -> Vec<Vec<u8>> {
    let mut encoder = Encoder::new(format).unwrap();
    let mut buf = vec![0u8; codec::max_frame_bytes(format)];
    signal(format.sample_rate_hz)
        .chunks_exact(format.frame_samples())
        .map(|frame| {
            let n = encoder.encode(frame, &mut buf).unwrap();
            buf[..n].to_vec()
        })
        .collect()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn text(s: String) -> WsMessage {
    WsMessage::Text(s.into())
}

/// One protocol/codec case: its start message and a ring of media messages.
struct Case {
    protocol: Protocol,
    /// Bench parameter: codec and wire rate.
    codec: &'static str,
    start: WsMessage,
    media: Vec<WsMessage>,
}

const TWILIO_SID: &str = "MZ18ad3ab5a668481ce02b83e7395059f0";
const TWILIO_START: &str = r#"{"event":"start","sequenceNumber":"1","start":{"accountSid":"AC123","streamSid":"MZ18ad3ab5a668481ce02b83e7395059f0","callSid":"CA123","tracks":["inbound","outbound"],"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1},"customParameters":{"agentId":"agt_1","token":"tok"}},"streamSid":"MZ18ad3ab5a668481ce02b83e7395059f0"}"#;

const TELNYX_SID: &str = "32DE0DEA-53CB-4B21-89A4-9E1819C043BC";
const TELNYX_START: &str = r#"{"event":"start","sequence_number":"1","start":{"user_id":"3E6F995F-85F7-4705-9741-53B116D28237","call_control_id":"v2:T02llQxIyaRkhfRKxgAP8nY511EhFLizdvdUKJiSw8d6A9BborherQ","client_state":"aGF2ZSBhIG5pY2UgZGF5ID1d","from":"+13122010094","to":"+13122123456","media_format":{"encoding":"PCMU","sample_rate":8000,"channels":1}},"stream_id":"32DE0DEA-53CB-4B21-89A4-9E1819C043BC"}"#;

const PLIVO_SID: &str = "87654321-4321-4321-4321-cba987654321";
const PLIVO_START: &str = r#"{"event":"start","sequenceNumber":1,"start":{"callId":"12345678-1234-1234-1234-123456789abc","streamId":"87654321-4321-4321-4321-cba987654321","accountId":"MAXXXXXXXXXXXXXXXXXX","tracks":["inbound"],"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000}},"extra_headers":"agentId=agt1;token=tok1"}"#;

const VONAGE_CONNECTED: &str = r#"{"event":"websocket:connected","content-type":"audio/l16;rate=16000","uuid":"aaaaaaaa-bbbb-cccc-dddd-0123456789ab","agentId":"agt_1","token":"tok","prop1":"value1"}"#;

const NATIVE_START_PCMU: &str =
    r#"{"event":"start","agentId":"agt_1","token":"tok","codec":"pcmu","sampleRate":8000,"mode":"loopback"}"#;
const NATIVE_START_OPUS: &str = r#"{"event":"start","agentId":"agt_1","token":"tok","codec":"opus","sampleRate":48000,"mode":"loopback"}"#;

fn format(encoding: Encoding, sample_rate_hz: u32) -> WireFormat {
    WireFormat { encoding, sample_rate_hz }
}

fn twilio() -> Case {
    let media = payloads(WireFormat::PCMU_8K)
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let (seq, ts, payload) = (i + 3, i * 20, b64(p));
            text(format!(
                r#"{{"event":"media","sequenceNumber":"{seq}","media":{{"track":"inbound","chunk":"{i}","timestamp":"{ts}","payload":"{payload}"}},"streamSid":"{TWILIO_SID}"}}"#
            ))
        })
        .collect();
    Case { protocol: Protocol::Twilio, codec: "pcmu_8k", start: text(TWILIO_START.into()), media }
}

fn telnyx() -> Case {
    let media = payloads(WireFormat::PCMU_8K)
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let (chunk, seq, ts, payload) = (i + 1, i + 3, i * 20, b64(p));
            text(format!(
                r#"{{"event":"media","sequence_number":"{seq}","media":{{"track":"inbound","chunk":"{chunk}","timestamp":"{ts}","payload":"{payload}"}},"stream_id":"{TELNYX_SID}"}}"#
            ))
        })
        .collect();
    Case { protocol: Protocol::Telnyx, codec: "pcmu_8k", start: text(TELNYX_START.into()), media }
}

fn plivo() -> Case {
    let media = payloads(WireFormat::PCMU_8K)
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let (seq, ts, payload) = (i + 2, 1_705_312_200_000 + i * 20, b64(p));
            text(format!(
                r#"{{"event":"media","sequenceNumber":{seq},"streamId":"{PLIVO_SID}","media":{{"track":"inbound","timestamp":"{ts}","chunk":{i},"payload":"{payload}"}},"extra_headers":"agentId=agt1;token=tok1"}}"#
            ))
        })
        .collect();
    Case { protocol: Protocol::Plivo, codec: "pcmu_8k", start: text(PLIVO_START.into()), media }
}

fn binary(payloads: Vec<Vec<u8>>) -> Vec<WsMessage> {
    payloads.into_iter().map(|p| WsMessage::Binary(p.into())).collect()
}

fn vonage() -> Case {
    let media = binary(payloads(format(Encoding::L16Le, 16_000)));
    Case { protocol: Protocol::Vonage, codec: "l16_16k", start: text(VONAGE_CONNECTED.into()), media }
}

fn native_pcmu() -> Case {
    let media = binary(payloads(WireFormat::PCMU_8K));
    Case { protocol: Protocol::Native, codec: "pcmu_8k", start: text(NATIVE_START_PCMU.into()), media }
}

fn native_opus() -> Case {
    let media = binary(payloads(format(Encoding::Opus, 48_000)));
    Case { protocol: Protocol::Native, codec: "opus_48k", start: text(NATIVE_START_OPUS.into()), media }
}

/// Loopback's grouping of caller frames into 1 s utterances (as the listener does it).
#[derive(Default)]
struct Utterances {
    id: UtteranceId,
    frames: u32,
}

impl Utterances {
    fn chunk(&mut self, pcm: &[i16]) -> SpeechChunk {
        self.frames += 1;
        let last = self.frames == LOOPBACK_UTTERANCE_FRAMES;
        let chunk = SpeechChunk { utterance_id: self.id + 1, pcm: pcm.to_vec(), last };
        if last {
            self.frames = 0;
            self.id += 1;
        }
        chunk
    }
}

/// One started loopback call: the session's wire, the listener's decoder and resampler, playout.
struct Call {
    wire: Box<dyn Wire>,
    format: WireFormat,
    decoder: Decoder,
    to_pipeline: StreamResampler,
    /// Decoded wire-rate samples of one payload.
    decoded: Vec<i16>,
    /// 16 kHz samples not yet cut into a frame.
    pending: Vec<i16>,
    utterances: Utterances,
    playout: Playout,
    events: Vec<MediaEvent>,
    out: Vec<Outbound>,
    playout_events: Vec<PlayoutEvent>,
    /// Index of the next message of the ring.
    next: usize,
}

impl Call {
    /// A call started with `case`'s start message and warmed up with [`WARM_UP_FRAMES`].
    fn start(case: &Case, metrics: &Metrics) -> Call {
        let mut wire = case.protocol.wire();
        let mut events = Vec::with_capacity(4);
        wire.decode(case.start.clone(), &mut events).expect("start message");
        let Some(MediaEvent::Start(info)) = events.pop() else { panic!("no start event: {events:?}") };
        let format = info.format;
        let mut call = Call {
            wire,
            format,
            decoder: Decoder::new(format).unwrap(),
            to_pipeline: StreamResampler::new(format.sample_rate_hz, PIPELINE_RATE_HZ).unwrap(),
            decoded: vec![0; MAX_DECODED_SAMPLES],
            pending: Vec::with_capacity(PIPELINE_FRAME_SAMPLES * 8),
            utterances: Utterances::default(),
            playout: Playout::new(format, Instant::now(), metrics).unwrap(),
            events,
            out: Vec::with_capacity(PLAYOUT_BATCH as usize + 4),
            playout_events: Vec::with_capacity(PLAYOUT_BATCH as usize + 4),
            next: 0,
        };
        // Steady state, and a check that every message is one wire frame in and one out.
        let frame_bytes = format.frame_bytes();
        for _ in 0..WARM_UP_FRAMES {
            call.inbound(case);
            call.playout.next_frame(&mut call.out, &mut call.playout_events, Instant::now());
            let audio: Vec<usize> = call
                .out
                .iter()
                .filter_map(|o| match o {
                    Outbound::Audio(b) => Some(b.len()),
                    _ => None,
                })
                .collect();
            assert_eq!(audio.len(), 1, "one frame out per frame in");
            assert!(frame_bytes.is_none_or(|n| audio[0] == n), "whole wire frames out");
            assert!(call.pending.is_empty(), "one 20 ms frame in is one 320-sample frame");
            call.send();
        }
        call
    }

    /// The next message of the ring (a cheap clone: the payload is reference-counted).
    fn message(&mut self, case: &Case) -> WsMessage {
        let msg = case.media[self.next].clone();
        self.next = (self.next + 1) % case.media.len();
        msg
    }

    /// Inbound half: the next message through wire decode, codec, resampling to 16 kHz and
    /// framing, into playout.
    fn inbound(&mut self, case: &Case) {
        let msg = self.message(case);
        self.wire.decode(msg, &mut self.events).expect("media message");
        for event in self.events.drain(..) {
            let MediaEvent::Audio(payload) = event else { continue };
            let n = self.decoder.decode(&payload, &mut self.decoded).expect("payload");
            self.to_pipeline.process(&self.decoded[..n], &mut self.pending);
            while self.pending.len() >= PIPELINE_FRAME_SAMPLES {
                let chunk = self.utterances.chunk(&self.pending[..PIPELINE_FRAME_SAMPLES]);
                self.playout.enqueue(chunk);
                self.pending.drain(..PIPELINE_FRAME_SAMPLES);
            }
        }
    }

    /// Outbound half after `next_frame`: what playout produced, wire-encoded; marks echoed back
    /// as the gateway would. Returns the bytes put on the socket.
    fn send(&mut self) -> usize {
        self.playout_events.clear();
        let mut bytes = 0;
        for item in self.out.drain(..) {
            match self.wire.encode(&item) {
                Some(WsMessage::Text(t)) => bytes += t.as_str().len(),
                Some(WsMessage::Binary(b)) => bytes += b.len(),
                _ => {}
            }
            if let Outbound::Mark(name) = &item {
                black_box(self.playout.mark_played(name));
            }
        }
        bytes
    }

    /// One whole frame: one message in, one paced frame out.
    fn frame(&mut self, case: &Case) -> usize {
        self.inbound(case);
        self.playout.next_frame(&mut self.out, &mut self.playout_events, Instant::now());
        self.send()
    }
}

type Group<'a> = BenchmarkGroup<'a, WallTime>;

/// One call per case, one frame in and one frame out per iteration.
fn bench_whole_path(group: &mut Group<'_>, metrics: &Metrics, case: &Case) {
    let mut call = Call::start(case, metrics);
    group.bench_function(BenchmarkId::new("whole_path", case.codec), |b| {
        b.iter(|| black_box(call.frame(case)))
    });
}

/// Each stage of the whole path alone, on a started Twilio call.
fn bench_stages(group: &mut Group<'_>, metrics: &Metrics, case: &Case) {
    let id = |stage: &str| BenchmarkId::new(stage, case.codec);

    // Session, inbound: JSON parse and base64 decode into a `MediaEvent::Audio`.
    let mut call = Call::start(case, metrics);
    group.bench_function(id("wire_decode"), |b| {
        b.iter(|| {
            let msg = call.message(case);
            call.wire.decode(msg, &mut call.events).unwrap();
            black_box(&call.events);
            call.events.clear();
        })
    });

    // Listener: codec decode, resampling to 16 kHz, one 320-sample `SpeechChunk`.
    let payloads: Vec<Vec<u8>> = payloads(call.format);
    let mut i = 0;
    group.bench_function(id("codec_resample"), |b| {
        b.iter(|| {
            i = (i + 1) % payloads.len();
            let n = call.decoder.decode(black_box(&payloads[i]), &mut call.decoded).unwrap();
            call.to_pipeline.process(&call.decoded[..n], &mut call.pending);
            let chunk = call.utterances.chunk(&call.pending[..PIPELINE_FRAME_SAMPLES]);
            call.pending.clear();
            black_box(chunk)
        })
    });

    // Playout, on arrival: resampling 16 kHz → wire rate into the queue. Batches of chunks are
    // cut untimed, enqueued timed, then played out untimed.
    let mut call = Call::start(case, metrics);
    let pipeline = signal(PIPELINE_RATE_HZ);
    let frames: Vec<&[i16]> = pipeline.chunks_exact(PIPELINE_FRAME_SAMPLES).collect();
    let mut batch: Vec<SpeechChunk> = Vec::with_capacity(PLAYOUT_BATCH as usize);
    let mut i = 0;
    group.bench_function(id("playout_enqueue"), |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let k = left.min(PLAYOUT_BATCH);
                for _ in 0..k {
                    i = (i + 1) % frames.len();
                    batch.push(call.utterances.chunk(frames[i]));
                }
                let t0 = std::time::Instant::now();
                for chunk in batch.drain(..) {
                    call.playout.enqueue(chunk);
                }
                timed += t0.elapsed();
                for _ in 0..k {
                    call.playout.next_frame(&mut call.out, &mut call.playout_events, Instant::now());
                    call.send();
                }
                left -= k;
            }
            timed
        })
    });

    // Playout, per tick: slice one frame from the queue, encode it, mark an utterance's end.
    // Batches of frames are fed in untimed first.
    let mut call = Call::start(case, metrics);
    group.bench_function(id("playout_next_frame"), |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let k = left.min(PLAYOUT_BATCH);
                for _ in 0..k {
                    call.inbound(case);
                }
                let t0 = std::time::Instant::now();
                for _ in 0..k {
                    call.playout.next_frame(&mut call.out, &mut call.playout_events, Instant::now());
                }
                timed += t0.elapsed();
                call.send();
                left -= k;
            }
            timed
        })
    });

    // Session, outbound: one encoded frame into its JSON text message.
    let mut call = Call::start(case, metrics);
    let frames: Vec<Outbound> = payloads.into_iter().map(Outbound::Audio).collect();
    let mut i = 0;
    group.bench_function(id("wire_encode"), |b| {
        b.iter(|| {
            i = (i + 1) % frames.len();
            black_box(call.wire.encode(black_box(&frames[i])))
        })
    });
}

/// A group named after the protocol: the whole path for each case, then (Twilio) each stage.
fn bench_protocol(c: &mut Criterion, cases: &[Case], stages: bool) {
    let metrics = Metrics::new();
    let mut group = c.benchmark_group(cases[0].protocol.as_str());
    for case in cases {
        bench_whole_path(&mut group, &metrics, case);
        if stages {
            bench_stages(&mut group, &metrics, case);
        }
    }
    group.finish();
}

fn twilio_path(c: &mut Criterion) {
    bench_protocol(c, &[twilio()], true);
}

fn telnyx_path(c: &mut Criterion) {
    bench_protocol(c, &[telnyx()], false);
}

fn plivo_path(c: &mut Criterion) {
    bench_protocol(c, &[plivo()], false);
}

fn vonage_path(c: &mut Criterion) {
    bench_protocol(c, &[vonage()], false);
}

fn native_path(c: &mut Criterion) {
    bench_protocol(c, &[native_pcmu(), native_opus()], false);
}

criterion_group!(benches, twilio_path, telnyx_path, plivo_path, vonage_path, native_path);
criterion_main!(benches);
