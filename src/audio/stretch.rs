//! Streaming, pitch-preserving time-stretch for the agent's `voiceSpeed` (0.5–2.0) when the TTS
//! engine has no speaking rate of its own: WSOLA (waveform-similarity overlap-add, Verhelst &
//! Roelands 1993) on mono i16, any chunk sizes in, carrying its state across calls.
//!
//! # Algorithm
//! The output is built from segments of the input, [`TimeStretch::SEGMENT_MS`] (20 ms) long, laid
//! down every synthesis hop `Hs` = [`TimeStretch::HOP_MS`] (10 ms, so consecutive segments
//! overlap by half) and cross-faded with a complementary sin²/cos² (Hann) window pair that sums
//! to exactly 1. Segment `k` is taken from around the nominal input position `k · Ha`, with the
//! analysis hop `Ha = speed · Hs`: faster speech skips input between segments, slower speech
//! reuses it. Because each segment is a verbatim piece of the input, its pitch is the input's.
//!
//! What keeps the joins clean is the search: segment `k` may start anywhere within
//! ±[`TimeStretch::SEARCH_MS`] (6 ms) of its nominal position, and starts where its first half
//! best matches the *natural continuation* of segment `k − 1` (the input that followed the part
//! of `k − 1` being faded out), by normalized cross-correlation `Σ t·x / √Σ x²` over the 10 ms
//! overlap. The 12 ms search range holds a whole pitch period down to 83 Hz, so in voiced speech
//! the fade always runs between two waveforms in phase: no comb filtering, no clicks. Positions
//! are always `round(k · Ha) ± 6 ms`, never accumulated from earlier choices, so the length
//! cannot drift: after [`TimeStretch::flush`] the utterance of `n` samples has become exactly
//! `round(n / speed)` samples.
//!
//! Speed 1.0 (after clamping to [`TimeStretch::MIN_SPEED`]..=[`TimeStretch::MAX_SPEED`]) is a
//! plain copy with no latency.
//!
//! # Parameters (per rate: `Hs` = rate / 100, search = rate · 6 / 1000)
//! | rate      | segment | hop `Hs` | search ± |
//! |-----------|---------|----------|----------|
//! | 8 kHz     | 160     | 80       | 48       |
//! | 16 kHz    | 320     | 160      | 96       |
//! | 22.05 kHz | 440     | 220      | 132      |
//! | 24 kHz    | 480     | 240      | 144      |
//! | 48 kHz    | 960     | 480      | 288      |
//!
//! # Streaming and latency
//! Segment `k` is emitted (its first half, cross-faded with the second half of `k − 1`: exactly
//! `Hs` samples) as soon as the input holds everything it reads: its whole search range plus one
//! hop (`round(k·Ha) + search + Hs`), the natural continuation of `k − 1`, and enough input that
//! the output never runs ahead of `input / speed`. The output is therefore a pure function of the
//! total input: any split into calls gives the same samples. The input received but not yet
//! reflected in the output is at most `max(search + Hs, Ha, search + 2·Hs − Ha)` plus one sample
//! ([`TimeStretch::latency_ms`]): 16 ms at speeds 0.8–1.6, 21 ms at 0.5, 20 ms at 2.0 — the
//! first output appears after 16–20 ms of input.
//!
//! [`TimeStretch::flush`] ends the utterance: it pads the input with silence, runs the remaining
//! segments and stops at exactly `round(n / speed)` samples. [`TimeStretch::reset`] (barge-in)
//! drops the buffered input and the overlap at once.
//!
//! All buffers are sized in [`TimeStretch::new`]; `process` and `flush` only append to the
//! caller's `Vec` (reserve [`TimeStretch::max_output_len`] to keep that allocation-free).

/// One utterance's time-stretcher (mono i16 at one sample rate).
pub struct TimeStretch {
    /// The rate the segment geometry was built for.
    sample_rate_hz: u32,
    /// Clamped speed: output duration is input duration / speed.
    speed: f64,
    /// Copy at speed 1.0, WSOLA otherwise; the hot path matches once per call.
    engine: Engine,
}

/// Speed 1.0 copies; anything else runs WSOLA.
enum Engine {
    Passthrough,
    Wsola(Box<Wsola>),
}

