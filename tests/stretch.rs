//! `TimeStretch` on voiced audio: the espeak-ng speech fixtures and a synthetic harmonic tone with
//! vibrato. At speeds 0.5, 0.75, 1.0, 1.25 and 2.0 the stretched audio lasts 1/speed as long
//! (±3 %), keeps its pitch (median F0 over voiced frames by autocorrelation, ±5 %) and its level
//! (±1 dB), has no clicks at the segment joins, and does not depend on the input chunk size.
//!
//! Durations: for the fixtures, the speech span (first to last sample with |x| ≥ 64, as in
//! `audio-fixtures/README.md`) in and out; for the tone, the whole signal. F0: 40 ms frames every
//! 25 ms (higher rates are first box-averaged down by an integer factor to 8–11 kHz: enough for
//! a 60–400 Hz F0, and it keeps the debug-build test fast); a frame is voiced when its level is within 20 dB of the loudest frame and its
//! normalized autocorrelation peaks at ≥ 0.6 within 60–400 Hz; the lag is the first local maximum
//! within 10 % of the highest (no octave jumps), refined by a parabola.
//!
//! Run with `-- --nocapture` to see the table.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::f64::consts::PI;

use switchboard::audio::stretch::TimeStretch;

const SPEEDS: [f64; 5] = [0.5, 0.75, 1.0, 1.25, 2.0];
const FIXTURES: [&str; 3] = ["caller-hello", "caller-question", "talker2"];

/// Tolerances from the issue.
const DURATION_TOLERANCE: f64 = 0.03;
const PITCH_TOLERANCE: f64 = 0.05;
const LEVEL_TOLERANCE_DB: f64 = 1.0;

// ---- inputs ---------------------------------------------------------------------------------

/// A 16-bit mono WAV from `audio-fixtures/`: its samples and rate (RIFF parsed here).
fn fixture(name: &str) -> (Vec<i16>, u32) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("audio-fixtures").join(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(&bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WAVE", "{name}: not a WAV file");
    let (mut pos, mut rate_hz) = (12, 0);
    while pos + 8 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().unwrap()) as usize;
        let body = &bytes[pos + 8..(pos + 8 + len).min(bytes.len())];
        match &bytes[pos..pos + 4] {
            b"fmt " => {
                assert_eq!(u16::from_le_bytes([body[0], body[1]]), 1, "{name}: not PCM");
                assert_eq!(u16::from_le_bytes([body[2], body[3]]), 1, "{name}: not mono");
                assert_eq!(u16::from_le_bytes([body[14], body[15]]), 16, "{name}: not 16-bit");
                rate_hz = u32::from_le_bytes(body[4..8].try_into().unwrap());
            }
            b"data" => {
                let samples = body.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect();
                return (samples, rate_hz);
            }
            _ => {}
        }
        pos += 8 + len + (len & 1);
    }
    panic!("{name}: no data chunk")
}

/// 2 s of a voice-like tone: 140 Hz with ±4 % vibrato at 5.5 Hz, harmonics 1–10 at 1/h, −10 dBFS
/// peak-ish, 20 ms fades at both ends.
fn vibrato_tone(rate_hz: u32) -> Vec<i16> {
    let len = 2 * rate_hz as usize;
    let fade = rate_hz as usize / 50;
    let mut phase = 0.0f64;
    (0..len)
        .map(|n| {
            let t = n as f64 / rate_hz as f64;
            let f0_hz = 140.0 * (1.0 + 0.04 * (2.0 * PI * 5.5 * t).sin());
            phase += 2.0 * PI * f0_hz / rate_hz as f64;
            let x: f64 = (1..=10).map(|h| (h as f64 * phase).sin() / h as f64).sum();
            let env = (n.min(len - 1 - n) as f64 / fade as f64).min(1.0);
            (3_500.0 * env * x).round() as i16
        })
        .collect()
}

// ---- measurements ---------------------------------------------------------------------------

fn rms(x: &[i16]) -> f64 {
    (x.iter().map(|&s| f64::from(s) * f64::from(s)).sum::<f64>() / x.len().max(1) as f64).sqrt()
}

