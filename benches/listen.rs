//! Per-20 ms-frame cost of the listening path: `Denoiser::process` in each mode, and the whole
//! denoise → VAD path (`Listening::on_frame`), on a real caller sentence with café noise mixed in
//! at 5 dB SNR; and one 10 ms 48 kHz RNNoise frame on each engine (ours, nnnoiseless).
//!
//! Run: `cargo bench --bench listen -- --warm-up-time 1 --measurement-time 3`. The `_cold` variants
//! of the listening path write over 4 MiB between frames (untimed) so the weights start in L3.
//! Inputs are built outside the timed closures; every iteration is one 20 ms frame.

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use switchboard::audio::codec::mulaw_decode;
use switchboard::audio::denoise::{DenoiseMode, Denoiser};

/// The `data` chunk of a mono WAV fixture, as bytes.
fn wav_data(name: &str) -> Vec<u8> {
    let bytes =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("audio-fixtures").join(name)).unwrap();
    let mut pos = 12;
    while pos + 8 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().unwrap()) as usize;
        if &bytes[pos..pos + 4] == b"data" {
            return bytes[pos + 8..pos + 8 + len].to_vec();
        }
        pos += 8 + len + (len & 1);
    }
    panic!("{name}: no data chunk");
}

/// caller-hello (L16 16 kHz) plus the café bed (μ-law 16 kHz) at roughly 5 dB SNR, whole frames.
fn noisy_speech() -> Vec<i16> {
    let speech: Vec<f32> = wav_data("caller-hello.l16-16k.wav")
        .chunks_exact(2)
        .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])))
        .collect();
    let noise: Vec<f32> =
        wav_data("noise-cafe.mulaw-16k.wav").iter().map(|&b| f32::from(mulaw_decode(b))).collect();
    let power = |x: &[f32]| x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
    let k = (power(&speech) / power(&noise[..speech.len()]) / 10f32.powf(0.5)).sqrt();
    let len = speech.len() / Denoiser::FRAME_SAMPLES * Denoiser::FRAME_SAMPLES;
    (0..len).map(|n| (speech[n] + k * noise[n]).clamp(-32768.0, 32767.0) as i16).collect()
}

/// One 10 ms RNNoise frame at 48 kHz, native engine vs nnnoiseless, on the noisy sentence
/// upsampled as the denoiser does.
fn rnnoise(c: &mut Criterion) {
    use switchboard::audio::resample::StreamResampler;
    use switchboard::audio::rnnoise::Rnnoise;

    let pcm = noisy_speech();
    let mut up = StreamResampler::new(16_000, 48_000).unwrap();
    let mut pcm48 = Vec::new();
    up.process(&pcm, &mut pcm48);
    let input: Vec<f32> = pcm48.iter().map(|&s| f32::from(s)).collect();
    let frames: Vec<&[f32]> = input.chunks_exact(Rnnoise::FRAME_SAMPLES).collect();
    let mut out = vec![0f32; Rnnoise::FRAME_SAMPLES];
    let mut group = c.benchmark_group("rnnoise");
    let mut native = Rnnoise::new();
    let mut i = 0;
    group.bench_function("frame_10ms/native", |b| {
        b.iter(|| {
            i = (i + 1) % frames.len();
            black_box(native.process_frame(&mut out, black_box(frames[i])))
        })
    });
    let mut reference = nnnoiseless::DenoiseState::new();
    group.bench_function("frame_10ms/nnnoiseless", |b| {
        b.iter(|| {
            i = (i + 1) % frames.len();
            black_box(reference.process_frame(&mut out, black_box(frames[i])))
        })
    });
    group.finish();
}

fn denoise(c: &mut Criterion) {
    let pcm = noisy_speech();
    let frames: Vec<&[i16]> = pcm.chunks_exact(Denoiser::FRAME_SAMPLES).collect();
    let mut group = c.benchmark_group("denoise");
    for mode in [DenoiseMode::Off, DenoiseMode::Noise, DenoiseMode::NoiseAndBackgroundSpeech] {
        let mut d = Denoiser::new(mode);
        let mut out = vec![0i16; Denoiser::FRAME_SAMPLES];
        let mut i = 0;
        group.bench_function(BenchmarkId::new("frame_20ms", format!("{mode:?}")), |b| {
            b.iter(|| {
                i = (i + 1) % frames.len();
                black_box(d.process(black_box(frames[i]), &mut out))
            })
        });
    }
    group.finish();
}