/// WSOLA state. Input positions are absolute sample indices since the last flush/reset.
struct Wsola {
    /// Synthesis hop `Hs` and half the segment: samples emitted per segment.
    hop: usize,
    /// Search half-width: a segment may start this many samples either side of nominal.
    search: usize,
    /// Lag step of the coarse search pass: one sample at 8 kHz (`rate / 8000`, at least 1).
    coarse_step: usize,
    /// Analysis hop `Ha = speed · Hs`, samples (fractional; positions are rounded per segment).
    hop_in: f64,
    /// Rising half of the cross-fade window, `sin²`, `hop` samples; the falling half is
    /// `1 − rise`, so the two always sum to 1.
    rise: Vec<f32>,
    /// Buffered input as f32 (i16 range); `buf[0]` is absolute sample `buf_start`. Capacity
    /// fixed in `new`; `process` feeds it in pieces that fit.
    buf: Vec<f32>,
    /// Absolute index of `buf[0]`.
    buf_start: usize,
    /// Real input samples of this utterance (not counting flush padding): sets the final length.
    input_len: usize,
    /// Index of the next segment.
    segment: usize,
    /// Absolute start of the previous segment; its second half `[prev + hop, prev + 2·hop)` is
    /// faded out under the next segment's first half. `None` before the first segment.
    prev_start: Option<usize>,
    /// Output samples emitted in this utterance.
    emitted: usize,
}

impl std::fmt::Debug for TimeStretch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimeStretch")
            .field("sample_rate_hz", &self.sample_rate_hz)
            .field("speed", &self.speed)
            .field("latency_ms", &self.latency_ms())
            .finish()
    }
}

impl TimeStretch {
    /// Slowest speed; lower requests are clamped to it.
    pub const MIN_SPEED: f64 = 0.5;
    /// Fastest speed; higher requests are clamped to it.
    pub const MAX_SPEED: f64 = 2.0;
    /// Lowest supported sample rate.
    pub const MIN_RATE_HZ: u32 = 8_000;
    /// Highest supported sample rate.
    pub const MAX_RATE_HZ: u32 = 48_000;
    /// Segment length: two pitch periods at 100 Hz.
    pub const SEGMENT_MS: u32 = 20;
    /// Synthesis hop (half a segment): segments overlap by 50 %.
    pub const HOP_MS: u32 = Self::SEGMENT_MS / 2;
    /// Search half-width around each segment's nominal position (range 12 ms: one period at 83 Hz).
    pub const SEARCH_MS: u32 = 6;
    /// The coarse search pass tries starts on this rate's grid (every 125 µs), the fine pass
    /// every sample around the best.
    pub const COARSE_RATE_HZ: u32 = 8_000;
    /// The latency bound promised by [`TimeStretch::latency_ms`] at any speed and rate.
    pub const MAX_LATENCY_MS: f32 = 30.0;

    /// A stretcher for mono audio at `sample_rate_hz` that plays it at `speed` (1.0 = unchanged,
    /// 2.0 = twice as fast). `speed` is clamped to 0.5..=2.0; a non-finite speed means 1.0.
    ///
    /// # Panics
    /// If `sample_rate_hz` is outside 8–48 kHz.
    pub fn new(sample_rate_hz: u32, speed: f64) -> Self {
        assert!(
            (Self::MIN_RATE_HZ..=Self::MAX_RATE_HZ).contains(&sample_rate_hz),
            "TimeStretch: sample rate {sample_rate_hz} Hz outside 8000..=48000"
        );
        let speed = if speed.is_finite() { speed.clamp(Self::MIN_SPEED, Self::MAX_SPEED) } else { 1.0 };
        let engine = if speed == 1.0 {
            Engine::Passthrough
        } else {
            let rate = sample_rate_hz as usize;
            let hop = rate * Self::HOP_MS as usize / 1000;
            let search = rate * Self::SEARCH_MS as usize / 1000;
            let rise = (0..hop)
                .map(|n| {
                    let s = (std::f64::consts::FRAC_PI_2 * (n as f64 + 0.5) / hop as f64).sin();
                    (s * s) as f32
                })
                .collect();
            // The widest span a segment reads (see `Wsola::keep_from` / `ready_at`) is under
            // 2·search + 4·hop; twice that leaves room to take input in useful pieces.
            let capacity = 2 * (2 * search + 4 * hop);
            Engine::Wsola(Box::new(Wsola {
                hop,
                search,
                coarse_step: (rate / Self::COARSE_RATE_HZ as usize).max(1),
                hop_in: speed * hop as f64,
                rise,
                buf: Vec::with_capacity(capacity),
                buf_start: 0,
                input_len: 0,
                segment: 0,
                prev_start: None,
                emitted: 0,
            }))
        };
        Self { sample_rate_hz, speed, engine }
    }

