//! Word error rate of the embedded speech-to-text on every recorded call's caller turns, against
//! the annotation: the calls in `audio-fixtures/calls-piper/` (Piper's neural voice `joe`) and the
//! same calls in `audio-fixtures/calls/` (espeak-ng's formant voices), as the listener hears them:
//! G.711 μ-law 8 kHz, decoded and resampled to 16 kHz by the product's own resampler, run through
//! the denoiser frame by frame as the listener runs it and taken as its recogniser hears it
//! ([`Denoiser::process_with_source`]: the original audio, times the background gate's gain in
//! that mode), each turn cut from 200 ms before to 200 ms after its annotated span (the VAD's
//! pre-roll and hangover).
//!
//! Two decodings per turn, as the engine routes an English agent: `fast` = tiny.en's final pass,
//! `accurate` = `sttMode: accurate` (Whisper base, greedy). Run with `-- --nocapture` for the
//! table of every call (its WER over all its turns) and what each decoding heard.
//!
//! The targets (≤ 10 % clean, ≤ 20 % at 10 dB SNR) are asserted on the Piper calls, in
//! both `denoisingMode`s, as corpus figures: the clean calls' words together, and the two noisy calls' (café at 10 dB,
//! street at 5 dB) together. Per call they nearly all hold; the exception is a word heard
//! wrong in a short call (`voicemail`, "car" for "call": 10.5 %). The espeak calls miss the targets by far
//! (formant speech is unlike what Whisper was trained on): their bound pins today's figure so a
//! regression shows; it is not a target.

mod common;

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use switchboard::audio::codec::mulaw_decode;
use switchboard::audio::denoise::{DenoiseMode, Denoiser};
use switchboard::audio::resample::StreamResampler;
use switchboard::providers::stt::{wer, SttQuality, WhisperEngine, WhisperModel};

/// Highest WER per clean call (the target).
const CLEAN_MAX_WER: f64 = 0.10;
/// Highest WER per noisy call at 10 dB SNR or worse (the target at 10 dB; the street
/// call is at 5 dB and held to it too).
const NOISY_MAX_WER: f64 = 0.20;
/// What the turns are cut with either side of their annotated span, ms.
const MARGIN_MS: u64 = 200;

fn models() -> PathBuf {
    common::models_dir()
}

/// tiny.en and base, loaded once; `None` (with a note) when either is missing.
fn engine() -> Option<&'static WhisperEngine> {
    static ENGINE: OnceLock<Option<WhisperEngine>> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let (tiny, base) = (models().join("whisper-tiny.en"), models().join("whisper-base"));
            if let Some(d) = [&tiny, &base].into_iter().find(|d| !d.join("model.bin").is_file()) {
                eprintln!("SKIP: {} missing — run `make models` (CI always has it)", d.display());
                return None;
            }
            let tiny = Arc::new(WhisperModel::load(&tiny).expect("tiny.en loads"));
            let base = Arc::new(WhisperModel::load(&base).expect("base loads"));
            Some(WhisperEngine::start_with(tiny, Some(base), 1, 1).expect("engine starts"))
        })
        .as_ref()
}

/// One recorded call: its name, whether it has a noise bed, and its turns as
/// `(16 kHz samples in −1..1, annotated text)`.
struct Call {
    name: String,
    noisy: bool,
    language: String,
    turns: Vec<(Vec<f32>, String)>,
}

fn load_calls(dir: &str, mode: DenoiseMode) -> Vec<Call> {
    common::media::Fixture::call_annotations(dir)
        .iter()
        .map(|path| {
            let ann: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
            let fixture = format!("{dir}/{}", ann["file"].as_str().expect("file"));
            let wav = common::media::Fixture::load(&fixture);
            assert_eq!((wav.sample_rate_hz, wav.width), (8_000, 1), "{fixture}: μ-law 8 kHz");
            let narrow: Vec<i16> = wav.data.iter().map(|&b| mulaw_decode(b)).collect();
            let mut resampler = StreamResampler::new(8_000, 16_000).unwrap();
            let mut wide = Vec::with_capacity(narrow.len() * 2 + 1_000);
            resampler.process(&narrow, &mut wide);
            resampler.process(&[0; 800], &mut wide); // flush the filter's delay
            let delay = resampler.delay_samples();
            let wide = heard(&wide[delay..], mode);
            let pcm: Vec<f32> = wide.iter().map(|&s| f32::from(s) / 32_768.0).collect();
            let at = |ms: u64| ((ms * 16) as usize).min(pcm.len());
            let turns = ann["callerTurns"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| {
                    let (start, end) = (t["startMs"].as_u64().unwrap(), t["endMs"].as_u64().unwrap());
                    let cut = pcm[at(start.saturating_sub(MARGIN_MS))..at(end + MARGIN_MS)].to_vec();
                    (cut, t["text"].as_str().unwrap().to_string())
                })
                .collect();
            Call {
                name: path.file_stem().unwrap().to_string_lossy().into_owned(),
                noisy: ann.get("noise").is_some(),
                language: ann["language"].as_str().unwrap_or("en").to_string(),
                turns,
            }
        })
        .collect()
}

