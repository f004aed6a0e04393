//! Answering-machine beep detector: a steady pure tone in the caller's audio.
//!
//! Each 20 ms frame at 16 kHz is scored with a bank of Goertzel filters from 400 to 2 000 Hz in
//! 25 Hz steps — half of a 20 ms frame's 50 Hz resolution, so an off-grid tone keeps ≥ 80 % of its
//! power in the nearest filter (a voicemail beep is one sinusoid, usually 440–1 400 Hz). A frame
//! is *tonal* when the strongest filter holds at least [`TONAL_SHARE`] of the frame's energy and
//! the frame is not quiet; a beep is [`MIN_BEEP_FRAMES`] consecutive tonal frames at the same
//! frequency (± two filters, 50 Hz). Speech never qualifies: its energy spreads over harmonics and formants, and its pitch
//! moves from frame to frame. Cost: 65 filters × 320 samples per frame, run only while the
//! conversation listens for a beep (the first minute of a call). Each filter's recurrence is a
//! serial chain through the samples, so the filters step side by side: eight per vector, and
//! [`BLOCK`] vectors per pass over the frame, so that enough independent chains are in flight to
//! fill the CPU's pipelines (one vector at a time waited on each step's latency: 14 µs a frame
//! on the 2-core machine, against 3.7 µs now; `beep_detector` in `benches/listen.rs`).

use std::f32::consts::PI;

/// Lowest and highest tone looked for, and the spacing of the filters (Hz).
const LOW_HZ: f32 = 400.0;
const HIGH_HZ: f32 = 2000.0;
const STEP_HZ: f32 = 25.0;
/// Share of the frame's energy the strongest filter must hold.
pub const TONAL_SHARE: f32 = 0.6;
/// Consecutive tonal frames that make a beep (200 ms).
pub const MIN_BEEP_FRAMES: u32 = 10;
/// Frames quieter than this (RMS, i16 units) are not tonal (−50 dBFS).
const MIN_RMS: f32 = 100.0;

/// Filters run side by side: one AVX register of f32.
const LANES: usize = 8;
/// Vectors of filters stepped together in one pass over the frame: three independent chains
/// hide a step's latency, and 65 filters fill three blocks of 24 with little padding. (All nine
/// vectors in one pass measured the same within noise, and spill registers.)
const BLOCK: usize = 3;

/// A detected beep.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Beep {
    /// The tone's frequency (the filter's centre), Hz.
    pub hz: f32,
    /// Frames it has lasted when reported.
    pub frames: u32,
}

/// Streaming detector for one call (16 kHz, any frame length ≥ 160 samples).
#[derive(Debug, Clone)]
pub struct BeepDetector {
    /// Goertzel coefficients `2·cos(2πf/fs)` per filter, in blocks of [`BLOCK`] × [`LANES`] (the
    /// last block padded with copies of the top filter, never chosen over it: ties keep the
    /// lower index).
    coeffs: Vec<[[f32; LANES]; BLOCK]>,
    run_bin: Option<usize>,
    run: u32,
    /// A beep was reported for the current run.
    reported: bool,
}

impl BeepDetector {
    pub fn new(rate_hz: u32) -> Self {
        let n = ((HIGH_HZ - LOW_HZ) / STEP_HZ) as usize + 1;
        let coeff =
            |i: usize| 2.0 * (2.0 * PI * (LOW_HZ + i.min(n - 1) as f32 * STEP_HZ) / rate_hz as f32).cos();
        let per_block = BLOCK * LANES;
        let coeffs = (0..n.div_ceil(per_block))
            .map(|b| std::array::from_fn(|g| std::array::from_fn(|k| coeff(b * per_block + g * LANES + k))))
            .collect();
        Self { coeffs, run_bin: None, run: 0, reported: false }
    }

    /// Scores one frame; returns the beep once, when its run reaches [`MIN_BEEP_FRAMES`].
    pub fn push(&mut self, frame: &[i16]) -> Option<Beep> {
        let bin = self.tonal_bin(frame);
        match (bin, self.run_bin) {
            (Some(b), Some(r)) if b.abs_diff(r) <= 2 => self.run += 1,
            (Some(b), _) => {
                self.run_bin = Some(b);
                self.run = 1;
                self.reported = false;
            }
            (None, _) => {
                self.run_bin = None;
                self.run = 0;
                self.reported = false;
            }
        }
        if self.run >= MIN_BEEP_FRAMES && !self.reported {
            self.reported = true;
            let bin = self.run_bin.unwrap_or(0);
            return Some(Beep { hz: LOW_HZ + bin as f32 * STEP_HZ, frames: self.run });
        }
        None
    }

