//! The speech segmenter: a pure, frame-counting state machine that turns one speech
//! probability per 20 ms frame into `SpeechStart` / `SpeechEnd` events with hysteresis
//! (separate start and end thresholds), a minimum speech run and a hangover.
//!
//! Rules (frame-accurate; `n` counts frames from 0 since construction or reset):
//! - a frame is **voiced** when `prob >= start_threshold`, **silent** when `prob < end_threshold`
//!   (the same comparisons as Silero's reference iterator); anything between is neither;
//! - while idle, `min_speech_frames` voiced frames in a row start speech: the event is emitted on
//!   the last of them and dated to the **first** of them; any other frame breaks the run;
//! - while in speech, `hangover_frames` silent frames in a row end it: the event is emitted on
//!   the last of them and dated to the **first** silent frame; any non-silent frame breaks the run.
//!
//! At most one event per frame: the frame that ends speech is silent, so it cannot also start a
//! voiced run.
//!
//! Dating: with [`Segmenter::push`] a frame's evidence is the frame itself. An engine whose
//! probability describes a window reaching back before the current frame (Silero: a 32 ms chunk
//! that may have begun one or two frames earlier) passes that window's first frame with
//! [`Segmenter::push_at`], and events are dated to it instead (the "first voiced frame" is then
//! the first frame of the first voiced chunk).

use super::VadEvent;

/// Frame-counting speech/silence state machine.
#[derive(Debug, Clone)]
pub struct Segmenter {
    /// `prob >= start_threshold` counts as voiced.
    start_threshold: f32,
    /// `prob < end_threshold` counts as silent.
    end_threshold: f32,
    /// Voiced frames in a row needed to start speech (≥ 1).
    min_speech_frames: u32,
    /// Silent frames in a row needed to end speech (≥ 1).
    hangover_frames: u32,
    /// Index of the next frame to be pushed.
    next_frame: u64,
    /// Idle or in speech.
    state: State,
    /// Length of the current run (voiced while idle, silent while in speech).
    run_len: u32,
    /// Index of the first frame of the current run (valid when `run_len > 0`).
    run_start: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Idle,
    Speech,
}

impl Segmenter {
    /// A segmenter over frames of `frame_ms`; durations round up to whole frames, at least one.
    /// `end_threshold` above `start_threshold` is lowered to it (no negative hysteresis).
    pub fn new(
        start_threshold: f32,
        end_threshold: f32,
        min_speech_ms: u32,
        hangover_ms: u32,
        frame_ms: u32,
    ) -> Self {
        Self {
            start_threshold,
            end_threshold: end_threshold.min(start_threshold),
            min_speech_frames: min_speech_ms.div_ceil(frame_ms).max(1),
            hangover_frames: hangover_ms.div_ceil(frame_ms).max(1),
            next_frame: 0,
            state: State::Idle,
            run_len: 0,
            run_start: 0,
        }
    }

    /// Feeds the probability of the next frame; returns the event this frame completes, if any.
    pub fn push(&mut self, prob: f32) -> Option<VadEvent> {
        self.push_at(prob, self.next_frame)
    }

    /// As [`Self::push`], for a probability that describes audio from frame `origin` on
    /// (`origin` ≤ the frame being pushed; later values are clamped to it). Events are dated to
    /// the `origin` of the frame that opens their run.
    pub fn push_at(&mut self, prob: f32, origin: u64) -> Option<VadEvent> {
        let frame = origin.min(self.next_frame);
        self.next_frame += 1;
        match self.state {
            State::Idle => {
                if prob >= self.start_threshold {
                    self.extend_run(frame);
                    if self.run_len >= self.min_speech_frames {
                        self.state = State::Speech;
                        self.run_len = 0;
                        return Some(VadEvent::SpeechStart { frame: self.run_start });
                    }
                } else {
                    self.run_len = 0;
                }
            }
            State::Speech => {
                if prob < self.end_threshold {
                    self.extend_run(frame);
                    if self.run_len >= self.hangover_frames {
                        self.state = State::Idle;
                        self.run_len = 0;
                        return Some(VadEvent::SpeechEnd { frame: self.run_start });
                    }
                } else {
                    self.run_len = 0;
                }
            }
        }
        None
    }

    fn extend_run(&mut self, frame: u64) {
        if self.run_len == 0 {
            self.run_start = frame;
        }
        self.run_len += 1;
    }

    /// True while idle with no voiced run under way (nothing would be lost by not listening
    /// closely to the next frame).
    pub fn is_quiet(&self) -> bool {
        self.state == State::Idle && self.run_len == 0
    }

    /// True between a `SpeechStart` and its `SpeechEnd`.
    pub fn in_speech(&self) -> bool {
        self.state == State::Speech
    }

