//! VAD on the real audio fixtures (espeak-ng speech with 200 ms of digital silence before and
//! after, a 440 Hz tone, silence), for webrtc-vad, Silero and Silero gated by webrtc-vad.
//!
//! The true speech onset and end come from the clean file's energy (first and last 5 ms window
//! above −40 dB relative to the loudest window). Needs the fetched models (`make models`, or
//! `SWITCHBOARD_MODELS_DIR`). Run with `-- --nocapture` to see the measured errors.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use switchboard::audio::vad::{SileroModel, Vad, VadConfig, VadEvent, VadKind};

fn models_dir() -> PathBuf {
    std::env::var_os("SWITCHBOARD_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models"))
}

/// One model for the whole test binary, as in the server.
fn model() -> &'static Arc<SileroModel> {
    static MODEL: OnceLock<Arc<SileroModel>> = OnceLock::new();
    MODEL.get_or_init(|| {
        SileroModel::load(&models_dir()).unwrap_or_else(|e| {
            panic!("{e} (fetch the weights with `make models` or set SWITCHBOARD_MODELS_DIR)")
        })
    })
}

/// Samples of a 16-bit mono 16 kHz WAV fixture.
fn fixture(name: &str) -> Vec<i16> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("audio-fixtures").join(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut pos = 12;
    while pos + 8 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().unwrap()) as usize;
        let body = &bytes[pos + 8..(pos + 8 + len).min(bytes.len())];
        match &bytes[pos..pos + 4] {
            b"fmt " => {
                assert_eq!(u32::from_le_bytes(body[4..8].try_into().unwrap()), 16_000, "{name}: rate");
                assert_eq!(u16::from_le_bytes([body[14], body[15]]), 16, "{name}: bits");
            }
            b"data" => return body.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect(),
            _ => {}
        }
        pos += 8 + len + (len & 1);
    }
    panic!("{name}: no data chunk")
}

/// (onset, end) of the speech in ms, from 5 ms windows above −40 dB of the loudest one.
fn true_bounds_ms(samples: &[i16]) -> (f64, f64) {
    const WIN: usize = 80;
    let energy: Vec<f64> = samples
        .chunks(WIN)
        .map(|w| w.iter().map(|&s| f64::from(s) * f64::from(s)).sum::<f64>() / w.len() as f64)
        .collect();
    let max = energy.iter().cloned().fold(0.0, f64::max);
    let loud = |e: &f64| *e > max * 1e-4;
    let first = energy.iter().position(loud).unwrap();
    let last = energy.iter().rposition(loud).unwrap();
    let ms = |win: usize| (win * WIN) as f64 / 16.0;
    (ms(first), ms(last + 1))
}

/// Frame-by-frame run, followed by 1 s of silence so an open segment ends. Returns the
/// probabilities of the input's frames and the (start, end) frames of each segment.
fn segments(vad: &mut Vad, samples: &[i16]) -> (Vec<f32>, Vec<(u64, u64)>) {
    let mut probs = Vec::new();
    let mut segs = Vec::new();
    let mut open = None;
    let silence = vec![0i16; Vad::FRAME_SAMPLES];
    let frames = samples.chunks_exact(Vad::FRAME_SAMPLES);
    let n = frames.len();
    for (i, frame) in frames.chain(std::iter::repeat_n(&silence[..], 50)).enumerate() {
        let (prob, event) = vad.process(frame);
        if i < n {
            probs.push(prob);
        }
        match event {
            Some(VadEvent::SpeechStart { frame }) => {
                assert!(open.is_none(), "start while in speech");
                open = Some(frame);
            }
            Some(VadEvent::SpeechEnd { frame }) => {
                segs.push((open.take().expect("end without start"), frame))
            }
            None => {}
        }
    }
    assert!(open.is_none(), "segment still open after 1 s of silence");
    (probs, segs)
}

/// The three engine set-ups under test.
fn engines(cfg: VadConfig) -> Vec<(&'static str, Vad)> {
    vec![
        ("webrtc", Vad::webrtc(cfg)),
        ("silero", Vad::silero(model(), VadConfig { gate_with_webrtc: false, ..cfg })),
        ("silero+gate", Vad::silero(model(), VadConfig { gate_with_webrtc: true, ..cfg })),
    ]
}

