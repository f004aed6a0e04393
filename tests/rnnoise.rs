//! Our RNNoise engine against `nnnoiseless` (the reference it was written from) on the real
//! fixtures: the two caller sentences clean and with each noise bed at 0 and 10 dB, the second
//! talker, and every recorded call, resampled to 48 kHz as the denoiser does
//! (`StreamResampler`), fed to both engines frame by frame.
//!
//! Per file: the output SNR of ours against nnnoiseless's, `10·log10(Σ ref² / Σ (ours − ref)²)`
//! over the whole file, and the share of 10 ms frames whose VAD probabilities differ by more
//! than [`VAD_TOLERANCE`]. The same through [`Denoiser`] (16 kHz i16 in and out, where
//! rounding to i16 is part of both outputs).
//!
//! Why the engines differ at all: our network products use FMA and our band sums another
//! summation order, so values differ in the last bits (≈ 1e-7 relative). The pitch search,
//! whose integer result could flip at a near-tie, rounds exactly as nnnoiseless's (see
//! `src/audio/rnnoise/pitch.rs`), so periods never differ. Measured over these 34 inputs
//! (25 732 frames): output SNR ≥ 107 dB per file at 48 kHz (≥ 97 dB through the i16 path,
//! where an occasional sample rounds the other way), VAD difference < 5e-5 on every frame.
//!
//! The tolerances keep a wide margin below that, for one remaining discrete step: the pitch
//! filter's per-band switch `exp > gain` compares two computed values, so a last-bit difference
//! can flip it in a frame where they are equal to ~1e-7. Speech and noise almost never get
//! there; steady pure tones do (seen during development on the voicemail beep: 2 frames, 56 dB
//! for the file; and on a synthetic 3 kHz tone at 16 kHz, 2 frames in every 27 differ by −35 dB,
//! VAD still identical; see `sine_has_no_clicks_at_frame_joins` in `src/audio/denoise.rs`).
//! Output SNR ≥ 50 dB per file; VAD within 1e-3 on ≥ 99.9 % of frames and within 1e-2 on all
//! of them.
//!
//! Run with `-- --nocapture` to see the table.

mod common;

use common::media::Fixture;
use nnnoiseless::DenoiseState;
use switchboard::audio::codec::mulaw_decode;
use switchboard::audio::denoise::{DenoiseMode, Denoiser, RnnEngine};
use switchboard::audio::resample::StreamResampler;
use switchboard::audio::rnnoise::Rnnoise;

const FRAME: usize = Rnnoise::FRAME_SAMPLES;
/// Whole-file output SNR, ours vs nnnoiseless, at 48 kHz (f32), at least.
const MIN_SNR_DB: f64 = 50.0;
/// Same through the whole 16 kHz i16 path.
const MIN_SNR_DB_I16: f64 = 50.0;
/// A frame's VAD probabilities agree if within this.
const VAD_TOLERANCE: f32 = 1e-3;
/// Share of frames whose VAD probabilities must agree, per file.
const MIN_VAD_AGREEMENT: f64 = 0.999;
/// No frame's VAD probabilities may differ by more than this.
const VAD_MAX_DIFF: f32 = 1e-2;

/// A fixture as 16-bit samples at its own rate.
fn samples(name: &str) -> (Vec<i16>, u32) {
    let f = Fixture::load(name);
    let s = match f.width {
        1 => f.data.iter().map(|&b| mulaw_decode(b)).collect(),
        2 => f.data.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect(),
        w => panic!("{name}: {w} bytes per sample"),
    };
    (s, f.sample_rate_hz)
}

/// `pcm` at `rate_hz` → 48 kHz, whole 10 ms frames.
fn to_48k(pcm: &[i16], rate_hz: u32) -> Vec<f32> {
    let mut r = StreamResampler::new(rate_hz, 48_000).unwrap();
    let block = rate_hz as usize / 100;
    let mut out = Vec::new();
    for chunk in pcm.chunks_exact(block) {
        r.process(chunk, &mut out);
    }
    out.truncate(out.len() / FRAME * FRAME);
    out.into_iter().map(f32::from).collect()
}

