//! Speech-to-text costs of the embedded Whisper tiny.en (`cargo bench --bench stt`): the log-mel
//! front end, the encoder and the decoder separately, and whole Final / Accurate / Partial
//! passes; then Whisper base (multilingual, when `models/whisper-base` is installed): its encoder
//! and its final pass greedy and with beam search — the candidates for `sttMode: accurate`.
//! Inputs: `caller-hello.l16-16k.wav` cut to 4.0 s (speech starts at 0.2 s) and its first 2.0 s
//! for the partial. Results are recorded in `benches/README.md` ("Speech-to-text").

use std::path::PathBuf;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use switchboard::providers::stt::{SttQuality, WhisperModel};

/// Prints one timed pass of `model` and its stage split.
fn show(label: &str, model: &WhisperModel, input: &[f32], q: SttQuality) {
    let (t, s) = model.transcribe_timed(input, q).unwrap();
    eprintln!(
        "{label} {q:?}: {:?} | mel {:?} enc {:?} dec {:?} ({} tokens, {:.1} ms/token) | {:?}",
        t.compute,
        s.mel,
        s.encoder,
        s.decoder,
        s.tokens,
        s.decoder.as_secs_f64() * 1000.0 / s.tokens.max(1) as f64,
        t.text
    );
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Samples of the 16 kHz L16 fixture (44-byte header: written by sox).
fn caller_hello() -> Vec<f32> {
    let bytes = std::fs::read(root().join("audio-fixtures/caller-hello.l16-16k.wav")).unwrap();
    bytes[44..].chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]]) as f32 / 32_768.0).collect()
}

fn stt(c: &mut Criterion) {
    let dir = root().join("models/whisper-tiny.en");
    if !dir.join("model.bin").exists() {
        eprintln!("SKIP: {} missing (scripts/fetch_models.py)", dir.display());
        return;
    }
    let t = std::time::Instant::now();
    let model = WhisperModel::load(&dir).unwrap();
    eprintln!("load: {:?}", t.elapsed());
    let pcm = caller_hello();
    let four = &pcm[..4 * 16_000];
    let two = &pcm[..2 * 16_000];
    let (mel, frames) = model.features(four);
    let audio = model.encode(&mel, frames).unwrap();
    drop(audio);
    for q in [SttQuality::Partial, SttQuality::Final, SttQuality::Accurate] {
        let input = if q == SttQuality::Partial { two } else { four };
        show("tiny.en", &model, input, q);
    }
    let base_dir = root().join("models/whisper-base");
    let base = if base_dir.join("model.bin").exists() {
        let t = std::time::Instant::now();
        let base = WhisperModel::load(&base_dir).unwrap();
        eprintln!("base load: {:?} (~{} MB of weights)", t.elapsed(), base.weight_bytes() >> 20);
        for q in [SttQuality::Final, SttQuality::Accurate] {
            show("base", &base, four, q);
        }
        Some(base)
    } else {
        eprintln!("SKIP base: {} missing (scripts/fetch_models.py)", base_dir.display());
        None
    };

    // `STT_REPS=n STT_PASS=final|accurate|partial|base-final|base-beam`: run one pass n times
    // and exit, for `perf stat` (CPU time per pass is the difference between two values of n).
    if let Ok(reps) = std::env::var("STT_REPS") {
        let reps: usize = reps.parse().unwrap_or(0);
        let pass = std::env::var("STT_PASS").unwrap_or_else(|_| "final".into());
        let (q, input) = match pass.as_str() {
            "accurate" | "base-beam" => (SttQuality::Accurate, four),
            "partial" => (SttQuality::Partial, two),
            _ => (SttQuality::Final, four),
        };
        let model = match (pass.starts_with("base"), &base) {
            (true, Some(b)) => b,
            _ => &model,
        };
        let mut best = Duration::MAX;
        for _ in 0..reps {
            best = best.min(model.transcribe(input, q).unwrap().compute);
        }
        eprintln!("{pass} x{reps}: fastest {best:?}");
        std::process::exit(0);
    }

    let mut g = c.benchmark_group("stt");
    g.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4));
    g.bench_function("mel_4s", |b| b.iter(|| model.features(std::hint::black_box(four))));
    g.bench_function("encoder_4s", |b| b.iter(|| model.encode(&mel, frames).unwrap()));
    g.bench_function("final_4s", |b| b.iter(|| model.transcribe(four, SttQuality::Final).unwrap()));
    g.bench_function("accurate_4s", |b| b.iter(|| model.transcribe(four, SttQuality::Accurate).unwrap()));
    g.bench_function("partial_2s", |b| b.iter(|| model.transcribe(two, SttQuality::Partial).unwrap()));
    if let Some(base) = &base {
        let (mel, frames) = base.features(four);
        g.bench_function("base_encoder_4s", |b| b.iter(|| base.encode(&mel, frames).unwrap()));
        g.bench_function("base_greedy_4s", |b| b.iter(|| base.transcribe(four, SttQuality::Final).unwrap()));
        g.bench_function("base_beam_4s", |b| b.iter(|| base.transcribe(four, SttQuality::Accurate).unwrap()));
    }
    g.finish();
}

criterion_group!(benches, stt);
criterion_main!(benches);
