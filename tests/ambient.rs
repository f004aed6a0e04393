//! The agent's ambient beds through the public API, on the embedded beds themselves: the level as
//! mixed, the loop seam, speech never clipped, silence + bed = bed, calls that differ, beds that
//! sound like what they are called, and a script that regenerates them byte for byte.
//! `cargo test --test ambient -- --nocapture` prints the measurements.

use std::path::Path;
use std::sync::Arc;

use realfft::RealFftPlanner;
use switchboard::agent::AmbientSound;
use switchboard::audio::ambient::{AmbientBed, AmbientMixer};

const KINDS: [AmbientSound; 3] = [AmbientSound::Office, AmbientSound::CoffeeShop, AmbientSound::Outdoor];
const RATE_HZ: usize = AmbientBed::SAMPLE_RATE_HZ as usize;
/// Past the mixer's fade-in, so what follows is the bed at its steady gain.
const SETTLED: usize = AmbientMixer::FADE_IN_SAMPLES as usize;

fn bed(kind: AmbientSound) -> Arc<AmbientBed> {
    AmbientBed::get(kind).unwrap()
}

fn rms(samples: &[i16]) -> f64 {
    let energy: f64 = samples.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    (energy / samples.len() as f64).sqrt()
}

fn dbfs(rms: f64) -> f64 {
    20.0 * (rms / 32768.0).log10()
}

/// The bed as one call hears it on silence: `len` samples from `offset`, after the fade-in.
fn mixed_bed(kind: AmbientSound, offset: usize, len: usize) -> Vec<i16> {
    let mut mixer = AmbientMixer::new(bed(kind), offset);
    let mut out = vec![0i16; SETTLED + len];
    for frame in out.chunks_mut(320) {
        mixer.mix(frame);
    }
    out.split_off(SETTLED)
}

/// Long-term RMS of each bed as mixed (one whole loop) is LEVEL_DBFS ± 1 dB, and the bed is
/// steady: no second of it is more than 6 dB off that level.
#[test]
fn level_as_mixed_is_level_dbfs() {
    let target = f64::from(AmbientMixer::LEVEL_DBFS);
    println!("bed          stored RMS  mixed RMS  peak     1 s windows      gain");
    for kind in KINDS {
        let len = bed(kind).len_samples();
        let out = mixed_bed(kind, 0, len);
        let level = dbfs(rms(&out));
        let peak = dbfs(f64::from(out.iter().map(|s| s.unsigned_abs()).max().unwrap()));
        let seconds: Vec<f64> = out.chunks_exact(RATE_HZ).map(|s| dbfs(rms(s))).collect();
        let (lo, hi) = seconds.iter().fold((f64::MAX, f64::MIN), |(lo, hi), &l| (lo.min(l), hi.max(l)));
        println!(
            "{:<12} {:>7.2} dB  {level:>6.2} dB  {peak:>6.1} dB  {lo:>6.1}…{hi:>5.1} dB  {:>6.1} dB",
            kind.as_str(),
            bed(kind).stored_rms_dbfs(),
            AmbientMixer::new(bed(kind), 0).gain_db()
        );
        assert!((level - target).abs() <= 1.0, "{kind:?}: {level:.2} dBFS");
        assert!(lo > target - 6.0 && hi < target + 6.0, "{kind:?}: 1 s levels {lo:.1}…{hi:.1} dBFS");
        // Peaks stay far from full scale, so the bed only ever gives way under near-full-scale speech.
        assert!(peak < -12.0, "{kind:?}: peak {peak:.1} dBFS");
    }
}

/// Across the loop point the bed behaves like the audio around it: the sample-to-sample step from
/// the last sample to the first is no larger than the largest step in the 20 ms on either side,
/// and the level change between the 50 ms before and after the seam is no larger than the 99th
/// percentile of that change at every other 10 ms point of the bed. (These beds are noise-like:
/// the checks bound the seam, they cannot tell the script's crossfade from a lucky hard cut.)
#[test]
fn loop_seam_is_inaudible() {
    for kind in KINDS {
        let b = bed(kind);
        let x = b.samples();
        let n = x.len();
        let step = |i: usize| (i32::from(x[(i + 1) % n]) - i32::from(x[i % n])).unsigned_abs();
        let seam_step = step(n - 1);
        let local = RATE_HZ / 50; // 20 ms
        let local_max = (n - 1 - local..n - 1).chain(n..n + local).map(step).max().unwrap();

        let window = RATE_HZ / 20; // 50 ms
        let level_change = |at: usize| {
            let before: Vec<i16> = (0..window).map(|k| x[(at + n - window + k) % n]).collect();
            let after: Vec<i16> = (0..window).map(|k| x[(at + k) % n]).collect();
            (dbfs(rms(&before)) - dbfs(rms(&after))).abs()
        };
        let mut levels: Vec<f64> =
            (1..n / (RATE_HZ / 100)).map(|k| level_change(k * RATE_HZ / 100)).collect();
        levels.sort_unstable_by(f64::total_cmp);
        let (seam_level, level_p99) = (level_change(0), levels[levels.len() * 99 / 100]);
        println!(
            "{:<12} seam step {seam_step:>5} (largest within 20 ms: {local_max:>5}), \
             level change {seam_level:.2} dB (p99 elsewhere {level_p99:.2} dB)",
            kind.as_str()
        );
        assert!(seam_step <= local_max, "{kind:?}: seam step {seam_step} > local max {local_max}");
        assert!(seam_level <= level_p99, "{kind:?}: level change {seam_level:.2} dB > p99 {level_p99:.2} dB");
    }
}