/// Clean sentence + noise bed, noise scaled to `snr_db` below the sentence's mean power.
fn mixed(clean: &[i16], noise: &[i16], snr_db: f64) -> Vec<i16> {
    let power = |x: &[i16]| x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / x.len() as f64;
    let k = (power(clean) / power(&noise[..clean.len()]) / 10f64.powf(snr_db / 10.0)).sqrt();
    clean
        .iter()
        .zip(noise)
        .map(|(&c, &n)| (f64::from(c) + k * f64::from(n)).round().clamp(-32768.0, 32767.0) as i16)
        .collect()
}

/// The inputs: (name, 16-bit samples, rate).
fn inputs() -> Vec<(String, Vec<i16>, u32)> {
    let mut v = Vec::new();
    for caller in ["caller-hello", "caller-question"] {
        let (clean, rate) = samples(&format!("{caller}.l16-16k.wav"));
        for noise in ["babble", "cafe", "street", "tv"] {
            let (bed, _) = samples(&format!("noise-{noise}.mulaw-16k.wav"));
            for snr_db in [0.0, 10.0] {
                v.push((format!("{caller}+{noise}@{snr_db}dB"), mixed(&clean, &bed, snr_db), rate));
            }
        }
        v.push((caller.to_string(), clean, rate));
    }
    let (t2, rate) = samples("talker2.l16-16k.wav");
    v.push(("talker2".into(), t2, rate));
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("audio-fixtures/calls");
    let mut calls: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().into_string().ok())
        .filter(|n| n.ends_with(".wav"))
        .collect();
    calls.sort();
    for call in calls {
        let (pcm, rate) = samples(&format!("calls/{call}"));
        v.push((format!("calls/{call}"), pcm, rate));
    }
    v
}

fn snr_db(reference: &[f64], ours: &[f64]) -> f64 {
    let sig: f64 = reference.iter().map(|v| v * v).sum();
    let err: f64 = reference.iter().zip(ours).map(|(r, o)| (r - o).powi(2)).sum();
    if err == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (sig / err).log10()
    }
}

struct Compared {
    snr_db: f64,
    vad_agree: f64,
    worst_vad_diff: f32,
    frames: usize,
}

/// Both engines over `input` (48 kHz, whole frames).
fn compare_48k(input: &[f32], ours: &mut Rnnoise) -> Compared {
    let mut reference = DenoiseState::new();
    let (mut out_ref, mut out_ours) = (vec![0f32; input.len()], vec![0f32; input.len()]);
    let (mut agree, mut worst, mut frames) = (0usize, 0f32, 0usize);
    for ((i, r), o) in
        input.chunks_exact(FRAME).zip(out_ref.chunks_exact_mut(FRAME)).zip(out_ours.chunks_exact_mut(FRAME))
    {
        let vad_ref = reference.process_frame(r, i);
        let vad_ours = ours.process_frame(o, i);
        let diff = (vad_ref - vad_ours).abs();
        agree += usize::from(diff <= VAD_TOLERANCE);
        worst = worst.max(diff);
        frames += 1;
    }
    let to64 = |v: &[f32]| v.iter().map(|&s| f64::from(s)).collect::<Vec<_>>();
    Compared {
        snr_db: snr_db(&to64(&out_ref), &to64(&out_ours)),
        vad_agree: agree as f64 / frames as f64,
        worst_vad_diff: worst,
        frames,
    }
}