    /// The sample rate this stretcher was built for.
    pub fn sample_rate_hz(&self) -> u32 {
        self.sample_rate_hz
    }

    /// The speed in use (after clamping).
    pub fn speed(&self) -> f64 {
        self.speed
    }

    /// Appends the stretched audio for `input` to `out`: whatever is complete so far. State
    /// carries over to the next call, so any chunking of the input gives the same output.
    pub fn process(&mut self, input: &[i16], out: &mut Vec<i16>) {
        match &mut self.engine {
            Engine::Passthrough => out.extend_from_slice(input),
            Engine::Wsola(w) => w.process(input, out),
        }
    }

    /// End of utterance: appends the rest of the stretched audio, so the utterance's output is
    /// exactly `round(input_len / speed)` samples, and starts afresh for the next one.
    pub fn flush(&mut self, out: &mut Vec<i16>) {
        if let Engine::Wsola(w) = &mut self.engine {
            w.flush(out);
        }
    }

    /// Barge-in: drops all buffered input and the pending overlap; the next sample starts a new
    /// utterance.
    pub fn reset(&mut self) {
        if let Engine::Wsola(w) = &mut self.engine {
            w.reset();
        }
    }

    /// The most input (in ms of input audio) that can be inside the stretcher without having
    /// reached the output yet; 0 at speed 1.0, at most 21 ms otherwise (see the module doc).
    pub fn latency_ms(&self) -> f32 {
        (self.latency_samples() as f64 * 1000.0 / self.sample_rate_hz as f64) as f32
    }

    /// [`TimeStretch::latency_ms`] in samples: `input_len − ⌈emitted · speed⌉` never exceeds it.
    pub fn latency_samples(&self) -> usize {
        match &self.engine {
            Engine::Passthrough => 0,
            Engine::Wsola(w) => {
                let ha = w.hop_in.ceil() as usize;
                let lag =
                    (w.search + w.hop).max(ha).max((w.search + 2 * w.hop).saturating_sub(w.hop_in as usize));
                lag + 1
            }
        }
    }

    /// The most samples one `process` call for `input_len` samples (or one `flush`, with 0) can
    /// append: reserve this in `out` to keep the calls allocation-free.
    pub fn max_output_len(&self, input_len: usize) -> usize {
        match &self.engine {
            Engine::Passthrough => input_len,
            Engine::Wsola(w) => {
                ((input_len + self.latency_samples()) as f64 / self.speed).ceil() as usize + w.hop
            }
        }
    }
}

impl Wsola {
    fn process(&mut self, mut input: &[i16], out: &mut Vec<i16>) {
        self.input_len += input.len();
        while !input.is_empty() {
            let room = self.buf.capacity() - self.buf.len();
            let (now, later) = input.split_at(room.min(input.len()));
            self.buf.extend(now.iter().map(|&s| f32::from(s)));
            input = later;
            self.run(out, usize::MAX);
        }
    }

    fn flush(&mut self, out: &mut Vec<i16>) {
        let speed = self.hop_in / self.hop as f64;
        let target = (self.input_len as f64 / speed).round() as usize;
        while self.emitted < target {
            // Pad with silence as far as the buffer allows, then emit up to `target`.
            let room = self.buf.capacity() - self.buf.len();
            self.buf.resize(self.buf.len() + room, 0.0);
            self.run(out, target);
        }
        self.reset();
    }

    fn reset(&mut self) {
        self.buf.clear();
        self.buf_start = 0;
        self.input_len = 0;
        self.segment = 0;
        self.prev_start = None;
        self.emitted = 0;
    }

    /// Nominal input start of segment `k`.
    fn nominal(&self, k: usize) -> usize {
        (k as f64 * self.hop_in).round() as usize
    }

    /// Absolute input length needed before segment `self.segment` can be emitted.
    fn ready_at(&self) -> usize {
        let k = self.segment;
        let search_end = self.nominal(k) + self.search + self.hop;
        // Never run ahead of the input: after this segment, `emitted · speed ≤ input`.
        let pace = ((k + 1) as f64 * self.hop_in).ceil() as usize;
        let continuation_end = self.prev_start.map_or(0, |p| p + 2 * self.hop);
        search_end.max(pace).max(continuation_end)
    }

    /// First absolute input index the next segment can read.
    fn keep_from(&self) -> usize {
        let lowest_candidate = self.nominal(self.segment).saturating_sub(self.search);
        self.prev_start.map_or(lowest_candidate, |p| lowest_candidate.min(p + self.hop))
    }