/// First to last sample with |x| ≥ 64 (−54 dBFS), as a sample count.
fn speech_span(x: &[i16]) -> std::ops::Range<usize> {
    let first = x.iter().position(|s| s.unsigned_abs() >= 64).unwrap_or(0);
    let last = x.iter().rposition(|s| s.unsigned_abs() >= 64).unwrap_or(0);
    first..last + 1
}

/// F0 of every voiced frame (see the module doc).
fn f0_track(x: &[i16], rate_hz: u32) -> Vec<f64> {
    // Box-average down to ≈ 8 kHz (a low-pass good enough for a 60–400 Hz F0).
    let factor = (rate_hz / 8_000).max(1) as usize;
    let rate = rate_hz as f64 / factor as f64;
    let x: Vec<f64> = x
        .chunks_exact(factor)
        .map(|c| c.iter().map(|&s| f64::from(s)).sum::<f64>() / factor as f64)
        .collect();
    let frame = (rate * 0.040) as usize;
    let hop = (rate * 0.025) as usize;
    let (lag_min, lag_max) = ((rate / 400.0) as usize, (rate / 60.0).ceil() as usize);
    let starts = (0..x.len().saturating_sub(frame + lag_max)).step_by(hop);
    let loudest = starts.clone().map(|s| energy(&x[s..s + frame])).fold(0.0, f64::max);
    let mut track = Vec::new();
    for s in starts {
        let a = &x[s..s + frame];
        let e0 = energy(a);
        if e0 < loudest * 0.01 {
            continue;
        }
        let r: Vec<f64> = (0..=lag_max + 1)
            .map(|lag| {
                let b = &x[s + lag..s + lag + frame];
                a.iter().zip(b).map(|(p, q)| p * q).sum::<f64>() / (e0 * energy(b)).sqrt().max(1.0)
            })
            .collect();
        let best = (lag_min..=lag_max).map(|l| r[l]).fold(f64::MIN, f64::max);
        if best < 0.6 {
            continue;
        }
        let Some(lag) =
            (lag_min..=lag_max).find(|&l| r[l] >= 0.9 * best && r[l] >= r[l - 1] && r[l] >= r[l + 1])
        else {
            continue;
        };
        let (a, b, c) = (r[lag - 1], r[lag], r[lag + 1]);
        let shift = 0.5 * (a - c) / (a - 2.0 * b + c).min(-1e-12);
        track.push(rate / (lag as f64 + shift));
    }
    track
}

fn energy(x: &[f64]) -> f64 {
    x.iter().map(|v| v * v).sum()
}