/// The whole per-frame listening path of an agent call without speech-to-text (which runs off
/// the frame path): `Listening::on_frame` = denoise → VAD (Silero gated by webrtc-vad, or
/// webrtc-vad alone) → utterance buffering, on the same noisy sentence looped. Silero on the
/// default engine (`silero_gated`, native) and on onnxruntime (`silero_gated_onnxruntime`, the
/// engine before the native one) for comparison.
fn listening_path(c: &mut Criterion) {
    use switchboard::audio::vad::{SileroModel, VadConfig};
    use switchboard::call::listening::{Listening, ListeningSetup};
    use switchboard::metrics::Metrics;
    use switchboard::providers::stt::SttQuality;

    let pcm = noisy_speech();
    let frames: Vec<&[i16]> = pcm.chunks_exact(Denoiser::FRAME_SAMPLES).collect();
    let models = std::env::var_os("SWITCHBOARD_MODELS_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("models"));
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let metrics = Metrics::new();
    let mut group = c.benchmark_group("listening_path");
    let mut engines: Vec<(&str, Option<std::sync::Arc<SileroModel>>)> = Vec::new();
    if let Ok(m) = SileroModel::load(&models) {
        engines.push(("silero_gated", Some(m)));
    }
    if let Ok(m) = SileroModel::load_with_sessions(&models, cores.min(4)) {
        engines.push(("silero_gated_onnxruntime", Some(m)));
    }
    engines.push(("webrtc", None));
    for (name, model) in engines {
        let setup = ListeningSetup {
            denoise: DenoiseMode::Noise,
            silero: model,
            vad: VadConfig::default(),
            stt: None,
            language: "en-US".into(),
            final_quality: SttQuality::Final,
            smart_turn: None,
        };
        let mut l = Listening::new(setup, &metrics);
        let (mut events, mut jobs) = (Vec::new(), Vec::new());
        let mut i = 0;
        group.bench_function(BenchmarkId::new("frame_20ms", name), |b| {
            b.iter(|| {
                i = (i + 1) % frames.len();
                l.on_frame(black_box(frames[i]), &mut events, &mut jobs);
                events.clear();
                jobs.clear();
            })
        });
        // The same frame after other work has been through the core's caches, as in a server
        // where many calls, the socket I/O and the runtime share them between one call's
        // frames: before each timed frame, an untimed pass writes over a buffer of twice the
        // machine's whole L2 (four times one core's), so the model weights are back in L3 at best.
        let mut evict = vec![0u64; EVICT_BYTES / 8];
        group.bench_function(BenchmarkId::new("frame_20ms_cold", name), |b| {
            b.iter_custom(|iters| {
                let mut total = std::time::Duration::ZERO;
                for _ in 0..iters {
                    for (k, v) in evict.iter_mut().enumerate().step_by(8) {
                        *v = v.wrapping_add(k as u64);
                    }
                    black_box(&evict);
                    i = (i + 1) % frames.len();
                    let t = std::time::Instant::now();
                    l.on_frame(black_box(frames[i]), &mut events, &mut jobs);
                    total += t.elapsed();
                    events.clear();
                    jobs.clear();
                }
                total
            })
        });
    }
    group.finish();
}

/// What the cold variants write between frames: 4 MiB, twice the 2 MiB L2 (1 MiB per core on
/// the 2-core machine the figures come from), one write per 64-byte line.
const EVICT_BYTES: usize = 4 << 20;

/// The answering-machine beep detector (65 Goertzel filters on the raw frame), which the
/// listening path runs during the first minute of a call only — so `listening_path` above,
/// measured over many more frames, does not include it.
fn beep_detector(c: &mut Criterion) {
    use switchboard::audio::tone::BeepDetector;

    let pcm = noisy_speech();
    let frames: Vec<&[i16]> = pcm.chunks_exact(Denoiser::FRAME_SAMPLES).collect();
    let mut d = BeepDetector::new(16_000);
    let mut i = 0;
    c.bench_function("beep_detector/frame_20ms", |b| {
        b.iter(|| {
            i = (i + 1) % frames.len();
            black_box(d.push(black_box(frames[i])))
        })
    });
}

criterion_group!(benches, rnnoise, denoise, listening_path, beep_detector);
criterion_main!(benches);