    /// Emits every segment the buffered input allows (stopping at `limit` output samples in
    /// total), then drops input no later segment can read.
    fn run(&mut self, out: &mut Vec<i16>, limit: usize) {
        while self.emitted < limit && self.buf_start + self.buf.len() >= self.ready_at() {
            let start = match self.prev_start {
                None => 0,
                Some(prev) => self.best_start(prev),
            };
            let n = self.hop.min(limit - self.emitted);
            let head = &self.buf[start - self.buf_start..][..n];
            match self.prev_start {
                // The first segment has nothing to fade from: its head is copied as is.
                None => out.extend(head.iter().map(|&x| to_i16(x))),
                Some(prev) => {
                    let tail = &self.buf[prev + self.hop - self.buf_start..][..n];
                    out.extend(
                        self.rise[..n]
                            .iter()
                            .zip(head)
                            .zip(tail)
                            .map(|((&r, &h), &t)| to_i16(t + r * (h - t))),
                    );
                }
            }
            self.emitted += n;
            self.prev_start = Some(start);
            self.segment += 1;
        }
        let keep = self.keep_from().max(self.buf_start);
        let drop = (keep - self.buf_start).min(self.buf.len());
        if drop > 0 {
            self.buf.drain(..drop);
            self.buf_start += drop;
        }
    }

    /// Start of segment `self.segment` within its search range whose first `hop` samples best
    /// match the natural continuation of the previous segment, by normalized cross-correlation
    /// `Σ t·x / √(Σ x² + 1)`. Coarse to fine: every `coarse_step`-th start first, then every
    /// start within one coarse step of the best. Ties and silence keep the nominal position.
    fn best_start(&self, prev: usize) -> usize {
        let nominal = self.nominal(self.segment);
        let lo = nominal.saturating_sub(self.search).max(self.buf_start);
        let hi = nominal + self.search;
        let target = &self.buf[prev + self.hop - self.buf_start..][..self.hop];
        let window = &self.buf[lo - self.buf_start..hi + self.hop - self.buf_start];
        let score = |start: usize| {
            let cand = &window[start - lo..][..self.hop];
            dot(target, cand) / (dot(cand, cand) + 1.0).sqrt()
        };
        let (mut best, mut best_score) = (nominal, score(nominal));
        for start in (lo..=hi).step_by(self.coarse_step) {
            let s = score(start);
            if s > best_score {
                (best, best_score) = (start, s);
            }
        }
        let centre = best;
        let fine_lo = centre.saturating_sub(self.coarse_step - 1).max(lo);
        let fine_hi = (centre + self.coarse_step - 1).min(hi);
        for start in fine_lo..=fine_hi {
            let s = score(start);
            if s > best_score {
                (best, best_score) = (start, s);
            }
        }
        best
    }
}

/// `Σ a·b` over the common length, in eight independent lanes so it vectorizes.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut lanes = [0.0f32; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ar, br) = (a8.remainder(), b8.remainder());
    for (x, y) in a8.zip(b8) {
        for i in 0..8 {
            lanes[i] += x[i] * y[i];
        }
    }
    let tail: f32 = ar.iter().zip(br).map(|(x, y)| x * y).sum();
    lanes.iter().sum::<f32>() + tail
}