fn median(mut v: Vec<f64>) -> f64 {
    assert!(!v.is_empty(), "no voiced frames");
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Largest |second difference| — a click at a join shows up as a spike here.
fn max_curvature(x: &[i16]) -> i32 {
    x.windows(3).map(|w| (i32::from(w[0]) - 2 * i32::from(w[1]) + i32::from(w[2])).abs()).max().unwrap_or(0)
}

/// The whole output for `input` in chunks of `chunk`, then flushed.
fn stretch(rate_hz: u32, speed: f64, input: &[i16], chunk: usize) -> Vec<i16> {
    let mut ts = TimeStretch::new(rate_hz, speed);
    let mut out = Vec::new();
    for piece in input.chunks(chunk) {
        ts.process(piece, &mut out);
    }
    ts.flush(&mut out);
    out
}

// ---- behaviour ------------------------------------------------------------------------------

/// One row of the printed table; panics (after printing) on any tolerance miss.
struct Row {
    name: String,
    rate_hz: u32,
    speed: f64,
    duration_ratio: f64,
    f0_in_hz: f64,
    f0_out_hz: f64,
    level_db: f64,
    curvature_ratio: f64,
}

fn measure(name: &str, input: &[i16], rate_hz: u32, speed: f64, spans: bool) -> Row {
    let out = stretch(rate_hz, speed, input, 160);
    assert_eq!(out.len(), (input.len() as f64 / speed).round() as usize, "{name} × {speed}: length");
    let (span_in, span_out) =
        if spans { (speech_span(input), speech_span(&out)) } else { (0..input.len(), 0..out.len()) };
    let duration_ratio = span_out.len() as f64 * speed / span_in.len() as f64;
    Row {
        name: name.to_string(),
        rate_hz,
        speed,
        duration_ratio,
        f0_in_hz: median(f0_track(input, rate_hz)),
        f0_out_hz: median(f0_track(&out, rate_hz)),
        level_db: 20.0 * (rms(&out[span_out]) / rms(&input[span_in])).log10(),
        curvature_ratio: f64::from(max_curvature(&out)) / f64::from(max_curvature(input)),
    }
}

fn check(rows: &[Row]) {
    println!(
        "{:<16} {:>6} {:>5} {:>12} {:>8} {:>8} {:>7} {:>8} {:>10}",
        "signal", "rate", "speed", "dur×speed", "F0 in", "F0 out", "ΔF0", "level", "max|Δ²|"
    );
    for r in rows {
        println!(
            "{:<16} {:>6} {:>5.2} {:>12.4} {:>8.1} {:>8.1} {:>6.2}% {:>+7.2}dB {:>9.2}×",
            r.name,
            r.rate_hz,
            r.speed,
            r.duration_ratio,
            r.f0_in_hz,
            r.f0_out_hz,
            100.0 * (r.f0_out_hz / r.f0_in_hz - 1.0),
            r.level_db,
            r.curvature_ratio
        );
    }
    for r in rows {
        let what = format!("{} @ {} Hz × {}", r.name, r.rate_hz, r.speed);
        assert!(
            (r.duration_ratio - 1.0).abs() <= DURATION_TOLERANCE,
            "{what}: duration × speed {:.4}",
            r.duration_ratio
        );
        assert!(
            (r.f0_out_hz / r.f0_in_hz - 1.0).abs() <= PITCH_TOLERANCE,
            "{what}: F0 {:.1} → {:.1}",
            r.f0_in_hz,
            r.f0_out_hz
        );
        assert!(r.level_db.abs() <= LEVEL_TOLERANCE_DB, "{what}: level {:+.2} dB", r.level_db);
    }
}

/// The speech fixtures at 16 kHz: duration, pitch and level at every speed.
#[test]
fn speech_fixtures_keep_pitch_and_level_at_every_speed() {
    let mut rows = Vec::new();
    for name in FIXTURES {
        let (input, rate_hz) = fixture(&format!("{name}.l16-16k.wav"));
        assert_eq!(rate_hz, 16_000);
        for speed in SPEEDS {
            rows.push(measure(name, &input, rate_hz, speed, true));
        }
    }
    check(&rows);
}

/// The vibrato tone at every supported rate: duration, pitch, level, and no clicks (the largest
/// second difference stays within 10 % of the input's: an unaligned join would spike it).
#[test]
fn vibrato_tone_keeps_pitch_and_level_without_clicks() {
    let mut rows = Vec::new();
    for rate_hz in [8_000, 16_000, 22_050, 24_000, 48_000] {
        let input = vibrato_tone(rate_hz);
        for speed in SPEEDS {
            rows.push(measure("vibrato-140Hz", &input, rate_hz, speed, false));
        }
    }
    check(&rows);
    for r in &rows {
        assert!(
            r.curvature_ratio <= 1.1,
            "{} Hz × {}: max |Δ²| ×{:.2}",
            r.rate_hz,
            r.speed,
            r.curvature_ratio
        );
    }
}

/// The same output, sample for sample, whatever the input chunk size.
#[test]
fn chunk_size_does_not_change_the_output() {
    let (input, rate_hz) = fixture("caller-hello.l16-16k.wav");
    for speed in SPEEDS {
        let whole = stretch(rate_hz, speed, &input, input.len());
        for chunk in [1, 160, 320, 4_000] {
            assert!(stretch(rate_hz, speed, &input, chunk) == whole, "speed {speed}, chunk {chunk}");
        }
    }
}

/// `process` holds back at most `latency_ms` of input; `flush` emits it, including the speech
/// that ends right at the last sample.
#[test]
fn flush_emits_the_tail() {
    let (input, rate_hz) = fixture("caller-hello.l16-16k.wav");
    let speech = speech_span(&input);
    let cut = &input[..speech.start + (speech.end - speech.start) / 2]; // ends mid-word
    for speed in [0.5, 0.75, 1.25, 2.0] {
        let mut ts = TimeStretch::new(rate_hz, speed);
        let mut out = Vec::new();
        ts.process(cut, &mut out);
        let before = out.len();
        let held_ms = (cut.len() as f64 - before as f64 * speed) * 1000.0 / f64::from(rate_hz);
        assert!(held_ms > 0.0 && held_ms <= f64::from(ts.latency_ms()), "{speed}: held {held_ms:.1} ms");
        ts.flush(&mut out);
        assert_eq!(out.len(), (cut.len() as f64 / speed).round() as usize, "{speed}");
        // What flush added against the input that was held back (at speed < 1 the last few ms of
        // output come from past the end, i.e. from the silence flush pads with).
        let held = (held_ms * f64::from(rate_hz) / 1000.0).round() as usize;
        let level_db = 20.0 * (rms(&out[before..]) / rms(&cut[cut.len() - held..])).log10();
        println!(
            "speed {speed}: held back {held_ms:.1} ms, flush added {:.1} ms at {level_db:+.1} dB",
            (out.len() - before) as f64 * 1000.0 / f64::from(rate_hz)
        );
        assert!(level_db > -6.0, "{speed}: the tail was not emitted ({level_db:.1} dB)");
        // The next utterance starts clean.
        let mut again = Vec::new();
        ts.process(cut, &mut again);
        ts.flush(&mut again);
        assert!(again == out, "{speed}: flush did not start a new utterance");
    }
}

/// Barge-in: after `reset` nothing of the old utterance comes out.
#[test]
fn reset_drops_everything() {
    let (input, rate_hz) = fixture("caller-question.l16-16k.wav");
    for speed in [0.5, 1.25, 2.0] {
        let mut ts = TimeStretch::new(rate_hz, speed);
        let mut out = Vec::new();
        ts.process(&input[..input.len() / 2], &mut out);
        ts.reset();
        out.clear();
        ts.flush(&mut out);
        assert!(out.is_empty(), "{speed}: {} samples after reset", out.len());
        ts.process(&[0; 8_000], &mut out);
        ts.flush(&mut out);
        assert!(out.iter().all(|&s| s == 0), "{speed}: old audio after reset");
    }
}

/// Digital silence in, digital silence out, at every speed and rate.
#[test]
fn silence_in_silence_out() {
    for rate_hz in [8_000, 16_000, 48_000] {
        for speed in SPEEDS {
            let out = stretch(rate_hz, speed, &vec![0; rate_hz as usize], 320);
            assert!(out.iter().all(|&s| s == 0), "{rate_hz} × {speed}");
        }
    }
}

// ---- allocations ----------------------------------------------------------------------------

/// Counts this thread's allocations (tests run on parallel threads), passing everything on to the
/// system allocator.
struct CountingAlloc;

thread_local! {
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards to `System` unchanged; the bookkeeping touches only a thread-local `Cell`,
// which never allocates.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|a| a.set(a.get() + 1));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCS.try_with(|a| a.set(a.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// With `max_output_len` reserved, `process`, `flush` and `reset` never allocate.
#[test]
fn process_and_flush_do_not_allocate() {
    let (input, rate_hz) = fixture("caller-hello.l16-16k.wav");
    for speed in [0.5, 0.75, 1.0, 1.5, 2.0] {
        for chunk in [1, 320, 4_000] {
            let mut ts = TimeStretch::new(rate_hz, speed);
            let mut out = Vec::with_capacity(ts.max_output_len(chunk).max(ts.max_output_len(0)));
            let before = ALLOCS.with(Cell::get);
            for piece in input.chunks(chunk) {
                out.clear();
                ts.process(piece, &mut out);
            }
            out.clear();
            ts.flush(&mut out);
            ts.reset();
            let allocs = ALLOCS.with(Cell::get) - before;
            assert_eq!(allocs, 0, "speed {speed}, chunk {chunk}: {allocs} allocations");
        }
    }
}
