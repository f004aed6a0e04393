//! The agent's `ambientSound`: three synthesized, seamlessly looping beds (office, coffee shop,
//! outdoor) embedded in the binary, and the per-call mixer that adds one under every outbound
//! 16 kHz frame — silence included, so the room never drops out between utterances.
//!
//! # Beds ([`AmbientBed`])
//! `audio-fixtures/ambient/generate.sh` makes them (sox + espeak-ng, deterministic; the README
//! there lists their content): 10 s each, 16 kHz mono G.711 μ-law, peak −1 dBFS. The script
//! crossfades the last second of 11 s of material into the first, so the last sample runs on
//! into the first and the loop has no seam. The files are compiled in with `include_bytes!` (a
//! deployed binary needs no asset directory) and decoded once, at first use, into an
//! `Arc<[i16]>` shared by every call ([`AmbientBed::get`]). μ-law's quantisation noise is
//! ≈ 38 dB under the bed and scales with it, so it is 70 dB under full scale once mixed.
//!
//! # Level ([`AmbientMixer::LEVEL_DBFS`])
//! The mixer scales each bed so its long-term RMS *as mixed* is −32 dBFS (20·log10(RMS / 32768),
//! the convention of `sox stats`), whatever its stored level. TTS speech sits around −21 dBFS RMS
//! over an utterance (the espeak-ng fixtures: −21.5 / −20.9 dBFS) and −16 to −18 dBFS while
//! voiced, so the bed is 11–16 dB under the agent: clearly a room in the pauses, masked under
//! speech, and too quiet to trip the caller side's VAD or echo canceller into treating it as talk.
//!
//! # Never clipping speech ([`AmbientMixer::mix`])
//! Output = speech + bed, saturated to the i16 range. Where speech alone is in range (always: it
//! is an i16), saturating the *sum* means only the bed's contribution shrinks — to exactly the
//! headroom left by the speech sample, never changing sign — so the speech itself is bit-exact
//! wherever speech + bed fits and untouched everywhere. The bed peaks ≈ −14 to −17 dBFS as
//! mixed, so this only happens under speech peaks within ≈ 0.2–1.5 dB of full scale, where the
//! sample-level reduction of a bed 30 dB under the speech is masked.
//!
//! # Start
//! A call starts at a caller-chosen offset ([`AmbientMixer::new`]; [`AmbientMixer::random_start`]
//! picks one) so simultaneous calls do not play the same café in lockstep, and the bed fades in
//! over [`AmbientMixer::FADE_IN_MS`] so the first frame has no step.
//!
//! `AmbientSound::None` has no bed and no mixer: the silence between utterances stays exact
//! zeros.

use std::sync::{Arc, OnceLock};

use super::g711::mulaw_decode;
use crate::agent::AmbientSound;

/// Why a WAV could not be used as a bed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmbientError {
    #[error("not a RIFF/WAVE file")]
    NotWav,
    #[error("WAV has no `{chunk}` chunk")]
    MissingChunk { chunk: &'static str },
    #[error(
        "unsupported WAV: format tag {format_tag}, {channels} channels, {sample_rate_hz} Hz, \
         {bits_per_sample} bits (want mono 16 kHz μ-law or 16-bit PCM)"
    )]
    Unsupported { format_tag: u16, channels: u16, sample_rate_hz: u32, bits_per_sample: u16 },
    #[error("bed is {samples} samples long; at least {min_samples} needed")]
    TooShort { samples: usize, min_samples: usize },
    #[error("bed is silent")]
    Silent,
}

pub type Result<T, E = AmbientError> = std::result::Result<T, E>;

const OFFICE_WAV: &[u8] = include_bytes!("../../audio-fixtures/ambient/office.mulaw-16k.wav");
const COFFEE_SHOP_WAV: &[u8] = include_bytes!("../../audio-fixtures/ambient/coffee-shop.mulaw-16k.wav");
const OUTDOOR_WAV: &[u8] = include_bytes!("../../audio-fixtures/ambient/outdoor.mulaw-16k.wav");