/// Rounds and saturates an f32 in i16 range.
fn to_i16(x: f32) -> i16 {
    x.round().clamp(-32768.0, 32767.0) as i16
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::testutil::{rms, sine, zero_crossing_hz};

    const RATES_HZ: [u32; 5] = [8_000, 16_000, 22_050, 24_000, 48_000];
    const SPEEDS: [f64; 5] = [0.5, 0.75, 1.0, 1.25, 2.0];

    /// The whole output for `input` fed in chunks of `chunk`, then flushed.
    fn stretch(rate_hz: u32, speed: f64, input: &[i16], chunk: usize) -> Vec<i16> {
        let mut ts = TimeStretch::new(rate_hz, speed);
        let mut out = Vec::new();
        for piece in input.chunks(chunk) {
            ts.process(piece, &mut out);
        }
        ts.flush(&mut out);
        out
    }

    #[test]
    fn speed_is_clamped() {
        assert_eq!(TimeStretch::new(16_000, 3.0).speed(), 2.0);
        assert_eq!(TimeStretch::new(16_000, 0.1).speed(), 0.5);
        assert_eq!(TimeStretch::new(16_000, f64::NAN).speed(), 1.0);
        assert_eq!(TimeStretch::new(16_000, 1.0).latency_ms(), 0.0);
    }

    /// A sine keeps its frequency and level and lasts exactly `round(n / speed)`, at every rate.
    #[test]
    fn sine_keeps_pitch_and_level_at_every_rate_and_speed() {
        for rate_hz in RATES_HZ {
            let input = sine(220.0, rate_hz, rate_hz as usize, 12_000.0);
            for speed in SPEEDS {
                let out = stretch(rate_hz, speed, &input, 160);
                let want = (input.len() as f64 / speed).round() as usize;
                assert_eq!(out.len(), want, "{rate_hz} Hz × {speed}");
                // Away from the padded end.
                let body = &out[..out.len() * 9 / 10];
                let f_hz = zero_crossing_hz(body, rate_hz);
                assert!((f_hz / 220.0 - 1.0).abs() < 0.005, "{rate_hz} Hz × {speed}: {f_hz:.2} Hz");
                let level_db = 20.0 * (rms(body) / rms(&input)).log10();
                assert!(level_db.abs() < 0.2, "{rate_hz} Hz × {speed}: {level_db:.2} dB");
            }
        }
    }

    /// The output is a function of the whole input only, not of how it was split.
    #[test]
    fn chunking_does_not_change_the_output() {
        for rate_hz in [8_000, 16_000, 22_050] {
            let input: Vec<i16> = sine(180.0, rate_hz, rate_hz as usize / 2, 9_000.0)
                .iter()
                .zip(sine(1_234.0, rate_hz, rate_hz as usize / 2, 3_000.0))
                .map(|(&a, b)| a + b)
                .collect();
            for speed in [0.5, 0.8, 1.5, 2.0] {
                let whole = stretch(rate_hz, speed, &input, input.len());
                for chunk in [1, 7, 160, 321, 4_000] {
                    assert!(stretch(rate_hz, speed, &input, chunk) == whole, "{rate_hz} × {speed} × {chunk}");
                }
            }
        }
    }

    /// Streaming one sample at a time, the input not yet reflected in the output never exceeds
    /// `latency_samples` (≤ 30 ms), and comes within a hop of it.
    #[test]
    fn latency_bound_holds() {
        for rate_hz in RATES_HZ {
            let input = sine(150.0, rate_hz, rate_hz as usize / 2, 10_000.0);
            for speed in [0.5, 0.75, 1.25, 1.6, 2.0] {
                let mut ts = TimeStretch::new(rate_hz, speed);
                assert!(ts.latency_ms() <= TimeStretch::MAX_LATENCY_MS, "{rate_hz} × {speed}");
                let mut out = Vec::new();
                let mut worst = 0usize;
                for (n, s) in input.iter().enumerate() {
                    ts.process(std::slice::from_ref(s), &mut out);
                    let reflected = (out.len() as f64 * ts.speed()).ceil() as usize;
                    worst = worst.max(n + 1 - reflected.min(n + 1));
                }
                let bound = ts.latency_samples();
                assert!(worst <= bound, "{rate_hz} × {speed}: lag {worst} > {bound}");
                assert!(worst + rate_hz as usize / 100 >= bound, "{rate_hz} × {speed}: bound {bound} loose");
            }
        }
    }

    #[test]
    fn reset_drops_everything() {
        let a = sine(300.0, 16_000, 5_000, 10_000.0);
        let b = sine(200.0, 16_000, 8_000, 10_000.0);
        for speed in [0.5, 1.25, 2.0] {
            let mut ts = TimeStretch::new(16_000, speed);
            let mut out = Vec::new();
            ts.process(&a, &mut out);
            ts.reset();
            out.clear();
            ts.process(&b, &mut out);
            ts.flush(&mut out);
            assert!(out == stretch(16_000, speed, &b, b.len()), "{speed}");
            // And a reset with nothing after it leaves nothing to flush.
            ts.process(&a, &mut out);
            ts.reset();
            out.clear();
            ts.flush(&mut out);
            assert!(out.is_empty());
        }
    }

    #[test]
    fn silence_stays_silence() {
        for speed in SPEEDS {
            let out = stretch(16_000, speed, &[0; 16_000], 320);
            assert!(out.iter().all(|&s| s == 0), "{speed}");
        }
    }

    #[test]
    fn passthrough_at_speed_one() {
        let input = sine(440.0, 16_000, 1_000, 10_000.0);
        assert_eq!(stretch(16_000, 1.0, &input, 33), input);
    }
}
