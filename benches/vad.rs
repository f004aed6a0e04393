//! Per-20 ms-frame cost of voice activity detection: webrtc-vad, Silero on each engine (native
//! and onnxruntime; per frame amortised and per 512-sample chunk), and Silero (default engine)
//! with and without the webrtc-vad gate on speech with pauses. Before the timings it prints
//! memory figures: RSS of the onnxruntime library, of each Silero session and of the native
//! weights, and RSS per per-call `Vad`.
//!
//! Run: `cargo bench --bench vad -- --warm-up-time 1 --measurement-time 3`.
//! Needs the fetched models (`make models` or `SWITCHBOARD_MODELS_DIR`).

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;

use criterion::{criterion_group, BenchmarkId, Criterion};
use switchboard::audio::vad::{SileroEngine, SileroModel, Vad, VadConfig};
use switchboard::providers::onnx;

fn models_dir() -> PathBuf {
    std::env::var_os("SWITCHBOARD_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models"))
}

/// Samples of a 16-bit mono WAV fixture.
fn fixture(name: &str) -> Vec<i16> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("audio-fixtures").join(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut pos = 12;
    while pos + 8 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().unwrap()) as usize;
        if &bytes[pos..pos + 4] == b"data" {
            return bytes[pos + 8..pos + 8 + len]
                .chunks_exact(2)
                .map(|b| i16::from_le_bytes([b[0], b[1]]))
                .collect();
        }
        pos += 8 + len + (len & 1);
    }
    panic!("{name}: no data chunk")
}

/// Both speech fixtures back to back (8.6 s, ~85 % speech).
fn speech() -> Vec<i16> {
    [fixture("caller-hello.l16-16k.wav"), fixture("caller-question.l16-16k.wav")].concat()
}

/// A caller turn-taking: each utterance followed by 3 s of line noise (≈ −66 dBFS), 14.6 s
/// in all, ~50 % speech. The noise keeps webrtc-vad honest (digital silence is free).
fn speech_with_pauses() -> Vec<i16> {
    let mut seed: u32 = 0x2545_f491;
    let mut noise = |n: usize| -> Vec<i16> {
        (0..n)
            .map(|_| {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                ((seed >> 16) as i32 % 31 - 15) as i16
            })
            .collect()
    };
    let mut out = Vec::new();
    for name in ["caller-hello.l16-16k.wav", "caller-question.l16-16k.wav"] {
        let utterance = fixture(name);
        out.extend(utterance.iter().zip(noise(utterance.len())).map(|(&s, n)| s.saturating_add(n)));
        out.extend(noise(3 * 16_000));
    }
    out.truncate(out.len() / Vad::FRAME_SAMPLES * Vad::FRAME_SAMPLES);
    out
}

/// Resident set size of this process, KiB (`VmRSS` in /proc/self/status).
fn rss_kib() -> i64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Prints the memory figures (run before the timings, in a fresh process).
fn memory_report(dir: &std::path::Path) -> Arc<SileroModel> {
    let base = rss_kib();
    onnx::runtime(dir).unwrap();
    let runtime = rss_kib();
    let one = SileroModel::load_with_sessions(dir, 1).unwrap();
    let one_loaded = rss_kib();
    // First runs allocate the session's arenas; count them too.
    let frames = speech();
    let mut vad = Vad::silero(&one, VadConfig { gate_with_webrtc: false, ..VadConfig::default() });
    for f in frames.chunks_exact(Vad::FRAME_SAMPLES).take(100) {
        vad.process(f);
    }
    let one_warm = rss_kib();
    let two = SileroModel::load_with_sessions(dir, 2).unwrap();
    let mut vad = Vad::silero(&two, VadConfig { gate_with_webrtc: false, ..VadConfig::default() });
    for f in frames.chunks_exact(Vad::FRAME_SAMPLES).take(100) {
        vad.process(f);
    }
    let two_warm = rss_kib();
    let native = SileroModel::load_native(dir).unwrap();
    let native_loaded = rss_kib();
    drop(native);
    println!("memory: onnxruntime library + environment: {} KiB RSS", runtime - base);
    println!("memory: native Silero weights: {} KiB RSS", native_loaded - two_warm);
    println!(
        "memory: Silero session: {} KiB after load, {} KiB after first runs; a second model of 2 sessions: {} KiB",
        one_loaded - runtime,
        one_warm - runtime,
        two_warm - one_warm
    );

    const N: usize = 2000;
    let per_call = |name: &str, make: &dyn Fn() -> Vad| {
        let before = rss_kib();
        let mut vads: Vec<Vad> = (0..N).map(|_| make()).collect();
        for vad in &mut vads {
            // Two chunks through each, so every buffer has been written.
            for f in frames.chunks_exact(Vad::FRAME_SAMPLES).skip(20).take(4) {
                vad.process(f);
            }
        }
        let after = rss_kib();
        println!(
            "memory: per-call Vad ({name}): {:.1} KiB RSS each ({N} live; size_of::<Vad>() = {} B)",
            (after - before) as f64 / N as f64,
            std::mem::size_of::<Vad>()
        );
        drop(vads);
    };
    per_call("webrtc", &|| Vad::webrtc(VadConfig::default()));
    per_call("silero", &|| Vad::silero(&one, VadConfig { gate_with_webrtc: false, ..VadConfig::default() }));
    per_call("silero + gate", &|| Vad::silero(&one, VadConfig::default()));
    one
}