    /// The filter holding most of the frame's energy, if the frame is a tone.
    fn tonal_bin(&self, frame: &[i16]) -> Option<usize> {
        let n = frame.len() as f32;
        let energy: f32 = frame.iter().map(|&s| f32::from(s) * f32::from(s)).sum();
        if n == 0.0 || (energy / n).sqrt() < MIN_RMS {
            return None;
        }
        let mut best = (0usize, 0f32);
        for (b, block) in self.coeffs.iter().enumerate() {
            let (mut s1, mut s2) = ([[0f32; LANES]; BLOCK], [[0f32; LANES]; BLOCK]);
            for &x in frame {
                let x = f32::from(x);
                for ((c, s1), s2) in block.iter().zip(&mut s1).zip(&mut s2) {
                    for k in 0..LANES {
                        let s0 = c[k].mul_add(s1[k], x) - s2[k];
                        s2[k] = s1[k];
                        s1[k] = s0;
                    }
                }
            }
            for (g, c) in block.iter().enumerate() {
                for k in 0..LANES {
                    // |X(f)|² of the frame; a full-scale sinusoid at f gives (n/2)²·A², and its
                    // energy is n·A²/2, so power·2/n over the energy is the share of the energy at f.
                    let (s1, s2) = (s1[g][k], s2[g][k]);
                    let power = s1 * s1 + s2 * s2 - c[k] * s1 * s2;
                    if power > best.1 {
                        best = ((b * BLOCK + g) * LANES + k, power);
                    }
                }
            }
        }
        let share = best.1 * 2.0 / n / energy;
        (share >= TONAL_SHARE).then_some(best.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(hz: f32, amp: f32, samples: usize, phase0: usize) -> Vec<i16> {
        (0..samples).map(|i| (amp * (2.0 * PI * hz * (i + phase0) as f32 / 16_000.0).sin()) as i16).collect()
    }

    fn frames_until_beep(d: &mut BeepDetector, audio: &[i16]) -> Option<(usize, Beep)> {
        audio.chunks(320).enumerate().find_map(|(i, f)| d.push(f).map(|b| (i, b)))
    }

    #[test]
    fn a_steady_tone_is_a_beep_after_200_ms() {
        for hz in [440.0, 1000.0, 1400.0, 1975.0] {
            let mut d = BeepDetector::new(16_000);
            let audio = tone(hz, 8000.0, 16_000 / 2, 0);
            let (frame, beep) = frames_until_beep(&mut d, &audio).expect("beep");
            assert_eq!(frame as u32 + 1, MIN_BEEP_FRAMES, "{hz} Hz");
            assert!((beep.hz - hz).abs() <= STEP_HZ, "{hz} Hz detected as {}", beep.hz);
        }
    }

    #[test]
    fn a_short_blip_or_a_quiet_hum_is_not() {
        let mut d = BeepDetector::new(16_000);
        assert!(frames_until_beep(&mut d, &tone(1000.0, 8000.0, 320 * 8, 0)).is_none(), "160 ms");
        let mut d = BeepDetector::new(16_000);
        assert!(frames_until_beep(&mut d, &tone(1000.0, 50.0, 16_000, 0)).is_none(), "−56 dBFS");
    }

    #[test]
    fn reported_once_per_tone() {
        let mut d = BeepDetector::new(16_000);
        let audio = tone(1000.0, 8000.0, 16_000, 0);
        let beeps = audio.chunks(320).filter_map(|f| d.push(f)).count();
        assert_eq!(beeps, 1);
    }

    #[test]
    fn speech_like_harmonics_and_noise_are_not_a_beep() {
        // A voiced sound: 140 Hz fundamental with ten harmonics and a gliding pitch.
        let mut d = BeepDetector::new(16_000);
        let audio: Vec<i16> = (0..16_000 * 2)
            .map(|i| {
                let t = i as f32 / 16_000.0;
                let f0 = 140.0 + 30.0 * (2.0 * PI * 0.7 * t).sin();
                (1..=10).map(|h| 1500.0 / h as f32 * (2.0 * PI * f0 * h as f32 * t).sin()).sum::<f32>() as i16
            })
            .collect();
        assert!(frames_until_beep(&mut d, &audio).is_none());
        // White-ish noise.
        let mut d = BeepDetector::new(16_000);
        let mut x: u32 = 1;
        let noise: Vec<i16> = (0..16_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x % 16_000) as i16 - 8_000
            })
            .collect();
        assert!(frames_until_beep(&mut d, &noise).is_none());
    }
}