/// Decoded beds, one cell per kind so a process only decodes the beds its agents use.
static OFFICE: OnceLock<Arc<AmbientBed>> = OnceLock::new();
static COFFEE_SHOP: OnceLock<Arc<AmbientBed>> = OnceLock::new();
static OUTDOOR: OnceLock<Arc<AmbientBed>> = OnceLock::new();

/// One looping ambient bed at 16 kHz, shared by every call that uses it.
#[derive(Debug)]
pub struct AmbientBed {
    /// The loop: sample `len − 1` is followed by sample 0. Shared with every mixer.
    samples: Arc<[i16]>,
    /// RMS of `samples` (linear, i16 scale), measured once so each mixer's gain puts the bed at
    /// [`AmbientMixer::LEVEL_DBFS`] whatever level it was stored at.
    rms: f64,
}

impl AmbientBed {
    /// Sample rate of every bed and of the frames [`AmbientMixer::mix`] takes.
    pub const SAMPLE_RATE_HZ: u32 = 16_000;
    /// Shortest accepted bed (1 s): shorter loops are heard as a loop.
    pub const MIN_SAMPLES: usize = Self::SAMPLE_RATE_HZ as usize;

    /// The shared bed for `kind`, decoded from the embedded WAV on first use; `None` for
    /// [`AmbientSound::None`].
    pub fn get(kind: AmbientSound) -> Option<Arc<AmbientBed>> {
        let (cell, wav) = match kind {
            AmbientSound::None => return None,
            AmbientSound::Office => (&OFFICE, OFFICE_WAV),
            AmbientSound::CoffeeShop => (&COFFEE_SHOP, COFFEE_SHOP_WAV),
            AmbientSound::Outdoor => (&OUTDOOR, OUTDOOR_WAV),
        };
        let bed = cell.get_or_init(|| {
            // The three files are compiled in and decoded by this module's tests, so failure here
            // is a build defect, not a runtime condition.
            Arc::new(Self::from_wav(wav).expect("embedded ambient bed decodes"))
        });
        Some(Arc::clone(bed))
    }

    /// The bed for `kind` at `rate_hz` (resampled once per kind and rate, then shared), for
    /// mixing straight into wire-rate frames.
    pub fn at_rate(kind: AmbientSound, rate_hz: u32) -> Option<Arc<AmbientBed>> {
        type Cache = std::sync::Mutex<std::collections::HashMap<(u8, u32), Arc<AmbientBed>>>;
        static AT_RATE: OnceLock<Cache> = OnceLock::new();
        let bed = Self::get(kind)?;
        if rate_hz == Self::SAMPLE_RATE_HZ {
            return Some(bed);
        }
        let mut cache = AT_RATE.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
        let entry = cache.entry((kind as u8, rate_hz)).or_insert_with(|| {
            let samples = crate::audio::sinc::resample_block(bed.samples(), Self::SAMPLE_RATE_HZ, rate_hz);
            Arc::new(Self::from_samples(samples).expect("a resampled bed is as long as its source"))
        });
        Some(Arc::clone(entry))
    }