#[test]
fn speech_fixtures_give_one_segment_at_the_true_onset_and_end() {
    let cfg = VadConfig::default();
    for name in ["caller-hello.l16-16k.wav", "caller-question.l16-16k.wav"] {
        let samples = fixture(name);
        let (onset_ms, end_ms) = true_bounds_ms(&samples);
        // The generator pads 200 ms of silence on both sides.
        assert!((onset_ms - 200.0).abs() <= 10.0, "{name}: energy onset {onset_ms} ms");
        for (engine, mut vad) in engines(cfg) {
            let (_, segs) = segments(&mut vad, &samples);
            let ms: Vec<(f64, f64)> = segs.iter().map(|&(s, e)| (s as f64 * 20.0, e as f64 * 20.0)).collect();
            eprintln!(
                "{name} {engine}: true {onset_ms:.0}–{end_ms:.0} ms, segments {ms:?}, onset error {:+.0} ms, end error {:+.0} ms, {:?}",
                ms.first().map_or(f64::NAN, |s| s.0 - onset_ms),
                ms.last().map_or(f64::NAN, |s| s.1 - end_ms),
                vad.stats(),
            );
            assert_eq!(segs.len(), 1, "{name} {engine}: {ms:?}");
            let (start, end) = ms[0];
            assert!((start - onset_ms).abs() <= 60.0, "{name} {engine}: start {start} vs {onset_ms}");
            let end_tolerance = f64::from(cfg.hangover_ms) + 60.0;
            assert!((end - end_ms).abs() <= end_tolerance, "{name} {engine}: end {end} vs {end_ms}");
        }
    }
}

#[test]
fn silence_gives_no_speech() {
    let samples = vec![0i16; 16_000 * 2];
    for (engine, mut vad) in engines(VadConfig::default()) {
        let (probs, segs) = segments(&mut vad, &samples);
        assert!(segs.is_empty(), "{engine}: {segs:?}");
        let max = probs.iter().cloned().fold(0.0, f32::max);
        assert!(max < 0.05, "{engine}: max prob {max}");
    }
    // The gate skips every Silero chunk of pure silence.
    let mut vad = Vad::silero(model(), VadConfig::default());
    segments(&mut vad, &samples);
    let stats = vad.stats();
    assert_eq!(stats.chunks_run, 0, "{stats:?}");
}

#[test]
fn tone_is_speech_to_webrtc_but_not_to_silero() {
    let samples = fixture("tone-440.l16-16k.wav");
    let cfg = VadConfig::default();
    for (engine, mut vad) in engines(cfg) {
        let (probs, segs) = segments(&mut vad, &samples);
        let mean = probs.iter().sum::<f32>() / probs.len() as f32;
        let max = probs.iter().cloned().fold(0.0, f32::max);
        eprintln!("tone {engine}: mean prob {mean:.3}, max {max:.3}, segments {segs:?}, {:?}", vad.stats());
        if vad.kind() == VadKind::WebRtc {
            // A steady tone in the voice band has the sub-band energy pattern webrtc-vad calls voice.
            assert_eq!(segs.len(), 1, "{engine}: {segs:?}");
        } else {
            // Silero has learnt that a pure tone is not speech.
            assert!(segs.is_empty(), "{engine}: {segs:?}");
            assert!(max < cfg.start_threshold, "{engine}: max prob {max}");
        }
    }
}

#[test]
fn silero_probabilities_do_not_depend_on_the_split_or_the_session() {
    let samples = fixture("caller-hello.l16-16k.wav");
    // Reference: whole 512-sample chunks, fresh state, on a freshly loaded single session.
    let fresh = SileroModel::load_with_sessions(&models_dir(), 1).unwrap();
    let reference = fresh.probabilities(&samples).unwrap();
    assert!(reference.iter().any(|&p| p > 0.9) && reference.iter().any(|&p| p < 0.1));
    // Same model, second run: identical (the state lives in the caller, not the session).
    assert_eq!(model().probabilities(&samples).unwrap(), reference);

    // Streaming in 320-sample frames: the frame in which chunk c completes reports its probability.
    let mut vad = Vad::silero(model(), VadConfig { gate_with_webrtc: false, ..VadConfig::default() });
    let probs: Vec<f32> = samples.chunks_exact(Vad::FRAME_SAMPLES).map(|f| vad.process(f).0).collect();
    let mut compared = 0;
    for (c, &want) in reference.iter().enumerate() {
        let frame = ((c + 1) * SileroModel::CHUNK_SAMPLES - 1) / Vad::FRAME_SAMPLES;
        if frame < probs.len() {
            assert!(
                (probs[frame] - want).abs() < 1e-6,
                "chunk {c} (frame {frame}): {} vs {want}",
                probs[frame]
            );
            compared += 1;
        }
    }
    assert!(compared >= reference.len() - 1, "{compared} of {}", reference.len());

    // After reset the same input gives the same probabilities again.
    vad.reset();
    let again: Vec<f32> = samples.chunks_exact(Vad::FRAME_SAMPLES).map(|f| vad.process(f).0).collect();
    assert_eq!(again, probs);
}

/// Diagnostic, not a check: prints Silero's per-chunk probabilities of the speech fixtures
/// (`cargo test --test vad dump_probs -- --ignored --nocapture`).
#[test]
#[ignore]
fn dump_probs() {
    for name in ["caller-hello.l16-16k.wav", "caller-question.l16-16k.wav"] {
        let samples = fixture(name);
        let p = model().probabilities(&samples).unwrap();
        let s: Vec<String> = p.iter().enumerate().map(|(i, p)| format!("{}:{:.2}", i * 32, p)).collect();
        eprintln!("{name} {:?}", true_bounds_ms(&samples));
        eprintln!("{}", s.join(" "));
    }
}