/// Both engines through [`Denoiser`] (16 kHz i16, `Noise` mode): output SNR and the share of
/// 20 ms frames whose reported speech probabilities agree.
fn compare_denoiser(pcm16k: &[i16]) -> (f64, f64) {
    let n = Denoiser::FRAME_SAMPLES;
    let run = |engine| {
        let mut d = Denoiser::with_engine(DenoiseMode::Noise, engine);
        let mut out = vec![0i16; pcm16k.len() / n * n];
        let probs: Vec<f32> = pcm16k
            .chunks_exact(n)
            .zip(out.chunks_exact_mut(n))
            .map(|(i, o)| d.process(i, o).speech_prob)
            .collect();
        (out.iter().map(|&s| f64::from(s)).collect::<Vec<_>>(), probs)
    };
    let (ref_out, ref_p) = run(RnnEngine::Nnnoiseless);
    let (our_out, our_p) = run(RnnEngine::Native);
    let agree = ref_p.iter().zip(&our_p).filter(|(a, b)| (*a - *b).abs() <= VAD_TOLERANCE).count();
    (snr_db(&ref_out, &our_out), agree as f64 / ref_p.len() as f64)
}

#[test]
fn native_engine_matches_nnnoiseless_on_the_fixtures() {
    println!(
        "\n{:<38} {:>6} | {:>9} {:>9} {:>9} {:>9} | {:>9} {:>9}",
        "input (48 kHz f32; 16 kHz i16)",
        "frames",
        "SNR dB",
        "VAD ok",
        "worst Δ",
        "portable",
        "i16 SNR",
        "VAD ok"
    );
    let mut failures = Vec::new();
    let (mut worst_snr, mut worst_agree, mut total_frames, mut total_ok) =
        (f64::INFINITY, 1f64, 0usize, 0f64);
    for (name, pcm, rate) in inputs() {
        let input = to_48k(&pcm, rate);
        let native = compare_48k(&input, &mut Rnnoise::new());
        let portable = compare_48k(&input, &mut Rnnoise::new_portable());
        let pcm16k = if rate == 16_000 {
            pcm.clone()
        } else {
            let mut r = StreamResampler::new(rate, 16_000).unwrap();
            let mut out = Vec::new();
            r.process(&pcm[..pcm.len() / 80 * 80], &mut out);
            out
        };
        let (i16_snr, i16_agree) = compare_denoiser(&pcm16k);
        println!(
            "{name:<38} {:>6} | {:>9.1} {:>8.2}% {:>9.1e} {:>9.1} | {:>9.1} {:>8.2}%",
            native.frames,
            native.snr_db,
            100.0 * native.vad_agree,
            native.worst_vad_diff,
            portable.snr_db,
            i16_snr,
            100.0 * i16_agree
        );
        worst_snr = worst_snr.min(native.snr_db).min(portable.snr_db);
        worst_agree = worst_agree.min(native.vad_agree).min(portable.vad_agree);
        total_frames += native.frames;
        total_ok += native.vad_agree * native.frames as f64;
        for (what, snr, min) in [
            ("native", native.snr_db, MIN_SNR_DB),
            ("portable", portable.snr_db, MIN_SNR_DB),
            ("Denoiser i16", i16_snr, MIN_SNR_DB_I16),
        ] {
            if snr < min {
                failures.push(format!("{name} ({what}): output SNR {snr:.1} dB < {min} dB"));
            }
        }
        if i16_agree < MIN_VAD_AGREEMENT {
            failures.push(format!(
                "{name} (Denoiser): speech_prob within {VAD_TOLERANCE} on {:.2}%",
                100.0 * i16_agree
            ));
        }
        for (what, c) in [("native", &native), ("portable", &portable)] {
            if c.vad_agree < MIN_VAD_AGREEMENT {
                failures.push(format!(
                    "{name} ({what}): VAD within {VAD_TOLERANCE} on {:.2}% of frames",
                    100.0 * c.vad_agree
                ));
            }
            if c.worst_vad_diff > VAD_MAX_DIFF {
                failures.push(format!("{name} ({what}): a frame's VAD differs by {}", c.worst_vad_diff));
            }
        }
    }
    println!(
        "worst file: SNR {worst_snr:.1} dB, VAD agreement {:.2}%; all {total_frames} frames: {:.3}% agree",
        100.0 * worst_agree,
        100.0 * total_ok / total_frames as f64
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
