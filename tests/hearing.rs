//! What the listening path understands in noise: the fixture sentences mixed with the four noise
//! beds at 10 dB SNR, raw and through RNNoise, into the embedded Whisper, scored by word error
//! rate against the fixture text (the measurement behind giving the recogniser the original
//! audio, not RNNoise's output: see `audio::denoise`, "What the recogniser hears"); and the
//! caller's words as the recogniser hears them in the background-speech mode, with a second,
//! quieter talker. Run with `-- --nocapture` for tables.

mod common;

use std::sync::OnceLock;

use common::media::Fixture;
use switchboard::audio::codec::mulaw_decode;
use switchboard::audio::denoise::{DenoiseMode, Denoiser};
use switchboard::providers::stt::{wer, SttQuality, WhisperModel};

const CALLERS: [(&str, &str); 2] = [
    ("caller-hello", "Hello, I would like to book a table for two people tomorrow evening at seven."),
    ("caller-question", "What is the weather going to be like in London this weekend?"),
];
const NOISES: [&str; 4] = ["babble", "cafe", "street", "tv"];

fn model() -> &'static WhisperModel {
    static M: OnceLock<WhisperModel> = OnceLock::new();
    M.get_or_init(|| {
        let dir = common::models_dir().join("whisper-tiny.en");
        WhisperModel::load(&dir).unwrap_or_else(|e| panic!("{e}: run `make models` ({})", dir.display()))
    })
}

fn samples(name: &str) -> Vec<f64> {
    let f = Fixture::load(name);
    assert_eq!(f.sample_rate_hz, 16_000, "{name}");
    match f.width {
        1 => f.data.iter().map(|&b| f64::from(mulaw_decode(b))).collect(),
        _ => f.data.chunks_exact(2).map(|b| f64::from(i16::from_le_bytes([b[0], b[1]]))).collect(),
    }
}

fn power(x: &[f64]) -> f64 {
    x.iter().map(|v| v * v).sum::<f64>() / x.len().max(1) as f64
}

/// `speech` + `noise` (looped) scaled so speech power over its loud part is `snr_db` above it.
fn mix(speech: &[f64], noise: &[f64], snr_db: f64) -> Vec<i16> {
    let loud: Vec<f64> = speech.iter().copied().filter(|v| v.abs() > 300.0).collect();
    let n: Vec<f64> = (0..speech.len()).map(|i| noise[i % noise.len()]).collect();
    let gain = (power(&loud) / power(&n) / 10f64.powf(snr_db / 10.0)).sqrt();
    speech.iter().zip(&n).map(|(s, v)| (s + gain * v).round().clamp(-32768.0, 32767.0) as i16).collect()
}

/// What the listener's recogniser hears of `input` with `mode`
/// ([`Denoiser::process_with_source`]).
fn heard(input: &[i16], mode: DenoiseMode) -> Vec<i16> {
    let mut d = Denoiser::new(mode);
    let (mut out, mut source) = (vec![0i16; Denoiser::FRAME_SAMPLES], vec![0i16; Denoiser::FRAME_SAMPLES]);
    let mut all = Vec::with_capacity(input.len());
    for frame in input.chunks_exact(Denoiser::FRAME_SAMPLES) {
        d.process_with_source(frame, &mut out, &mut source);
        all.extend_from_slice(&source);
    }
    all
}

fn denoise(input: &[i16], mode: DenoiseMode) -> Vec<i16> {
    let mut d = Denoiser::new(mode);
    let mut out = vec![0i16; Denoiser::FRAME_SAMPLES];
    let mut all = Vec::with_capacity(input.len());
    for frame in input.chunks_exact(Denoiser::FRAME_SAMPLES) {
        d.process(frame, &mut out);
        all.extend_from_slice(&out);
    }
    all
}

fn transcribe(pcm: &[i16]) -> String {
    let f: Vec<f32> = pcm.iter().map(|&s| f32::from(s) / 32768.0).collect();
    model().transcribe(&f, SttQuality::Final).expect("transcribes").text
}