/// What the listener's recogniser hears of `pcm` with `denoisingMode` `mode`
/// ([`Denoiser::process_with_source`], frame by frame), shifted back by the denoiser's latency so
/// the annotations still line up.
fn heard(pcm: &[i16], mode: DenoiseMode) -> Vec<i16> {
    let mut denoiser = Denoiser::new(mode);
    let frame = Denoiser::FRAME_SAMPLES;
    let mut input = pcm.to_vec();
    input.resize(pcm.len().div_ceil(frame) * frame + frame, 0);
    let (mut denoised, mut source) = (vec![0i16; frame], vec![0i16; input.len()]);
    for (i, o) in input.chunks_exact(frame).zip(source.chunks_exact_mut(frame)) {
        denoiser.process_with_source(i, &mut denoised, o);
    }
    let lag = denoiser.latency_samples();
    source[lag..lag + pcm.len()].to_vec()
}

/// Per call: `(name, noisy, words said, fast errors, accurate errors)`, printed as a table.
fn measure(engine: &WhisperEngine, dir: &str, mode: DenoiseMode) -> Vec<(String, bool, f64, f64, f64)> {
    let mut rows = Vec::new();
    eprintln!("\n{dir}, denoiser {mode:?}: WER per call, fast (tiny.en) | accurate (base)");
    for call in load_calls(dir, mode).into_iter().filter(|c| c.language == "en") {
        let said: Vec<&str> = call.turns.iter().map(|(_, t)| t.as_str()).collect();
        let said = said.join(" ");
        let words = said.split_whitespace().count() as f64;
        let mut heard = [Vec::new(), Vec::new()];
        for (pcm, _) in &call.turns {
            for (i, quality) in [SttQuality::Final, SttQuality::Accurate].into_iter().enumerate() {
                let (model, decoding) = engine.route("en", quality).expect("English is covered");
                heard[i].push(model.transcribe_in(pcm, "en", decoding).expect("transcribes").text);
            }
        }
        let [fast, accurate] = heard.map(|h| h.join(" "));
        let (wf, wa) = (wer(&said, &fast), wer(&said, &accurate));
        eprintln!(
            "{:<18} {:>5} {:>6.1}% {:>6.1}% | {fast:?} | {accurate:?}",
            call.name,
            if call.noisy { "noisy" } else { "clean" },
            wf * 100.0,
            wa * 100.0
        );
        rows.push((call.name, call.noisy, words, wf * words, wa * words));
    }
    let total: f64 = rows.iter().map(|r| r.2).sum();
    let (ef, ea): (f64, f64) = (rows.iter().map(|r| r.3).sum(), rows.iter().map(|r| r.4).sum());
    eprintln!(
        "{dir}: all {total} words: fast {:.1}%, accurate {:.1}%",
        100.0 * ef / total,
        100.0 * ea / total
    );
    rows
}

/// WER over a group of calls (all their words together, the usual corpus figure): `(fast, accurate)`.
fn corpus(rows: &[(String, bool, f64, f64, f64)], noisy: bool) -> (f64, f64) {
    let group: Vec<_> = rows.iter().filter(|r| r.1 == noisy).collect();
    let words: f64 = group.iter().map(|r| r.2).sum();
    (group.iter().map(|r| r.3).sum::<f64>() / words, group.iter().map(|r| r.4).sum::<f64>() / words)
}

#[test]
fn piper_calls_meet_the_wer_targets() {
    let Some(engine) = engine() else { return };
    // The default `noise-cancellation` (the recogniser hears the original audio) and the
    // background-speech mode (the same, times the background gate's gain).
    for mode in [DenoiseMode::Noise, DenoiseMode::NoiseAndBackgroundSpeech] {
        let rows = measure(engine, "calls-piper", mode);
        assert!(rows.len() >= 12, "every English call is measured: {}", rows.len());
        for (noisy, max) in [(false, CLEAN_MAX_WER), (true, NOISY_MAX_WER)] {
            let (fast, accurate) = corpus(&rows, noisy);
            let group = if noisy { "noisy" } else { "clean" };
            eprintln!(
                "calls-piper, {mode:?}, {group} calls: fast {:.1}%, accurate {:.1}%",
                fast * 100.0,
                accurate * 100.0
            );
            for (pass, w) in [("fast", fast), ("accurate", accurate)] {
                assert!(
                    w <= max,
                    "{group} Piper calls, {mode:?} ({pass}): WER {:.1}% > {:.0}%",
                    w * 100.0,
                    max * 100.0
                );
            }
        }
    }
}

/// The espeak-ng calls (the 13 English ones), all words together: today's figures pinned, not the
/// target. Measured 28.8 % (fast) and 22.1 % (accurate) over 222 words; against 3.2 % and 1.4 %
/// for the same words in Piper's voice. (30.6 % and 24.8 % before the final pass got its silent
/// tail.)
const ESPEAK_FAST_MAX_WER: f64 = 0.31;
const ESPEAK_ACCURATE_MAX_WER: f64 = 0.25;

#[test]
fn espeak_calls_are_measured_and_do_not_regress() {
    let Some(engine) = engine() else { return };
    let rows = measure(engine, "calls", DenoiseMode::Noise);
    let total: f64 = rows.iter().map(|r| r.2).sum();
    let fast = rows.iter().map(|r| r.3).sum::<f64>() / total;
    let accurate = rows.iter().map(|r| r.4).sum::<f64>() / total;
    assert!(fast <= ESPEAK_FAST_MAX_WER, "espeak calls, fast: WER {:.1}%", fast * 100.0);
    assert!(accurate <= ESPEAK_ACCURATE_MAX_WER, "espeak calls, accurate: WER {:.1}%", accurate * 100.0);
}