fn bench_vad(c: &mut Criterion) {
    let dir = models_dir();
    let ort_model = memory_report(&dir);
    let native = SileroModel::load_native(&dir).unwrap();
    assert_eq!(native.engine(), SileroEngine::Native);
    let engines = [("native", &native), ("onnxruntime", &ort_model)];
    let speech = speech();
    let frames: Vec<&[i16]> = speech.chunks_exact(Vad::FRAME_SAMPLES).collect();
    let pauses = speech_with_pauses();
    let pause_frames: Vec<&[i16]> = pauses.chunks_exact(Vad::FRAME_SAMPLES).collect();

    let mut group = c.benchmark_group("vad");
    let mut vad = Vad::webrtc(VadConfig::default());
    let mut i = 0;
    group.bench_function("webrtc/frame", |b| {
        b.iter(|| {
            i = (i + 1) % frames.len();
            black_box(vad.process(black_box(frames[i])))
        })
    });

    let ungated = VadConfig { gate_with_webrtc: false, ..VadConfig::default() };
    for (name, model) in engines {
        let mut vad = Vad::silero(model, ungated);
        let mut i = 0;
        group.bench_function(BenchmarkId::new("silero/frame", name), |b| {
            b.iter(|| {
                i = (i + 1) % frames.len();
                black_box(vad.process(black_box(frames[i])))
            })
        });
    }

    // One raw model run on a 576-sample input with the state carried.
    let inputs: Vec<Vec<f32>> = speech
        .chunks_exact(SileroModel::CHUNK_SAMPLES)
        .map(|c| {
            let mut v = vec![0.0f32; SileroModel::CONTEXT_SAMPLES];
            v.extend(c.iter().map(|&s| f32::from(s) / 32768.0));
            v
        })
        .collect();
    for (name, model) in engines {
        let mut state = vec![0.0f32; SileroModel::STATE_LEN];
        let mut i = 0;
        group.bench_function(BenchmarkId::new("silero/chunk512", name), |b| {
            b.iter(|| {
                i = (i + 1) % inputs.len();
                black_box(model.run_chunk(black_box(&inputs[i]), &mut state).unwrap())
            })
        });
    }

    for gated in [false, true] {
        let mut vad = Vad::silero(&native, VadConfig { gate_with_webrtc: gated, ..VadConfig::default() });
        // Share of chunks the gate lets through on one pass over the input.
        for f in &pause_frames {
            vad.process(f);
        }
        let s = vad.stats();
        println!(
            "gate {}: {} of {} chunks run ({:.0} %) on speech with pauses",
            if gated { "on" } else { "off" },
            s.chunks_run,
            s.chunks_run + s.chunks_skipped,
            100.0 * s.chunks_run as f64 / (s.chunks_run + s.chunks_skipped) as f64
        );
        vad.reset();
        let mut i = 0;
        let id = if gated { "gated" } else { "ungated" };
        group.bench_function(BenchmarkId::new("silero/pauses", id), |b| {
            b.iter(|| {
                i += 1;
                if i == pause_frames.len() {
                    i = 0;
                    vad.reset();
                }
                black_box(vad.process(black_box(pause_frames[i])))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_vad);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