/// A speech-like signal at full scale (caller-hello normalised to a ±32767 peak, and a harmonic
/// tone driven into hard clipping so it sits at full scale for long stretches): the output never
/// wraps, the speech is bit-exact wherever speech + bed fits in 16 bits (output − bed = speech),
/// and where it does not the output sits at full scale with the bed's share reduced, never
/// reversed — the speech is never the part that gives way.
#[test]
fn speech_is_never_clipped() {
    let hello = fixture_l16("caller-hello.l16-16k.wav");
    let peak = hello.iter().map(|s| i32::from(s.unsigned_abs())).max().unwrap();
    let hello: Vec<i16> = hello.iter().map(|&s| (i32::from(s) * 32767 / peak) as i16).collect();
    let buzz: Vec<i16> = (0..3 * RATE_HZ)
        .map(|n| {
            let t = n as f64 / RATE_HZ as f64;
            let tau = 2.0 * std::f64::consts::PI;
            let v = (tau * 140.0 * t).sin() + 0.6 * (tau * 420.0 * t).sin() + 0.3 * (tau * 1300.0 * t).sin();
            (v * 40_000.0 * (0.5 + 0.5 * (tau * 4.0 * t).sin())).clamp(-32768.0, 32767.0) as i16
        })
        .collect();
    for (name, speech) in [("caller-hello", &hello), ("clipped buzz", &buzz)] {
        for kind in KINDS {
            for offset in [0, 77_777] {
                let bed_only = mixed_bed(kind, offset, speech.len());
                let mut mixer = AmbientMixer::new(bed(kind), offset);
                let mut silence = vec![0i16; SETTLED];
                mixer.mix(&mut silence);
                let mut out = speech.clone();
                for frame in out.chunks_mut(320) {
                    mixer.mix(frame);
                }
                let mut limited = 0;
                for i in 0..out.len() {
                    let (s, b, o) = (i32::from(speech[i]), i32::from(bed_only[i]), i32::from(out[i]));
                    if (-32768..=32767).contains(&(s + b)) {
                        assert_eq!(o - b, s, "{name}/{kind:?}@{offset}: sample {i} changed");
                    } else {
                        limited += 1;
                        let share = o - s;
                        assert_eq!(o, (s + b).clamp(-32768, 32767), "{name}/{kind:?}: sample {i}");
                        assert!(
                            share.signum() != -b.signum() && share.abs() < b.abs(),
                            "{name}/{kind:?}: {i}"
                        );
                    }
                }
                if offset == 0 {
                    println!(
                        "{name:<13} {:<12} bed reduced on {limited} of {} samples",
                        kind.as_str(),
                        out.len()
                    );
                }
            }
        }
    }
}

/// Silence in, the bed out: every sample is the stored bed times the mixer's gain (±1 LSB of
/// rounding), across the loop point, frame after frame.
#[test]
fn silence_plus_bed_is_the_bed() {
    for kind in KINDS {
        let b = bed(kind);
        let n = b.len_samples();
        let offset = n - 5_000; // wraps 5,000 samples into the settled part
        let out = mixed_bed(kind, offset, n + 10_000);
        let gain = 10f64.powf(f64::from(AmbientMixer::new(Arc::clone(&b), 0).gain_db()) / 20.0);
        for (i, &o) in out.iter().enumerate() {
            let want = f64::from(b.samples()[(offset + SETTLED + i) % n]) * gain;
            assert!((f64::from(o) - want).abs() <= 1.0, "{kind:?}: sample {i}: {o} vs {want:.1}");
        }
    }
    assert!(AmbientBed::get(AmbientSound::None).is_none(), "none has no bed: silence stays zeros");
}