#[test]
fn speech_in_noise_at_10_db_through_the_denoiser() {
    let mut table = Vec::new();
    for noise in NOISES {
        let bed = samples(&format!("noise-{noise}.mulaw-16k.wav"));
        let (mut raw_sum, mut den_sum) = (0.0, 0.0);
        for (caller, text) in CALLERS {
            let noisy = mix(&samples(&format!("{caller}.l16-16k.wav")), &bed, 10.0);
            let raw = wer(text, &transcribe(&noisy));
            let heard = transcribe(&denoise(&noisy, DenoiseMode::Noise));
            let den = wer(text, &heard);
            eprintln!("{noise:>7} {caller:<16} raw WER {raw:.2}  denoised WER {den:.2}  {heard:?}");
            raw_sum += raw;
            den_sum += den;
        }
        table.push((noise, raw_sum / 2.0, den_sum / 2.0));
    }
    eprintln!("noise    mean WER raw / through the denoiser (10 dB SNR)");
    for (n, r, d) in &table {
        eprintln!("{n:>7}  {r:.2} / {d:.2}");
    }
    let mean = table.iter().map(|t| t.2).sum::<f64>() / table.len() as f64;
    eprintln!("overall mean WER through the denoiser: {mean:.3}");
    // Measured on this machine kind (mean of the two sentences, WER raw / denoised; session 16,
    // with the final pass's silent tail): babble 0.42 / 0.31, cafe 0.17 / 0.28, street
    // 0.00 / 0.00, tv 0.21 / 0.17; overall 0.20 / 0.19.
    // The target (≤ 20 % at 10 dB) holds over the noise set; per noise type it does
    // not for babble and cafe (RNNoise leaves speech-like noise, and its artefacts cost Whisper
    // more than the noise it removes on the cafe bed). The decoder is deterministic.
    assert!(mean <= 0.20, "mean WER through the denoiser at 10 dB: {mean:.3}");
    for (n, _, d) in &table {
        let limit = match *n {
            "street" => 0.05,
            "tv" => 0.25,
            _ => 0.50,
        };
        assert!(*d <= limit, "{n}: mean WER {d:.2} through the denoiser (limit {limit})");
    }
}

#[test]
fn background_speech_mode_keeps_the_callers_words() {
    let talker = samples("talker2.l16-16k.wav");
    for (caller, text) in CALLERS {
        let speech = samples(&format!("{caller}.l16-16k.wav"));
        // The second talker 12 dB quieter, starting 2 s in.
        let start = 2 * 16_000;
        let gain = 10f64.powf(-12.0 / 20.0);
        let mut mixed: Vec<f64> = speech.clone();
        mixed.resize(speech.len().max(start + talker.len()), 0.0);
        for (i, t) in talker.iter().enumerate() {
            mixed[start + i] += gain * t;
        }
        let pcm: Vec<i16> = mixed.iter().map(|v| v.round().clamp(-32768.0, 32767.0) as i16).collect();
        let plain = transcribe(&heard(&pcm, DenoiseMode::Noise));
        let gated = transcribe(&heard(&pcm, DenoiseMode::NoiseAndBackgroundSpeech));
        let (wp, wg) = (wer(text, &plain), wer(text, &gated));
        eprintln!(
            "{caller}: noise mode WER {wp:.2} {plain:?}\n{caller}: background mode WER {wg:.2} {gated:?}"
        );
        assert!(wg <= 0.20, "{caller}: the caller's words must survive the gate: {gated:?} (WER {wg:.2})");
        // Not worse by more than one word. Measured (the recogniser hearing the original audio,
        // times the gate's gain): caller-hello 0.07 against 0.00 ("evening" heard "ending"),
        // though the gate stays open over every frame of the caller's speech — only the second
        // talker in the pauses differs; caller-question 0.00 against 1.17 (without the gate the
        // second talker's sentence after the caller's is transcribed too).
        let one_word = 1.0 / text.split_whitespace().count() as f64;
        assert!(
            wg <= wp + one_word + 1e-9,
            "{caller}: the gate must not make recognition worse ({wg:.2} vs {wp:.2})"
        );
    }
}