    /// During speech, the first frame of the silent run under way (the date its `SpeechEnd`
    /// will carry if the run lasts the hangover); `None` while voiced or idle.
    pub fn pending_end(&self) -> Option<u64> {
        (self.state == State::Speech && self.run_len > 0).then_some(self.run_start)
    }

    /// Index the next pushed frame will get.
    pub fn next_frame(&self) -> u64 {
        self.next_frame
    }

    /// Back to idle at frame 0.
    pub fn reset(&mut self) {
        self.next_frame = 0;
        self.state = State::Idle;
        self.run_len = 0;
        self.run_start = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use VadEvent::{SpeechEnd, SpeechStart};

    /// Runs `probs` through a fresh segmenter; returns (frame pushed, event) pairs.
    fn events(seg: &mut Segmenter, probs: &[f32]) -> Vec<(u64, VadEvent)> {
        probs
            .iter()
            .filter_map(|&p| {
                let at = seg.next_frame();
                seg.push(p).map(|e| (at, e))
            })
            .collect()
    }

    /// `n` copies of `p`.
    fn run(p: f32, n: usize) -> Vec<f32> {
        vec![p; n]
    }

    fn concat(parts: &[Vec<f32>]) -> Vec<f32> {
        parts.concat()
    }

    #[test]
    fn pending_end_names_the_date_the_end_will_carry() {
        let mut seg = Segmenter::new(0.5, 0.35, 40, 100, 20);
        assert_eq!(seg.pending_end(), None);
        events(&mut seg, &concat(&[run(0.9, 5), run(0.0, 2)]));
        assert_eq!(seg.pending_end(), Some(5), "two silent frames after speech from frame 5");
        events(&mut seg, &run(0.9, 1));
        assert_eq!(seg.pending_end(), None, "voice again: no end pending");
        let got = events(&mut seg, &run(0.0, 5));
        assert_eq!(got, vec![(12, SpeechEnd { frame: 8 })]);
        assert_eq!(seg.pending_end(), None, "idle after the end");
    }

    #[test]
    fn start_is_back_dated_and_end_is_dated_to_first_silent_frame() {
        // Matrix over min-speech and hangover lengths (in frames) and the leading silence.
        for min_frames in [1u32, 2, 3, 5, 10] {
            for hang_frames in [1u32, 2, 5, 15] {
                for lead in [0usize, 1, 7] {
                    let mut seg = Segmenter::new(0.5, 0.35, min_frames * 20, hang_frames * 20, 20);
                    let speech = 20usize;
                    let probs = concat(&[run(0.0, lead), run(0.9, speech), run(0.0, 40)]);
                    let got = events(&mut seg, &probs);
                    let start = lead as u64;
                    let end = (lead + speech) as u64;
                    assert_eq!(
                        got,
                        vec![
                            (start + u64::from(min_frames) - 1, SpeechStart { frame: start }),
                            (end + u64::from(hang_frames) - 1, SpeechEnd { frame: end }),
                        ],
                        "min {min_frames} hang {hang_frames} lead {lead}"
                    );
                }
            }
        }
    }

    #[test]
    fn exact_thresholds() {
        // Exactly start_threshold is voiced; just below is not.
        let mut seg = Segmenter::new(0.5, 0.35, 60, 60, 20);
        assert_eq!(events(&mut seg, &run(0.5, 3)), vec![(2, SpeechStart { frame: 0 })]);
        let mut seg = Segmenter::new(0.5, 0.35, 60, 60, 20);
        assert!(events(&mut seg, &run(0.499_999, 50)).is_empty());

        // Exactly end_threshold is not silent (speech continues); just below is.
        let mut seg = Segmenter::new(0.5, 0.35, 20, 60, 20);
        let probs = concat(&[run(0.9, 1), run(0.35, 50)]);
        assert_eq!(events(&mut seg, &probs), vec![(0, SpeechStart { frame: 0 })]);
        let mut seg = Segmenter::new(0.5, 0.35, 20, 60, 20);
        let probs = concat(&[run(0.9, 1), run(0.349_999, 3)]);
        assert_eq!(
            events(&mut seg, &probs),
            vec![(0, SpeechStart { frame: 0 }), (3, SpeechEnd { frame: 1 })]
        );
    }

    #[test]
    fn hysteresis_band_keeps_the_current_state() {
        // Between the thresholds: no start while idle, no end while in speech.
        let mut seg = Segmenter::new(0.6, 0.3, 40, 40, 20);
        let probs = concat(&[run(0.45, 20), run(0.7, 2), run(0.45, 20), run(0.1, 2)]);
        assert_eq!(
            events(&mut seg, &probs),
            vec![(21, SpeechStart { frame: 20 }), (43, SpeechEnd { frame: 42 })]
        );
    }

    #[test]
    fn short_bursts_do_not_start_and_short_gaps_do_not_end() {
        let mut seg = Segmenter::new(0.5, 0.35, 100, 200, 20); // 5 voiced frames, 10 silent frames
                                                               // Bursts of 4 voiced frames separated by one frame in the band or below: never a start.
        let mut probs = Vec::new();
        for _ in 0..5 {
            probs.extend(run(0.9, 4));
            probs.push(0.4);
        }
        assert!(events(&mut seg, &probs).is_empty());

        // Speech with gaps of 9 silent frames (< hangover): one segment; the final 10 end it.
        let mut seg = Segmenter::new(0.5, 0.35, 100, 200, 20);
        let probs = concat(&[run(0.9, 5), run(0.0, 9), run(0.9, 1), run(0.0, 9), run(0.9, 3), run(0.0, 10)]);
        assert_eq!(
            events(&mut seg, &probs),
            vec![(4, SpeechStart { frame: 0 }), (36, SpeechEnd { frame: 27 })]
        );
    }

    #[test]
    fn a_voiced_frame_during_the_hangover_restarts_it() {
        let mut seg = Segmenter::new(0.5, 0.35, 20, 60, 20);
        let probs = concat(&[run(0.9, 2), run(0.1, 2), run(0.5, 1), run(0.1, 3)]);
        assert_eq!(
            events(&mut seg, &probs),
            vec![(0, SpeechStart { frame: 0 }), (7, SpeechEnd { frame: 5 })]
        );
    }

    #[test]
    fn durations_round_up_to_whole_frames_and_at_least_one() {
        for (ms, frames) in [(0u32, 1u64), (1, 1), (20, 1), (21, 2), (40, 2), (59, 3)] {
            let mut seg = Segmenter::new(0.5, 0.35, ms, ms, 20);
            let probs = concat(&[run(1.0, 10), run(0.0, 10)]);
            assert_eq!(
                events(&mut seg, &probs),
                vec![(frames - 1, SpeechStart { frame: 0 }), (10 + frames - 1, SpeechEnd { frame: 10 })],
                "{ms} ms"
            );
        }
    }

    #[test]
    fn repeated_segments_and_reset() {
        let mut seg = Segmenter::new(0.5, 0.35, 40, 40, 20);
        let one = concat(&[run(0.0, 3), run(1.0, 4), run(0.0, 3)]);
        let probs = concat(&[one.clone(), one.clone()]);
        assert_eq!(
            events(&mut seg, &probs),
            vec![
                (4, SpeechStart { frame: 3 }),
                (8, SpeechEnd { frame: 7 }),
                (14, SpeechStart { frame: 13 }),
                (18, SpeechEnd { frame: 17 }),
            ]
        );
        // Reset mid-speech: back to idle at frame 0, the same input gives the same events.
        seg.push(1.0);
        seg.push(1.0);
        assert!(seg.in_speech());
        seg.reset();
        assert!(seg.is_quiet() && !seg.in_speech() && seg.next_frame() == 0);
        assert_eq!(events(&mut seg, &one), vec![(4, SpeechStart { frame: 3 }), (8, SpeechEnd { frame: 7 })]);
    }

    #[test]
    fn windowed_evidence_is_dated_to_its_origin() {
        // Probabilities of 32 ms windows reported on the frame in which each window completes
        // (as Silero's chunks): origin = first frame the window covers.
        let mut seg = Segmenter::new(0.5, 0.35, 40, 40, 20);
        let pushes = [(0.0, 0), (0.0, 0), (0.9, 1), (0.9, 1), (0.9, 3), (0.1, 4), (0.1, 4), (0.1, 6)];
        let got: Vec<_> = pushes.iter().filter_map(|&(p, o)| seg.push_at(p, o)).collect();
        assert_eq!(got, vec![SpeechStart { frame: 1 }, SpeechEnd { frame: 4 }]);
        // An origin in the future is clamped to the frame itself.
        let mut seg = Segmenter::new(0.5, 0.35, 20, 20, 20);
        assert_eq!(seg.push_at(0.9, 99), Some(SpeechStart { frame: 0 }));
    }

    #[test]
    fn end_threshold_above_start_is_clamped() {
        // end 0.8 > start 0.5: treated as 0.5, so 0.6 keeps speech going.
        let mut seg = Segmenter::new(0.5, 0.8, 20, 20, 20);
        let probs = concat(&[run(0.6, 5), run(0.4, 1)]);
        assert_eq!(
            events(&mut seg, &probs),
            vec![(0, SpeechStart { frame: 0 }), (5, SpeechEnd { frame: 5 })]
        );
    }
}
