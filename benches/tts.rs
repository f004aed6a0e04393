//! Text-to-speech cost of the embedded Piper voice (`cargo bench --bench tts`): time to the whole
//! audio of typical first reply pieces, from a two-word acknowledgement to a long sentence, and
//! the real-time factor. The first audio of a reply waits for this (the speaker streams per
//! sentence), so it bounds the `to_audio` stage of the voice-to-voice bench.

use std::path::PathBuf;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use switchboard::providers::tts::piper::PiperTts;
use switchboard::providers::tts::{TtsEngine, TtsRequest};

const TEXTS: &[&str] = &[
    "Sure thing.",
    "We are open from noon.",
    "We are open from noon to eleven every day.",
    "We are open from noon to eleven every day, and you can book a table for up to eight people online.",
];

fn models() -> PathBuf {
    std::env::var_os("SWITCHBOARD_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models"))
}

fn tts(c: &mut Criterion) {
    let piper = match PiperTts::load(&models()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("SKIP: Piper not loadable ({e}); run scripts/fetch_models.py");
            return;
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let voice = piper.voice().to_string();
    let mut group = c.benchmark_group("piper");
    group.sample_size(10).measurement_time(Duration::from_secs(4));
    for text in TEXTS {
        let req = TtsRequest { text: text.to_string(), engine_voice: voice.clone(), speed: 1.0 };
        let audio = rt.block_on(piper.synthesize(req.clone())).unwrap();
        let words = text.split_whitespace().count();
        eprintln!("{words:>2} words → {:.2} s of speech", audio.len() as f64 / 16_000.0);
        group.bench_with_input(BenchmarkId::new("synthesize", format!("{words}w")), &req, |b, req| {
            b.iter(|| rt.block_on(piper.synthesize(req.clone())).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, tts);
criterion_main!(benches);