/// Two calls on the same bed do not play the same audio: different offsets give uncorrelated
/// output, and random starts land on different samples.
#[test]
fn calls_start_at_different_points() {
    for kind in KINDS {
        let n = bed(kind).len_samples();
        let a = mixed_bed(kind, 0, RATE_HZ);
        let b = mixed_bed(kind, n / 3, RATE_HZ);
        let dot: f64 = a.iter().zip(&b).map(|(&x, &y)| f64::from(x) * f64::from(y)).sum();
        let corr = dot / (rms(&a) * rms(&b) * a.len() as f64);
        assert!(corr.abs() < 0.3, "{kind:?}: correlation {corr:.2}");
        let mut starts: Vec<usize> =
            (0..50).map(|_| AmbientMixer::random_start(bed(kind)).position_samples()).collect();
        starts.sort_unstable();
        starts.dedup();
        assert!(starts.len() >= 45, "{kind:?}: only {} distinct starts of 50", starts.len());
        assert!(starts.iter().all(|&s| s < n));
    }
}

/// Energy below 250 Hz, 250 Hz–4 kHz and above 4 kHz (1024-point Hann frames, hop 512). Outdoor
/// (wind, traffic) is the boomy one: its low band outweighs its 250–4000 Hz band by ≥ 3 dB more
/// than either other bed's does. The coffee shop (clinks, steam wand) is the bright one: its share
/// of energy above 4 kHz is ≥ 6 dB above either other bed's.
#[test]
fn beds_are_spectrally_distinct() {
    let db = |a: f64, b: f64| 10.0 * (a / b).log10();
    let bands: Vec<[f64; 3]> = KINDS.iter().map(|&k| band_fractions(bed(k).samples())).collect();
    let low_vs_mid_db: Vec<f64> = bands.iter().map(|b| db(b[0], b[1])).collect();
    for ((kind, b), lm) in KINDS.iter().zip(&bands).zip(&low_vs_mid_db) {
        println!(
            "{:<12} <250 Hz {:>5.1} %   250–4000 Hz {:>5.1} %   >4 kHz {:>5.2} %   low/mid {lm:>5.1} dB",
            kind.as_str(),
            100.0 * b[0],
            100.0 * b[1],
            100.0 * b[2]
        );
    }
    let ([office, cafe, outdoor], [lm_office, lm_cafe, lm_outdoor]) =
        ([bands[0], bands[1], bands[2]], [low_vs_mid_db[0], low_vs_mid_db[1], low_vs_mid_db[2]]);
    assert!(lm_outdoor > lm_office + 3.0, "outdoor not boomier than office");
    assert!(lm_outdoor > lm_cafe + 3.0, "outdoor not boomier than coffee-shop");
    assert!(db(cafe[2], office[2]) > 6.0, "coffee-shop not brighter than office");
    assert!(db(cafe[2], outdoor[2]) > 6.0, "coffee-shop not brighter than outdoor");
}

fn band_fractions(x: &[i16]) -> [f64; 3] {
    const N: usize = 1024;
    let fft = RealFftPlanner::<f64>::new().plan_fft_forward(N);
    let window: Vec<f64> =
        (0..N).map(|i| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / N as f64).cos()).collect();
    let (mut input, mut spectrum) = (fft.make_input_vec(), fft.make_output_vec());
    let mut energy = [0.0f64; 3];
    for start in (0..x.len() - N).step_by(N / 2) {
        for i in 0..N {
            input[i] = f64::from(x[start + i]) * window[i];
        }
        fft.process(&mut input, &mut spectrum).unwrap();
        for (k, c) in spectrum.iter().enumerate() {
            let hz = k * RATE_HZ / N;
            energy[if hz < 250 {
                0
            } else if hz < 4000 {
                1
            } else {
                2
            }] += c.norm_sqr();
        }
    }
    let total: f64 = energy.iter().sum();
    energy.map(|e| e / total)
}

/// `audio-fixtures/ambient/generate.sh OUT` reproduces the committed beds byte for byte (needs
/// sox and espeak-ng, as every fixture script does: scripts/setup-system.sh installs them).
#[test]
fn script_regenerates_byte_identical_beds() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("audio-fixtures/ambient");
    let out = tempfile::tempdir().unwrap();
    let run = std::process::Command::new("bash")
        .arg(dir.join("generate.sh"))
        .arg(out.path())
        .output()
        .expect("bash runs");
    assert!(run.status.success(), "generate.sh failed: {}", String::from_utf8_lossy(&run.stderr));
    for name in ["office", "coffee-shop", "outdoor"] {
        let file = format!("{name}.mulaw-16k.wav");
        let fresh = std::fs::read(out.path().join(&file)).unwrap();
        let committed = std::fs::read(dir.join(&file)).unwrap();
        assert!(fresh == committed, "{file}: regenerated bytes differ from the committed file");
    }
}

/// The samples of a 16-bit mono WAV from `audio-fixtures/`.
fn fixture_l16(name: &str) -> Vec<i16> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("audio-fixtures").join(name);
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