    /// A bed from a mono 16 kHz WAV (G.711 μ-law or 16-bit PCM), which must loop seamlessly.
    pub fn from_wav(bytes: &[u8]) -> Result<Self> {
        if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
            return Err(AmbientError::NotWav);
        }
        let mut format = None;
        let mut pos = 12;
        while pos + 8 <= bytes.len() {
            let len = u32::from_le_bytes([bytes[pos + 4], bytes[pos + 5], bytes[pos + 6], bytes[pos + 7]]);
            let body = &bytes[pos + 8..(pos + 8).saturating_add(len as usize).min(bytes.len())];
            match &bytes[pos..pos + 4] {
                b"fmt " if body.len() >= 16 => {
                    let u16_at = |i: usize| u16::from_le_bytes([body[i], body[i + 1]]);
                    let rate = u32::from_le_bytes([body[4], body[5], body[6], body[7]]);
                    format = Some((u16_at(0), u16_at(2), rate, u16_at(14)));
                }
                b"data" => {
                    let (format_tag, channels, sample_rate_hz, bits_per_sample) =
                        format.ok_or(AmbientError::MissingChunk { chunk: "fmt " })?;
                    let samples: Vec<i16> = match (format_tag, channels, sample_rate_hz, bits_per_sample) {
                        (7, 1, Self::SAMPLE_RATE_HZ, 8) => body.iter().map(|&c| mulaw_decode(c)).collect(),
                        (1, 1, Self::SAMPLE_RATE_HZ, 16) => {
                            body.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect()
                        }
                        _ => {
                            return Err(AmbientError::Unsupported {
                                format_tag,
                                channels,
                                sample_rate_hz,
                                bits_per_sample,
                            })
                        }
                    };
                    return Self::from_samples(samples);
                }
                _ => {}
            }
            pos += 8 + len as usize + (len as usize & 1);
        }
        Err(AmbientError::MissingChunk { chunk: "data" })
    }

    /// A bed from 16 kHz samples, which must loop seamlessly.
    pub fn from_samples(samples: impl Into<Arc<[i16]>>) -> Result<Self> {
        let samples: Arc<[i16]> = samples.into();
        if samples.len() < Self::MIN_SAMPLES {
            return Err(AmbientError::TooShort { samples: samples.len(), min_samples: Self::MIN_SAMPLES });
        }
        let energy: f64 = samples.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
        let rms = (energy / samples.len() as f64).sqrt();
        if rms < 1.0 {
            return Err(AmbientError::Silent);
        }
        Ok(Self { samples, rms })
    }

    /// The loop as stored (before the mixer's gain).
    pub fn samples(&self) -> &[i16] {
        &self.samples
    }

    /// Length of the loop in samples.
    pub fn len_samples(&self) -> usize {
        self.samples.len()
    }

    /// Length of the loop in milliseconds.
    pub fn duration_ms(&self) -> u64 {
        self.samples.len() as u64 * 1000 / u64::from(Self::SAMPLE_RATE_HZ)
    }

    /// RMS level as stored, 20·log10(RMS / 32768).
    pub fn stored_rms_dbfs(&self) -> f32 {
        (20.0 * (self.rms / 32768.0).log10()) as f32
    }
}

/// Adds one bed under a call's outbound audio: one per call, created with the call.
#[derive(Debug)]
pub struct AmbientMixer {
    /// The bed's loop (shared; cloned `Arc` of [`AmbientBed::samples`]).
    samples: Arc<[i16]>,
    /// Next loop sample to mix; always `< samples.len()`.
    position: usize,
    /// Bed gain in Q15 (32768 = unity) that puts its RMS at [`Self::LEVEL_DBFS`]; < 2.0, so
    /// `sample × gain` fits an i32.
    gain_q15: i32,
    /// Samples of the start-up fade-in still to go (counts down to 0, then the plain path).
    fade_remaining: u32,
}

impl AmbientMixer {
    /// RMS of the bed as mixed, 20·log10(RMS / 32768) over the whole loop: 11–16 dB under TTS
    /// speech (see the module doc).
    pub const LEVEL_DBFS: f32 = -32.0;
    /// Linear fade-in of the bed at the start of a call.
    pub const FADE_IN_MS: u32 = 200;
    /// [`Self::FADE_IN_MS`] in samples at 16 kHz.
    pub const FADE_IN_SAMPLES: u32 = Self::FADE_IN_MS * AmbientBed::SAMPLE_RATE_HZ / 1000;
    /// Largest gain the Q15 product can hold without overflowing i32 (just under 2.0).
    const MAX_GAIN_Q15: i32 = 0xFFFF;

    /// A mixer starting `start_offset_samples` into the loop (taken modulo its length). Pass a
    /// different offset per call (e.g. [`Self::random_start`]) so calls do not sound alike.
    pub fn new(bed: Arc<AmbientBed>, start_offset_samples: usize) -> Self {
        let target_rms = 32768.0 * 10f64.powf(f64::from(Self::LEVEL_DBFS) / 20.0);
        let gain_q15 = (target_rms / bed.rms * 32768.0).round().min(f64::from(Self::MAX_GAIN_Q15)) as i32;
        let position = start_offset_samples % bed.samples.len();
        Self { samples: Arc::clone(&bed.samples), position, gain_q15, fade_remaining: Self::FADE_IN_SAMPLES }
    }

    /// A mixer starting at a uniformly random point of the loop.
    pub fn random_start(bed: Arc<AmbientBed>) -> Self {
        let offset = rand::Rng::gen_range(&mut rand::thread_rng(), 0..bed.samples.len());
        Self::new(bed, offset)
    }

    /// Next loop sample to be mixed (for tests and diagnostics).
    pub fn position_samples(&self) -> usize {
        self.position
    }

    /// The bed's gain as mixed, in dB.
    pub fn gain_db(&self) -> f32 {
        20.0 * (self.gain_q15 as f32 / 32768.0).log10()
    }

    /// Adds the bed under `frame` (16 kHz i16, any length, silence included) in place and moves
    /// on by `frame.len()` samples. Speech is never clipped: where speech + bed would exceed full
    /// scale, the sum saturates, which reduces only the bed's share (see the module doc).
    pub fn mix(&mut self, frame: &mut [i16]) {
        let mut rest = frame;
        while !rest.is_empty() {
            let run = rest.len().min(self.samples.len() - self.position);
            let (head, tail) = rest.split_at_mut(run);
            let bed = &self.samples[self.position..self.position + run];
            if self.fade_remaining > 0 {
                Self::mix_fading(&mut self.fade_remaining, self.gain_q15, head, bed);
            } else {
                mix_run(head, bed, self.gain_q15);
            }
            self.position += run;
            if self.position == self.samples.len() {
                self.position = 0;
            }
            rest = tail;
        }
    }

    /// The fade-in: the first `fade_remaining` samples of `out` ramp the gain up linearly; the
    /// rest (if any) take the plain path.
    #[cold]
    fn mix_fading(fade_remaining: &mut u32, gain_q15: i32, out: &mut [i16], bed: &[i16]) {
        let n = out.len().min(*fade_remaining as usize);
        for (s, &b) in out[..n].iter_mut().zip(&bed[..n]) {
            let done = (Self::FADE_IN_SAMPLES - *fade_remaining) as i32;
            // gain_q15 < 2^16 and done < 2^13: the product fits an i32.
            let gain = gain_q15 * done / Self::FADE_IN_SAMPLES as i32;
            *s = add_saturating(*s, b, gain);
            *fade_remaining -= 1;
        }
        mix_run(&mut out[n..], &bed[n..], gain_q15);
    }
}

/// `out[i] += bed[i] × gain`, saturating: the plain per-sample loop (auto-vectorised).
#[inline]
fn mix_run(out: &mut [i16], bed: &[i16], gain_q15: i32) {
    for (s, &b) in out.iter_mut().zip(bed) {
        *s = add_saturating(*s, b, gain_q15);
    }
}

/// `speech + round(bed × gain)` saturated to i16: `speech` is never changed, only the bed's share.
#[inline(always)]
fn add_saturating(speech: i16, bed: i16, gain_q15: i32) -> i16 {
    let scaled = (i32::from(bed) * gain_q15 + (1 << 14)) >> 15;
    (i32::from(speech) + scaled).clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    const KINDS: [AmbientSound; 3] = [AmbientSound::Office, AmbientSound::CoffeeShop, AmbientSound::Outdoor];

    fn rms_dbfs(samples: &[i16]) -> f64 {
        let energy: f64 = samples.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
        20.0 * ((energy / samples.len() as f64).sqrt() / 32768.0).log10()
    }

    #[test]
    fn embedded_beds_decode_once_and_are_shared() {
        assert!(AmbientBed::get(AmbientSound::None).is_none());
        for kind in KINDS {
            let a = AmbientBed::get(kind).unwrap();
            let b = AmbientBed::get(kind).unwrap();
            assert!(Arc::ptr_eq(&a, &b), "{kind:?} decoded twice");
            assert_eq!(a.len_samples(), 160_000, "{kind:?}: 10 s at 16 kHz");
            assert_eq!(a.duration_ms(), 10_000);
            // Stored well above the mixed level, so the gain is an attenuation.
            assert!(a.stored_rms_dbfs() > AmbientMixer::LEVEL_DBFS + 6.0, "{kind:?}");
        }
    }

    #[test]
    fn rejects_what_is_not_a_bed() {
        assert_eq!(AmbientBed::from_wav(b"not a wav").unwrap_err(), AmbientError::NotWav);
        assert_eq!(
            AmbientBed::from_samples(vec![100i16; 100]).unwrap_err(),
            AmbientError::TooShort { samples: 100, min_samples: 16_000 }
        );
        assert_eq!(AmbientBed::from_samples(vec![0i16; 16_000]).unwrap_err(), AmbientError::Silent);
        // A 16-bit 8 kHz WAV: the right shape but the wrong rate.
        let mut wav = Vec::new();
        wav.extend_from_slice(b"RIFF\0\0\0\0WAVEfmt \x10\0\0\0");
        for field in
            [&1u16.to_le_bytes()[..], &1u16.to_le_bytes(), &8000u32.to_le_bytes(), &16000u32.to_le_bytes()]
        {
            wav.extend_from_slice(field);
        }
        wav.extend_from_slice(&2u16.to_le_bytes());
        wav.extend_from_slice(&16u16.to_le_bytes());
        wav.extend_from_slice(b"data\x04\0\0\0\x01\0\x02\0");
        assert!(matches!(
            AmbientBed::from_wav(&wav).unwrap_err(),
            AmbientError::Unsupported { format_tag: 1, sample_rate_hz: 8000, .. }
        ));
    }

    /// Level as mixed over whole loops, across frame sizes (10/20/30 ms and odd lengths) and
    /// offsets: the split into frames must not change a single sample.
    #[test]
    fn frame_size_and_offset_do_not_change_the_output() {
        let bed = AmbientBed::get(AmbientSound::CoffeeShop).unwrap();
        let len = bed.len_samples();
        for offset in [0, 1, 12_345, len - 1, len + 7] {
            let mut reference = vec![0i16; 2 * len];
            AmbientMixer::new(Arc::clone(&bed), offset).mix(&mut reference);
            for frame in [1, 160, 320, 480, 333, 4096] {
                let mut mixer = AmbientMixer::new(Arc::clone(&bed), offset);
                let mut out = vec![0i16; 2 * len];
                for chunk in out.chunks_mut(frame) {
                    mixer.mix(chunk);
                }
                assert_eq!(out, reference, "offset {offset}, frame {frame}");
                assert_eq!(mixer.position_samples(), offset % len);
            }
            let level = rms_dbfs(&reference[len..]);
            assert!((level - f64::from(AmbientMixer::LEVEL_DBFS)).abs() < 0.1, "offset {offset}: {level:.2}");
        }
    }

    #[test]
    fn fades_in_from_zero() {
        for kind in KINDS {
            let bed = AmbientBed::get(kind).unwrap();
            let mut mixer = AmbientMixer::new(bed, 5_000);
            let mut out = vec![0i16; 16_000];
            mixer.mix(&mut out);
            assert!(out[0] == 0 && out[..16].iter().all(|s| s.abs() < 8), "{kind:?}: {:?}", &out[..16]);
            // The first 20 ms are quieter than the same samples at full gain.
            let plain = rms_dbfs(&out[4_000..16_000]);
            assert!(rms_dbfs(&out[..320]) < plain - 10.0, "{kind:?}");
        }
    }

    #[test]
    fn saturates_the_sum_not_the_speech() {
        assert_eq!(add_saturating(32_000, 20_000, 32_768), i16::MAX);
        assert_eq!(add_saturating(-32_000, -20_000, 32_768), i16::MIN);
        assert_eq!(add_saturating(32_000, -2_000, 32_768), 30_000);
        assert_eq!(add_saturating(i16::MAX, 5, 32_768), i16::MAX);
        assert_eq!(add_saturating(i16::MIN, -5, 32_768), i16::MIN);
        assert_eq!(add_saturating(0, 1000, 16_384), 500);
        assert_eq!(add_saturating(0, -1000, 16_384), -500);
    }
}
